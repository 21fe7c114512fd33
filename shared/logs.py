"""Structured logging: one line per event, as ``key=value`` pairs or JSON (``log.format``).

Use :func:`get_logger` and pass an event name and fields::

    log = get_logger("dhcp")
    log.info("ack", mac=mac, ip=ip, boot_file=name)

prints ``ts=2026-11-22T04:53:10.123Z level=info logger=dhcp event=ack mac=... ip=...``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + (
        f".{int(record.msecs):03d}Z")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return getattr(record, "fields", None) or {}


def _kv_value(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        return json.dumps(text)
    return text


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [f"ts={_timestamp(record)}", f"level={record.levelname.lower()}",
                 f"logger={record.name}", f"event={_kv_value(record.getMessage())}"]
        parts += [f"{k}={_kv_value(v)}" for k, v in _fields(record).items()]
        if record.exc_info:
            parts.append(f"exc={_kv_value(self.formatException(record.exc_info))}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body = {"ts": _timestamp(record), "level": record.levelname.lower(),
                "logger": record.name, "event": record.getMessage()}
        body.update({k: v for k, v in _fields(record).items() if k not in body})
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


class EventLogger:
    """A thin wrapper that turns keyword arguments into structured fields."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - mirrors logging.Logger
        return self._logger.isEnabledFor(level)

    def _log(self, level: int, event: str, fields: dict[str, Any], exc_info: Any = None) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, event, extra={"fields": fields}, exc_info=exc_info)

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields, exc_info=True)


def get_logger(name: str) -> EventLogger:
    return EventLogger(logging.getLogger(f"bootyard.{name}" if name else "bootyard"))


def configure(format: str = "kv", level: str = "info", stream=None) -> None:
    """Route every ``bootyard.*`` logger to one handler with the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if format == "json" else KeyValueFormatter())
    root = logging.getLogger("bootyard")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
