"""logs.info_pairs (the DHCP ACK lines, docs/benchmarks.md, DHCP, ninth round): rows given as
(first, second, tail values) write exactly what info(event, **fields) writes for each, in both
formats, with the tail texts kept from call to call."""

from __future__ import annotations

import io
import json
import logging

from shared import logs

LEAD = ("mac", "ip")
TAIL = ("subnet", "boot_file", "boot", "relay", "reserved")
ROWS = [
    ("52:54:00:12:34:56", "10.0.0.5", ("lab", "undionly.kpxe", "bios", "10.0.0.1", False)),
    ("52:54:00:12:34:57", "10.0.0.6", ("lab", "undionly.kpxe", "bios", "10.0.0.1", False)),
    ("52:54:00:12:34:58", "10.0.0.7", ("lab", "", "", None, True)),
    # lead values that need quoting, or are not text; a tail value that needs quoting
    ("a b", "", ("lab", 'http://x/a "b"', "efi", None, True)),
    (7, None, ("lab", "x=y", "efi", None, True)),
    # an unhashable tail value
    ("52:54:00:12:34:59", "10.0.0.8", ("lab", ["a", "b"], "", None, False)),
]


def _fields(row) -> dict:
    a, b, values = row
    return {"mac": a, "ip": b, **dict(zip(TAIL, values))}


def _without_ts(fmt: str, text: str) -> list:
    return [line.split(" ", 1)[1] if fmt == "kv" else
            {k: v for k, v in json.loads(line).items() if k != "ts"}
            for line in text.splitlines()]


def test_info_pairs_writes_what_info_writes():
    log = logs.get_logger("dhcp")
    try:
        for fmt in ("kv", "json"):
            one, pairs = io.StringIO(), io.StringIO()
            logs.configure(fmt, "info", one)
            for row in ROWS:
                log.info("ack", **_fields(row))
            logs.configure(fmt, "info", pairs)
            log.info_pairs("ack", LEAD, TAIL, ROWS[:3])
            log.info_pairs("ack", LEAD, TAIL, ROWS[3:])  # the kept tails of the first call
            assert len(pairs.getvalue().splitlines()) == len(ROWS)
            assert _without_ts(fmt, pairs.getvalue()) == _without_ts(fmt, one.getvalue())
    finally:
        logs.configure("kv", "warning", io.StringIO())


def test_info_pairs_lines_read_as_before():
    out = io.StringIO()
    logs.configure("kv", "info", out)
    try:
        logs.get_logger("dhcp").info_pairs("ack", LEAD, TAIL, ROWS[:1] + ROWS[2:4])
    finally:
        logs.configure("kv", "warning", io.StringIO())
    assert _without_ts("kv", out.getvalue()) == [
        "level=info logger=bootyard.dhcp event=ack mac=52:54:00:12:34:56 ip=10.0.0.5 subnet=lab "
        "boot_file=undionly.kpxe boot=bios relay=10.0.0.1 reserved=False",
        "level=info logger=bootyard.dhcp event=ack mac=52:54:00:12:34:58 ip=10.0.0.7 subnet=lab "
        'boot_file="" boot="" relay=None reserved=True',
        'level=info logger=bootyard.dhcp event=ack mac="a b" ip="" subnet=lab '
        'boot_file="http://x/a \\"b\\"" boot=efi relay=None reserved=True']


def test_info_pairs_tails_emptied_when_full(monkeypatch):
    monkeypatch.setattr(logs, "PAIRS_KEPT", 2)
    out = io.StringIO()
    logs.configure("kv", "info", out)
    log = logs.get_logger("dhcp")
    try:
        for n in range(6):
            log.info_pairs("ack", LEAD, TAIL, [("m", f"10.0.0.{n}", ("s", str(n), "", None, 0))])
    finally:
        logs.configure("kv", "warning", io.StringIO())
    assert len(logs._TAILS[TAIL]) <= 3
    assert [line.rsplit(" ", 5)[1:] for line in out.getvalue().splitlines()][5] == [
        "subnet=s", "boot_file=5", 'boot=""', "relay=None", "reserved=0"]


def test_info_pairs_without_the_fast_handler_logs_one_record_a_row():
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("bootyard.other").addHandler(handler)
    logs.configure("kv", "info", io.StringIO())
    try:
        logs.get_logger("other").info_pairs("ack", LEAD, TAIL, ROWS)
    finally:
        logging.getLogger("bootyard.other").removeHandler(handler)
        logs.configure("kv", "warning", io.StringIO())
    assert [r.fields for r in records] == [_fields(row) for row in ROWS]
    logs.get_logger("dhcp").info_pairs("ack", LEAD, TAIL, ROWS)  # below the level: nothing
