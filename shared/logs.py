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
from collections.abc import Iterable, Sequence
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
# the tail texts of KeyValueFormatter.format_pairs: by the tail's field names, then its values
_TAILS: dict[tuple[str, ...], dict[tuple, str]] = {}


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

    @classmethod
    def format_pairs(cls, ts: str, level: str, logger: str, event: str, lead: tuple[str, str],
                     tail: tuple[str, ...], rows: Iterable[tuple[Any, Any, tuple]]) -> str:
        """:meth:`format_rows` of rows given as ``(first, second, tail values)``: the fields
        ``lead`` (two names) with the first two values, then ``tail``'s names with the tail
        values. A row's two lead values are formatted per row (a MAC and an address: unique),
        the tail's text once per distinct tail (a batch's rows repeat it: subnet, boot file,
        relay, ...) and kept from call to call: 0.4 against 1.7 µs a DHCP ACK row
        (docs/benchmarks.md, DHCP, ninth round). A tail field's values must be of one type
        (1, 1.0 and True are equal: they would share a text)."""
        head = cls._head(ts, level, logger, event)
        first, second = lead
        before, between = f"{head} {first}=", f" {second}="
        kept = _TAILS.get(tail)
        if kept is None or len(kept) > PAIRS_KEPT:
            kept = _TAILS[tail] = {}
        search = _NEEDS_QUOTES.search
        lines = []
        for a, b, values in rows:
            try:
                text = kept.get(values)
            except TypeError:  # an unhashable value
                text = cls._pairs_text(tail, values)
            else:
                if text is None:
                    text = kept[values] = cls._pairs_text(tail, values)
            if (a.__class__ is not str or b.__class__ is not str or not a or not b
                    or search(a + b) is not None):  # (both plain text: the common case)
                a, b = _kv_value(a), _kv_value(b)
            lines.append(f"{before}{a}{between}{b}{text}\n")
        return "".join(lines)

    @staticmethod
    def _pairs_text(names: tuple[str, ...], values: tuple) -> str:
        """`` name=value`` of each of ``names``, each with its space in front."""
        return "".join([f" {k}={_kv_value(v)}" for k, v in zip(names, values)])


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

    @classmethod
    def format_pairs(cls, ts: str, level: str, logger: str, event: str, lead: tuple[str, str],
                     tail: tuple[str, ...], rows: Iterable[tuple[Any, Any, tuple]]) -> str:
        return cls.format_rows(ts, level, logger, event, _pair_rows(lead, tail, rows))


def _pair_rows(lead: tuple[str, str], tail: tuple[str, ...],
               rows: Iterable[tuple[Any, Any, tuple]]) -> list[dict[str, Any]]:
    """The rows of :meth:`EventLogger.info_pairs` as the field dicts of ``info(**row)``."""
    first, second = lead
    return [{first: a, second: b, **dict(zip(tail, values))} for a, b, values in rows]


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
        if text:
            self._write(handler, event, text)

    def info_pairs(self, event: str, lead: tuple[str, str], tail: tuple[str, ...],
                   rows: Sequence[tuple[Any, Any, tuple]]) -> None:
        """:meth:`info_each` of rows given as ``(first, second, tail values)``, one line per
        row exactly as ``info(event, **{lead[0]: first, lead[1]: second, **dict(zip(tail,
        tail values))})`` writes it: for per-packet lines whose first two fields are unique
        (MAC, address) and whose other fields mostly repeat from row to row (the DHCP ACK
        lines). Their text is formatted once per distinct tail (formatter ``format_pairs``)."""
        logger = self._logger
        if not rows or not logger.isEnabledFor(logging.INFO):
            return
        handler = _fast_handler(logger)
        if handler is None:
            for row in _pair_rows(lead, tail, rows):
                logger.log(logging.INFO, event, extra={"fields": row})
            return
        ts = _batch_timestamp(time.time())
        formatter: Any = handler.formatter  # (_fast_handler: one of the two formatters here)
        self._write(handler, event,
                    formatter.format_pairs(ts, "info", logger.name, event, lead, tail, rows))

    @staticmethod
    def _write(handler: logging.StreamHandler, event: str, text: str) -> None:
        """``text`` (whole lines) written and flushed at once, as logging.Handler.emit."""
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
