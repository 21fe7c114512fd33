"""The ACK lines' batch time stamp (logs.info_each) is the one logging writes for a record of
the same time, its seconds formatted once per second, across second boundaries too."""

from __future__ import annotations

import logging

from shared import logs


def test_batch_timestamp_is_the_records_timestamp():
    for now in (1733488800.0, 1733488800.999, 1733488801.0005, 1733488800.5, 1733488859.25,
                1733488860.0, 1733488799.9994, 1.0, 1733488800.0):
        record = logging.makeLogRecord({"created": now, "msecs": (now - int(now)) * 1000})
        assert logs._batch_timestamp(now) == logs._timestamp(record), now
