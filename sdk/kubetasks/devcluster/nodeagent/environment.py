"""What a container's process is started with, built as the kubelet builds it: the
environment (``env``, ``envFrom``, the downward API, Secrets and ConfigMaps), argv with
``$(VAR)`` expansion, and the working directory."""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass
from pathlib import Path

from kubetasks.devcluster.nodeagent.client import ApiError, Json, KubeClient
from kubetasks.devcluster.nodeagent.status import LOCAL_IP

TERMINATION_MESSAGE_ENV = "KUBETASKS_TERMINATION_MESSAGE_PATH"
POD_UID_ENV = "KUBETASKS_POD_UID"


def expand_references(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known names are replaced, ``$$`` is a literal ``$``,
    unknown references stay as they are."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if text.startswith("$(", i):
            end = text.find(")", i + 2)
            if end != -1:
                name = text[i + 2:end]
                out.append(env.get(name, text[i:end + 1]))
                i = end + 1
                continue
        out.append(text[i])
        i += 1
    return "".join(out)


_LABEL_REF = re.compile(r"metadata\.(labels|annotations)\['(.*)'\]$")


def field_value(pod: Json, path: str) -> str | None:
    """The downward API value of ``fieldRef.fieldPath``; None if unsupported."""
    meta, spec = pod["metadata"], pod["spec"]
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": LOCAL_IP,
        "status.podIPs": LOCAL_IP,
        "status.hostIP": LOCAL_IP,
        "status.hostIPs": LOCAL_IP,
    }
    if path in simple:
        return str(simple[path])
    match = _LABEL_REF.match(path)
    if match:
        values: dict[str, str] = meta.get(match.group(1)) or {}
        return values.get(match.group(2), "")
    return None


class ContainerConfigError(Exception):
    """The container's environment cannot be built (yet): a missing Secret or ConfigMap."""


def declared_environment(client: KubeClient, pod: Json, container: Json) -> dict[str, str]:
    """The environment the container declares: ``envFrom``, then ``env`` in order (an entry
    may refer to earlier ones with ``$(VAR)``)."""
    namespace: str = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, resource in (("configMapRef", "configmaps"), ("secretRef", "secrets")):
            ref = source.get(kind)
            if ref:
                data = _read_data(client, namespace, resource, ref["name"],
                                  ref.get("optional", False))
                env.update({prefix + k: v for k, v in data.items()})
    for item in container.get("env") or []:
        name = item["name"]
        if "value" in item or "valueFrom" not in item:
            env[name] = expand_references(item.get("value", ""), env)
            continue
        source = item["valueFrom"]
        if "fieldRef" in source:
            value = field_value(pod, source["fieldRef"]["fieldPath"])
            if value is None:
                raise ContainerConfigError(
                    f"env {name}: fieldPath {source['fieldRef']['fieldPath']} is not "
                    "supported by the local node agent")
            env[name] = value
            continue
        for kind, resource in (("configMapKeyRef", "configmaps"),
                               ("secretKeyRef", "secrets")):
            ref = source.get(kind)
            if ref:
                optional = ref.get("optional", False)
                data = _read_data(client, namespace, resource, ref["name"], optional)
                if ref["key"] in data:
                    env[name] = data[ref["key"]]
                elif not optional:
                    raise ContainerConfigError(
                        f"env {name}: key {ref['key']!r} not found in {resource[:-1]} "
                        f"{ref['name']!r}")
                break
        else:
            raise ContainerConfigError(
                f"env {name}: this kind of valueFrom is not supported by the local node "
                "agent (use value, fieldRef, secretKeyRef or configMapKeyRef)")
    return env


def _read_data(client: KubeClient, namespace: str, resource: str, name: str,
               optional: bool) -> dict[str, str]:
    path = f"/api/v1/namespaces/{namespace}/{resource}/{name}"
    try:
        obj = client.request("GET", path)
    except ApiError as exc:
        if exc.status == 404 and optional:
            return {}
        raise ContainerConfigError(f"{resource[:-1]} {name!r}: {exc}") from exc
    if resource == "secrets":
        return {k: base64.b64decode(v).decode(errors="replace")
                for k, v in (obj.get("data") or {}).items()}
    return dict(obj.get("data") or {})


@dataclass(frozen=True)
class Invocation:
    """How a container's process is started."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path


def invocation(container: Json, declared: dict[str, str], *, pod_dir: Path, pod_uid: str,
               message_path: Path) -> Invocation:
    """The container's ``command`` + ``args`` expanded with its declared environment, which
    goes on top of the agent's ``PATH`` and ``HOME`` and the two ``KUBETASKS_`` variables;
    in ``workingDir``, else ``<pod_dir>/work``."""
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": os.environ.get("HOME", str(pod_dir)),
        TERMINATION_MESSAGE_ENV: str(message_path),
        POD_UID_ENV: pod_uid,
        **declared,
    }
    argv = [expand_references(str(a), declared)
            for a in (container.get("command") or []) + (container.get("args") or [])]
    cwd = Path(container.get("workingDir") or pod_dir / "work")
    return Invocation(argv, env, cwd)
