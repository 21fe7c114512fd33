"""One virtual machine of the lab: QEMU (TCG only) on a tap device, and its serial console.

The console is QEMU's stdout (``-nographic``: the serial port, with SeaBIOS mirroring option-ROM
text to it). A reader thread splits it into lines, strips terminal escapes and stamps each line
with the seconds since power-on; :meth:`VM.wait_for` waits, bounded, for a line matching a pattern
(or a ``BOOTYARD-FAIL`` line, or QEMU exiting), and the whole console is kept in ``console.log``.
:meth:`VM.stop` always kills QEMU.

Never ``-enable-kvm``: KVM crashes on the project's machines, and TCG is what CI has.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from lab.assets import OVMF_CODE, OVMF_VARS

_ESCAPES = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\x1bc")


class BootFailed(AssertionError):
    """The guest reported a failure, QEMU exited, or the marker did not come in time."""


@dataclasses.dataclass(frozen=True)
class Line:
    t: float  # seconds since power-on
    text: str


@dataclasses.dataclass(frozen=True)
class Firmware:
    """How the VM starts: legacy BIOS (SeaBIOS + iPXE ROM) or UEFI (OVMF, own network stack)."""

    name: str  # "bios" or "uefi"
    http_boot: bool = False  # UEFI only: switch OVMF's PXE off so it tries HTTP boot (pitfall 7)

    def argv(self, workdir: Path) -> list[str]:
        if self.name == "bios":
            return ["-machine", "pc"]
        vars_copy = workdir / "OVMF_VARS.fd"
        shutil.copyfile(OVMF_VARS, vars_copy)
        argv = ["-machine", "q35",
                "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]
        if self.http_boot:
            argv += ["-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n",
                     "-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n"]
        return argv


BIOS = Firmware("bios")
UEFI = Firmware("uefi")
UEFI_HTTP = Firmware("uefi", http_boot=True)


class VM:
    def __init__(self, namespace, tap: str, mac: str, firmware: Firmware, workdir: Path,
                 memory_mb: int = 512, name: str = "vm", disk: Path | None = None) -> None:
        self.disk = disk  # a raw disk image, booted after the network (bootindex 2)
        self.namespace = namespace  # the lab namespace that holds the tap (the switch)
        self.tap = tap
        self.mac = mac
        self.firmware = firmware
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.memory_mb = memory_mb
        self.name = name
        self.lines: list[Line] = []
        self._cond = threading.Condition()
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self.started_at: float | None = None  # time.time() of power-on
        self.log_path = self.workdir / f"{name}-console.log"
        self.on_line = None  # optional callback(vm, Line), called from the reader thread
        self.extra_args: list[str] = []  # more QEMU arguments (disks, -smbios ...)

    def argv(self) -> list[str]:
        nic = f"virtio-net-pci,netdev=n0,mac={self.mac},bootindex=1"
        if self.firmware.name != "bios":  # BIOS: QEMU's default ROM (ipxe-qemu's efi-virtio.rom)
            nic += ",romfile="  # no iPXE ROM in front of OVMF's own PXE/HTTP (pitfall 6)
        return ["qemu-system-x86_64", "-accel", "tcg", "-m", str(self.memory_mb), "-smp", "1",
                "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
                "-monitor", "none", "-vga", "none",
                *self.firmware.argv(self.workdir),
                "-netdev", f"tap,id=n0,ifname={self.tap},script=no,downscript=no",
                "-device", nic, *self._disk_argv(), *self.extra_args]

    def _disk_argv(self) -> list[str]:
        if self.disk is None:
            return []
        return ["-drive", f"file={self.disk},format=raw,if=none,id=d0,snapshot=on",
                "-device", "ide-hd,drive=d0,bootindex=2"]

    def start(self) -> None:
        argv = self.argv()
        (self.workdir / f"{self.name}-qemu.argv").write_text(" ".join(argv) + "\n")
        self.started_at = time.time()
        self._t0 = time.monotonic()
        self._proc = subprocess.Popen(self.namespace.cmd(*argv), stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        self._reader = threading.Thread(target=self._read, name=f"{self.name}-console",
                                        daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc and self._proc.stdout
        buf = b""
        with open(self.log_path, "w", encoding="utf-8") as log:
            while True:
                chunk = self._proc.stdout.read1(4096)
                if not chunk:
                    break
                buf += chunk
                *complete, buf = re.split(rb"\r?\n", buf)
                for raw in complete:
                    self._add(raw, log)
            if buf:
                self._add(buf, log)
        with self._cond:
            self._cond.notify_all()

    def _add(self, raw: bytes, log) -> None:
        text = _ESCAPES.sub(b"", raw).replace(b"\r", b"").decode("utf-8", "replace").rstrip()
        if not text.strip():
            return
        line = Line(round(time.monotonic() - self._t0, 3), text)
        log.write(f"[{line.t:8.3f}] {text}\n")
        log.flush()
        with self._cond:
            self.lines.append(line)
            self._cond.notify_all()
        if self.on_line is not None:
            try:
                self.on_line(self, line)
            except Exception as exc:  # a broken observer must not stop the console reader
                log.write(f"[on_line failed: {exc!r}]\n")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def find(self, pattern: str) -> Line | None:
        regex = re.compile(pattern)
        with self._cond:
            return next((ln for ln in self.lines if regex.search(ln.text)), None)

    def wait_for(self, pattern: str, timeout: float = 120.0) -> Line:
        """The first console line matching ``pattern``; BootFailed on a guest failure line,
        QEMU exiting first, or ``timeout`` seconds passing."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    if regex.search(line.text):
                        return line
                    if "BOOTYARD-FAIL" in line.text or "No bootable device" in line.text:
                        raise BootFailed(f"{self.name}: guest failed at {line.t:.1f}s: "
                                         f"{line.text}\n{self.tail()}")
                seen = len(self.lines)
                reader_done = self._reader is not None and not self._reader.is_alive()
                if reader_done:
                    raise BootFailed(f"{self.name}: QEMU exited (status {self._proc.poll()}) "
                                     f"before {pattern!r}\n{self.tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BootFailed(f"{self.name}: no {pattern!r} on the console within "
                                     f"{timeout:.0f}s\n{self.tail()}")
                self._cond.wait(min(left, 0.5))

    def tail(self, count: int = 25) -> str:
        with self._cond:
            return "\n".join(f"  [{ln.t:8.3f}] {ln.text}" for ln in self.lines[-count:])

    def wait_exit(self, timeout: float = 15.0) -> int | None:
        try:
            return self._proc.wait(timeout) if self._proc else None
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """Kill QEMU (always safe to call)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)
        if self._reader is not None:
            self._reader.join(5)

    def __enter__(self) -> VM:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
