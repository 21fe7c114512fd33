"""A tiny QEMU machine whose power the test BMCs control: started (``-daemonize``, a pid file and
a QMP socket in its state directory), stopped, and asked whether it runs.

No OS boots: SeaBIOS starts and finds nothing to boot, or the machine is held with ``-S`` (its
CPU stopped: powered off as far as the guest is concerned) until QMP ``cont``. The boot order
(``-boot order=n`` for one PXE boot, else ``c``) shows on its command line. Used by the ipmi_sim
chassis control script, the Redfish mock and the Wake-on-LAN waker, which run in other
processes: all state is in files under the directory.

    python vmctl.py STATE start [--paused] [--pxe]   |  stop  |  status
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

QEMU = "qemu-system-x86_64"


class Vm:
    def __init__(self, state: Path | str, mac: str = "52:54:00:aa:00:01",
                 tap: str | None = None, prefix: tuple[str, ...] = ()) -> None:
        """``tap``: a tap device for its NIC (``prefix``: e.g. ``ip netns exec NS``, where the
        tap is); without one it has no NIC."""
        self.dir = Path(state)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.mac = mac
        self.tap = tap
        self.prefix = tuple(prefix)

    @property
    def pidfile(self) -> Path:
        return self.dir / "qemu.pid"

    @property
    def qmp_path(self) -> Path:
        return self.dir / "qmp.sock"

    def pid(self) -> int | None:
        """The QEMU process's pid while it runs (not a zombie), else None."""
        try:
            pid = int(self.pidfile.read_text().strip())
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        if stat.rsplit(")", 1)[1].split()[0] == "Z" or b"qemu" not in cmdline:
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def cmdline(self) -> list[str]:
        pid = self.pid()
        if pid is None:
            return []
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")

    def boot_order(self) -> str | None:
        args = self.cmdline()
        for i, arg in enumerate(args[:-1]):
            if arg == "-boot":
                return args[i + 1].removeprefix("order=")
        return None

    def start(self, *, paused: bool = False, pxe: bool = False) -> int:
        """Power on: start QEMU (returns when it runs in the background)."""
        if self.running():
            return self.pid()
        self.pidfile.unlink(missing_ok=True)
        self.qmp_path.unlink(missing_ok=True)
        nic = ["-nic", "none"] if self.tap is None else [
            "-nic", f"tap,ifname={self.tap},script=no,downscript=no,model=e1000,"
                    f"mac={self.mac}"]
        argv = [*self.prefix, shutil.which(QEMU) or QEMU, "-machine", "pc,accel=tcg",
                "-m", "32", "-nodefaults", "-no-user-config", "-display", "none",
                "-name", self.dir.name, "-boot", f"order={'n' if pxe else 'c'}", *nic,
                "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
                "-pidfile", str(self.pidfile), "-daemonize", *(["-S"] if paused else [])]
        with open(self.dir / "qemu.log", "ab") as log:
            subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=True,
                           timeout=60, start_new_session=True)
        with open(self.dir / "starts.log", "a") as starts:
            starts.write(f"{time.time():.3f} {'pxe' if pxe else 'disk'}\n")
        return self.pid()

    def starts(self) -> list[str]:
        try:
            return (self.dir / "starts.log").read_text().split("\n")[:-1]
        except OSError:
            return []

    def stop(self, timeout: float = 20) -> None:
        """Power off: SIGTERM, then SIGKILL after ``timeout``; returns when it is gone."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.pid() is not None:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 10
            time.sleep(0.05)

    def qmp(self, command: str, timeout: float = 10) -> dict:
        """Run one QMP command; its ``return`` value."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.qmp_path))
            reader = sock.makefile("rb")
            json.loads(reader.readline())  # the greeting
            for cmd in ("qmp_capabilities", command):
                sock.sendall(json.dumps({"execute": cmd}).encode() + b"\n")
                while True:
                    reply = json.loads(reader.readline())
                    if "return" in reply or "error" in reply:
                        break
                if "error" in reply:
                    raise RuntimeError(f"QMP {cmd}: {reply['error']}")
            return reply["return"]

    def status(self) -> str:
        """``off`` (no process), else QEMU's run state: ``prelaunch`` (held with -S),
        ``running``."""
        if not self.running():
            return "off"
        return self.qmp("query-status")["status"]


def main(argv: list[str]) -> int:
    vm = Vm(argv[0])
    if argv[1] == "start":
        vm.start(paused="--paused" in argv, pxe="--pxe" in argv)
    elif argv[1] == "stop":
        vm.stop()
    print(vm.status())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
