"""Fixtures of the power tests: the ``bootyard`` command in-process, a simulated IPMI BMC
(OpenIPMI's ``ipmi_sim`` on loopback) and a Redfish mock (redfish_mock.py), each in charge of a
QEMU machine (vmctl.Vm); everything is stopped after the test, pass or fail."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.clikit import cli  # noqa: F401 - a pytest fixture
from harness.netlab import stop_process, wait_for

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from vmctl import Vm  # noqa: E402


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Bmc:
    address: str
    user: str
    password: str
    vm: Vm
    proc: subprocess.Popen
    log: Path


LAN_CONF = """name "{name}"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 {port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "{python} {script} {vm} 0x20"
  startnow false
  user 2 true "{user}" "{password}" admin 10 none md2 md5 straight
"""
BMC_EMU = """mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
mc_enable 0x20
"""


@pytest.fixture
def ipmi_bmc(tmp_path):
    """ipmi_sim on a loopback UDP port, its chassis power and boot device acting on a QEMU
    machine (chassis_control.py)."""
    port = free_port(socket.SOCK_DGRAM)
    vm = Vm(tmp_path / "ipmi-vm")
    state = tmp_path / "ipmi-state"
    state.mkdir()
    conf = tmp_path / "lan.conf"
    conf.write_text(LAN_CONF.format(name=f"power{os.getpid()}", port=port,
                                    python=sys.executable, script=HERE / "chassis_control.py",
                                    vm=vm.dir, user="admin", password="bmc-pass-1"))
    emu = tmp_path / "bmc.emu"
    emu.write_text(BMC_EMU)
    log = tmp_path / "ipmi_sim.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["ipmi_sim", "-c", str(conf), "-f", str(emu), "-s", str(state),
                                 "-n"], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)
    bmc = Bmc(f"127.0.0.1:{port}", "admin", "bmc-pass-1", vm, proc, log)

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"ipmi_sim exited: {log.read_text()}")
        env = dict(os.environ, IPMI_PASSWORD=bmc.password)
        return subprocess.run(["ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", str(port),
                               "-U", "admin", "-E", "-N", "1", "-R", "1", "chassis", "power",
                               "status"], env=env, capture_output=True,
                              timeout=30).returncode == 0
    try:
        wait_for(answers, 30, 0.2, "ipmi_sim to answer")
        yield bmc
    finally:
        stop_process(proc)
        vm.stop()


@pytest.fixture
def redfish_bmc(tmp_path):
    """``start(**options) -> Bmc``: the Redfish mock on a loopback port (options: allow,
    action_info, tls=(cert, key)) for a QEMU machine."""
    started: list[Bmc] = []

    def start(allow: str | None = None, action_info: bool = False,
              tls: tuple[Path, Path] | None = None) -> Bmc:
        port = free_port()
        vm = Vm(tmp_path / f"redfish-vm{len(started)}")
        log = tmp_path / f"redfish{len(started)}.log"
        argv = [sys.executable, str(HERE / "redfish_mock.py"), "--port", str(port),
                "--state", str(vm.dir), "--user", "root", "--password", "rf-pass-2"]
        if allow:
            argv += ["--allow", allow]
        if action_info:
            argv.append("--action-info")
        if tls:
            argv += ["--tls", str(tls[0]), str(tls[1])]
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    start_new_session=True)
        scheme = "https" if tls else "http"
        bmc = Bmc(f"{scheme}://127.0.0.1:{port}", "root", "rf-pass-2", vm, proc, log)
        started.append(bmc)

        def listening() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"redfish mock exited: {log.read_text()}")
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) == 0
        wait_for(listening, 30, 0.05, "the Redfish mock to listen")
        return bmc

    yield start
    for bmc in started:
        stop_process(bmc.proc)
        bmc.vm.stop()
