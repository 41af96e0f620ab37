"""A real Kubernetes control plane as local processes on 127.0.0.1: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler, each on free ports, with a generated PKI and an
admin kubeconfig. Two control planes can run side by side."""

from __future__ import annotations

import contextlib
import ssl
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kubetasks.devcluster.binaries import Binaries, find_binaries
from kubetasks.devcluster.errors import ComponentError
from kubetasks.devcluster.pki import ClientCredentials, ClusterPKI, generate_pki
from kubetasks.devcluster.process import ManagedProcess, free_port


@dataclass(frozen=True)
class ControllerSettings:
    """Client-side rate limits of the controller manager.

    The defaults are the controller manager's own (the Job controller then creates about
    9 pods/s); ``tuned()`` raises them, as a production cluster usually does.
    """

    kube_api_qps: int | None = None
    kube_api_burst: int | None = None
    concurrent_job_syncs: int | None = None

    @classmethod
    def tuned(cls) -> ControllerSettings:
        return cls(kube_api_qps=200, kube_api_burst=300, concurrent_job_syncs=20)

    def flags(self) -> list[str]:
        flags = []
        if self.kube_api_qps is not None:
            flags.append(f"--kube-api-qps={self.kube_api_qps}")
        if self.kube_api_burst is not None:
            flags.append(f"--kube-api-burst={self.kube_api_burst}")
        if self.concurrent_job_syncs is not None:
            flags.append(f"--concurrent-job-syncs={self.concurrent_job_syncs}")
        return flags


@dataclass
class _Ports:
    etcd_client: int = field(default_factory=free_port)
    etcd_peer: int = field(default_factory=free_port)
    apiserver: int = field(default_factory=free_port)
    controller_manager: int = field(default_factory=free_port)
    scheduler: int = field(default_factory=free_port)


def write_kubeconfig(
    path: Path, server: str, ca: Path, credentials: ClientCredentials, user: str
) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "kubetasks-local",
             "cluster": {"server": server, "certificate-authority": str(ca)}},
        ],
        "users": [
            {"name": user,
             "user": {"client-certificate": str(credentials.cert),
                      "client-key": str(credentials.key)}},
        ],
        "contexts": [
            {"name": "kubetasks-local",
             "context": {"cluster": "kubetasks-local", "user": user, "namespace": "default"}},
        ],
        "current-context": "kubetasks-local",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler.

    >>> with ControlPlane() as cp:
    ...     print(cp.kubeconfig)
    """

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        binaries: Binaries | None = None,
        controller_settings: ControllerSettings | None = None,
        start_timeout: float = 60.0,
        audit: bool = False,
    ) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="kubetasks-cluster-"))
        self.binaries = binaries or find_binaries()
        self.controller_settings = controller_settings or ControllerSettings()
        self.start_timeout = start_timeout
        self.ports = _Ports()
        self.pki: ClusterPKI | None = None
        self.processes: dict[str, ManagedProcess] = {}
        self.started_seconds: float | None = None
        self.audit = audit

    # --- paths and clients ---------------------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    # --- audit log (off by default) ------------------------------------------------------
    # With ``audit=True`` the API server writes one JSON line per write request (create,
    # update, patch, delete, deletecollection) at Metadata level to ``audit_log``: who
    # (``user.username``, ``userAgent``), what (``verb``, ``objectRef``) and the answer's
    # code. Reads are not logged. Used by bench/api_cost.py to attribute writes to clients.

    @property
    def audit_log(self) -> Path:
        return self.logs / "audit.log"

    def _audit_flags(self) -> list[str]:
        if not self.audit:
            return []
        policy_path = self.workdir / "audit-policy.yaml"
        policy = {
            "apiVersion": "audit.k8s.io/v1",
            "kind": "Policy",
            "omitStages": ["RequestReceived"],
            "rules": [
                {"level": "Metadata",
                 "verbs": ["create", "update", "patch", "delete", "deletecollection"]},
                {"level": "None"},
            ],
        }
        self.logs.mkdir(parents=True, exist_ok=True)
        policy_path.write_text(yaml.safe_dump(policy, sort_keys=False))
        return [
            f"--audit-policy-file={policy_path}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",
        ]

    def kubeconfig_for(self, name: str, credentials: ClientCredentials) -> Path:
        """Write a kubeconfig for other credentials (a node, a test user)."""
        assert self.pki is not None
        path = self.workdir / f"{name.replace(':', '_')}.kubeconfig"
        write_kubeconfig(path, self.server, self.pki.ca_cert, credentials, name)
        return path

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        """Run kubectl as the admin and return its stdout."""
        result = subprocess.run(
            [self.binaries.kubectl, f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True, text=True, input=input, timeout=120,
        )
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, ["kubectl", *args], result.stdout, result.stderr
            )
        return result.stdout

    def _ssl_context(self, client: ClientCredentials | None = None) -> ssl.SSLContext:
        assert self.pki is not None
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        if client:
            ctx.load_cert_chain(str(client.cert), str(client.key))
        return ctx

    def _https_ok(self, url: str, client: ClientCredentials | None, verify: bool) -> bool:
        ctx = self._ssl_context(client)
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        with urllib.request.urlopen(url, context=ctx, timeout=2) as response:
            return bool(response.status == 200)

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> ControlPlane:
        started = time.monotonic()
        try:
            self.pki = generate_pki(self.workdir / "pki")
            self._start_etcd()
            self._start_apiserver()
            self._start_controller_manager()
            self._start_scheduler()
            self._wait_for_default_service_account()
        except BaseException:
            self.stop()
            raise
        self.started_seconds = time.monotonic() - started
        return self

    def _start_etcd(self) -> None:
        p = self.ports
        data = self.workdir / "etcd-data"
        proc = ManagedProcess(
            "etcd",
            [
                self.binaries.etcd,
                f"--data-dir={data}",
                "--name=kubetasks-local",
                f"--listen-client-urls=http://127.0.0.1:{p.etcd_client}",
                f"--advertise-client-urls=http://127.0.0.1:{p.etcd_client}",
                f"--listen-peer-urls=http://127.0.0.1:{p.etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{p.etcd_peer}",
                f"--initial-cluster=kubetasks-local=http://127.0.0.1:{p.etcd_peer}",
                "--listen-metrics-urls=",
                "--log-level=warn",
                # Local throwaway data: durability on every write is not worth the latency.
                "--unsafe-no-fsync",
                "--quota-backend-bytes=4294967296",
            ],
            self.logs / "etcd.log",
            ports=(p.etcd_client, p.etcd_peer),
        )
        self.processes["etcd"] = proc
        proc.start()

        def healthy() -> bool:
            url = f"http://127.0.0.1:{p.etcd_client}/health"
            with urllib.request.urlopen(url, timeout=2) as response:
                return b'"health":"true"' in response.read()

        proc.wait_ready(healthy, self.start_timeout)

    def _start_apiserver(self) -> None:
        assert self.pki is not None
        pki, p = self.pki, self.ports
        proc = ManagedProcess(
            "kube-apiserver",
            [
                self.binaries.kube_apiserver,
                f"--etcd-servers=http://127.0.0.1:{p.etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={p.apiserver}",
                # Otherwise it refuses to advertise a loopback address.
                "--endpoint-reconciler-type=none",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.service_account_pub}",
                f"--service-account-signing-key-file={pki.service_account_key}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=true",
                f"--requestheader-client-ca-file={pki.front_proxy_ca_cert}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-username-headers=X-Remote-User",
                f"--proxy-client-cert-file={pki.front_proxy_client.cert}",
                f"--proxy-client-key-file={pki.front_proxy_client.key}",
                "--profiling=false",
                # The node agent's Hostname address is only its node name, which nothing
                # resolves: reach kubelets (pods/log) at their InternalIP, as kubeadm does.
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                "--v=1",
                *self._audit_flags(),
            ],
            self.logs / "kube-apiserver.log",
            ports=(p.apiserver,),
        )
        self.processes["kube-apiserver"] = proc
        proc.start()
        proc.wait_ready(
            lambda: self._https_ok(f"{self.server}/readyz", pki.admin, verify=True),
            self.start_timeout,
        )
        write_kubeconfig(self.kubeconfig, self.server, pki.ca_cert, pki.admin, "admin")

    def _component_flags(self, name: str, credentials: ClientCredentials, port: int) -> list[str]:
        kubeconfig = self.kubeconfig_for(name, credentials)
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.workdir / (name + '-certs')}",
            "--leader-elect=false",
            "--v=1",
        ]

    def _start_controller_manager(self) -> None:
        assert self.pki is not None
        port = self.ports.controller_manager
        proc = ManagedProcess(
            "kube-controller-manager",
            [
                self.binaries.kube_controller_manager,
                *self._component_flags(
                    "system:kube-controller-manager", self.pki.controller_manager, port
                ),
                f"--root-ca-file={self.pki.ca_cert}",
                f"--service-account-private-key-file={self.pki.service_account_key}",
                "--use-service-account-credentials=true",
                "--controllers=*,-bootstrapsigner,-tokencleaner",
                *self.controller_settings.flags(),
            ],
            self.logs / "kube-controller-manager.log",
            ports=(port,),
        )
        self.processes["kube-controller-manager"] = proc
        proc.start()
        proc.wait_ready(
            lambda: self._https_ok(f"https://127.0.0.1:{port}/healthz", None, verify=False),
            self.start_timeout,
        )

    def _start_scheduler(self) -> None:
        assert self.pki is not None
        port = self.ports.scheduler
        proc = ManagedProcess(
            "kube-scheduler",
            [
                self.binaries.kube_scheduler,
                *self._component_flags("system:kube-scheduler", self.pki.scheduler, port),
            ],
            self.logs / "kube-scheduler.log",
            ports=(port,),
        )
        self.processes["kube-scheduler"] = proc
        proc.start()
        proc.wait_ready(
            lambda: self._https_ok(f"https://127.0.0.1:{port}/healthz", None, verify=False),
            self.start_timeout,
        )

    def _wait_for_default_service_account(self) -> None:
        # Pods cannot be created in a namespace before the controller manager made its
        # default ServiceAccount; waiting here makes "started" mean "usable".
        proc = self.processes["kube-controller-manager"]
        proc.wait_ready(
            lambda: bool(
                self.kubectl("get", "serviceaccount", "default", "-n", "default", "-o", "name",
                             check=False).strip()
            ),
            self.start_timeout,
        )

    def restart_apiserver(self) -> None:
        """Stop and start the API server on the same port (for fault tests)."""
        self.processes["kube-apiserver"].stop()
        self._start_apiserver()

    def stop(self) -> None:
        for name in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            proc = self.processes.get(name)
            if proc is not None:
                with contextlib.suppress(Exception):
                    proc.stop()

    def memory_rss_mb(self) -> dict[str, float]:
        """Resident memory of each component, from /proc."""
        usage = {}
        for name, proc in self.processes.items():
            if proc.pid is None or not proc.alive():
                continue
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    usage[name] = int(line.split()[1]) / 1024
        return usage

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["ComponentError", "ControlPlane", "ControllerSettings", "write_kubeconfig"]
