"""The dashboard in cluster mode acts with the rights of the person using it: their token
(as an authenticating proxy sends it) is checked by a TokenReview, every page and action by a
SubjectAccessReview, and writes go out with their own token. In a real Chromium."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest
import uvicorn
from kubernetes import client
from playwright.sync_api import sync_playwright

from kubetasks._internal.client import KubeApi
from kubetasks.dashboard.app import create_app
from kubetasks.dashboard.auth import ClusterAuth
from kubetasks.dashboard.cache import Store, Watcher
from kubetasks.devcluster import ControlPlane
from tests.cluster.dashboard.test_browser import CHROMIUM, CHROMIUM_ARGS, free_port, shot
from tests.cluster.helpers import GROUP, VERSION, custom, make_queue, make_run

pytestmark = pytest.mark.cluster


def account(control_plane: ControlPlane, api: client.ApiClient, namespace: str, name: str,
            rules: list[dict[str, object]]) -> str:
    """A ServiceAccount with a Role of ``rules`` in ``namespace``; its token."""
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    if rules:
        rbac.create_namespaced_role(namespace, {"metadata": {"name": name}, "rules": rules})
        rbac.create_namespaced_role_binding(namespace, {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]})
    return control_plane.kubectl("create", "token", name, "-n", namespace).strip()


@pytest.fixture
def cluster_dashboard(control_plane: ControlPlane, namespace: str) -> Iterator[str]:
    service = KubeApi.from_environment(kubeconfig=control_plane.kubeconfig)
    store = Store()
    watchers = [Watcher(service, store, plural, namespace).start()
                for plural in ("taskruns", "taskqueues")]
    assert all(w.synced.wait(30) for w in watchers)
    port = free_port()
    app = create_app(store, auth=ClusterAuth(service))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        for watcher in watchers:
            watcher.stop()


def test_each_person_sees_and_does_only_what_their_rights_allow(
    cluster_dashboard: str, control_plane: ControlPlane, kube_api: client.ApiClient,
    namespace: str,
) -> None:
    make_run(kube_api, namespace, "report", "behave", {"i": 1})
    make_queue(kube_api, namespace, "emails")
    read = {"apiGroups": [GROUP], "resources": ["taskruns", "taskqueues"],
            "verbs": ["get", "list", "watch"]}
    viewer = account(control_plane, kube_api, namespace, "viewer", [read])
    nobody = account(control_plane, kube_api, namespace, "nobody", [])
    operator = account(control_plane, kube_api, namespace, "ops", [
        read, {"apiGroups": [GROUP], "resources": ["taskqueues"], "verbs": ["patch"]}])

    def paused() -> bool:
        queue = custom(kube_api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "taskqueues", "emails")
        return bool((queue.get("spec") or {}).get("paused"))

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

        def as_(token: str | None):  # type: ignore[no-untyped-def]
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return browser.new_context(extra_http_headers=headers).new_page()

        # Without a token, or with one the API server refuses: the sign-in form; the page's
        # scripts (a table fragment) get a plain 401.
        anonymous = as_(None)
        anonymous.goto(f"{cluster_dashboard}/runs")
        assert anonymous.url == f"{cluster_dashboard}/login?next=%2Fruns"
        fragment = anonymous.request.get(f"{cluster_dashboard}/runs?fragment=1")
        assert fragment.status == 401
        forged = as_("not-a-token")
        forged.goto(f"{cluster_dashboard}/runs")
        assert forged.url.startswith(f"{cluster_dashboard}/login")

        stranger = as_(nobody)
        stranger.goto(f"{cluster_dashboard}/runs")
        assert stranger.locator("tr[data-run]").count() == 0  # the run exists, unseen
        answer = stranger.goto(f"{cluster_dashboard}/runs/{namespace}/report")
        assert answer is not None and answer.status == 403

        reader = as_(viewer)
        reader.goto(f"{cluster_dashboard}/runs")
        assert reader.locator(f'tr[data-run="{namespace}/report"]').count() == 1
        reader.goto(f"{cluster_dashboard}/queues")
        reader.locator(f'tr[data-queue="{namespace}/emails"]').wait_for()
        reader.once("dialog", lambda dialog: dialog.accept())
        with reader.expect_response(lambda r: r.request.method == "POST") as response:
            reader.locator(f'tr[data-queue="{namespace}/emails"]').get_by_role(
                "button", name="Pause").click()
        assert response.value.status == 403
        assert "may not patch taskqueues" in reader.text_content("main")  # type: ignore[operator]
        assert not paused()

        ops = as_(operator)
        ops.goto(f"{cluster_dashboard}/queues")
        ops.locator(f'tr[data-queue="{namespace}/emails"]').wait_for()
        ops.once("dialog", lambda dialog: dialog.accept())
        ops.locator(f'tr[data-queue="{namespace}/emails"]').get_by_role(
            "button", name="Pause").click()
        ops.wait_for_url("**/queues")
        assert paused()
        browser.close()


def test_a_person_without_a_proxy_signs_in_with_a_token_and_out_again(
    cluster_dashboard: str, control_plane: ControlPlane, kube_api: client.ApiClient,
    namespace: str,
) -> None:
    make_run(kube_api, namespace, "report", "behave", {"i": 1})
    make_queue(kube_api, namespace, "emails")
    read = {"apiGroups": [GROUP], "resources": ["taskruns", "taskqueues"],
            "verbs": ["get", "list", "watch"]}
    viewer = account(control_plane, kube_api, namespace, "viewer", [read])
    operator = account(control_plane, kube_api, namespace, "ops", [
        read, {"apiGroups": [GROUP], "resources": ["taskqueues"], "verbs": ["patch"]}])

    def paused() -> bool:
        queue = custom(kube_api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "taskqueues", "emails")
        return bool((queue.get("spec") or {}).get("paused"))

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context()
        page = context.new_page()

        def sign_in(token: str) -> None:
            page.get_by_label("Token").fill(token)
            page.get_by_role("button", name="Sign in").click()

        page.goto(f"{cluster_dashboard}/queues")
        assert page.url == f"{cluster_dashboard}/login?next=%2Fqueues"
        shot(page, "login")
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            sign_in("not-a-token")
        assert answer.value.status == 401
        assert "not accepted by the API server" in page.text_content('[role="alert"]')  # type: ignore[operator]
        assert not any(c["name"] == "kubetasks_session" for c in context.cookies())

        # The viewer: back where they were going, sees the queue, may not pause it.
        sign_in(viewer)
        page.wait_for_url(f"{cluster_dashboard}/queues")
        page.locator(f'tr[data-queue="{namespace}/emails"]').wait_for()
        session = next(c for c in context.cookies() if c["name"] == "kubetasks_session")
        assert session["httpOnly"] and session["sameSite"] == "Strict"
        assert viewer not in session["value"] and viewer not in page.content()
        page.once("dialog", lambda dialog: dialog.accept())
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.locator(f'tr[data-queue="{namespace}/emails"]').get_by_role(
                "button", name="Pause").click()
        assert answer.value.status == 403
        assert not paused()

        # Sign out: the session ends on the server too (its old id opens nothing).
        page.goto(f"{cluster_dashboard}/runs")
        page.get_by_role("link", name="Sign out").click()
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(f"{cluster_dashboard}/login")
        replayed = browser.new_context()
        replayed.add_cookies([{**session}])  # type: ignore[list-item]
        again = replayed.new_page()
        again.goto(f"{cluster_dashboard}/runs")
        assert again.url.startswith(f"{cluster_dashboard}/login")
        replayed.close()

        # The operator signs in on the same browser and pauses the queue.
        page.goto(f"{cluster_dashboard}/queues")
        sign_in(operator)
        page.wait_for_url(f"{cluster_dashboard}/queues")
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator(f'tr[data-queue="{namespace}/emails"]').get_by_role(
            "button", name="Pause").click()
        page.wait_for_url("**/queues")
        assert paused()
        browser.close()

    # A sign-in POSTed without the form's CSRF token (from another site) is refused.
    forged = urllib.request.Request(
        f"{cluster_dashboard}/login", data=urllib.parse.urlencode(
            {"token": operator, "next": "/runs"}).encode(), method="POST",
        headers={"Cookie": "kubetasks_csrf=abc"})
    try:
        urllib.request.urlopen(forged)
        raise AssertionError("a forged sign-in was accepted")
    except urllib.error.HTTPError as error:
        assert error.code == 403
        assert "kubetasks_session" not in (error.headers.get("Set-Cookie") or "")
