"""The program that attempts run in operator tests (the real worker is tested elsewhere).

It reads its own TaskRun through the API (kubeconfig in ``KUBETASKS_TEST_KUBECONFIG``) and does
what the payload says, so each test states its runs' behaviour in their payloads:

    {"sleep": 0.5}                      sleep, then succeed
    {"output": {...}}                   succeed with this output
    {"exit": 65}                        exit with this code (65 = abort)
    {"fail_before_attempt": 2}          exit 1 on attempts before 2, then succeed
    {"kill_self_before_attempt": 2}     SIGKILL itself (a crash) on attempts before 2
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import sys
import time
import urllib.request

import yaml


def read_run() -> dict[str, object]:
    with open(os.environ["KUBETASKS_TEST_KUBECONFIG"]) as f:
        config = yaml.safe_load(f)
    cluster = config["clusters"][0]["cluster"]
    user = config["users"][0]["user"]
    ctx = ssl.create_default_context(cafile=cluster["certificate-authority"])
    ctx.load_cert_chain(user["client-certificate"], user["client-key"])
    ns, name = os.environ["KUBETASKS_NAMESPACE"], os.environ["KUBETASKS_RUN_NAME"]
    url = f"{cluster['server']}/apis/kubetasks.dev/v1alpha1/namespaces/{ns}/taskruns/{name}"
    with urllib.request.urlopen(url, context=ctx, timeout=10) as response:
        return dict(json.load(response))


def finish(result: dict[str, object], code: int) -> None:
    with open(os.environ["KUBETASKS_TERMINATION_MESSAGE_PATH"], "w") as f:
        json.dump(result, f)
    sys.exit(code)


def main() -> None:
    attempt = int(os.environ["KUBETASKS_ATTEMPT"])
    spec = read_run()["spec"]
    assert isinstance(spec, dict)
    payload = spec.get("payload") or {}
    time.sleep(float(payload.get("sleep", 0)))
    if attempt < int(payload.get("kill_self_before_attempt", 0)):
        os.kill(os.getpid(), signal.SIGKILL)
    if attempt < int(payload.get("fail_before_attempt", 0)):
        finish({"ok": False, "error": {"type": "Flaky", "message": f"attempt {attempt}"}}, 1)
    code = int(payload.get("exit", 0))
    if code:
        finish({"ok": False, "error": {"type": "Exit", "message": f"exit {code}"}}, code)
    finish({"ok": True, "output": payload.get("output", {"attempt": attempt})}, 0)


if __name__ == "__main__":
    main()
