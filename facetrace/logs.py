"""Logging for the server and the CLI: one setup function, plain text or JSON lines.

JSON lines carry ``time``, ``level``, ``logger``, ``message``, the ``request_id`` of the API request
being served and the ``job_id`` of the background job being run (when there is one), and any
``extra={...}`` fields of the log call. The ids come from context variables set by the API's
request-id middleware and by the job runner, so every log call in between carries them without
passing them around.

What is logged must never be personal data: no names, contacts, embeddings or image bytes, and
no raw request paths or query strings (they can hold external ids or a searched name); log record
ids, counts, route templates and error codes instead.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from facetrace.config import get_settings

LOG_FORMATS = ("text", "json")
# The id of the API request being served, and of the background job being run, in this context.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("facetrace_request_id", default=None)
job_id_var: contextvars.ContextVar[int | None] = contextvars.ContextVar("facetrace_job_id", default=None)

# A client-supplied request id is kept only when it is short and plain (no spaces, quotes or
# control characters that could forge log lines or headers); otherwise a new one is made.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
# uvicorn adds ``color_message`` (the message with terminal colours) to its records: not for JSON.
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName", "color_message"}


def valid_request_id(value: str | None) -> bool:
    """Return whether ``value`` is acceptable as a request id (1-128 of ``A-Z a-z 0-9 . _ : -``)."""
    return bool(value) and REQUEST_ID_PATTERN.fullmatch(value or "") is not None


def current_request_id() -> str | None:
    """Return the id of the API request being served in this context, or None."""
    return request_id_var.get()


class JsonFormatter(logging.Formatter):
    """Format each record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a JSON line (never raises on odd extras: they are turned into text)."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
        }
        job_id = getattr(record, "job_id", None) or job_id_var.get()
        if job_id is not None:
            entry["job_id"] = job_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key not in entry and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``LEVEL logger: message``, with ``[request ID]`` / ``[job N]`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as one line of text (plus a traceback when it carries one)."""
        tags = []
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            tags.append(f"[request {request_id}]")
        job_id = getattr(record, "job_id", None) or job_id_var.get()
        if job_id is not None:
            tags.append(f"[job {job_id}]")
        line = f"{record.levelname} {record.name}: {' '.join([*tags, record.getMessage()])}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def make_formatter(log_format: str) -> logging.Formatter:
    """Return the formatter of ``log_format`` ("text" or "json"). Raises ValueError for another name."""
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return TextFormatter()
    raise ValueError(f"unknown log format {log_format!r} (text or json)")


def configured_log_format() -> str:
    """Return ``Settings.log_format`` (FACETRACE_LOG_FORMAT), or "text" when the settings are unusable
    (the command that reads them then reports the problem itself)."""
    try:
        return get_settings().log_format
    except Exception:
        return "text"


def setup_logging(
    level: int | str = logging.WARNING,
    log_format: str | None = None,
    stream: TextIO | None = None,
    *,
    force: bool = False,
) -> None:
    """Send facetrace's (and the server's) log records to ``stream`` (default stderr) as text or JSON lines.

    Calling it again (the CLI callback, then ``facetrace serve``) replaces the handler it installed,
    so format and level switch cleanly. Like :func:`logging.basicConfig`, it leaves logging alone
    when the program running facetrace configured it already (a handler it did not install is on
    the root logger: a test runner, an embedding application), unless ``force``. uvicorn's own
    loggers are pointed at the same handler.

    Raises:
        ValueError: ``log_format`` is neither "text" nor "json".
    """
    formatter = make_formatter(log_format or configured_log_format())
    root = logging.getLogger()
    if not force and any(not getattr(h, "_facetrace", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    handler._facetrace = True  # type: ignore[attr-defined]  # ours: replaced by the next call
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
