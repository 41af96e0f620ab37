"""Structured logs: one JSON object per line, with the standard library only.

``KUBETASKS_LOG_FORMAT=json`` switches the operator and ``kubetasks worker`` to it; ``text``
(the default) keeps the usual human-readable lines.

    {"time": "2027-01-15T08:00:00.123Z", "level": "INFO", "logger": "kubetasks.operator",
     "message": "kubetasks operator ready: 0 runs, 0 jobs, 0 pods"}

A record logged with an exception adds ``exception`` (the formatted traceback); one with
``stack_info`` adds ``stack``; a Kopf per-object record adds ``object`` (its reference).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import Mapping
from typing import Literal

ENV_LOG_FORMAT = "KUBETASKS_LOG_FORMAT"
LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """Each record as one line of JSON: time (UTC, RFC 3339, milliseconds), level, logger,
    message, and exception/stack text when present."""

    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.UTC)
        entry: dict[str, object] = {
            "time": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, Mapping) and ref:
            entry["object"] = dict(ref)
        return json.dumps(entry, ensure_ascii=False, default=str)


def log_format_from(environ: Mapping[str, str]) -> LogFormat:
    """``json`` if ``KUBETASKS_LOG_FORMAT`` says so (any case), else ``text``."""
    return "json" if environ.get(ENV_LOG_FORMAT, "").strip().lower() == "json" else "text"


def use_json_logs(logger: logging.Logger | None = None) -> None:
    """Give every handler of ``logger`` (default: the root logger) the JSON formatter; add a
    stderr handler if it has none. Idempotent."""
    target = logger if logger is not None else logging.getLogger()
    if not target.handlers:
        target.addHandler(logging.StreamHandler(sys.stderr))
    for handler in target.handlers:
        if not isinstance(handler.formatter, JsonFormatter):
            handler.setFormatter(JsonFormatter())


def stderr_handler(log_format: LogFormat) -> logging.Handler:
    """A stderr handler in the given format (the worker's)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json"
                         else logging.Formatter(TEXT_FORMAT))
    return handler
