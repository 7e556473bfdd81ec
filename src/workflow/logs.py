"""Structured logging: one JSON object a line when stderr is not a terminal, readable text when it is.

Callers pass DICOM context as `extra={...}` with the keys in CONTEXT_KEYS; they become JSON fields.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone

CONTEXT_KEYS = (
    "calling_ae", "called_ae", "peer", "sop_class", "sop_instance", "study_instance_uid",
    "status", "outcome", "instances", "duration_ms", "reason",
)


# A bearer token never reaches a log line: a WebSocket client may pass it in the URL (`?access_token=`),
# and uvicorn logs every WebSocket's URL at INFO; anything else quoting one (an exception's text) too.
_SECRET = re.compile(r"(?<=access_token=)[^&\s\"'\\]+|wfm_[A-Za-z0-9_-]{40,}")


def redacted(line: str) -> str:
    if "access_token=" not in line and "wfm_" not in line:  # the common case, without the expression
        return line
    return _SECRET.sub("[redacted]", line)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in CONTEXT_KEYS:
            if key in record.__dict__:
                out[key] = record.__dict__[key]
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return redacted(json.dumps(out, default=str))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(f"{k}={record.__dict__[k]}" for k in CONTEXT_KEYS if k in record.__dict__)
        line = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {record.getMessage()}"
        if context:
            line += f"  [{context}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redacted(line)


def setup_logging(level: str = "INFO", json_lines: bool | None = None, *, tool: bool = False) -> None:
    """`tool`: a command-line tool, which says itself why a request failed: pynetdicom's own error
    lines (a refused connection, a rejection) would only repeat it, so they are silenced."""
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pynetdicom narrates every PDU at INFO, transitions every state callback: our own lines say what
    # matters.
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL if tool else logging.WARNING)
    logging.getLogger("transitions").setLevel(logging.WARNING)
    # pydicom warns (warnings.warn) about values a peer sent: as log records, so that the log stays one
    # JSON object a line (logger "py.warnings").
    logging.captureWarnings(True)
