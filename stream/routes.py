"""The worker's HTTP routes on Faust's web server: /kpis, /metrics, /health, the page.

What each endpoint answers is ``stream.web.Api``'s business (and /health's is
``stream.health.Health``'s); this module only wires them to paths and headers.
"""

from __future__ import annotations

from typing import Any, cast

import faust
from aiohttp import web
from faust.web import Request, Response, View

from stream.web import JSON_CONTENT_TYPE, METRICS_CONTENT_TYPE, Api, accepts_gzip, static_file

__all__ = ["add_routes"]

PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:"}
GZIPPED = {"Content-Encoding": "gzip"}


def add_routes(app: faust.App, api: Api) -> None:
    # /kpis and /metrics, the endpoints polled by many: plain aiohttp handlers on Faust's own server,
    # without a Faust view's dispatch and sensors around each request (a tenth of a request's time)
    async def kpis(request: web.Request) -> web.Response:
        status, body, gzipped = await api.kpis(request.query.get("window"),
                                               accepts_gzip(request.headers.get("Accept-Encoding")))
        headers = {"Content-Type": JSON_CONTENT_TYPE, "Cache-Control": "no-store", "Vary": "Accept-Encoding"}
        return web.Response(body=body, status=status, headers={**headers, **GZIPPED} if gzipped else headers)

    async def metrics(request: web.Request) -> web.Response:
        gzipped = accepts_gzip(request.headers.get("Accept-Encoding"))
        headers = {"Content-Type": METRICS_CONTENT_TYPE, "Vary": "Accept-Encoding"}
        body = await api.metrics_text(gzipped)
        return web.Response(body=body, headers={**headers, **GZIPPED} if gzipped else headers)

    router = cast("Any", app.web).web_app.router
    router.add_get("/kpis", kpis)
    router.add_get("/metrics", metrics)

    class HealthView(View):
        async def get(self, request: Request) -> Response:  # noqa: ARG002 - the signature Faust calls
            status, body = await api.health_report()
            return self.bytes(body, status=status, headers={"Content-Type": JSON_CONTENT_TYPE,
                                                            "Cache-Control": "no-store"})

    class Page(View):
        async def get(self, request: Request, name: str = "index.html") -> Response:  # noqa: ARG002 - Faust's signature
            found = static_file(name)
            if found is None:
                return self.text("not found", status=404)
            body, content_type = found
            return self.bytes(body, headers={"Content-Type": content_type, **PAGE_HEADERS})

    app.page("/")(Page)
    app.page("/static/{name}")(Page)
    app.page("/health")(HealthView)
