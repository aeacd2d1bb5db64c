"""The hot path (``stream.HOT_PATH``) compiled by mypyc and in pure Python: which one runs, and the same results.

``make test`` runs the hot path's unit and property tests twice: on the pure-Python modules
(``ADVOCACY_PURE_PYTHON=1``, ``make test-pure``) and on what the install built (compiled, in CI).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import stream
from stream import HOT_PATH, PURE_PYTHON, hot_path
from tests.support import IN_CI

ROOT = Path(__file__).resolve().parents[2]
PURE = os.environ.get(PURE_PYTHON, "") not in ("", "0")

# a fixed workload through parse and the tally: its outcome as JSON (printed by a fresh interpreter)
WORKLOAD = """
import json, sys
from stream import hot_path
from stream.codec import decode, encode
from stream.errors import InvalidEvent
from stream.events import parse
from stream.kpi.record import Customer
from stream.kpi.totals import Tally
from stream.kpi.windows import Rules, Window
from tests.bench.events import generate, wire

now = 1_795_000_000.0
now_ms = int(now * 1000)
values = wire(generate(3000, 300, now), {k: k for k in ("review", "referral", "ticket", "customer")})
values += [("review", b"", b'{"event_id": 1}'), ("ticket", b"", b'{"event_id": "t", "customer_id": "c", '
           b'"occurred_at": "2026-11-23T14:03:60Z", "ticket_id": "1", "team": "a"}')]
events, reasons = [], []
for kind, _key, raw in values:
    try:
        events.append(parse(kind, raw, now_ms, longest_window_ms=90 * 86_400_000, attribution_ms=7 * 86_400_000,
                            future_tolerance_ms=300_000, max_bytes=1_000_000))
    except InvalidEvent as exc:
        reasons.append([exc.reason, exc.detail])
rules = Rules((Window("1h", 3600), Window("7d", 7 * 86400)), 3 * 86_400_000, max_events=int(sys.argv[1]))
records, out = {}, []
for start in range(0, len(events), 250):
    tally = Tally()
    group = {}
    for event in events[start:start + 250]:
        group.setdefault(event.customer_id, []).append(event)
    for customer_id, batch in group.items():
        held = records.get(customer_id)
        # every other batch, the record as the store reads it back (codec: JSON arrays)
        old = Customer() if held is None else decode(encode(held)) if start % 500 else held
        new = tally.step(customer_id, old, batch, now_ms, rules)
        if new is not None:
            records[customer_id] = new
    out.append([sorted(map(repr, tally.counts(rules, now_ms).items())), sorted(tally.outcomes.items()),
                sorted(tally.active.items()), sorted(tally.advocates_set), sorted(tally.advocates_removed),
                [repr(e) for e in tally.rejected]])
print(json.dumps({"hot_path": hot_path(), "events": [repr(e) for e in events], "reasons": reasons, "tally": out,
                  "records": sorted((k, repr(v)) for k, v in records.items())}))
"""


def _run_workload(pure: bool, max_events: int) -> dict[str, object]:
    env = {**os.environ, PURE_PYTHON: "1" if pure else "0"}
    done = subprocess.run([sys.executable, "-c", WORKLOAD, str(max_events)], cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


def _compiled_built() -> bool:
    return any(Path(stream.__file__).parent.glob("events.*.so"))


def test_setup_compiles_the_modules_stream_names() -> None:
    """setup.py's HOT_PATH (files) and stream.HOT_PATH (module names) are the same modules."""
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    files = next(ast.literal_eval(node.value) for node in ast.walk(tree)
                 if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "HOT_PATH")
    assert [f.removesuffix(".py").replace("/", ".") for f in files] == list(HOT_PATH)


def test_the_modules_loaded_are_the_ones_asked_for() -> None:
    """ADVOCACY_PURE_PYTHON=1: every hot-path module from its source; otherwise every one from its
    extension when the install built them (in CI it must have: a missing compiler is a failure)."""
    if PURE:
        assert hot_path() == "pure Python"
    elif IN_CI or _compiled_built():
        assert hot_path() == "compiled"
    else:
        pytest.skip("the install built no extension (no C compiler): pure Python only")


def test_no_compiled_module_is_older_than_its_source() -> None:
    """An edited module must not run as its stale extension (``make deps`` builds it again). mypyc puts
    the code of every module in one library (``stream_hot__mypyc``), built after the sources."""
    if not _compiled_built():
        pytest.skip("no extension built")
    library = max(Path(stream.__file__).parents[1].glob("stream_hot__mypyc.*.so"), key=lambda p: p.stat().st_mtime)
    for name in HOT_PATH:
        source = ROOT / (name.replace(".", "/") + ".py")
        assert library.stat().st_mtime >= source.stat().st_mtime, f"{source.name} changed since the build: make deps"


@pytest.mark.parametrize("max_events", [0, 3])
def test_compiled_and_pure_give_the_same_results(max_events: int) -> None:
    """The same values through parse and the tally (with and without the per-customer cap; records read
    back through the codec every other batch) give the same events, dead-letter reasons, counts,
    outcomes, advocates and records, compiled or not."""
    if PURE:
        pytest.skip("runs both itself: once is enough (make test runs it on the install)")
    if not (IN_CI or _compiled_built()):
        pytest.skip("no extension built: nothing to compare")
    pure, compiled = _run_workload(True, max_events), _run_workload(False, max_events)
    assert (pure["hot_path"], compiled["hot_path"]) == ("pure Python", "compiled")
    assert pure["reasons"], "the workload holds invalid values"
    for key in ("events", "reasons", "tally", "records"):
        assert pure[key] == compiled[key], key

