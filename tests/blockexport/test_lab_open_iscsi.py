"""Linux open-iscsi against bootyard's iSCSI target: Debian's kernel (iscsi_tcp) in a QEMU (TCG)
guest with the host's iscsid, iscsiadm and e2fsprogs in its initramfs, on a lab segment (the
host kernel has no iSCSI initiator, and none would be allowed on the host's interfaces).

The guest discovers the target (SendTargets), logs in with CHAP as the host bootyard knows
(its rendered initiator name, from its reserved address: the session gets the host's
copy-on-write overlay), makes an ext4 file system, writes a file, syncs, logs out. The test
then kills the service with ``kill -9`` and starts it again; the guest logs in again, ``e2fsck
-fn`` finds the file system clean and the file reads back intact. The golden image is never
written.
"""

from __future__ import annotations

import hashlib
import re

import pytest
from iscsiclient import LoopbackService

from harness.netlab import wait_for
from lab import aoeguest

pytestmark = [pytest.mark.lab, pytest.mark.slow]
DISK = 48 << 20
PATTERN = hashlib.shake_256(b"bootyard iscsi pattern").digest(3 << 20)
GUEST_MAC = "52:54:00:15:c5:01"
IQN = "iqn.2026-11.org.example:os1"
SECRET = "guest-chap-secret-1"
MODULES = ("virtio_pci", "virtio_net", "crc32c_generic", "iscsi_tcp", "sd_mod", "ext4")
BINARIES = ("/usr/sbin/iscsid", "/usr/sbin/iscsiadm", "/usr/sbin/mke2fs", "/usr/sbin/e2fsck")
INIT = r"""#!/bin/sh
export PATH=/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /run/lock/iscsi /var/lock /tmp /mnt /etc/iscsi/nodes /etc/iscsi/send_targets
. /etc/aoe-functions
load_modules
ip link set lo up
ip link set eth0 up
ip addr add "$(cmdline_value iscsitest.ip)/24" dev eth0
SERVER=$(cmdline_value iscsitest.server)
IQN=$(cmdline_value iscsitest.iqn)
iscsid -f -c /etc/iscsi/iscsid.conf -i /etc/iscsi/initiatorname.iscsi -n &
sleep 1
disk() {  # the SCSI disk of the session, once the kernel has it
    n=0
    while :; do
        for d in /sys/class/scsi_disk/*/device/block/*; do
            [ -e "$d" ] && { echo "${d##*/}"; return; }
        done
        n=$((n + 1)); [ $n -gt 300 ] && fail "no SCSI disk"
        sleep 0.2
    done
}
found=$(iscsiadm -m discovery -t sendtargets -p "$SERVER" 2>&1) || fail "discovery: $found"
echo "ISCSITEST discovery: $found"
iscsiadm -m node -T "$IQN" -p "$SERVER" --login || fail "login"
d=$(disk)
echo "ISCSITEST disk $d size=$(cat /sys/block/$d/size)"
/usr/sbin/mke2fs -t ext4 -F -q "/dev/$d" || fail "mke2fs"
mount -t ext4 "/dev/$d" /mnt || fail "mount"
dd if=/pattern of=/mnt/data bs=65536 2>/dev/null || fail "write"
sync
written=$(md5sum /mnt/data | cut -d' ' -f1)
umount /mnt || fail "umount"
iscsiadm -m node -T "$IQN" -p "$SERVER" --logout || fail "logout"
echo "ISCSITEST-PHASE1 md5=$written"
n=0
until iscsiadm -m discovery -t sendtargets -p "$SERVER" 2>/dev/null | grep -q restarted; do
    n=$((n + 1)); [ $n -gt 600 ] && fail "the service did not come back"
    sleep 1
done
iscsiadm -m node -T "$IQN" -p "$SERVER" --login || fail "login again"
d=$(disk)
/usr/sbin/e2fsck -fn "/dev/$d" > /tmp/fsck.txt 2>&1
rc=$?
cat /tmp/fsck.txt
mount -t ext4 -o ro "/dev/$d" /mnt || fail "mount again"
again=$(md5sum /mnt/data | cut -d' ' -f1)
umount /mnt
iscsiadm -m node -T "$IQN" -p "$SERVER" --logout
echo "ISCSITEST-RESULT fsck=$rc md5=$again"
poweroff -f
sleep 60
"""
ISCSID_CONF = f"""node.startup = manual
node.session.auth.authmethod = CHAP
node.session.auth.username = guest1
node.session.auth.password = {SECRET}
node.session.timeo.replacement_timeout = 120
node.conn[0].timeo.login_timeout = 15
node.conn[0].timeo.noop_out_interval = 5
node.conn[0].timeo.noop_out_timeout = 5
node.session.iscsi.InitialR2T = No
node.session.iscsi.ImmediateData = Yes
node.session.iscsi.FirstBurstLength = 262144
node.session.iscsi.MaxBurstLength = 16776192
node.conn[0].iscsi.MaxRecvDataSegmentLength = 262144
node.conn[0].iscsi.HeaderDigest = CRC32C,None
"""


def test_open_iscsi_mkfs_kill_restart_fsck(lab, unix_redis, tmp_path):
    seg = lab.segment()
    tap = seg.add_tap()
    guest_ip = seg.address(50)
    golden = tmp_path / "golden.img"
    with golden.open("wb") as f:
        f.truncate(DISK)
    r = unix_redis.client()
    r.hset("bootyard:export:os1", mapping={"kind": "iscsi", "backing": str(golden), "cow": "yes",
                                            "iqn": IQN, "chap_user": "guest1",
                                            "chap_secret": SECRET, "unmatched": "refuse"})
    r.hset(f"bootyard:host:{GUEST_MAC}", mapping={"hostname": "guest1", "ip": guest_ip})
    files = {"pattern": PATTERN, "etc/iscsi/iscsid.conf": ISCSID_CONF.encode(),
             "etc/iscsi/initiatorname.iscsi":
                 b"InitiatorName=iqn.2026-11.org.bootyard:guest1\n",
             # iscsid asks who is on its control socket (getpwuid): root must exist
             "etc/passwd": b"root:x:0:0:root:/:/bin/sh\n", "etc/group": b"root:x:0:\n",
             "etc/nsswitch.conf": b"passwd: files\ngroup: files\n"}
    kernel, initrd = aoeguest.build(tmp_path / "guest", INIT, modules=MODULES, files=files,
                                    binaries=BINARIES)
    settings = {"overlay_root": str(tmp_path / "overlays"), "iscsi_port": "3260"}
    log = tmp_path / "be.log"
    service = LoopbackService(unix_redis.url, log, ns=seg.server, **settings)
    append = (f"console=ttyS0 quiet panic=-1 iscsitest.ip={guest_ip} "
              f"iscsitest.server={seg.address(1)} iscsitest.iqn={IQN}")
    vm = aoeguest.KernelVM(seg.switch, tap, GUEST_MAC, tmp_path / "vm", kernel=kernel,
                           initrd=initrd, append=append, memory_mb=384, name="iscsi")
    try:
        with vm:
            vm.start()
            vm.wait_for(r"ISCSITEST-PHASE1", timeout=900)
            service.kill()
            service = LoopbackService(unix_redis.url, log, ns=seg.server, **settings)
            r.hset("bootyard:export:restarted", mapping={
                "kind": "iscsi", "backing": str(golden), "readonly": "yes",
                "iqn": "iqn.2026-11.org.example:restarted"})
            vm.wait_for(r"ISCSITEST-RESULT", timeout=900)
    finally:
        if service.proc.poll() is None:
            service.stop()
    text = "\n".join(line.text for line in vm.lines)
    assert f"{seg.address(1)}:3260,1 {IQN}" in text, vm.tail()
    phase1 = re.search(r"ISCSITEST-PHASE1 md5=(\w+)", text).group(1)
    result = re.search(r"ISCSITEST-RESULT fsck=(\d+) md5=(\w+)", text)
    assert phase1 == hashlib.md5(PATTERN).hexdigest()  # noqa: S324 - what the guest prints
    assert result.group(1) == "0", vm.tail()
    assert result.group(2) == phase1
    assert golden.read_bytes() == bytes(DISK)  # the golden image was never written
    overlay = tmp_path / "overlays" / "os1" / GUEST_MAC.replace(":", "-") / "data"
    assert overlay.exists()
    logins = re.findall(r"event=iscsi_login export=os1 initiator=(\S+) address=(\S+) "
                        r"mac=(\S+) digests=(\S+)", log.read_text())
    assert len(logins) == 2
    assert all(m == GUEST_MAC and a == guest_ip for _, a, m, _ in logins), logins
    assert logins[0][3] == "True/False"  # header digest negotiated (CRC32C), data digest not
    wait_for(lambda: any(e[1].get("kind") == "blockexport.iscsi_logout"
                         for e in r.xrange(f"bootyard:events:{GUEST_MAC}")), 10,
             what="the guest's logout in its timeline")
