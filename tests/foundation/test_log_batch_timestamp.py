"""A log line's time stamp (logs._timestamp for a record, logs._batch_timestamp for the ACK
lines' batch) is the record's UTC time to the millisecond, truncated as logging's ``msecs``
is, its seconds' text formatted once per second: right across second and minute boundaries,
and again after a time from another second."""

from __future__ import annotations

import datetime
import logging

from shared import logs


def _expected(now: float) -> str:
    """The same stamp written independently: datetime, and the millisecond as logging records
    it (``LogRecord.msecs``, truncated)."""
    whole = datetime.datetime.fromtimestamp(int(now), datetime.UTC)
    return whole.strftime("%Y-%m-%dT%H:%M:%S") + f".{int((now - int(now)) * 1000):03d}Z"


TIMES = (1733488800.0, 1733488800.999, 1733488801.0005, 1733488800.5, 1733488859.25,
         1733488860.0, 1733488799.9994, 1.0, 1733488800.0)


def test_batch_timestamp_is_utc_to_the_millisecond():
    assert logs._batch_timestamp(1733488859.25) == "2024-12-06T12:40:59.250Z"
    assert logs._batch_timestamp(1.0) == "1970-01-01T00:00:01.000Z"
    for now in TIMES:
        assert logs._batch_timestamp(now) == _expected(now), now


def test_record_timestamp_is_the_same_stamp():
    for now in TIMES:
        record = logging.makeLogRecord({"created": now, "msecs": (now - int(now)) * 1000})
        assert logs._timestamp(record) == _expected(now), now
