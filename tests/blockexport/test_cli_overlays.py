"""``bootyard blockexport overlays|reset`` against a real redis-server and real overlays; a
reset while another process (the service) has the overlay open is noticed there."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis

from cli.commands import main
from services.blockexport import storage_cow
from services.blockexport.storage_cow import CowDisk
from shared.attachments import Attachments
from shared.store import connect

A, B = "52:54:00:00:00:0a", "52:54:00:00:00:0b"


@pytest.fixture
def cli(redis_url, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("BOOTYARD_REDIS_URL", redis_url)
    monkeypatch.setenv("BOOTYARD_BLOCKEXPORT__OVERLAY_ROOT", str(tmp_path / "ov"))

    def run(*argv):
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err
    return run


@pytest.fixture
def golden(tmp_path, redis_url):
    path = tmp_path / "golden.img"
    path.write_bytes(bytes(range(256)) * 2 * 128)  # 64 KiB
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    raw.hset("bootyard:export:gold", mapping={"kind": "aoe", "backing": str(path), "cow": "yes",
                                              "aoe_shelf": "1", "aoe_slot": "1"})
    raw.hset("bootyard:export:flat", mapping={"kind": "aoe", "backing": str(path),
                                              "aoe_shelf": "1", "aoe_slot": "2"})
    raw.close()
    return path


def attach(redis_url, mac, until):
    async def go():
        client = connect(redis_url)
        try:
            await Attachments(client).touch("gold", mac, until)
        finally:
            await client.aclose()
    asyncio.run(go())


def test_overlays_and_reset(cli, golden, tmp_path, redis_url):
    cow = CowDisk(str(golden), str(tmp_path / "ov"), "gold")
    cow.view(A).write([(0, b"a" * 4096)])
    cow.view(B).write([(8192, b"b" * 8192)])
    cow.close()
    attach(redis_url, B, time.time() + 600)
    attach(redis_url, A, time.time() - 5)  # attached until 5 s ago: not attached now
    code, out, err = cli("blockexport", "overlays", "gold", "--json")
    assert code == 0, err
    listed = {o["mac"]: o for o in json.loads(out)}
    assert listed[A]["blocks"] == 1 and listed[B]["blocks"] == 2
    assert listed[B]["attached"] and not listed[A]["attached"]
    assert listed[A]["allocated"] > 0
    code, out, _ = cli("blockexport", "overlays", "gold")
    assert code == 0 and out.splitlines()[0].split() == ["MAC", "ALLOCATED", "BLOCKS",
                                                         "ATTACHED", "PATH"]
    # an attached host's overlay is kept unless forced
    code, _, err = cli("blockexport", "reset", "gold", B.replace(":", "-"))
    assert code == 1 and f"host {B} is attached" in err and "--force" in err
    code, out, _ = cli("blockexport", "reset", "gold", A)
    assert code == 0 and f"reset gold for {A}" in out
    code, _, err = cli("blockexport", "reset", "gold", A)
    assert code == 1 and "has no overlay" in err
    code, out, _ = cli("blockexport", "reset", "gold", B, "--force")
    assert code == 0
    cow = CowDisk(str(golden), str(tmp_path / "ov"), "gold")
    assert cow.overlays() == []
    assert cow.view(B).read(8192, 8192) == golden.read_bytes()[8192:16384]


def test_overlays_of_a_plain_export_is_refused(cli, golden):
    code, _, err = cli("blockexport", "overlays", "flat")
    assert code == 1 and "not a copy-on-write export" in err


def test_a_reset_is_noticed_by_a_process_that_has_the_overlay_open(golden, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setattr(storage_cow, "RECHECK", 0.0)
    served = CowDisk(str(golden), str(tmp_path / "ov"), "gold")
    served.view(A).write([(0, b"x" * 512)])
    other = CowDisk(str(golden), str(tmp_path / "ov"), "gold")  # the CLI
    assert other.reset(A)
    assert served.view(A).read(0, 512) == golden.read_bytes()[:512]
    served.view(A).write([(512, b"y" * 512)])  # a new overlay, not the deleted one
    assert other.view(A).read(0, 1024) == golden.read_bytes()[:512] + b"y" * 512
