"""The dashboard's ASGI app (Starlette): pages, fragments and server-sent event streams.

Every route is a GET (read-only). Live updates: `/stream/experiments` sends the table
rows that changed (or the whole body when rows came or went) as soon as the hub sees a
change; `/stream/fragment/...` re-renders one page part and sends it when it differs.
With a token (any host but loopback), every request must carry it: `?token=` once
(it is then kept in a same-site cookie), or `Authorization: Bearer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from shipyard.dashboard import pages
from shipyard.dashboard.hub import Hub
from shipyard.dashboard.views import Filters, cells, choices, clock, ordered
from shipyard.spec import Experiment

HERE = Path(__file__).parent
COOKIE = "shipyard_dashboard_token"
ROW_LIMIT = 500  # rows a page shows; the rest are counted (filters narrow them down)
KEEPALIVE_S = 15.0


class TokenGate:
    """Refuses a request without the token (401); a valid `?token=` sets the cookie."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        given = (request.query_params.get("token") or request.cookies.get(COOKIE)
                 or request.headers.get("authorization", "").removeprefix("Bearer ").strip())
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return await PlainTextResponse("a token is needed: open the address "
                                           "`shipyard dashboard` printed", 401)(scope, receive, send)

        async def send_with_cookie(message: Any) -> None:
            if message["type"] == "http.response.start" and request.query_params.get("token"):
                headers = list(message.get("headers", []))
                headers.append((b"set-cookie", f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; "
                                f"Path=/".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def create_app(hub: Hub, *, token: str | None = None, allowed_hosts: list[str] | None = None,
               row_limit: int = ROW_LIMIT, explain: Experiment | None = None) -> Starlette:
    """`explain`: a spec whose `--cluster auto` choice the clusters page explains."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(cells=cells, now=time.time, clock=clock)

    def render(request: Request, name: str, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {"hub": hub, **context})

    def table(filters: Filters) -> tuple[list[Any], int]:
        kept = ordered(r for r in hub.rows if filters.keeps(r))
        return kept[:row_limit], len(kept)

    def rows_html(rows: list[Any]) -> str:
        return templates.get_template("_rows.html").render(rows=rows)

    async def experiments(request: Request) -> Response:
        filters = Filters.from_query(request.query_params)
        rows, total = table(filters)
        return render(request, "experiments.html", filters=filters, rows=rows, total=total,
                      choices=choices(hub.rows), problems=pages.problems(hub))

    async def experiments_fragment(request: Request) -> Response:
        rows, total = table(Filters.from_query(request.query_params))
        return HTMLResponse(rows_html(rows), headers={"X-Total": str(total)})

    async def experiments_json(request: Request) -> Response:
        rows, total = table(Filters.from_query(request.query_params))
        return JSONResponse({"total": total, "rows": [pages.row_data(r) for r in rows]})

    async def experiments_stream(request: Request) -> Response:
        filters = Filters.from_query(request.query_params)

        async def events() -> AsyncIterator[str]:
            sent: dict[str, str] = {}
            order: list[str] = []
            version = -1
            said: list[str] = []
            while True:
                version = await hub.wait_change(version, KEEPALIVE_S)
                if await request.is_disconnected():
                    return
                if (now_said := pages.problems(hub)) != said:
                    said = now_said
                    yield sse("problems", {"problems": said})
                rows, total = table(filters)
                one = templates.get_template("_rows.html")
                html = {r.dom_id: one.render(rows=[r]) for r in rows}
                ids = [r.dom_id for r in rows]
                if ids != order:
                    payload = {"replace": "".join(html[i] for i in ids), "total": total}
                else:
                    payload = {"upsert": [[i, h] for i, h in html.items() if sent.get(i) != h],
                               "total": total}
                sent, order = html, ids
                if payload.get("replace") is not None or payload.get("upsert"):
                    yield sse("rows", payload)
                else:
                    yield ": keepalive\n\n"

        return stream(events())

    def fragment_stream(request: Request, part: Callable[[], Awaitable[str]],
                        every_s: float = 2.0) -> Response:
        async def events() -> AsyncIterator[str]:
            last = None
            while not await request.is_disconnected():
                try:
                    html = await part()
                except Exception as exc:  # a cluster that stopped answering: say so in place
                    html = f'<p class="problem">cannot read it now: {type(exc).__name__}: {exc}</p>'
                if html != last:
                    yield sse("fragment", {"html": html})
                    last = html
                await asyncio.sleep(every_s)

        return stream(events())

    async def experiment(request: Request) -> Response:
        p = request.path_params
        detail = await hub.detail(p["source"], p["namespace"], p["ident"])
        if detail is None:
            return PlainTextResponse(f"no experiment {p['namespace']}/{p['ident']} in {p['source']}", 404)
        return render(request, "experiment.html", d=detail, part=pages.detail_html(templates, detail))

    async def experiment_stream(request: Request) -> Response:
        p = request.path_params

        async def part() -> str:
            detail = await hub.detail(p["source"], p["namespace"], p["ident"])
            return "gone" if detail is None else pages.detail_html(templates, detail)

        return fragment_stream(request, part)

    async def progress(request: Request) -> Response:
        p = request.path_params
        key = f"{p['source']}/{p['namespace']}/{p['ident']}"
        row = next((r for r in hub.rows if r.key == key), None)
        return JSONResponse(hub.history.series(key, row.progress if row else None))

    async def queues(request: Request) -> Response:
        return render(request, "queues.html", part=await pages.queues_html(templates, hub))

    async def queues_stream(request: Request) -> Response:
        return fragment_stream(request, lambda: pages.queues_html(templates, hub), 5.0)

    async def usage(request: Request) -> Response:
        name = request.path_params["source"]
        return JSONResponse(await pages.usage_series(hub, name, request.query_params.get("since", "7d")))

    async def clusters(request: Request) -> Response:
        return render(request, "clusters.html", part=await pages.clusters_html(templates, hub, explain))

    async def clusters_stream(request: Request) -> Response:
        return fragment_stream(request, lambda: pages.clusters_html(templates, hub, explain), 5.0)

    async def health(request: Request) -> Response:
        return JSONResponse({"rows": len(hub.rows), "version": hub.version, "updated_at": hub.updated_at})

    routes = [
        Route("/", experiments),
        Route("/fragments/experiments", experiments_fragment),
        Route("/api/experiments", experiments_json),
        Route("/stream/experiments", experiments_stream),
        Route("/experiments/{source}/{namespace}/{ident}", experiment),
        Route("/stream/experiments/{source}/{namespace}/{ident}", experiment_stream),
        Route("/api/progress/{source}/{namespace}/{ident}", progress),
        Route("/queues", queues),
        Route("/stream/queues", queues_stream),
        Route("/api/usage/{source}", usage),
        Route("/clusters", clusters),
        Route("/stream/clusters", clusters_stream),
        Route("/healthz", health),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)] if allowed_hosts else []
    if token:
        middleware.append(Middleware(TokenGate, token=token))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await hub.start()
        try:
            yield
        finally:
            await hub.close()

    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def stream(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
