"""Wake-on-LAN in the network lab: a QEMU machine held powered off (``-S``) on the lab segment
until a waker on the segment sees its magic packet; `bootyard power on`, run in the server's
namespace, sends it on the deploy interface (dhcp.interfaces, or power.wol_interfaces) and on no
other; what Wake-on-LAN cannot do is refused with a clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from vmctl import Vm

from harness.netlab import wait_for
from harness.redis_server import RedisServer

pytestmark = [pytest.mark.lab, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
VM_MAC = "52:54:00:5e:77:01"


def bootyard(ns, url: str, *argv: str, **env: str) -> subprocess.CompletedProcess:
    environ = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "BOOTYARD_REDIS_URL": url,
               **env}
    return ns.run("env", *[f"{k}={v}" for k, v in environ.items()], sys.executable, "-m",
                  "cli", *argv, check=False, timeout=120, cwd=REPO)


@pytest.fixture
def wol_lab(lab, tmp_path):
    seg = lab.segment(clients=1)
    server = RedisServer(tmp_path / "redis", unix_socket=True)
    server.start()
    vm = Vm(tmp_path / "wol-vm", mac=VM_MAC, tap=seg.add_tap(), prefix=tuple(seg.switch.cmd()))
    try:
        yield seg, server.url, vm
    finally:
        vm.stop()
        server.kill()


def test_magic_packet_on_the_deploy_interface_wakes_the_vm(wol_lab):
    seg, url, vm = wol_lab
    vm.start(paused=True)
    assert vm.status() == "prelaunch"  # QEMU holds it powered off
    client = redis.Redis.from_url(url)
    client.hset(f"bootyard:host:{VM_MAC}", mapping={"power": "wol", "boot_mode": "local"})
    client.close()
    waker = seg.clients[0].popen(sys.executable, str(HERE / "wol_waker.py"), "eth0", VM_MAC,
                                 str(vm.dir), "120", stdout=subprocess.PIPE, text=True)
    assert waker.stdout.readline().strip() == "listening"

    # WoL cannot power off or read the state: said clearly, nothing sent
    done = bootyard(seg.server, url, "power", "off", VM_MAC, BOOTYARD_DHCP__INTERFACES="eth0")
    assert done.returncode == 1 and "Wake-on-LAN cannot power off" in done.stdout, done
    # an interface that is not a deploy interface is refused
    done = bootyard(seg.server, url, "power", "on", VM_MAC,
                    BOOTYARD_POWER__WOL_INTERFACES="eth7")
    assert done.returncode == 1, done
    assert "no magic packet" not in done.stdout
    assert vm.status() == "prelaunch"

    # the deploy interface from dhcp.interfaces (the DHCP service's setting)
    done = bootyard(seg.server, url, "power", "on", VM_MAC, BOOTYARD_DHCP__INTERFACES="eth0")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split()[:4] == [VM_MAC, "wol", "on", "ok"], done.stdout
    assert f"magic packet for {VM_MAC} sent on eth0 (UDP port 9)" in done.stdout
    assert waker.wait(60) == 0
    assert waker.stdout.readline().startswith("woke ")
    wait_for(lambda: vm.status() == "running", 30, what="the VM to run after the magic packet")

    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        results = [e for _i, e in client.xrange(f"bootyard:events:{VM_MAC}")
                   if e["kind"] == "power.result"]
        assert [(e["action"], e["outcome"]) for e in results] == [("off", "unsupported"),
                                                                   ("on", "failed"),
                                                                   ("on", "ok")]
        assert "eth7" in results[1]["detail"] and results[1]["reason"] == "interface_refused"
    finally:
        client.close()


def test_host_interface_must_be_a_deploy_interface(wol_lab):
    seg, url, _vm = wol_lab
    client = redis.Redis.from_url(url)
    client.hset(f"bootyard:host:{VM_MAC}", mapping={"power": "wol", "power_interface": "eth1"})
    client.close()
    done = bootyard(seg.server, url, "power", "on", VM_MAC, BOOTYARD_POWER__WOL_INTERFACES="eth0")
    assert done.returncode == 1
    assert "Wake-on-LAN refused on interface 'eth1' (power_interface): magic packets go only " \
           "on the deploy interfaces eth0" in done.stdout, done.stdout
    done = bootyard(seg.server, url, "power", "on", VM_MAC)
    assert done.returncode == 1
    assert "no deploy interface is configured" in done.stdout, done.stdout
