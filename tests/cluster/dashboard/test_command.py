"""``kubetasks dashboard`` as a person starts it: it prints its URL, binds 127.0.0.1 by
default, serves the runs of the namespace it was given, and writes no URL it served (no
presigned link, no query) to its output."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request

import pytest
from kubernetes import client

from kubetasks.devcluster import ControlPlane
from kubetasks.devcluster.services import S3Server
from kubetasks.protocol.payloads import Encoded, encode_json
from kubetasks.protocol.storage import ObjectStore, StorageSettings
from tests.cluster.dashboard.test_browser import NoRedirect, free_port
from tests.cluster.helpers import create, make_run

pytestmark = pytest.mark.cluster


def test_the_command_prints_its_url_and_serves_the_namespace(
    control_plane: ControlPlane, kube_api: client.ApiClient, namespace: str,
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    make_run(kube_api, namespace, "shown", "behave", {"i": 1})
    data, _ = encode_json({"big": "x" * 1000})
    ref = ObjectStore(StorageSettings(bucket=s3_server.bucket, endpoint=s3_server.endpoint,
                                      region=s3_server.region)).put(
        f"{namespace}/payloads/offloaded", Encoded(data, None))
    create(kube_api, namespace, "taskruns", {"kind": "TaskRun",
                                             "metadata": {"name": "offloaded"},
                                             "spec": {"task": "behave", "payloadRef": ref}})
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
        link = urllib.request.build_opener(NoRedirect).open(
            f"http://127.0.0.1:{port}/runs/{namespace}/offloaded/download/payload?secret=q")
        assert link.status == 303 and "X-Amz-Signature=" in link.headers["Location"]
        with urllib.request.urlopen(link.headers["Location"], timeout=10) as answer:
            assert answer.read() == data
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    # Nothing of what was asked or answered reached the output: no access log.
    printed = line + out + err
    for secret in ("X-Amz", "/download/", "secret=q", "/runs"):
        assert secret not in printed, printed
