"""A real initiator: Debian's kernel with Linux's ``aoe`` driver in a QEMU (TCG) guest reads and
writes bootyard's AoE exports (a plain one and a copy-on-write one) and one served by Debian's
vblade on the same segment, as a check of the test itself.

The host kernel's ``aoe`` module is not used: it serves the root network namespace only (its
discovery walks ``init_net``), so loading it would touch the host's interfaces. The guest is a
kernel + busybox initramfs booted with ``-kernel``; its ``/init`` loads ``aoe`` on eth0, waits
for each ``e<shelf>.<slot>``, prints the md5 of the whole device, writes a 1 MiB pattern at
1 MiB with ``conv=fsync``, drops its caches and prints the md5 again. The test compares both with
the backing stores: what the guest read is what is on disk, what it wrote is on disk (for the
copy-on-write export: in the guest's overlay, the golden image unchanged).
"""

from __future__ import annotations

import hashlib
import re
import subprocess

import pytest

from harness.netlab import wait_for
from lab import aoeguest
from services.blockexport.storage_cow import CowDisk

pytestmark = [pytest.mark.lab, pytest.mark.slow]
DISK = 8 << 20
PATTERN = hashlib.shake_256(b"bootyard aoe pattern").digest(1 << 20)
GUEST_MAC = "52:54:00:ae:00:01"
INIT = r"""#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
. /etc/aoe-functions
TARGETS=$(cmdline_value aoetest.targets | tr , ' ')
load_modules
for t in $TARGETS; do
    wait_aoe "$t"
    echo "aoetest: found $t sectors=$(cat /sys/block/etherd!$t/size)"
done
for t in $TARGETS; do
    before=$(md5sum /dev/etherd/$t | cut -d' ' -f1)
    dd if=/pattern of=/dev/etherd/$t bs=65536 seek=16 conv=fsync 2>/dev/null || fail "dd $t"
    echo 3 > /proc/sys/vm/drop_caches
    after=$(md5sum /dev/etherd/$t | cut -d' ' -f1)
    echo "AOETEST-RESULT $t before=$before after=$after"
done
echo "AOETEST-DONE"
poweroff -f
sleep 60
"""


def expected_after(original: bytes) -> bytes:
    data = bytearray(original)
    data[1 << 20:2 << 20] = PATTERN
    return bytes(data)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - what the guest prints


def test_linux_aoe_driver_reads_and_writes(lab, unix_redis, blockexport_process, tmp_path):
    kernel, initrd = aoeguest.build(tmp_path / "guest", INIT, files={"pattern": PATTERN})
    seg = lab.segment()
    tap = seg.add_tap()
    plain, golden, theirs = (tmp_path / n for n in ("plain.img", "golden.img", "vblade.img"))
    originals = {}
    for i, path in enumerate((plain, golden, theirs)):
        originals[path] = hashlib.shake_256(f"disk{i}".encode()).digest(DISK)
        path.write_bytes(originals[path])
    r = unix_redis.client()
    r.hset("bootyard:export:plain", mapping={"kind": "aoe", "backing": str(plain),
                                              "aoe_shelf": "7", "aoe_slot": "3"})
    r.hset("bootyard:export:golden", mapping={"kind": "aoe", "backing": str(golden), "cow": "yes",
                                               "aoe_shelf": "7", "aoe_slot": "4"})
    service = blockexport_process(seg.server, unix_redis.url, tmp_path / "be.log",
                                  overlay_root=str(tmp_path / "overlays"))
    vblade = seg.server.popen("vblade", "9", "9", "eth0", str(theirs),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    vm = aoeguest.KernelVM(seg.switch, tap, GUEST_MAC, tmp_path / "vm", kernel=kernel,
                           initrd=initrd,
                           append="console=ttyS0 quiet panic=-1 aoetest.targets=e7.3,e7.4,e9.9")
    with vm:
        vm.start()
        vm.wait_for(r"AOETEST-DONE", timeout=300)
    assert vblade.poll() is None
    results = {m.group(1): (m.group(2), m.group(3)) for m in
               (re.search(r"AOETEST-RESULT (\S+) before=(\w+) after=(\w+)", ln.text)
                for ln in vm.lines) if m}
    assert set(results) == {"e7.3", "e7.4", "e9.9"}, vm.tail()
    # the harness, against vblade: what the guest read is the file, its write is in the file
    assert results["e9.9"] == (md5(originals[theirs]), md5(expected_after(originals[theirs])))
    assert theirs.read_bytes() == expected_after(originals[theirs])
    # ours, plain: the same
    assert results["e7.3"] == (md5(originals[plain]), md5(expected_after(originals[plain])))
    assert plain.read_bytes() == expected_after(originals[plain])
    # ours, copy-on-write: the guest's overlay holds its write, the golden image is untouched
    assert results["e7.4"] == (md5(originals[golden]), md5(expected_after(originals[golden])))
    assert golden.read_bytes() == originals[golden]
    cow = CowDisk(str(golden), str(tmp_path / "overlays"), "golden")
    try:
        assert cow.view(GUEST_MAC).read(0, DISK) == expected_after(originals[golden])
        (info,) = cow.overlays()
        assert info.mac == GUEST_MAC and info.blocks == 256
    finally:
        cow.close()
    wait_for(lambda: "event=attach export=golden" in service.log(), 5, what="attach logged")
