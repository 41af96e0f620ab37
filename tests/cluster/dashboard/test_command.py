"""``kubetasks dashboard`` as a person starts it: it prints its URL, binds 127.0.0.1 by
default, and serves the runs of the namespace it was given."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request

import pytest
from kubernetes import client

from kubetasks.devcluster import ControlPlane
from tests.cluster.dashboard.test_browser import free_port
from tests.cluster.helpers import make_run

pytestmark = pytest.mark.cluster


def test_the_command_prints_its_url_and_serves_the_namespace(
    control_plane: ControlPlane, kube_api: client.ApiClient, namespace: str,
) -> None:
    make_run(kube_api, namespace, "shown", "behave", {"i": 1})
    port = free_port()
    env = {**os.environ, "KUBECONFIG": str(control_plane.kubeconfig)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubetasks", "-n", namespace, "dashboard", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert url is not None and int(url.group(1)) == port, line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/runs", timeout=10) as answer:
            page = answer.read().decode()
        assert f'data-run="{namespace}/shown"' in page
    finally:
        proc.terminate()
        proc.wait(10)
