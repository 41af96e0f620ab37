"""The dashboard's web application (Starlette, Jinja2 templates, server-sent events). Every
page is rendered from the watch-fed ``Store``; nothing lists from the API server per request.

Work in progress (issue 17): the runs page with filters in the URL and live updates. Still to
come: run detail with timeline and logs, queues, batches, tasks, actions with CSRF, and the
in-cluster authorisation (TokenReview and SubjectAccessReview).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from kubetasks.dashboard.cache import Store
from kubetasks.dashboard.views import FILTERS, pretty, run_page, run_row, timeline

TEMPLATES = Path(__file__).parent / "templates"
HEARTBEAT = 15.0  # seconds between SSE comments, so proxies keep the stream open


def create_app(store: Store) -> Starlette:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape())

    def render(name: str, **context: object) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**context))

    def render_status(name: str, status_code: int, **context: object) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**context), status_code=status_code)

    async def home(request: Request) -> Response:
        return RedirectResponse("/runs")

    async def runs(request: Request) -> Response:
        filters = {k: v for k, v in request.query_params.items() if k in FILTERS and v}
        try:
            number = int(request.query_params.get("page", "1"))
        except ValueError:
            number = 1
        page = run_page(store.of_kind("taskruns"), filters, number, time.time())

        def query_for(n: int) -> str:
            return urllib.parse.urlencode({**filters, "page": n})

        context = {"page": page, "filters": filters, "section": "runs",
                   "query_for": query_for}
        if request.query_params.get("fragment"):
            return render("runs_table.html", **context)
        return render("runs.html", **context)

    async def run(request: Request) -> Response:
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        obj = store.get("taskruns", namespace, name)
        if obj is None:
            return render_status("missing.html", 404, what=f"run {namespace}/{name}",
                                 section="runs")
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        payload = pretty(spec["payload"]) if "payload" in spec else (
            "(offloaded to object storage)" if spec.get("payloadRef") else None)
        output = pretty(status["output"]) if "output" in status else (
            "(offloaded to object storage)" if status.get("outputRef") else None)
        return render("run.html", run=obj, row=run_row(obj, time.time()),
                      moments=timeline(obj), payload=payload, output=output, pretty=pretty,
                      section="runs")

    async def events(request: Request) -> Response:
        kinds = set((request.query_params.get("kinds") or "").split(",")) - {""}

        async def stream() -> AsyncIterator[str]:
            seq = store.seq
            yield ": connected\n\n"
            while not await request.is_disconnected():
                seq, changes = await asyncio.to_thread(store.changed_since, seq, HEARTBEAT)
                changes = [c for c in changes if not kinds or c.key[0] in kinds]
                if not changes:
                    yield ": heartbeat\n\n"
                    continue
                data = json.dumps([{"kind": c.key[0], "namespace": c.key[1],
                                    "name": c.key[2], "event": c.kind} for c in changes])
                yield f"id: {seq}\ndata: {data}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    return Starlette(routes=[
        Route("/", home),
        Route("/runs", runs),
        Route("/runs/{namespace}/{name}", run),
        Route("/events", events),
    ])
