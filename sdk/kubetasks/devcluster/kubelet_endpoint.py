"""The node agent's kubelet endpoint: the part of a kubelet's HTTPS API that the API server
calls to serve ``pods/log`` (``kubectl logs``, ``kubetasks runs logs``).

The API server finds it through the Node: the address (``--kubelet-preferred-address-types``,
InternalIP first in the local control plane) and ``status.daemonEndpoints.kubeletEndpoint``'s
port. It serves only

    GET /containerLogs/{namespace}/{pod}/{container}?follow=&tailLines=&limitBytes=

reading ``<workdir>/pods/<namespace>/<pod>/<container>.log``, where the node agent appends a
container's stdout and stderr. With ``follow`` the answer goes on until the container has
ended (and everything it wrote was sent) or the caller hangs up. ``timestamps``,
``sinceSeconds`` and ``sinceTime`` are ignored (the log has no per-line times); ``previous``
is refused, as the agent never restarts a container.

TLS uses a self-signed certificate made at start: the local API server is not given a CA
for kubelets (no ``--kubelet-certificate-authority``), so it does not verify it, as with a
kubelet's default self-signed serving certificate. The API server presents no client
certificate either (no ``--kubelet-client-certificate``), so the endpoint cannot check who
calls; it listens on 127.0.0.1 only and serves nothing but logs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import ipaddress
import logging
import os
import re
import select
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("kubetasks.nodeagent.kubelet")

LOG_PATH = re.compile(r"^/containerLogs/([^/]+)/([^/]+)/([^/]+)/?$")
# Namespaces, pods and containers are DNS names: nothing here can leave the pods directory.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
FOLLOW_POLL_SECONDS = 0.1
_READ_BLOCK = 64 * 1024

ContainerActive = Callable[[str, str, str], bool]
"""``(namespace, pod, container) -> bool``: the container may still write to its log (it
runs, or waits to start)."""


def tail_offset(path: Path, lines: int) -> int:
    """The byte offset where the last ``lines`` lines of the file begin (a last line without
    a newline counts as a line).

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile() as f:
    ...     _ = f.write(b"a\\nb\\nc\\n"); f.flush()
    ...     tail_offset(Path(f.name), 2), tail_offset(Path(f.name), 0)
    (2, 6)
    """
    with path.open("rb") as f:
        end = f.seek(0, os.SEEK_END)
        if lines <= 0:
            return end
        position = end
        newlines = 0
        while position > 0:
            size = min(_READ_BLOCK, position)
            position -= size
            f.seek(position)
            block = f.read(size)
            index = len(block)
            while (index := block.rfind(b"\n", 0, index)) >= 0:
                # The file's final newline ends the last line; it does not start another.
                if position + index != end - 1:
                    newlines += 1
                    if newlines == lines:
                        return position + index + 1
        return 0


def self_signed_certificate(directory: Path, node_name: str) -> tuple[Path, Path]:
    """A serving certificate for 127.0.0.1, ``localhost`` and the node's name, and its
    key (mode 0600), written to ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{node_name}@kubelet")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName(node_name), x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert_path, key_path = directory / "kubelet.crt", directory / "kubelet.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # Set by KubeletEndpoint before serving.
    ssl_context: ssl.SSLContext
    pods_dir: Path
    container_active: ContainerActive
    stopping: threading.Event

    def get_request(self) -> tuple[Any, Any]:
        # The TLS handshake happens on the request's thread (see _Handler.setup), so that a
        # slow or broken client cannot hold up accept().
        sock, address = self.socket.accept()
        return (self.ssl_context.wrap_socket(sock, server_side=True,
                                             do_handshake_on_connect=False), address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("kubelet endpoint: request from %s failed", client_address, exc_info=True)


class _ClientGone(Exception):
    pass


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "kubetasks-nodeagent"

    def setup(self) -> None:
        self.request.settimeout(30)
        self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("kubelet endpoint: " + format, *args)

    def _fail(self, status: int, message: str) -> None:
        body = (message + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        match = LOG_PATH.match(url.path)
        if match is None:
            self._fail(404, f"the local node agent serves only /containerLogs/...; not "
                            f"{url.path}")
            return
        namespace, pod, container = (urllib.parse.unquote(p) for p in match.groups())
        if not all(_NAME.match(part) for part in (namespace, pod, container)):
            self._fail(400, "invalid namespace, pod or container name")
            return
        query = urllib.parse.parse_qs(url.query)

        def flag(name: str) -> bool:
            return (query.get(name) or ["false"])[-1].lower() in ("true", "1")

        def number(name: str) -> int | None:
            values = query.get(name)
            if not values:
                return None
            try:
                return max(0, int(values[-1]))
            except ValueError:
                return -1

        tail_lines, limit_bytes = number("tailLines"), number("limitBytes")
        if tail_lines == -1 or limit_bytes == -1:
            self._fail(400, "tailLines and limitBytes must be whole numbers")
            return
        if flag("previous"):
            self._fail(400, f'previous terminated container "{container}" in pod "{pod}" not '
                            "found: the local node agent never restarts containers")
            return
        path = self.server.pods_dir / namespace / pod / f"{container}.log"
        active = self.server.container_active(namespace, pod, container)
        if not path.exists():
            if active:
                self._fail(400, f'container "{container}" in pod "{pod}" is waiting to '
                                "start: ContainerCreating")
            else:
                self._fail(404, f'no log of container "{container}" in pod "{pod}" on this '
                                "node")
            return
        try:
            self._send_log(path, (namespace, pod, container), follow=flag("follow"),
                           tail_lines=tail_lines, limit_bytes=limit_bytes)
        except (_ClientGone, ConnectionError, ssl.SSLError, TimeoutError):
            log.debug("kubelet endpoint: %s/%s/%s: the caller hung up", namespace, pod,
                      container)
        self.close_connection = True

    def _client_gone(self) -> bool:
        """The caller closed its side (it sends nothing else while it reads the log)."""
        sock = self.request
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        try:
            sock.setblocking(False)
            try:
                data: bytes = sock.recv(1)
                return data == b""
            finally:
                sock.setblocking(True)
        except (ssl.SSLWantReadError, BlockingIOError):
            return False
        except (OSError, ssl.SSLError):
            return True

    def _send_log(self, path: Path, key: tuple[str, str, str], *, follow: bool,
                  tail_lines: int | None, limit_bytes: int | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        # Chunked: each piece reaches the caller as soon as it was read (with follow, the
        # answer lasts as long as the container).
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()
        self._copy(path, key, follow=follow, tail_lines=tail_lines, limit_bytes=limit_bytes)
        self.wfile.write(b"0\r\n\r\n")

    def _copy(self, path: Path, key: tuple[str, str, str], *, follow: bool,
              tail_lines: int | None, limit_bytes: int | None) -> None:
        left = limit_bytes
        with path.open("rb") as f:
            if tail_lines is not None:
                f.seek(tail_offset(path, tail_lines))
            while left is None or left > 0:
                # Whether it still runs is read before the file: once a container has ended,
                # one more read takes everything it wrote.
                running = follow and self.server.container_active(*key)
                data = f.read(_READ_BLOCK if left is None else min(_READ_BLOCK, left))
                if data:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    if left is not None:
                        left -= len(data)
                    continue
                if not running or self.server.stopping.is_set():
                    return
                if self._client_gone():
                    raise _ClientGone()
                time.sleep(FOLLOW_POLL_SECONDS)


class KubeletEndpoint:
    """The HTTPS server; ``start()`` returns its port.

    >>> endpoint = KubeletEndpoint(pods_dir, "local-node", active, cert_dir)  # doctest: +SKIP
    >>> port = endpoint.start()                                             # doctest: +SKIP
    """

    def __init__(self, pods_dir: Path, node_name: str, container_active: ContainerActive,
                 cert_dir: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.pods_dir = pods_dir
        self.node_name = node_name
        self.container_active = container_active
        self.cert_dir = cert_dir
        self.host = host
        self.port = port
        self._server: _Server | None = None

    def start(self) -> int:
        cert, key = self_signed_certificate(self.cert_dir, self.node_name)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server = _Server((self.host, self.port), _Handler)
        server.ssl_context = context
        server.pods_dir = self.pods_dir
        server.container_active = self.container_active
        server.stopping = threading.Event()
        self._server = server
        self.port = int(server.server_address[1])
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5},
                         name="kubelet-endpoint", daemon=True).start()
        log.info("kubelet endpoint (container logs) on https://%s:%d", self.host, self.port)
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.stopping.set()
            self._server.shutdown()
            with contextlib.suppress(OSError):
                self._server.server_close()
            self._server = None


__all__ = ["KubeletEndpoint", "self_signed_certificate", "tail_offset"]
