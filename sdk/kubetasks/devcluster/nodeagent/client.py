"""The Kubernetes API, as raw JSON over HTTP: just what the node agent needs."""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import urllib3
import yaml

Json = dict[str, Any]


class ApiError(Exception):
    def __init__(self, status: int, method: str, path: str, body: Json) -> None:
        self.status = status
        self.reason = str(body.get("reason", ""))
        message = body.get("message") or body
        super().__init__(f"{method} {path}: HTTP {status}: {message}")


class KubeClient:
    """Just enough of a Kubernetes client: raw JSON in and out (the official client's object
    deserialisation costs more CPU than the rest of the agent)."""

    _RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

    def __init__(self, kubeconfig: Path, secrets_dir: Path) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        context_name = config.get("current-context")
        contexts = {c["name"]: c["context"] for c in config.get("contexts", [])}
        context = contexts.get(context_name) or next(iter(contexts.values()))
        cluster = {c["name"]: c["cluster"] for c in config["clusters"]}[context["cluster"]]
        user = {u["name"]: u["user"] for u in config["users"]}[context["user"]]
        self.server: str = str(cluster["server"]).rstrip("/")
        self.headers = {"Accept": "application/json", "User-Agent": "kubetasks-nodeagent"}
        if user.get("token"):
            self.headers["Authorization"] = f"Bearer {user['token']}"

        def file_of(section: Json, key: str) -> str | None:
            if section.get(key):
                return str(section[key])
            if section.get(f"{key}-data"):
                secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                path = secrets_dir / key
                path.write_bytes(base64.b64decode(section[f"{key}-data"]))
                path.chmod(0o600)
                return str(path)
            return None

        tls: dict[str, Any] = {
            "ca_certs": file_of(cluster, "certificate-authority"),
            "cert_file": file_of(user, "client-certificate"),
            "key_file": file_of(user, "client-key"),
            "cert_reqs": "CERT_NONE" if cluster.get("insecure-skip-tls-verify") else
            "CERT_REQUIRED",
        }
        self._pool = urllib3.PoolManager(
            num_pools=2, maxsize=16, block=True, retries=False,
            timeout=urllib3.Timeout(connect=5, read=30), **tls,
        )
        # Watches hold their connection for minutes: keep them out of the shared pool.
        self._watch_pool = urllib3.PoolManager(num_pools=2, maxsize=2, retries=False, **tls)

    def _url(self, path: str, query: dict[str, str] | None) -> str:
        return self.server + path + ("?" + urllib.parse.urlencode(query) if query else "")

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Json | None = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        attempts: int = 5,
        want_body: bool = True,
    ) -> Json:
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = content_type
        url = self._url(path, query)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = self._pool.request(method, url, body=data, headers=headers)
            except urllib3.exceptions.HTTPError:
                if last:
                    raise
                time.sleep(min(0.2 * 2**attempt, 3.0))
                continue
            if response.status in self._RETRY_STATUSES and not last:
                time.sleep(min(0.2 * 2**attempt, 3.0))
                continue
            if response.status < 400 and not want_body:
                return {}  # parsing a whole pod we do not need costs more than the request
            try:
                parsed = json.loads(response.data) if response.data else {}
            except ValueError:
                parsed = {"message": response.data[:500].decode(errors="replace")}
            if response.status >= 400:
                raise ApiError(response.status, method, path, parsed)
            return cast(Json, parsed)
        raise AssertionError("unreachable")

    def watch(self, path: str, query: dict[str, str], read_timeout: float) -> Iterator[Json]:
        """The events of a watch, one dict per line of the stream."""
        response = self._watch_pool.request(
            "GET", self._url(path, {**query, "watch": "true"}), headers=self.headers,
            preload_content=False, timeout=urllib3.Timeout(connect=5, read=read_timeout),
        )
        try:
            if response.status != 200:
                body = response.read()
                raise ApiError(response.status, "WATCH", path,
                               json.loads(body) if body.startswith(b"{") else {})
            buffer = b""
            for chunk in response.stream(65536):
                buffer += chunk
                while (newline := buffer.find(b"\n")) >= 0:
                    line, buffer = buffer[:newline], buffer[newline + 1:]
                    if line.strip():
                        yield cast(Json, json.loads(line))
        finally:
            response.close()
            response.release_conn()
