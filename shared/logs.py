"""Structured logging: one line per event, as ``key=value`` pairs or JSON (``log.format``).

Use :func:`get_logger` and pass an event name and fields::

    log = get_logger("dhcp")
    log.info("ack", mac=mac, ip=ip, boot_file=name)

prints ``ts=2026-11-22T04:53:10.123Z level=info logger=dhcp event=ack mac=... ip=...``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import Any


def _timestamp(record: logging.LogRecord) -> str:
    return _batch_timestamp(record.created)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return getattr(record, "fields", None) or {}


_NEEDS_QUOTES = re.compile(r'[ "=\n\t]')


def _kv_value(value: Any) -> str:
    text = value if type(value) is str else str(value)
    if not text or _NEEDS_QUOTES.search(text):
        return json.dumps(text)
    return text


# field=value texts of KeyValueFormatter.format_rows, by (field, type, value): the type too,
# 1 == 1.0 == True
_PAIRS: dict[tuple[str, type, Any], str] = {}
PAIRS_KEPT = 4096


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = self.format_fields(_timestamp(record), record.levelname.lower(), record.name,
                                  record.getMessage(), _fields(record))
        if record.exc_info:
            line += f" exc={_kv_value(self.formatException(record.exc_info))}"
        return line

    @staticmethod
    def _head(ts: str, level: str, logger: str, event: str) -> str:
        return f"ts={ts} level={level} logger={logger} event={_kv_value(event)}"

    @classmethod
    def format_fields(cls, ts: str, level: str, logger: str, event: str,
                      fields: dict[str, Any]) -> str:
        head = cls._head(ts, level, logger, event)
        if not fields:
            return head
        return head + " " + " ".join([f"{k}={_kv_value(v)}" for k, v in fields.items()])

    @classmethod
    def format_rows(cls, ts: str, level: str, logger: str, event: str,
                    rows: Iterable[dict[str, Any]]) -> str:
        """``format_fields`` of each row, a line each: the head once, and each field=value text
        once per call (a batch's rows repeat most values: subnet, boot file, ...)."""
        head = cls._head(ts, level, logger, event)
        # kept from call to call (a batch of one row repeats the last batch's subnet, boot
        # file, relay, ...), emptied when full: most rows also have unique values (MAC, IP)
        pairs = _PAIRS
        if len(pairs) > PAIRS_KEPT:
            pairs.clear()
        known = pairs.get  # get, not [] and KeyError: most rows have unique values (MAC, IP)
        lines = []
        for row in rows:
            parts = [head]
            for k, v in row.items():
                key = k, v.__class__, v
                try:
                    text = known(key)
                except TypeError:  # an unhashable value
                    text = f"{k}={_kv_value(v)}"
                else:
                    if text is None:
                        text = pairs[key] = f"{k}={_kv_value(v)}"
                parts.append(text)
            lines.append(" ".join(parts) + "\n")
        return "".join(lines)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body = self._body(_timestamp(record), record.levelname.lower(), record.name,
                          record.getMessage(), _fields(record))
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)

    @staticmethod
    def _body(ts: str, level: str, logger: str, event: str,
              fields: dict[str, Any]) -> dict[str, Any]:
        body = {"ts": ts, "level": level, "logger": logger, "event": event}
        body.update({k: v for k, v in fields.items() if k not in body})
        return body

    @classmethod
    def format_fields(cls, ts: str, level: str, logger: str, event: str,
                      fields: dict[str, Any]) -> str:
        return json.dumps(cls._body(ts, level, logger, event, fields), default=str)

    @classmethod
    def format_rows(cls, ts: str, level: str, logger: str, event: str,
                    rows: Iterable[dict[str, Any]]) -> str:
        return "".join([cls.format_fields(ts, level, logger, event, row) + "\n" for row in rows])


class EventLogger:
    """A thin wrapper that turns keyword arguments into structured fields."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - mirrors logging.Logger
        return self._logger.isEnabledFor(level)

    def _log(self, level: int, event: str, fields: dict[str, Any], exc_info: Any = None) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, event, extra={"fields": fields}, exc_info=exc_info)

    def info_each(self, event: str, rows: Iterable[dict[str, Any]]) -> None:
        """One info line per row, exactly as ``info(event, **row)`` for each would write them,
        but formatted and written together (one write, one flush): for per-packet lines of a
        batch. Falls back to one record per row when the logger is not routed to the handler
        :func:`configure` installed (tests capturing records, other set-ups)."""
        logger = self._logger
        if not logger.isEnabledFor(logging.INFO):
            return
        handler = _fast_handler(logger)
        if handler is None:
            for row in rows:
                logger.log(logging.INFO, event, extra={"fields": row})
            return
        ts = _batch_timestamp(time.time())
        text = handler.formatter.format_rows(ts, "info", logger.name, event, rows)
        if not text:
            return
        handler.acquire()
        try:
            handler.stream.write(text)
            handler.flush()
        except Exception:  # noqa: BLE001 - as logging.Handler.emit: never break the caller
            handler.handleError(logging.makeLogRecord({"msg": event}))
        finally:
            handler.release()

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


_SECOND: list = [-1, ""]  # the whole second _batch_timestamp formatted last, and its text


def _batch_timestamp(now: float) -> str:
    """A log line's time stamp (UTC, milliseconds) for ``now``: the seconds' text formatted
    once per second (strftime is ~1,500 ns; the ACK lines take one per batch)."""
    second = int(now)
    if second != _SECOND[0]:
        _SECOND[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_SECOND[1]}.{int(now * 1000) % 1000:03d}Z"


_HANDLER: logging.StreamHandler | None = None  # the one configure() installed


def _fast_handler(logger: logging.Logger) -> logging.StreamHandler | None:
    """The configured handler if it is the only place ``logger``'s records go, else None."""
    handler = _HANDLER
    if handler is None or logger.handlers or not logger.propagate:
        return None
    root = logger.parent
    if root is None or root.name != "bootyard" or root.handlers != [handler] or root.propagate:
        return None
    if handler.filters or root.filters or logger.filters or handler.level > logging.INFO:
        return None
    if not isinstance(handler.formatter, (KeyValueFormatter, JsonFormatter)):
        return None
    return handler


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
    global _HANDLER
    _HANDLER = handler
    # Libraries' warnings and errors (aiohttp, asyncio) that reach no handler are written in the
    # same format instead of Python's bare "last resort" text.
    last_resort = logging.StreamHandler(stream or sys.stderr)
    last_resort.setFormatter(handler.formatter)
    last_resort.setLevel(logging.WARNING)
    logging.lastResort = last_resort
