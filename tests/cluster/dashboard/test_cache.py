"""The dashboard's watch-fed store against the real API server: a run created, changed and
deleted shows up in the store without any list per read."""

from __future__ import annotations

import pytest
from kubernetes import client

from kubetasks._internal.client import KubeApi
from kubetasks.dashboard.cache import Store, Watcher
from kubetasks.devcluster import ControlPlane
from tests.cluster.helpers import GROUP, VERSION, custom, make_run, wait_until

pytestmark = pytest.mark.cluster


def test_the_store_follows_runs_created_changed_and_deleted(
    control_plane: ControlPlane, kube_api: client.ApiClient, namespace: str,
) -> None:
    make_run(kube_api, namespace, "before", "behave", {"i": 0})
    kube = KubeApi.from_environment(kubeconfig=control_plane.kubeconfig)
    store = Store()
    watcher = Watcher(kube, store, "taskruns", namespace).start()
    try:
        assert watcher.synced.wait(30)
        assert store.get("taskruns", namespace, "before") is not None
        make_run(kube_api, namespace, "after", "behave", {"i": 1})
        wait_until(lambda: store.get("taskruns", namespace, "after"), timeout=10,
                   what="the new run in the store")
        custom(kube_api).patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "taskruns", "after", {"spec": {"cancel": True}})
        wait_until(lambda: ((store.get("taskruns", namespace, "after") or {}).get("spec")
                            or {}).get("cancel") is True, timeout=10, what="the change")
        custom(kube_api).delete_namespaced_custom_object(
            GROUP, VERSION, namespace, "taskruns", "before")
        wait_until(lambda: store.get("taskruns", namespace, "before") is None, timeout=10,
                   what="the deletion")
    finally:
        watcher.stop()
