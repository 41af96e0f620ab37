"""The dashboard's web application (Starlette, Jinja2 templates, server-sent events). Every
page is rendered from the watch-fed ``Store``; nothing lists from the API server per request.
Who may see and do what is decided by an ``Auth`` (``auth.py``); every action is a POST with
a CSRF token and a same-origin check.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hmac
import json
import secrets
import time
import urllib.parse
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from kubetasks._internal.client import KubeApi
from kubetasks.dashboard.auth import (
    Auth,
    ClusterAuth,
    Denied,
    LocalAuth,
    Sessions,
    User,
    local_path,
)
from kubetasks.dashboard.cache import Json, Store
from kubetasks.dashboard.views import (
    FILTERS,
    FINAL,
    PERIODS,
    PHASES,
    FilterError,
    RunPage,
    batch_items,
    batch_row,
    children,
    pretty,
    queue_rows,
    readable_time,
    run_page,
    run_row,
    schedule_rows,
    task_rows,
    timeline,
)
from kubetasks.errors import ApiError, KubetasksError
from kubetasks.protocol.storage import ObjectStore

TEMPLATES = Path(__file__).parent / "templates"
class BulkJob:
    """One bulk cancel or replay, run in the background, one run at a time."""

    def __init__(self, id: str, action: str, total: int) -> None:
        self.id = id
        self.action = action
        self.total = total
        self.done = 0
        self.errors: list[str] = []
        self.task: asyncio.Task[None] | None = None

    @property
    def finished(self) -> bool:
        return self.done + len(self.errors) >= self.total

    async def run(self, writer: KubeApi, run_ids: list[str]) -> None:
        from kubetasks._internal import triggering
        from kubetasks._internal.client import Client
        from kubetasks.handles import cancel_run

        for run_id in run_ids:
            sdk = Client(writer.with_namespace(run_id.split("/", 1)[0]))
            try:
                if self.action == "cancel":
                    await asyncio.to_thread(cancel_run, sdk, run_id)
                else:
                    await asyncio.to_thread(triggering.replay, sdk, run_id)
                self.done += 1
            except Exception as error:  # each failure is shown; the others go on
                self.errors.append(f"{run_id}: {error}")


HEARTBEAT = 15.0  # seconds between SSE comments, so proxies keep the stream open
CSRF_COOKIE = "kubetasks_csrf"
SESSION_COOKIE = "kubetasks_session"
WORKER_THREADS = 64
# Whether this request's person signed in with the form (the nav then offers Sign out).
# Each request runs in a task of its own, so the value never leaks between requests.
SIGNED_IN: contextvars.ContextVar[bool] = contextvars.ContextVar("signed_in", default=False)
FIELD_MANAGER = "kubetasks-dashboard"


def create_app(store: Store, kube: KubeApi | None = None, auth: Auth | None = None,
               storage: ObjectStore | None = None, sessions: Sessions | None = None
               ) -> Starlette:
    """The pages over ``store``. ``auth`` says who asks and what they may do (see
    ``auth.py``); without it, ``kube`` (the kubeconfig's user) acts for everyone, and
    without either the dashboard is read-only. ``storage`` presigns the downloads of
    offloaded payloads and outputs (default: the ``KUBETASKS_S3_*`` environment). With a
    ``ClusterAuth``, people without an authenticating proxy sign in at ``/login``
    (``sessions``: where their tokens are kept)."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape())
    env.filters["when"] = readable_time
    env.globals["signed_in"] = SIGNED_IN.get
    if auth is None and kube is not None:
        auth = LocalAuth(kube)
    if sessions is None and isinstance(auth, ClusterAuth):
        sessions = Sessions()

    def who(request: Request) -> tuple[User, KubeApi] | None:
        """The person and a client that writes as them; None when read-only. A proxy's
        ``Authorization`` header wins; else the session of the sign-in form."""
        if auth is None:
            return None
        header = request.headers.get("authorization")
        sid = request.cookies.get(SESSION_COOKIE) if sessions is not None else None
        token = sessions.token(sid) if header is None and sid and sessions else None
        try:
            found = auth.user(f"Bearer {token}" if token else header)
        except Denied as refused:
            if token and sid and sessions is not None and refused.status == 401:
                sessions.close(sid)  # the API server no longer takes it: sign in again
            raise
        SIGNED_IN.set(token is not None)
        return found

    def may(request: Request, verb: str, resource: str, namespace: str) -> None:
        found = who(request)
        if found is not None and auth is not None:
            auth.check(found[0], verb, resource, namespace)

    def readable(request: Request, resource: str, objs: list[Json]) -> list[Json]:
        """The objects of the namespaces where the person may list ``resource``."""
        found = who(request)
        if found is None or auth is None:
            return objs
        allowed: dict[str, bool] = {}
        for ns in {str(o["metadata"].get("namespace", "")) for o in objs}:
            try:
                auth.check(found[0], "list", resource, ns)
                allowed[ns] = True
            except Denied:
                allowed[ns] = False
        return [o for o in objs if allowed[str(o["metadata"].get("namespace", ""))]]

    def csrf_token(request: Request) -> str:
        return request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)

    def with_csrf(request: Request, response: Response, token: str) -> Response:
        if request.cookies.get(CSRF_COOKIE) != token:
            response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict")
        return response

    async def action_refused(request: Request) -> str | None:
        """Why a POST is refused: no writer, a cross-site request, or a CSRF token that does
        not match the cookie (double submit)."""
        if auth is None:
            return "this dashboard is read-only"
        origin = request.headers.get("origin")
        if origin is not None and urllib.parse.urlsplit(origin).netloc != request.url.netloc:
            return "the request came from another site"
        form = await request.form()
        sent, cookie = str(form.get("csrf") or ""), request.cookies.get(CSRF_COOKIE) or ""
        if not cookie or not hmac.compare_digest(sent, cookie):
            return "the form is stale or forged (CSRF token mismatch); reload the page"
        return None

    def render(name: str, **context: object) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**context))

    def render_status(name: str, status_code: int, **context: object) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**context), status_code=status_code)

    async def healthz(request: Request) -> Response:
        return Response("ok\n", media_type="text/plain")

    async def home(request: Request) -> Response:
        return RedirectResponse("/runs")

    async def runs(request: Request) -> Response:
        filters = {k: v for k, v in request.query_params.items() if k in FILTERS and v}
        try:
            number = int(request.query_params.get("page", "1"))
        except ValueError:
            number = 1
        problem = None
        try:
            page = run_page(readable(request, "taskruns", store.of_kind("taskruns")), filters,
                            number, time.time())
        except FilterError as error:
            problem, page = str(error), RunPage([], 0, 1, 1)

        def query_for(n: int) -> str:
            return urllib.parse.urlencode({**filters, "page": n})

        token = csrf_token(request)
        context = {"page": page, "filters": filters, "section": "runs",
                   "query_for": query_for, "csrf": token, "writable": auth is not None,
                   "phases": PHASES, "periods": PERIODS, "problem": problem}
        status = 400 if problem else 200
        if request.query_params.get("fragment"):
            return render_status("runs_table.html", status, **context)
        return with_csrf(request, render_status("runs.html", status, **context), token)

    async def queues(request: Request) -> Response:
        token = csrf_token(request)
        rows = queue_rows(readable(request, "taskqueues", store.of_kind("taskqueues")),
                          readable(request, "taskruns", store.of_kind("taskruns")))
        return with_csrf(request, render("queues.html", rows=rows, csrf=token,
                                         section="queues"), token)

    async def queue_action(request: Request) -> Response:
        if request.path_params["action"] not in ("pause", "resume"):
            return render_status("missing.html", 404, what="such action", section="queues")
        why = await action_refused(request)
        if why is not None:
            return render_status("refused.html", 403, why=why, section="queues")
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        may(request, "patch", "taskqueues", namespace)
        found = who(request)
        assert found is not None
        writer = found[1]
        paused = request.path_params["action"] == "pause"
        body = {"apiVersion": "kubetasks.dev/v1alpha1", "kind": "TaskQueue",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"paused": paused}}
        try:
            applied = await asyncio.to_thread(writer.apply, "taskqueues", namespace, name, body,
                                              FIELD_MANAGER)
        except ApiError as error:
            status = 403 if error.status == 403 else 502
            return render_status("refused.html", status, why=str(error), section="queues")
        store.apply("taskqueues", "MODIFIED", applied)
        return RedirectResponse("/queues", status_code=303)

    async def run_action(request: Request) -> Response:
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        action = request.path_params["action"]
        if action not in ("cancel", "replay", "reschedule"):
            return render_status("missing.html", 404, what="such action", section="runs")
        why = await action_refused(request)
        if why is not None:
            return render_status("refused.html", 403, why=why, section="runs")
        may(request, "create" if action == "replay" else "patch", "taskruns", namespace)
        found = who(request)
        assert found is not None
        from kubetasks._internal import triggering
        from kubetasks._internal.client import Client
        from kubetasks.handles import cancel_run

        sdk = Client(found[1].with_namespace(namespace))
        run_id = f"{namespace}/{name}"
        form = await request.form()
        try:
            if action == "cancel":
                await asyncio.to_thread(cancel_run, sdk, run_id)
                target = f"/runs/{namespace}/{name}"
            elif action == "replay":
                handle = await asyncio.to_thread(triggering.replay, sdk, run_id)
                target = f"/runs/{handle.id}"
            else:
                delay = str(form.get("delay") or "")
                await asyncio.to_thread(triggering.reschedule, sdk, run_id, delay)
                target = f"/runs/{namespace}/{name}"
            if action != "replay":
                # The page it returns to shows the change, even before the watch brings it.
                changed = await asyncio.to_thread(found[1].get_object, "taskruns", namespace,
                                                  name)
                store.apply("taskruns", "MODIFIED", changed)
        except ApiError as error:
            status = 403 if error.status == 403 else 502
            return render_status("refused.html", status, why=str(error), section="runs")
        except Exception as error:  # the SDK's own refusals say what to change
            return render_status("refused.html", 409, why=str(error), section="runs")
        return RedirectResponse(target, status_code=303)

    async def batches(request: Request) -> Response:
        rows = sorted((batch_row(b) for b in readable(request, "taskbatches",
                                                        store.of_kind("taskbatches"))),
                      key=lambda r: (r.namespace, r.name))
        return render("batches.html", rows=rows, section="batches")

    async def batch(request: Request) -> Response:
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        may(request, "get", "taskbatches", namespace)
        obj = store.get("taskbatches", namespace, name)
        if obj is None:
            return render_status("missing.html", 404, what=f"batch {namespace}/{name}",
                                 section="batches")
        items = batch_items(obj, (r for r in store.of_kind("taskruns", namespace)),
                            time.time())
        return render("batch.html", row=batch_row(obj), items=items, section="batches")

    async def tasks(request: Request) -> Response:
        rows = task_rows(readable(request, "tasks", store.of_kind("tasks")),
                         readable(request, "taskruns", store.of_kind("taskruns")))
        return render("tasks.html", rows=rows, section="tasks")

    jobs: dict[str, BulkJob] = {}

    async def bulk(request: Request) -> Response:
        """Cancel or replay every run the filter selects, in the background; its progress
        on its own page."""
        action = request.path_params["action"]
        if action not in ("cancel", "replay"):
            return render_status("missing.html", 404, what="such action", section="runs")
        why = await action_refused(request)
        if why is not None:
            return render_status("refused.html", 403, why=why, section="runs")
        found = who(request)
        assert found is not None
        form = await request.form()
        filters = {k: str(form.get(k) or "") for k in FILTERS if form.get(k)}
        try:
            chosen = run_page(readable(request, "taskruns", store.of_kind("taskruns")),
                              filters, 1, time.time(), size=None).rows
        except FilterError as error:
            return render_status("refused.html", 400, why=str(error), section="runs")
        selected = [row for row in chosen if action == "replay" or row.status not in FINAL]
        verb = "create" if action == "replay" else "patch"
        for namespace in {row.namespace for row in selected}:
            may(request, verb, "taskruns", namespace)
        job = BulkJob(secrets.token_urlsafe(8), action, len(selected))
        jobs[job.id] = job
        job.task = asyncio.create_task(job.run(found[1], [r.id for r in selected]))
        return RedirectResponse(f"/bulk/{job.id}", status_code=303)

    async def bulk_status(request: Request) -> Response:
        job = jobs.get(request.path_params["id"])
        if job is None:
            return render_status("missing.html", 404, what="such bulk action",
                                 section="runs")
        return render("bulk.html", job=job, section="runs")

    async def logs(request: Request) -> Response:
        """One attempt's log, read with the person's own client (the API server decides
        whether they may read ``pods/log``); ``?follow=1``: server-sent events, line by line,
        until the container ends."""
        from kubetasks._internal.client import Client
        from kubetasks.cli.podlogs import attempt_pods, pod_log

        namespace, name = request.path_params["namespace"], request.path_params["name"]
        may(request, "get", "taskruns", namespace)
        obj = store.get("taskruns", namespace, name)
        found = who(request)
        if obj is None or found is None:
            return Response("no such run, or no client to read logs with\n", 404,
                            media_type="text/plain")
        sdk = Client(found[1].with_namespace(namespace))
        uid = str(obj["metadata"].get("uid", ""))
        try:
            attempt = int(request.path_params["attempt"])
            pods = await asyncio.to_thread(attempt_pods, sdk, namespace, uid, attempt)
        except (ValueError, ApiError) as error:
            return Response(f"{error}\n", 404, media_type="text/plain")
        if not pods:
            return Response("this attempt has no pod (yet, or any more)\n", 404,
                            media_type="text/plain")
        if not request.query_params.get("follow"):
            try:
                text = await asyncio.to_thread(lambda: b"".join(pod_log(sdk, pods[0])))
            except ApiError as error:
                return Response(f"{error}\n", error.status, media_type="text/plain")
            return Response(text, media_type="text/plain; charset=utf-8")

        async def follow() -> AsyncIterator[str]:
            chunks = pod_log(sdk, pods[0], follow=True)
            pending = b""
            while True:
                chunk = await asyncio.to_thread(next, chunks, None)
                if chunk is None:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield f"data: {json.dumps(line.decode(errors='replace'))}\n\n"
            if pending:
                yield f"data: {json.dumps(pending.decode(errors='replace'))}\n\n"
            yield "event: end\ndata: {}\n\n"

        return StreamingResponse(follow(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def schedules(request: Request) -> Response:
        token = csrf_token(request)
        rows = schedule_rows(readable(request, "taskschedules", store.of_kind("taskschedules")))
        return with_csrf(request, render("schedules.html", rows=rows, csrf=token,
                                         writable=auth is not None, section="schedules"),
                         token)

    async def schedule_action(request: Request) -> Response:
        action = request.path_params["action"]
        if action not in ("activate", "deactivate"):
            return render_status("missing.html", 404, what="such action", section="schedules")
        why = await action_refused(request)
        if why is not None:
            return render_status("refused.html", 403, why=why, section="schedules")
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        may(request, "patch", "taskschedules", namespace)
        found = who(request)
        assert found is not None
        try:
            changed = await asyncio.to_thread(
                found[1].merge_patch, "taskschedules", namespace, name,
                {"spec": {"active": action == "activate"}})
        except ApiError as error:
            status = 403 if error.status == 403 else 502
            return render_status("refused.html", status, why=str(error), section="schedules")
        store.apply("taskschedules", "MODIFIED", changed)
        return RedirectResponse("/schedules", status_code=303)

    async def run(request: Request) -> Response:
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        may(request, "get", "taskruns", namespace)
        obj = store.get("taskruns", namespace, name)
        if obj is None and kube is not None:
            # Just created (a replay's redirect can outrun the watch): read it once.
            try:
                obj = await asyncio.to_thread(kube.get_object, "taskruns", namespace, name)
            except ApiError:
                obj = None
        if obj is None:
            return render_status("missing.html", 404, what=f"run {namespace}/{name}",
                                 section="runs")
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        payload = pretty(spec["payload"]) if "payload" in spec else None
        output = pretty(status["output"]) if "output" in status else None
        kids = children(obj, store.of_kind("taskruns", namespace),
                        store.of_kind("taskbatches", namespace))
        token = csrf_token(request)
        page = render("run.html", run=obj, row=run_row(obj, time.time()), kids=kids,
                      moments=timeline(obj, kids), payload=payload, output=output,
                      pretty=pretty,
                      section="runs", csrf=token, final=run_row(obj, 0).status in FINAL,
                      writable=auth is not None)
        return with_csrf(request, page, token)

    stores: list[ObjectStore] = [storage] if storage is not None else []

    async def download(request: Request) -> Response:
        """An offloaded payload or output: a redirect to a presigned GET of the object, valid
        ``KUBETASKS_PRESIGN_EXPIRY`` seconds, for a person who may read the run. The URL is
        in no log (no access log) and no page, and is not cached or sent on as a referrer."""
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        which = request.path_params["which"]
        if which not in ("payload", "output"):
            return render_status("missing.html", 404, what="such download", section="runs")
        may(request, "get", "taskruns", namespace)
        obj = store.get("taskruns", namespace, name)
        ref = None if obj is None else (
            (obj.get("spec") or {}).get("payloadRef") if which == "payload"
            else (obj.get("status") or {}).get("outputRef"))
        if not isinstance(ref, dict):
            return render_status("missing.html", 404,
                                 what=f"offloaded {which} of run {namespace}/{name}",
                                 section="runs")
        if not stores:
            stores.append(ObjectStore())
        try:
            url = await asyncio.to_thread(stores[0].presign, ref, f"{name}-{which}.json")
        except KubetasksError as error:  # boto3 missing, or no storage settings
            url, why = None, str(error)
        else:
            why = "no credentials to sign a link with (see the dashboard's log)"
        if url is None:
            return render_status("refused.html", 503, section="runs",
                                 why=f"cannot offer the {which} for download: {why}")
        return RedirectResponse(url, status_code=303, headers={
            "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    async def events(request: Request) -> Response:
        kinds = set((request.query_params.get("kinds") or "").split(",")) - {""}
        found = who(request)  # the person, checked once per stream
        allowed: dict[tuple[str, str], bool] = {}

        def visible(resource: str, namespace: str) -> bool:
            if found is None or auth is None:
                return True
            if (resource, namespace) not in allowed:
                try:
                    auth.check(found[0], "list", resource, namespace)
                    allowed[(resource, namespace)] = True
                except Denied:
                    allowed[(resource, namespace)] = False
            return allowed[(resource, namespace)]

        async def stream() -> AsyncIterator[str]:
            seq = store.seq
            yield ": connected\n\n"
            while not await request.is_disconnected():
                seq, changes = await store.next_changes(seq, HEARTBEAT)
                changes = [c for c in changes if (not kinds or c.key[0] in kinds)
                           and visible(c.key[0], c.key[1])]
                if not changes:
                    yield ": heartbeat\n\n"
                    continue
                data = json.dumps([{"kind": c.key[0], "namespace": c.key[1],
                                    "name": c.key[2], "event": c.kind} for c in changes])
                yield f"id: {seq}\ndata: {data}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    def wants_page(request: Request) -> bool:
        """A person's page view (a redirect to the sign-in form helps), not a script's
        request (events, logs, a table fragment), which gets a plain 401."""
        path = request.url.path
        return (request.method == "GET" and not path.startswith("/events")
                and "/logs/" not in path and not request.query_params.get("fragment"))

    async def denied(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Denied)
        if exc.status == 401 and sessions is not None and wants_page(request):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse("/login?" + urllib.parse.urlencode({"next": target}),
                                    status_code=303)
        return render_status("refused.html", exc.status, why=str(exc), section="")

    def login_form(request: Request, target: str, status: int = 200, problem: str = ""
                   ) -> Response:
        token = csrf_token(request)
        page = render_status("login.html", status, csrf=token, problem=problem, section="",
                             next=target)
        return with_csrf(request, page, token)

    async def login(request: Request) -> Response:
        """The sign-in form (cluster mode): a Kubernetes token, checked by a TokenReview and
        then kept server-side; the browser holds only a random session id."""
        if sessions is None or auth is None:
            return RedirectResponse("/runs", status_code=303)
        if request.method == "GET":
            return login_form(request, local_path(request.query_params.get("next")))
        why = await action_refused(request)
        if why is not None:
            return render_status("refused.html", 403, why=why, section="")
        form = await request.form()
        token = str(form.get("token") or "").strip()
        target = local_path(str(form.get("next") or ""))
        try:
            if not token:
                raise Denied("paste a token first", 401)
            await asyncio.to_thread(auth.user, f"Bearer {token}")
        except Denied as refused:
            return login_form(request, target, refused.status, str(refused))
        secure = (request.url.scheme == "https"
                  or request.headers.get("x-forwarded-proto", "").lower() == "https")
        answer = RedirectResponse(target, status_code=303)
        old = request.cookies.get(SESSION_COOKIE)
        if old:
            sessions.close(old)  # a new sign-in never reuses an id the browser had
        answer.set_cookie(SESSION_COOKIE, sessions.open(token), max_age=int(sessions.lifetime),
                          path="/", httponly=True, samesite="strict", secure=secure)
        return answer

    async def logout(request: Request) -> Response:
        """GET: a page with the Sign out button (a POST, so another site cannot sign
        anyone out); POST: the session ends here and in the browser."""
        if sessions is None:
            return RedirectResponse("/runs", status_code=303)
        if request.method == "GET":
            token = csrf_token(request)
            return with_csrf(request, render("logout.html", csrf=token, section=""), token)
        why = await action_refused(request)
        if why is not None:
            return render_status("refused.html", 403, why=why, section="")
        sid = request.cookies.get(SESSION_COOKIE)
        if sid:
            sessions.close(sid)
        answer = RedirectResponse("/login", status_code=303)
        answer.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return answer

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # API calls and followed logs block a thread each (the event streams do not): room
        # for many people at once, where the default pool has cpu count + 4.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(
            WORKER_THREADS, thread_name_prefix="kubetasks-dashboard"))
        yield

    return Starlette(lifespan=lifespan, exception_handlers={Denied: denied}, routes=[
        Route("/", home),
        Route("/healthz", healthz),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["GET", "POST"]),
        Route("/runs", runs),
        Route("/runs/{namespace}/{name}", run),
        Route("/runs/{namespace}/{name}/logs/{attempt}", logs),
        Route("/runs/{namespace}/{name}/download/{which}", download),
        Route("/runs/{namespace}/{name}/{action:str}", run_action, methods=["POST"]),
        Route("/bulk/{id}", bulk_status),
        Route("/runs-bulk/{action:str}", bulk, methods=["POST"]),
        Route("/queues", queues),
        Route("/batches", batches),
        Route("/batches/{namespace}/{name}", batch),
        Route("/tasks", tasks),
        Route("/schedules", schedules),
        Route("/schedules/{namespace}/{name}/{action:str}", schedule_action, methods=["POST"]),
        Route("/queues/{namespace}/{name}/{action:str}", queue_action, methods=["POST"]),
        Route("/events", events),
    ])
