"""Configuration lookup (kubeconfig, in-cluster, namespace), run ids, and reading runs."""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetasks import KubeConfigError, Result, TaskRunFailedError, TaskRunNotFoundError
from kubetasks._internal.client import (
    Client,
    KubeApi,
    credentials_from_kubeconfig,
    find_credentials,
)
from kubetasks.handles import Run, split_run_id
from kubetasks.protocol.storage import ObjectStore, StorageSettings


def write_kubeconfig(path: Path, server: str = "https://10.0.0.1:6443/", **user: Any) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "dev",
        "clusters": [{"name": "c", "cluster": {"server": server,
                                               "certificate-authority": "ca.crt"}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "dev", "context": {"cluster": "c", "user": "u",
                                                 "namespace": "team"}},
                     {"name": "other", "context": {"cluster": "c", "user": "u"}}],
    }))
    return path


def test_kubeconfig_files_relative_paths_data_and_namespace(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "config", token="secret",
                            **{"client-key-data": base64.b64encode(b"KEY").decode()})
    creds = credentials_from_kubeconfig(path)
    assert creds.server == "https://10.0.0.1:6443"
    assert creds.ca_file == str(tmp_path / "ca.crt")
    assert creds.token == "secret"
    assert creds.key_data == b"KEY"
    assert creds.namespace == "team"
    assert credentials_from_kubeconfig(path, "other").namespace is None
    with pytest.raises(KubeConfigError, match="no context named 'nope'"):
        credentials_from_kubeconfig(path, "nope")


def test_kubeconfig_env_wins_over_home_and_namespace_env_over_the_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_kubeconfig(tmp_path / "config", server="http://127.0.0.1:1", token="t")
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{path}")
    monkeypatch.delenv("KUBETASKS_NAMESPACE", raising=False)
    assert find_credentials().token == "t"
    api = KubeApi.from_environment()
    assert api.namespace == "team"
    monkeypatch.setenv("KUBETASKS_NAMESPACE", "from-env")
    assert KubeApi.from_environment().namespace == "from-env"
    assert KubeApi.from_environment(namespace="explicit").namespace == "explicit"


def test_missing_tls_files_are_a_configuration_error(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "config", token="t")
    with pytest.raises(KubeConfigError, match="cannot load the TLS files"):
        KubeApi.from_environment(path)


def test_no_configuration_at_all_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(KubeConfigError, match="set KUBECONFIG"):
        find_credentials()


def test_run_ids() -> None:
    assert split_run_id("jobs/r1", "default") == ("jobs", "r1")
    assert split_run_id("r1", "default") == ("default", "r1")
    for bad in ("", "a/b/c"):
        with pytest.raises(TaskRunNotFoundError, match="namespace/name"):
            split_run_id(bad, "default")


def offline_client() -> Client:
    return Client(kube=None, storage=ObjectStore(StorageSettings()), inline_limit=1024)  # type: ignore[arg-type]


RUN = {
    "metadata": {"name": "r1", "namespace": "ns", "uid": "u1",
                 "creationTimestamp": "2030-01-01T00:00:00Z"},
    "spec": {"task": "t", "payload": {"a": 1}, "tags": ["x"], "parent": {"name": "p",
                                                                          "uid": "pu"}},
    "status": {"phase": "Failed", "attempt": 1,
               "attempts": [{"number": 1, "exitCode": 65, "reason": "Error"}],
               "error": {"type": "AbortTaskRunError", "message": "no"},
               "conditions": [{"type": "Succeeded", "status": "False", "reason": "Aborted",
                               "message": "aborted"}]},
}


def test_a_run_object_becomes_a_run_and_a_result() -> None:
    run = Run.from_object(RUN, offline_client())
    assert run.id == "ns/r1" and run.status == "Failed" and run.is_failed
    assert run.payload == {"a": 1} and run.output is None
    assert run.parent_id == "ns/p" and run.tags == ["x"]
    assert run.attempts[0].exit_code == 65
    result = Result.from_run(run)
    assert not result.ok
    with pytest.raises(TaskRunFailedError, match="ended Failed: AbortTaskRunError: no"):
        result.unwrap()


def test_runs_that_ended_without_an_error_get_one_from_their_phase() -> None:
    expired = {**RUN, "status": {"phase": "Expired", "conditions": [
        {"type": "Succeeded", "status": "False", "reason": "Expired", "message": "ttl"}]}}
    run = Run.from_object(expired, offline_client())
    assert run.error is not None and (run.error.type, run.error.message) == ("Expired", "ttl")
    completed = {**RUN, "status": {"phase": "Completed", "output": [1]}}
    result = Result.from_run(Run.from_object(completed, offline_client()))
    assert result.ok and result.unwrap() == [1]


def test_exec_plugin_users_get_the_plugins_token(tmp_path: Path) -> None:
    credential = ('{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",'
                  ' "status": {"token": "from-plugin"}}')
    path = write_kubeconfig(tmp_path / "config", server="http://127.0.0.1:1", exec={
        "apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
        "args": ["-c", f"print({credential!r})"], "interactiveMode": "Never"})
    creds = credentials_from_kubeconfig(path)
    assert creds.token == "from-plugin"
    assert creds.server == "http://127.0.0.1:1"
    assert creds.namespace == "team"


def test_exec_plugins_get_their_env_args_and_exec_info(tmp_path: Path) -> None:
    # The plugin echoes what it was given into its token: args, env, KUBERNETES_EXEC_INFO.
    script = ("import json, os, sys; info = json.loads(os.environ['KUBERNETES_EXEC_INFO']); "
              "token = '|'.join([sys.argv[1], os.environ['PROFILE'], info['kind'], "
              "str(info['spec']['interactive'])]); "
              "print(json.dumps({'kind': 'ExecCredential', 'status': {'token': token}}))")
    path = write_kubeconfig(tmp_path / "config", exec={
        "apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
        "args": ["-c", script, "cluster-a"], "env": [{"name": "PROFILE", "value": "prod"}]})
    assert credentials_from_kubeconfig(path).token == "cluster-a|prod|ExecCredential|False"


def test_exec_plugins_may_answer_with_a_client_certificate(tmp_path: Path) -> None:
    status = {"clientCertificateData": "-----BEGIN CERTIFICATE-----\nAAA\n",
              "clientKeyData": "-----BEGIN EC PRIVATE KEY-----\nBBB\n"}
    credential = {"kind": "ExecCredential", "status": status}
    path = write_kubeconfig(tmp_path / "config", exec={
        "command": sys.executable,
        "args": ["-c", f"import json; print(json.dumps({credential!r}))"]})
    creds = credentials_from_kubeconfig(path)
    assert creds.token is None
    assert creds.cert_data == status["clientCertificateData"].encode()
    assert creds.key_data == status["clientKeyData"].encode()


@pytest.mark.parametrize(("args", "message"), [
    (["-c", "import sys; sys.stderr.write('token expired, run aws sso login'); sys.exit(3)"],
     "exited 3: token expired, run aws sso login"),
    (["-c", "print('not json')"], "did not print an ExecCredential"),
    (["-c", "print('{\"status\": {}}')"], "neither a token nor a client certificate"),
])
def test_a_failing_exec_plugin_is_a_configuration_error_that_says_why(
    tmp_path: Path, args: list[str], message: str,
) -> None:
    path = write_kubeconfig(tmp_path / "config", exec={"command": sys.executable, "args": args})
    with pytest.raises(KubeConfigError, match=message):
        credentials_from_kubeconfig(path)
