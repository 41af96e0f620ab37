"""How the SDK reaches Kubernetes and S3.

:class:`KubeApi` is a small JSON client of the Kubernetes REST API (urllib3, one connection
pool). It reads kubeconfig files (certificates, tokens) and in-cluster ServiceAccount
credentials itself, and runs ``exec`` credential plugins itself (the client-go protocol), so
that applications need no ``kubernetes`` package and ``kubetasks worker``, which starts once
per attempt, does not pay for importing it. Only the legacy ``auth-provider`` users are
handed to that package's loader, when it is installed.

Where the configuration comes from, first match wins: an explicit kubeconfig path, then
``$KUBECONFIG``, then the pod's ServiceAccount (in-cluster), then ``~/.kube/config``. The
namespace: an explicit one, then ``$KUBETASKS_NAMESPACE`` (set inside task pods), then the
kubeconfig context's namespace, then the pod's own namespace, then ``default``.

:class:`Client` bundles the Kubernetes API, the object store and the inline-size limit;
:func:`configure` sets the process-wide default that ``tasks``, ``runs`` and task objects use.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
import yaml

from kubetasks.errors import ApiError, KubeConfigError, MissingDependencyError
from kubetasks.protocol.payloads import batch_inline_limit_from_env, inline_limit_from_env
from kubetasks.protocol.storage import ObjectStore, StorageSettings

Json = dict[str, Any]

GROUP = "kubetasks.dev"
VERSION = "v1alpha1"
NAMESPACE_ENV = "KUBETASKS_NAMESPACE"
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_REREAD_SECONDS = 60.0


@dataclass(frozen=True)
class Credentials:
    """Where the API server is and how to prove who we are."""

    server: str
    ca_file: str | None = None
    ca_data: str | None = None
    cert_file: str | None = None
    cert_data: bytes | None = None
    key_file: str | None = None
    key_data: bytes | None = None
    token: str | None = None
    token_file: str | None = None
    insecure: bool = False
    namespace: str | None = None


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


def _relative(path: str | None, base: Path) -> str | None:
    if not path:
        return None
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else base / p)


def _named(entries: list[Json] | None, name: str, what: str, source: Path) -> Json:
    for entry in entries or []:
        if entry.get("name") == name:
            value = entry.get(what) or {}
            return dict(value)
    raise KubeConfigError(f"{source}: no {what} named {name!r}; check the kubeconfig")


def credentials_from_kubeconfig(path: Path, context: str | None = None) -> Credentials:
    """Read one kubeconfig file. Users with ``exec`` or ``auth-provider`` go through the
    ``kubernetes`` package, which knows how to run them."""
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise KubeConfigError(f"cannot read kubeconfig {path}: {exc}") from None
    name = context or config.get("current-context")
    if not name:
        raise KubeConfigError(f"{path} has no current-context; pass a context or set one "
                              "with `kubectl config use-context`")
    ctx = _named(config.get("contexts"), name, "context", path)
    cluster = _named(config.get("clusters"), ctx.get("cluster", ""), "cluster", path)
    user = _named(config.get("users"), ctx.get("user", ""), "user", path) if ctx.get(
        "user") else {}
    if "auth-provider" in user:
        return _credentials_via_kubernetes_package(path, name, ctx.get("namespace"))
    base = path.parent
    server = cluster.get("server")
    if not server:
        raise KubeConfigError(f"{path}: cluster {ctx.get('cluster')!r} has no server")
    if "exec" in user:
        user = {**user, **_exec_credential(user["exec"], base, path)}
    return Credentials(
        server=str(server).rstrip("/"),
        ca_file=_relative(cluster.get("certificate-authority"), base),
        ca_data=(_b64(cluster["certificate-authority-data"]).decode()
                 if cluster.get("certificate-authority-data") else None),
        cert_file=_relative(user.get("client-certificate"), base),
        cert_data=(_b64(user["client-certificate-data"])
                   if user.get("client-certificate-data") else None),
        key_file=_relative(user.get("client-key"), base),
        key_data=_b64(user["client-key-data"]) if user.get("client-key-data") else None,
        token=user.get("token"),
        token_file=_relative(user.get("tokenFile"), base),
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        namespace=ctx.get("namespace"),
    )


def _exec_credential(spec: Any, base: Path, path: Path) -> dict[str, str]:
    """Run a kubeconfig's credential plugin (``users[].user.exec``, the client-go exec
    protocol) and return what it proves identity with, as kubeconfig user fields: a token,
    or a client certificate and key (``*-data``, base64 as in a kubeconfig)."""
    if not isinstance(spec, dict) or not spec.get("command"):
        raise KubeConfigError(f"{path}: the user's exec section needs a command")
    command = str(spec["command"])
    if "/" in command and not Path(command).is_absolute():
        command = str(base / command)  # relative to the kubeconfig, as kubectl does
    api_version = str(spec.get("apiVersion") or "client.authentication.k8s.io/v1")
    env = dict(os.environ)
    env.update({str(e["name"]): str(e["value"]) for e in spec.get("env") or []})
    env["KUBERNETES_EXEC_INFO"] = json.dumps({
        "apiVersion": api_version, "kind": "ExecCredential",
        "spec": {"interactive": False}})
    argv = [command, *(str(a) for a in spec.get("args") or [])]
    try:
        done = subprocess.run(argv, env=env, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KubeConfigError(f"{path}: the credential plugin {command!r} did not run: "
                              f"{exc}") from exc
    if done.returncode != 0:
        raise KubeConfigError(
            f"{path}: the credential plugin {command!r} exited {done.returncode}: "
            f"{done.stderr.decode(errors='replace').strip()[-500:]}")
    try:
        status = json.loads(done.stdout)["status"]
    except (ValueError, KeyError, TypeError) as exc:
        raise KubeConfigError(f"{path}: the credential plugin {command!r} did not print an "
                              "ExecCredential with a status") from exc
    if status.get("token"):
        return {"token": str(status["token"])}
    if status.get("clientCertificateData") and status.get("clientKeyData"):
        encode = base64.b64encode
        return {"client-certificate-data": encode(status["clientCertificateData"].encode()
                                                  ).decode(),
                "client-key-data": encode(status["clientKeyData"].encode()).decode()}
    raise KubeConfigError(f"{path}: the credential plugin {command!r} gave neither a token "
                          "nor a client certificate and key")


def _credentials_via_kubernetes_package(path: Path, context: str,
                                        namespace: str | None) -> Credentials:
    try:
        from kubernetes import client, config
    except ImportError as exc:
        raise MissingDependencyError(
            f"{path}: the user authenticates with a legacy auth-provider, which needs the "
            "kubernetes package: pip install kubernetes (or use an exec credential plugin)"
        ) from exc

    cfg = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(path), context=context, client_configuration=cfg,
        persist_config=False)
    # The loader stores "Bearer <token>" under BearerToken (older versions: authorization).
    keys = cfg.api_key or {}
    auth = keys.get("BearerToken") or keys.get("authorization")
    token = str(auth).removeprefix("Bearer ").strip() if auth else None
    return Credentials(
        server=str(cfg.host).rstrip("/"), ca_file=cfg.ssl_ca_cert, cert_file=cfg.cert_file,
        key_file=cfg.key_file, token=token, insecure=not cfg.verify_ssl, namespace=namespace,
    )


def in_cluster_credentials() -> Credentials | None:
    """The pod's ServiceAccount, when running in a pod; else ``None``."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    token_file = SERVICE_ACCOUNT_DIR / "token"
    if not host or not token_file.exists():
        return None
    if ":" in host:
        host = f"[{host}]"
    namespace_file = SERVICE_ACCOUNT_DIR / "namespace"
    namespace = namespace_file.read_text().strip() if namespace_file.exists() else None
    return Credentials(server=f"https://{host}:{port}",
                       ca_file=str(SERVICE_ACCOUNT_DIR / "ca.crt"),
                       token_file=str(token_file), namespace=namespace)


def find_credentials(kubeconfig: str | Path | None = None,
                     context: str | None = None) -> Credentials:
    """Credentials from the first source that exists (see the module docstring)."""
    if kubeconfig is not None:
        return credentials_from_kubeconfig(Path(kubeconfig).expanduser(), context)
    env = os.environ.get("KUBECONFIG", "")
    for candidate in filter(None, env.split(os.pathsep)):
        path = Path(candidate).expanduser()
        if path.exists():
            return credentials_from_kubeconfig(path, context)
    in_cluster = in_cluster_credentials()
    if in_cluster is not None:
        return in_cluster
    home = Path("~/.kube/config").expanduser()
    if home.exists():
        return credentials_from_kubeconfig(home, context)
    raise KubeConfigError(
        "no Kubernetes configuration found: set KUBECONFIG, run inside a pod with a "
        "ServiceAccount, create ~/.kube/config, or call kubetasks.configure(kubeconfig=...)")


def _ssl_context(creds: Credentials) -> ssl.SSLContext:
    try:
        return _load_ssl_context(creds)
    except (OSError, ssl.SSLError) as exc:
        raise KubeConfigError(
            f"cannot load the TLS files of the Kubernetes configuration for {creds.server} "
            f"({exc}); check the certificate paths or data in the kubeconfig") from None


def _load_ssl_context(creds: Credentials) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=creds.ca_file, cadata=creds.ca_data)
    if creds.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    cert, key = creds.cert_file, creds.key_file
    if creds.cert_data or creds.key_data:
        # ssl loads certificates only from files: write them privately, load, remove.
        with tempfile.TemporaryDirectory(prefix="kubetasks-") as tmp:
            if creds.cert_data:
                cert = os.path.join(tmp, "client.crt")
                Path(cert).write_bytes(creds.cert_data)
            if creds.key_data:
                key = os.path.join(tmp, "client.key")
                Path(key).write_bytes(creds.key_data)
            if cert:
                ctx.load_cert_chain(cert, key)
    elif cert:
        ctx.load_cert_chain(cert, key)
    return ctx


class KubeApi:
    """A JSON client of the Kubernetes API for the objects kubetasks uses.

    >>> api = KubeApi.from_environment()                          # doctest: +SKIP
    >>> api.get_object("taskruns", "default", "send-email-x7k2p")  # doctest: +SKIP
    """

    def __init__(self, credentials: Credentials, namespace: str | None = None,
                 refresh: Callable[[], Credentials] | None = None) -> None:
        self.credentials = credentials
        self.namespace = namespace or credentials.namespace or "default"
        self._refresh = refresh
        self._lock = threading.Lock()
        self._token: str | None = credentials.token
        self._token_read = 0.0
        self._pool = self._make_pool(credentials)

    @staticmethod
    def _make_pool(creds: Credentials) -> urllib3.PoolManager:
        retries = urllib3.Retry(
            total=4, connect=4, read=0, status=3, backoff_factor=0.2,
            status_forcelist=(429, 502, 503, 504), allowed_methods=frozenset({"GET"}),
            raise_on_status=False, respect_retry_after_header=True,
        )
        timeout = urllib3.Timeout(connect=10.0, read=60.0)
        if creds.server.startswith("https://"):
            return urllib3.PoolManager(maxsize=32, retries=retries, timeout=timeout,
                                       ssl_context=_ssl_context(creds))
        return urllib3.PoolManager(maxsize=32, retries=retries, timeout=timeout)

    @classmethod
    def from_environment(cls, kubeconfig: str | Path | None = None,
                         namespace: str | None = None, context: str | None = None) -> KubeApi:
        """The API the environment points at (see the module docstring)."""
        creds = find_credentials(kubeconfig, context)
        resolved = namespace or os.environ.get(NAMESPACE_ENV) or None
        refresh = None
        if creds.token and not creds.token_file:
            # Tokens from exec plugins expire: on a 401 the configuration is read again.
            def refresh() -> Credentials:
                return find_credentials(kubeconfig, context)
        return cls(creds, resolved, refresh)

    def with_namespace(self, namespace: str) -> KubeApi:
        """The same connections, another default namespace."""
        other = copy.copy(self)
        other.namespace = namespace
        return other

    # --- transport -------------------------------------------------------------------------

    def _bearer(self) -> str | None:
        creds = self.credentials
        if creds.token_file:
            now = time.monotonic()
            with self._lock:
                if self._token is None or now - self._token_read > TOKEN_REREAD_SECONDS:
                    self._token = Path(creds.token_file).read_text().strip()
                    self._token_read = now
        return self._token

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "kubetasks-sdk"}
        if content_type:
            headers["Content-Type"] = content_type
        token = self._bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                body: Any = None, content_type: str = "application/json") -> Any:
        """One API call; the decoded JSON answer. Errors raise :class:`ApiError`."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        url = self.credentials.server + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(2):
            response = self._pool.request(
                method, url, body=data,
                headers=self._headers(content_type if data is not None else None),
            )
            if response.status == 401 and attempt == 0 and self._refresh is not None:
                self.credentials = self._refresh()
                self._token = self.credentials.token
                self._pool = self._make_pool(self.credentials)
                continue
            break
        text = response.data
        decoded: Any = None
        if text:
            try:
                decoded = json.loads(text)
            except ValueError:
                decoded = text.decode(errors="replace")
        if response.status >= 400:
            message, reason = str(decoded), ""
            if isinstance(decoded, dict):
                message = str(decoded.get("message", decoded))
                reason = str(decoded.get("reason", ""))
            raise ApiError(response.status, reason or str(response.reason or ""), message,
                           decoded)
        return decoded

    def stream(self, path: str, *, params: dict[str, Any] | None = None,
               read_timeout: float | None = 60.0) -> Iterator[bytes]:
        """A GET whose answer is read as it arrives (``pods/log``, with ``follow`` an answer
        that lasts as long as the container): its body chunk by chunk. ``read_timeout``
        bounds the wait for each chunk (None: no bound). Errors raise :class:`ApiError`
        before the first chunk."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        url = self.credentials.server + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        headers = {**self._headers(None), "Accept": "*/*"}
        response = self._pool.request(
            "GET", url, headers=headers, preload_content=False, retries=False,
            timeout=urllib3.Timeout(connect=10.0, read=read_timeout))
        try:
            if response.status >= 400:
                text = response.read()
                decoded: Any = text.decode(errors="replace")
                message, reason = decoded, str(response.reason or "")
                with contextlib.suppress(ValueError):
                    decoded = json.loads(text)
                if isinstance(decoded, dict):
                    message = str(decoded.get("message", decoded))
                    reason = str(decoded.get("reason", "")) or reason
                raise ApiError(response.status, reason, message, decoded)
            yield from response.stream(65536)
        finally:
            # Closed first: a connection with an unread answer must not go back to the pool.
            response.close()
            response.release_conn()

    # --- objects ---------------------------------------------------------------------------

    @staticmethod
    def path(plural: str, namespace: str, name: str | None = None) -> str:
        """The URL path of kubetasks objects (``taskruns``, ``tasks``, ...)."""
        base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}"
        return base if name is None else base + "/" + urllib.parse.quote(name, safe="")

    def get_object(self, plural: str, namespace: str, name: str) -> Json:
        result: Json = self.request("GET", self.path(plural, namespace, name))
        return result

    def create_object(self, plural: str, namespace: str, body: Json) -> Json:
        result: Json = self.request("POST", self.path(plural, namespace), body=body)
        return result

    def merge_patch(self, plural: str, namespace: str, name: str, patch: Json) -> Json:
        """A JSON merge patch; put ``metadata.resourceVersion`` in it for a precondition."""
        result: Json = self.request("PATCH", self.path(plural, namespace, name), body=patch,
                                    content_type="application/merge-patch+json")
        return result

    def json_patch(self, plural: str, namespace: str, name: str,
                   operations: list[Json]) -> Json:
        """A JSON patch (RFC 6902): ``[{"op": "replace", "path": "/spec", "value": ...}]``."""
        result: Json = self.request("PATCH", self.path(plural, namespace, name),
                                    body=operations, content_type="application/json-patch+json")
        return result

    def delete_object(self, plural: str, namespace: str, name: str,
                      uid: str | None = None) -> None:
        """Delete the object; with ``uid``, only if it is still that object (a 409 if the
        name now holds another)."""
        body = None if uid is None else {"preconditions": {"uid": uid}}
        self.request("DELETE", self.path(plural, namespace, name), body=body)

    def apply(self, plural: str, namespace: str, name: str, body: Json,
              field_manager: str) -> Json:
        """Server-side apply: ``body`` states the fields this manager owns."""
        result: Json = self.request(
            "PATCH", self.path(plural, namespace, name), body=body,
            params={"fieldManager": field_manager, "force": "true"},
            content_type="application/apply-patch+yaml")
        return result

    def list_objects(self, plural: str, namespace: str, *, label_selector: str | None = None,
                     page_size: int = 250) -> Iterator[Json]:
        """Every object, a page at a time through the API's continue tokens."""
        token: str | None = None
        while True:
            page: Json = self.request("GET", self.path(plural, namespace), params={
                "labelSelector": label_selector, "limit": page_size, "continue": token})
            yield from page.get("items") or []
            token = (page.get("metadata") or {}).get("continue") or None
            if not token:
                return

    def close(self) -> None:
        self._pool.clear()


class Client:
    """The Kubernetes API, the object store and the inline limits that SDK calls use.

    >>> import kubetasks
    >>> client = kubetasks.configure(namespace="jobs")   # doctest: +SKIP
    """

    def __init__(self, kube: KubeApi, storage: ObjectStore | None = None,
                 inline_limit: int | None = None,
                 batch_inline_limit: int | None = None) -> None:
        self.kube = kube
        self._storage = storage
        self.inline_limit = inline_limit_from_env() if inline_limit is None else inline_limit
        self.batch_inline_limit = (batch_inline_limit_from_env() if batch_inline_limit is None
                                   else batch_inline_limit)

    @property
    def namespace(self) -> str:
        return self.kube.namespace

    @property
    def storage(self) -> ObjectStore:
        if self._storage is None:
            self._storage = ObjectStore()
        return self._storage

    def in_namespace(self, namespace: str) -> Client:
        """The same connections, another default namespace."""
        if namespace == self.namespace:
            return self
        return Client(self.kube.with_namespace(namespace), self.storage, self.inline_limit,
                      self.batch_inline_limit)


_default: Client | None = None
_default_lock = threading.Lock()


def configure(*, namespace: str | None = None, kubeconfig: str | Path | None = None,
              context: str | None = None, storage: StorageSettings | None = None,
              inline_limit: int | None = None,
              batch_inline_limit: int | None = None) -> Client:
    """Set how this process reaches Kubernetes and S3 (otherwise read from the environment
    on first use); returns the new default client.

    >>> import kubetasks
    >>> kubetasks.configure(namespace="jobs", kubeconfig="~/.kube/prod")  # doctest: +SKIP
    """
    global _default
    client = Client(
        KubeApi.from_environment(kubeconfig, namespace, context),
        ObjectStore(storage) if storage is not None else None,
        inline_limit,
        batch_inline_limit,
    )
    with _default_lock:
        previous, _default = _default, client
    if previous is not None:
        with contextlib.suppress(Exception):
            previous.kube.close()
    return client


def use_client(client: Client) -> None:
    """Make ``client`` the process-wide default (the worker does this)."""
    global _default
    with _default_lock:
        _default = client


def default_client() -> Client:
    """The process-wide client, made from the environment on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Client(KubeApi.from_environment())
        return _default

