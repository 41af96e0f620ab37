"""bench/api_cost.py's pure parts (who sent a write, metrics diffs) and the control plane's
audit option."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from kubetasks.devcluster.binaries import Binaries
from kubetasks.devcluster.controlplane import ControlPlane

ROOT = Path(__file__).resolve().parents[3]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_api_cost", ROOT / "bench/api_cost.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _bench()


def event(user: str, agent: str = "", verb: str = "create", resource: str = "pods",
          group: str = "", subresource: str = "", namespace: str = "ns",
          code: int = 201) -> dict[str, Any]:
    ref = {"resource": resource, "namespace": namespace, "apiGroup": group}
    if subresource:
        ref["subresource"] = subresource
    return {"stage": "ResponseComplete", "verb": verb, "user": {"username": user},
            "userAgent": agent, "objectRef": ref, "responseStatus": {"code": code},
            "requestReceivedTimestamp": "2026-01-01T00:00:01.000000Z"}


def test_components_are_told_apart_by_identity_then_user_agent() -> None:
    assert bench.component_of(event("system:kube-scheduler")) == ("scheduler", "")
    assert bench.component_of(
        event("system:serviceaccount:kube-system:job-controller")
    ) == ("controller manager", "job-controller")
    assert bench.component_of(event("system:node:local"))[0] == "node agent"
    assert bench.component_of(event("admin", "kubetasks-sdk"))[0] == "SDK"
    assert bench.component_of(event("admin", "kubetasks-operator"))[0] == "operator"
    assert bench.component_of(event("admin", "kopf/1.38")) == ("operator", "Kopf")
    assert bench.component_of(event("admin", "kubetasks-bench"))[0] == "bench client"
    assert bench.component_of(event("admin", "kubectl/v1.36 (linux)"))[0] == "other"


def test_request_keys_follow_kubectl_names() -> None:
    assert bench.request_key(event("x", verb="patch", resource="taskruns",
                                   group="kubetasks.dev", subresource="status")) == \
        "patch taskruns.kubetasks.dev/status"
    assert bench.request_key(event("x", resource="jobs", group="batch")) == "create jobs.batch"


def test_tally_splits_the_namespace_from_background_and_keeps_failures() -> None:
    events = [event("admin", "kubetasks-sdk", resource="taskruns", group="kubetasks.dev"),
              event("system:node:n", verb="delete", code=404),
              event("system:node:n", verb="patch", resource="leases",
                    group="coordination.k8s.io", namespace="kube-node-lease")]
    inside, outside = bench.tally(events, "ns")
    assert inside.total("SDK") == 1 and inside.total("node agent") == 1
    assert outside.by_request["node agent"] == {"patch leases.coordination.k8s.io": 1}
    assert inside.failed == {"node agent: delete pods -> 404": 1}


def test_apiserver_writes_are_diffed_by_verb_and_resource() -> None:
    line = ('apiserver_request_total{{code="201",component="apiserver",dry_run="",'
            'group="{g}",resource="{r}",scope="resource",subresource="{s}",verb="{v}",'
            'version="v1"}} {n}\n')
    head = "# TYPE apiserver_request_total counter\n"
    before = head + line.format(g="batch", r="jobs", s="", v="POST", n=3)
    after = head + "".join([
        line.format(g="batch", r="jobs", s="", v="POST", n=5),
        line.format(g="", r="pods", s="status", v="PATCH", n=7),
        line.format(g="", r="pods", s="", v="LIST", n=100),
    ])
    assert bench.apiserver_writes(before, after) == {"create jobs.batch": 2,
                                                     "patch pods/status": 7}


def test_audit_is_off_by_default_and_logs_only_writes(tmp_path: Path) -> None:
    binaries = Binaries(tmp_path / "bin")
    assert ControlPlane(tmp_path / "a", binaries=binaries)._audit_flags() == []
    audited = ControlPlane(tmp_path / "b", binaries=binaries, audit=True)
    flags = audited._audit_flags()
    assert f"--audit-log-path={audited.audit_log}" in flags
    assert "--audit-log-format=json" in flags
    policy_file = next(f for f in flags if f.startswith("--audit-policy-file="))
    policy = yaml.safe_load(Path(policy_file.split("=", 1)[1]).read_text())
    first, last = policy["rules"]
    assert first["level"] == "Metadata"
    assert set(first["verbs"]) == {"create", "update", "patch", "delete", "deletecollection"}
    assert last == {"level": "None"}
