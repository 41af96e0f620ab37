"""The other local servers kubetasks needs: a real ``redis-server`` and an S3-compatible
server (moto's server mode), each on a free port of 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import tempfile
import urllib.request
from pathlib import Path

from kubetasks.devcluster.errors import ComponentError
from kubetasks.devcluster.process import ManagedProcess, free_port


class RedisServer:
    """A throwaway ``redis-server`` without persistence."""

    def __init__(self, workdir: Path | None = None, port: int = 0) -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="kubetasks-redis-"))
        self.port = port or free_port()
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ComponentError(
                "redis-server",
                "redis-server is not on PATH",
                "install it (Debian/Ubuntu: `apt-get install redis-server`; macOS: "
                "`brew install redis`), or point kubetasks at an existing Redis URL",
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess(
            "redis-server",
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no",
             "--protected-mode", "no"],
            self.workdir / "redis.log",
            ports=(self.port,),
        )
        self.process.start()
        self.process.wait_ready(self._ping, 20)
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class S3Server:
    """moto's S3 server mode in a child process, with one bucket created.

    moto checks neither the signatures nor the expiry of presigned URLs; tests that need
    expiry semantics must say so.
    """

    access_key = "kubetasks-local"
    secret_key = "kubetasks-local-secret"
    region = "us-east-1"

    def __init__(
        self, workdir: Path | None = None, port: int = 0, bucket: str = "kubetasks"
    ) -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="kubetasks-s3-"))
        self.port = port or free_port()
        self.bucket = bucket
        self.process: ManagedProcess | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Settings for kubetasks components (the SDK, the worker, the operator)."""
        return {
            "KUBETASKS_S3_ENDPOINT": self.endpoint,
            "KUBETASKS_S3_BUCKET": self.bucket,
            "KUBETASKS_S3_REGION": self.region,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }

    def _ready(self) -> bool:
        with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2) as response:
            return bool(response.status == 200)

    def start(self) -> S3Server:
        try:
            import moto.server  # noqa: F401
        except ImportError as exc:
            raise ComponentError(
                "s3-server",
                f"moto's server mode is not installed ({exc})",
                "install the local extras: `pip install 'kubetasks[local]'`",
            ) from exc
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess(
            "s3-server (moto)",
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            self.workdir / "s3.log",
            ports=(self.port,),
        )
        self.process.start()
        self.process.wait_ready(self._ready, 30)
        self._create_bucket()
        return self

    def _create_bucket(self) -> None:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )
        client.create_bucket(Bucket=self.bucket)

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def pause(self) -> None:
        """SIGSTOP: the server accepts connections and answers nothing, as a hung or
        partitioned object store does; unlike a restart, it keeps its objects."""
        if self.process is not None and self.process.pid is not None:
            os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.pid is not None:
            os.kill(self.process.pid, signal.SIGCONT)

    def restart(self) -> None:
        """Start again on the same port; moto keeps nothing, so the bucket is recreated."""
        self.stop()
        self.start()

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
