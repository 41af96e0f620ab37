"""Operator settings: environment variables (``KUBETASKS_*``), overridable by CLI flags."""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, Field, field_validator


class NamespaceLimits(BaseModel):
    """The namespace-wide concurrency caps: a default for every namespace and overrides by
    exact name or glob pattern. No entry (or 0) means no cap."""

    default: int | None = Field(default=None, ge=1)
    names: dict[str, int] = Field(default_factory=dict)  # exact names and glob patterns

    @field_validator("names")
    @classmethod
    def _positive(cls, value: dict[str, int]) -> dict[str, int]:
        for name, limit in value.items():
            if limit < 0:
                raise ValueError(f"the limit of {name!r} is {limit}; use a whole number >= 1, "
                                 "or 0 for no cap")
        return value

    @classmethod
    def parse(cls, text: str) -> NamespaceLimits:
        """``"50"``, ``"prod=200,preview-*=5"`` or both: ``"50,prod=200"``."""
        default: int | None = None
        names: dict[str, int] = {}
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            name, sep, number = part.rpartition("=")
            try:
                limit = int(number)
            except ValueError:
                raise ValueError(
                    f"{part!r} is not a limit: write N (every namespace) or NAMESPACE=N "
                    "(a name or a glob pattern such as preview-*), separated by commas; "
                    "0 means no cap") from None
            if limit < 0:
                raise ValueError(f"{part!r}: a limit must be >= 1 (or 0 for no cap)")
            if sep:
                names[name.strip()] = limit
            else:
                default = limit or None
        return cls(default=default, names=names)

    def limit_for(self, namespace: str) -> int | None:
        """The cap of one namespace: its exact name, else the longest matching pattern (the
        most specific; the order they are written in does not matter), else the default."""
        if namespace in self.names:
            return self.names[namespace] or None
        for pattern in sorted(self.names, key=lambda p: (-len(p), p)):
            if fnmatch.fnmatchcase(namespace, pattern):
                return self.names[pattern] or None
        return self.default

    def __bool__(self) -> bool:
        return self.default is not None or any(self.names.values())


class OperatorSettings(BaseModel):
    """Every setting, its environment variable and default.

    | env var | meaning |
    |---|---|
    | KUBETASKS_REDIS_URL | Redis for queue slots (``redis://127.0.0.1:6379/0``) |
    | KUBETASKS_NAMESPACES | comma-separated namespaces to watch; empty: cluster-wide |
    | KUBETASKS_WRITE_QPS / KUBETASKS_WRITE_BURST | client-side limit on API writes |
    | KUBETASKS_FANOUT_QPS / KUBETASKS_FANOUT_BURST | separate limit on the TaskRuns that |
    |   | batches create (300/s, bursts of 100) |
    | KUBETASKS_SCHEDULE_QPS / KUBETASKS_SCHEDULE_BURST | separate limit on the TaskRuns |
    |   | that schedule ticks create (500/s, bursts of 1000: a minute's ticks fall on one |
    |   | second) |
    | KUBETASKS_REPAIR_INTERVAL | seconds between Redis repairs from the API (30) |
    | KUBETASKS_JOB_TTL_SECONDS | ttlSecondsAfterFinished of attempt Jobs (3600) |
    | KUBETASKS_WORKER_COMMAND | the attempt container's command (``kubetasks worker``) |
    | KUBETASKS_TASK_SERVICE_ACCOUNT | ServiceAccount of task pods unless the Task names one |
    | KUBETASKS_TASK_ENV | JSON object of extra env for task pods (e.g. S3 settings) |
    | KUBETASKS_QUEUE_STATUS_INTERVAL | seconds between TaskQueue status updates (2) |
    | KUBETASKS_NAMESPACE_CONCURRENCY_LIMIT | runs that may execute at once in one |
    |   | namespace, over all its queues (Trigger.dev's environment limit): ``50`` for |
    |   | every namespace, ``prod=200,preview-*=5`` per namespace (an exact name first, |
    |   | then the longest matching glob pattern, then the bare number); empty or 0: none |
    | KUBETASKS_POD_CREATE_TIMEOUT | seconds an attempt's Job may go without a pod once the |
    |   | Job controller reported FailedCreate, before the attempt ends (60) |
    | KUBETASKS_S3_ENDPOINT / _BUCKET / _REGION | object storage for payloads and outputs, |
    |   KUBETASKS_PRESIGN_EXPIRY | passed on to every attempt's pod |
    | KUBETASKS_S3_CREDENTIALS_SECRET | a Secret (keys AWS_ACCESS_KEY_ID, |
    |   | AWS_SECRET_ACCESS_KEY) the pods read their S3 credentials from, by reference |
    | KUBETASKS_METRICS_PORT | port of ``/metrics`` and ``/healthz`` (9090; 0: off) |
    | KUBETASKS_LOG_FORMAT | ``text`` or ``json`` (one object per line); passed on to |
    |   | the pods when ``json`` |
    """

    redis_url: str = "redis://127.0.0.1:6379/0"
    namespaces: list[str] = Field(default_factory=list)
    write_qps: float = Field(default=200.0, gt=0)
    write_burst: int = Field(default=400, ge=1)
    fanout_qps: float = Field(default=300.0, gt=0)
    fanout_burst: int = Field(default=100, ge=1)
    schedule_qps: float = Field(default=500.0, gt=0)
    schedule_burst: int = Field(default=1000, ge=1)
    repair_interval: float = Field(default=30.0, gt=0)
    job_ttl_seconds: int = Field(default=3600, ge=0)
    worker_command: list[str] = Field(default_factory=lambda: ["kubetasks", "worker"])
    task_service_account: str = "default"
    task_env: dict[str, str] = Field(default_factory=dict)
    termination_grace_seconds: int = Field(default=30, ge=0)
    queue_status_interval: float = Field(default=2.0, gt=0)
    pod_create_timeout: float = Field(default=60.0, gt=0)
    namespace_concurrency_limit: NamespaceLimits = Field(default_factory=lambda: NamespaceLimits())
    s3_endpoint: str | None = None
    s3_bucket: str | None = None
    s3_region: str | None = None
    presign_expiry: int | None = Field(default=None, ge=1)
    s3_credentials_secret: str | None = None
    metrics_port: int = Field(default=9090, ge=0, le=65535)
    log_format: Literal["text", "json"] = "text"

    def pod_env(self) -> list[dict[str, object]]:
        """Env of every attempt's container: the S3 settings (credentials only as a Secret
        reference, never as values), the JSON log format if the operator uses it, then
        ``task_env``."""
        env: list[dict[str, object]] = []
        for name, value in (("KUBETASKS_S3_ENDPOINT", self.s3_endpoint),
                            ("KUBETASKS_S3_BUCKET", self.s3_bucket),
                            ("KUBETASKS_S3_REGION", self.s3_region),
                            ("KUBETASKS_PRESIGN_EXPIRY", self.presign_expiry)):
            if value is not None and name not in self.task_env:
                env.append({"name": name, "value": str(value)})
        if self.s3_credentials_secret:
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                env.append({"name": key, "valueFrom": {"secretKeyRef": {
                    "name": self.s3_credentials_secret, "key": key}}})
        if self.log_format == "json" and "KUBETASKS_LOG_FORMAT" not in self.task_env:
            env.append({"name": "KUBETASKS_LOG_FORMAT", "value": "json"})
        env.extend({"name": k, "value": v} for k, v in self.task_env.items())
        return env

    @field_validator("namespace_concurrency_limit", mode="before")
    @classmethod
    def _parse_namespace_limits(cls, value: object) -> object:
        return NamespaceLimits.parse(value) if isinstance(value, str) else value

    @field_validator("worker_command", mode="before")
    @classmethod
    def _split_command(cls, value: object) -> object:
        return shlex.split(value) if isinstance(value, str) else value

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: object) -> object:
        if isinstance(value, str):
            return [n.strip() for n in value.split(",") if n.strip()]
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_format(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("task_env", mode="before")
    @classmethod
    def _parse_env(cls, value: object) -> object:
        return json.loads(value) if isinstance(value, str) and value else value or {}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object
                 ) -> OperatorSettings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name in cls.model_fields:
            key = f"KUBETASKS_{name.upper()}"
            if key in env:
                values[name] = env[key]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)
