"""Request IDs: `X-Request-ID` taken from the request (a proxy's or the client's) or made, returned with the answer,
and in every log line and problem detail of that request.

The edge sets `REQUEST_ID` for the request's task; a logging filter copies it into each record, so that the
service's lines, uvicorn's access line and a traceback all carry it. `VAE_LOG_FORMAT=json` writes one JSON object
a line (for log collectors) instead of text.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from contextvars import ContextVar
from typing import TextIO

import orjson

HEADER = b"x-request-id"
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
_ACCEPTED = re.compile(rb"[\x21-\x7e]{1,128}")  # printable ASCII without spaces: safe in a header and a log line


def request_id(sent: bytes | None) -> str:
    """The request's own ID when it sent a usable one, else a new one (16 hex digits)."""
    if sent is not None and _ACCEPTED.fullmatch(sent):
        return sent.decode("ascii")
    return os.urandom(8).hex()


class RequestIdFilter(logging.Filter):
    """Gives every record `request_id`: the ID of the request being answered, or '-' outside one."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request_id, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
ACCESS_FORMAT = "%(levelname)s [%(request_id)s] %(message)s"  # uvicorn's access lines, as terse as its own


def configure_logging(level: str, form: str = "text") -> None:
    """Request IDs in every line, in text or JSON: the service's and uvicorn's lines on stderr, uvicorn's access
    lines on stdout (where uvicorn writes them itself, so that they can be sent elsewhere or dropped)."""
    logging.basicConfig(level=level.upper(), handlers=[_handler(sys.stderr, form, TEXT_FORMAT)], force=True)
    access = logging.getLogger("uvicorn.access")
    access.handlers = [_handler(sys.stdout, form, ACCESS_FORMAT)]
    access.propagate = False


def _handler(stream: TextIO, form: str, text: str) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if form == "json" else logging.Formatter(text))
    return handler
