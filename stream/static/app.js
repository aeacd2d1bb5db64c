// The live KPI page: polls GET /kpis?window=W every 5 s and renders both KPIs with their
// bands and a short in-memory history. Plain DOM code, no framework, no external URL.
// Labels (segments, teams) come from producers' events: they are only ever set as text.
"use strict";

(function () {
  var REFRESH_MS = 5000;
  var TIMEOUT_MS = 4000;
  var HISTORY_POINTS = 60;
  var HIGH = 0.8;
  var MODERATE = 0.6;
  var SVG = "http://www.w3.org/2000/svg";
  var SPARK_W = 150;
  var SPARK_H = 36;
  var SPARK_MIN_SLOTS = 12;  // a young history still draws a visible line
  var SPARK_PAD = 3;

  var SECTIONS = [
    {id: "actions", list: "advocacy_actions", overall: "advocacy_actions_overall", label: "segment",
     numerator: "actions", denominator: "customers", overallLabel: "All segments (overall)"},
    {id: "creation", list: "advocacy_creation", overall: "advocacy_creation_overall", label: "team",
     numerator: "advocates_created", denominator: "support_interactions", overallLabel: "All teams (overall)"}
  ];

  var state = {
    window: new URLSearchParams(location.search).get("window") || "1h",
    windows: null,          // the windows the worker reports, once known
    history: new Map(),     // "section|window|label" -> [hundredths of a percent or null], oldest first
    last: null,             // the last good /kpis body
    timer: null,
    seq: 0                  // guards against a slow answer for a window no longer selected
  };

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function svg(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    return node;
  }

  function isNumber(v) { return typeof v === "number" && isFinite(v); }

  // A rate is shown as its percent rounded DOWN to two decimals (79.996% is 79.99%), so a shown value is
  // never on the other side of a band line (60%, 80%) from its band. It is computed in integers from the
  // row's counts: floor(numerator * 10000 / denominator) hundredths of a percent, no float rounding.
  function hundredths(row, section) {
    var n = row[section.numerator], d = row[section.denominator];
    if (Number.isSafeInteger(n) && Number.isSafeInteger(d) && d > 0 && n >= 0 && Number.isSafeInteger(n * 10000)) {
      var h = Math.floor(n * 10000 / d);
      while (h * d > n * 10000) { h -= 1; }
      while ((h + 1) * d <= n * 10000) { h += 1; }
      return h;
    }
    if (isNumber(row.percent)) { return Math.round(row.percent * 100); }  // already rounded down by the worker
    return null;
  }

  function percent(h) {
    if (!isNumber(h)) { return "no data"; }
    var cents = h % 100;
    return Math.floor(h / 100) + "." + (cents < 10 ? "0" : "") + cents + "%";
  }

  function count(n) { return isNumber(n) ? n.toLocaleString("en-US") : "\u2013"; }

  function bandOf(row, h) {  // the worker's band; without one, the band of the shown percent
    if (row.band === "high" || row.band === "moderate" || row.band === "low") { return row.band; }
    if (!isNumber(h)) { return null; }
    return h >= HIGH * 10000 ? "high" : h >= MODERATE * 10000 ? "moderate" : "low";
  }

  // --- fetching ------------------------------------------------------------------------------

  function FetchError(message, status) { this.message = message; this.status = status; }

  function fetchJson(url) {
    var controller = typeof AbortController === "function" ? new AbortController() : null;
    var timer = setTimeout(function () { if (controller) { controller.abort(); } }, TIMEOUT_MS);
    return fetch(url, {cache: "no-store", headers: {Accept: "application/json"},
                       signal: controller ? controller.signal : undefined})
      .catch(function (err) {
        var why = err && err.name === "AbortError" ? "no answer within " + TIMEOUT_MS / 1000 + " s"
                                                   : "connection failed";
        throw new FetchError("Cannot reach the worker at " + (location.host || location.href) + " (" + why + ").", 0);
      })
      .then(function (resp) {
        return resp.text().then(function (text) {
          var body = null;
          try { body = JSON.parse(text); } catch (e) { body = null; }
          if (!resp.ok) {
            var detail = body && body.error ? body.error : text.slice(0, 200) || resp.statusText;
            throw new FetchError("The worker answered " + resp.status + " to /kpis: " + detail, resp.status);
          }
          if (!body || typeof body !== "object") {
            throw new FetchError("The worker's /kpis answer is not JSON.", resp.status);
          }
          return body;
        });
      })
      .finally(function () { clearTimeout(timer); });
  }

  function windowsOf(body) {
    var seen = [];
    (body.advocacy_actions_overall || []).concat(body.advocacy_creation_overall || []).forEach(function (r) {
      if (r && typeof r.window === "string" && seen.indexOf(r.window) < 0) { seen.push(r.window); }
    });
    return seen;
  }

  function discover() {
    if (state.windows) { return Promise.resolve(); }
    return fetchJson("kpis").then(function (body) {
      var windows = windowsOf(body);
      if (!windows.length) { return; }
      state.windows = windows;
      if (windows.indexOf(state.window) < 0) {
        state.window = windows.indexOf("1h") >= 0 ? "1h" : windows[0];
      }
      fillSelect();
    });
  }

  function refresh() {
    clearTimeout(state.timer);
    var seq = ++state.seq;
    discover()
      .then(function () { return fetchJson("kpis?window=" + encodeURIComponent(state.window)); })
      .then(function (body) {
        if (seq !== state.seq) { return; }
        state.last = body;
        record(body);
        render(body);
        showError(null);
      }, function (err) {
        if (seq !== state.seq) { return; }
        if (err && err.status === 400) { state.windows = null; }  // the worker's windows changed
        showError(err && err.message ? err.message : String(err));
      })
      .finally(function () {
        if (seq === state.seq) { state.timer = setTimeout(refresh, REFRESH_MS); }
      });
  }

  // --- window selector ----------------------------------------------------------------------

  function fillSelect() {
    var select = $("window");
    while (select.firstChild) { select.removeChild(select.firstChild); }
    state.windows.forEach(function (w) {
      var option = el("option", {value: w}, w);
      if (w === state.window) { option.defaultSelected = option.selected = true; }
      select.appendChild(option);
    });
  }

  function onWindowChange() {
    state.window = $("window").value;
    var url = new URL(location.href);
    url.searchParams.set("window", state.window);
    history.replaceState(null, "", url.toString());
    ["actions", "creation"].forEach(function (id) { clearTable(id, "Loading " + state.window + "\u2026"); });
    refresh();
  }

  // --- history --------------------------------------------------------------------------------

  function key(section, window, label) { return section.id + "|" + window + "|" + (label === null ? "" : label); }

  function record(body) {
    SECTIONS.forEach(function (section) {
      rowsOf(body, section).forEach(function (item) {
        var k = key(section, item.row.window, item.label);
        var points = state.history.get(k);
        if (!points) { points = []; state.history.set(k, points); }
        points.push(hundredths(item.row, section));
        if (points.length > HISTORY_POINTS) { points.splice(0, points.length - HISTORY_POINTS); }
      });
    });
  }

  // --- rendering ------------------------------------------------------------------------------

  function rowsOf(body, section) {
    var rows = (body[section.list] || []).filter(function (r) { return r && r.window === state.window; })
      .map(function (r) { return {row: r, label: String(r[section.label]), overall: false}; });
    (body[section.overall] || []).filter(function (r) { return r && r.window === state.window; })
      .forEach(function (r) { rows.push({row: r, label: null, overall: true}); });
    return rows;
  }

  function clearTable(id, message) {
    var table = $(id);
    var tbody = table.tBodies[0];
    while (tbody.firstChild) { tbody.removeChild(tbody.firstChild); }
    var tr = el("tr", {"class": "empty"});
    tr.appendChild(el("td", {colspan: "7"}, message));
    tbody.appendChild(tr);
    var tfoot = table.tFoot;
    while (tfoot.firstChild) { tfoot.removeChild(tfoot.firstChild); }
  }

  function render(body) {
    SECTIONS.forEach(function (section) {
      var items = rowsOf(body, section);
      var table = $(section.id);
      var tbody = el("tbody");
      var tfoot = el("tfoot");
      items.forEach(function (item) {
        (item.overall ? tfoot : tbody).appendChild(renderRow(section, item));
      });
      if (!tbody.firstChild) {
        var tr = el("tr", {"class": "empty"});
        tr.appendChild(el("td", {colspan: "7"}, "No " + section.label + " has data in the " + state.window + " window yet."));
        tbody.appendChild(tr);
      }
      table.replaceChild(tbody, table.tBodies[0]);
      table.replaceChild(tfoot, table.tFoot);
    });
    var when = typeof body.generated_at === "string" ? body.generated_at : "";
    var status = $("status");
    while (status.firstChild) { status.removeChild(status.firstChild); }
    status.appendChild(document.createTextNode("Updated at "));
    status.appendChild(el("time", {datetime: when, id: "generated-at"}, when.replace("T", " ").replace("Z", " UTC")));
    status.appendChild(document.createTextNode(" \u00b7 window " + state.window + " \u00b7 refreshed every 5 s"));
  }

  function renderRow(section, item) {
    var row = item.row;
    var h = hundredths(row, section);
    var band = bandOf(row, h);
    var name = item.overall ? section.overallLabel : item.label;
    var tr = el("tr", {"class": "band-" + (band || "none") + (item.overall ? " overall" : ""),
                       "data-band": band || "none"});
    if (!item.overall) { tr.setAttribute("data-" + section.label, item.label); }
    tr.appendChild(el("th", {scope: "row", "class": "label", title: name}, name));
    tr.appendChild(el("td", {"class": "num numerator"}, count(row[section.numerator])));
    tr.appendChild(el("td", {"class": "num denominator"}, count(row[section.denominator])));
    tr.appendChild(el("td", {"class": "num rate"}, percent(h)));
    var barCell = el("td", {"class": "bar-cell"});
    barCell.appendChild(bar(h, band, name));
    tr.appendChild(barCell);
    var bandCell = el("td", {"class": "band"});
    bandCell.appendChild(el("span", {"class": "badge"}, band || "no data"));
    tr.appendChild(bandCell);
    var sparkCell = el("td", {"class": "spark-cell"});
    sparkCell.appendChild(sparkline(state.history.get(key(section, row.window, item.label)) || [], name));
    tr.appendChild(sparkCell);
    return tr;
  }

  function bar(h, band, name) {
    var rate = isNumber(h) ? h / 10000 : null;
    var label = isNumber(rate) ? name + ": " + percent(h) + ", " + band + " band (band lines at 60% and 80%)"
                               : name + ": no data";
    var node = el("div", {"class": "bar", role: "img", "aria-label": label, title: label});
    var fill = el("div", {"class": "fill"});
    fill.style.width = isNumber(rate) ? Math.max(0, Math.min(rate, 1)) * 100 + "%" : "0";
    node.appendChild(fill);
    node.appendChild(el("div", {"class": "mark mark-60", "aria-hidden": "true"}));
    node.appendChild(el("div", {"class": "mark mark-80", "aria-hidden": "true"}));
    if (isNumber(rate) && rate > 1) { node.classList.add("over"); }
    return node;
  }

  function sparkline(points, name) {  // points: hundredths of a percent (or null)
    var defined = points.filter(isNumber);
    var top = Math.max(10000, Math.max.apply(null, defined.concat([0])));
    var n = points.length;
    var slots = Math.min(HISTORY_POINTS, Math.max(SPARK_MIN_SLOTS, n));
    var step = (SPARK_W - 2 * SPARK_PAD) / (slots - 1);
    function x(i) { return SPARK_W - SPARK_PAD - (n - 1 - i) * step; }  // newest at the right edge
    function y(v) { return SPARK_H - SPARK_PAD - (v / top) * (SPARK_H - 2 * SPARK_PAD); }

    var description = defined.length
      ? name + " history, last " + n + " refresh" + (n === 1 ? "" : "es") + ": from " + percent(defined[0]) +
        " to " + percent(defined[defined.length - 1]) + ", lowest " + percent(Math.min.apply(null, defined)) +
        ", highest " + percent(Math.max.apply(null, defined))
      : name + " history: no data yet";
    var node = svg("svg", {"class": "spark", width: SPARK_W, height: SPARK_H,
                           viewBox: "0 0 " + SPARK_W + " " + SPARK_H, role: "img", "aria-label": description});
    var title = svg("title");
    title.textContent = description;
    node.appendChild(title);
    [MODERATE, HIGH].forEach(function (level) {
      node.appendChild(svg("line", {"class": "guide", x1: SPARK_PAD, x2: SPARK_W - SPARK_PAD,
                                    y1: y(level * 10000), y2: y(level * 10000)}));
    });
    var run = [];
    function flush() {
      if (run.length > 1) { node.appendChild(svg("polyline", {"class": "line", points: run.join(" ")})); }
      run = [];
    }
    points.forEach(function (v, i) {
      if (isNumber(v)) { run.push(x(i).toFixed(1) + "," + y(v).toFixed(1)); } else { flush(); }
    });
    flush();
    for (var i = n - 1; i >= 0; i--) {
      if (isNumber(points[i])) {
        node.appendChild(svg("circle", {"class": "dot", cx: x(i).toFixed(1), cy: y(points[i]).toFixed(1), r: 2.5}));
        break;
      }
    }
    return node;
  }

  // --- errors ---------------------------------------------------------------------------------

  function showError(message) {
    var banner = $("error");
    var main = $("main");
    if (!message) {
      banner.hidden = true;
      banner.textContent = "";
      main.classList.remove("stale");
      return;
    }
    var text = message + (/[.!?]$/.test(message) ? "" : ".") + " Retrying every " + REFRESH_MS / 1000 + " s.";
    if (state.last && state.last.generated_at) {
      text += " The figures below are from " + state.last.generated_at + " and may be out of date.";
      main.classList.add("stale");
    } else {
      $("status").textContent = "No figures yet: the worker's KPIs could not be read.";
    }
    banner.textContent = text;
    banner.hidden = false;
  }

  function start() {
    var select = $("window");
    select.options[0].value = select.options[0].textContent = state.window;  // until the worker says more
    select.addEventListener("change", onWindowChange);
    refresh();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
