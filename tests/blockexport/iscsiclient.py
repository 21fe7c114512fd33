"""A small blocking iSCSI initiator for the tests (independent of the target's code: PDUs from
iscsiwire.py): login (optionally CHAP), READ(10)/WRITE(10) with R2T, raw PDUs for bad input.
And the service on loopback (:class:`LoopbackService`)."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import struct
import subprocess
import sys
import urllib.request
from pathlib import Path

import iscsiwire as w

from harness.netlab import stop_process, wait_for

REPO = Path(__file__).resolve().parents[2]


class LoginFailed(Exception):
    def __init__(self, status: tuple[int, int]) -> None:
        super().__init__(f"login failed with status {status}")
        self.status = status


class Client:
    def __init__(self, host: str, port: int, timeout: float = 10) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.cmdsn = 1
        self.itt = 1
        self.buf = b""
        self.max_send = 8192
        self.lun = 0

    def close(self) -> None:
        self.sock.close()

    def send(self, raw: bytes) -> None:
        self.sock.sendall(raw)

    def recv_pdu(self) -> tuple[bytes, bytes]:
        while True:
            if len(self.buf) >= 48:
                dsl = int.from_bytes(self.buf[5:8], "big")
                total = 48 + self.buf[4] * 4 + -(-dsl // 4) * 4
                if len(self.buf) >= total:
                    bhs, data = self.buf[:48], self.buf[48 + self.buf[4] * 4:][:dsl]
                    self.buf = self.buf[total:]
                    return bhs, data
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("the target closed the connection")
            self.buf += chunk

    def recv_op(self, op: int) -> tuple[bytes, bytes]:
        """The next PDU of opcode ``op`` (NOP-In pings of the target are skipped)."""
        while True:
            bhs, data = self.recv_pdu()
            if bhs[0] & 0x3F == op:
                return bhs, data
            if bhs[0] & 0x3F != 0x20:
                raise AssertionError(f"expected opcode {op:#x}, got {bhs[0] & 0x3F:#x}")

    def login(self, target: str | None, initiator: str, user: str = "", secret: str = "",
              discovery: bool = False) -> dict[str, str]:
        keys = [("InitiatorName", initiator)]
        keys += [("SessionType", "Discovery")] if discovery else [("TargetName", target),
                                                                   ("SessionType", "Normal")]
        keys.append(("AuthMethod", "CHAP,None" if user else "None"))
        answers = self._login_step(keys, csg=0, nsg=1, transit=not user)
        if user:
            got = self._login_step([("CHAP_A", "5")], csg=0, nsg=1, transit=False)
            ident, challenge = int(got["CHAP_I"]), bytes.fromhex(got["CHAP_C"][2:])
            response = hashlib.md5(bytes([ident]) + secret.encode() + challenge).hexdigest()
            answers.update(self._login_step([("CHAP_N", user), ("CHAP_R", "0x" + response)],
                                            csg=0, nsg=1, transit=True))
        answers.update(self._login_step(
            [("HeaderDigest", "None"), ("DataDigest", "None"), ("InitialR2T", "Yes"),
             ("ImmediateData", "No"), ("MaxRecvDataSegmentLength", "65536"),
             ("MaxBurstLength", "262144"), ("FirstBurstLength", "65536"),
             ("ErrorRecoveryLevel", "0")], csg=1, nsg=3, transit=True))
        self.max_send = int(answers.get("MaxRecvDataSegmentLength", 8192))
        return answers

    def _login_step(self, keys, csg, nsg, transit) -> dict[str, str]:
        self.send(w.login(keys, csg=csg, nsg=nsg, transit=transit, cmdsn=self.cmdsn))
        bhs, data = self.recv_op(0x23)
        f = w.fields(bhs)
        if f["status_class"]:
            raise LoginFailed((f["status_class"], f["status_detail"]))
        return w.parse_text(data)

    def text(self, pairs) -> list[tuple[str, str]]:
        self.itt += 1
        self.send(w.text_request(pairs, itt=self.itt, cmdsn=self.cmdsn))
        _, data = self.recv_op(0x24)
        return w.parse_text_list(data)

    def scsi(self, cdb: bytes, *, read: int = 0, data: bytes = b"") -> tuple[int, bytes, bytes]:
        """(status, data in, sense) of one command; writes answer R2Ts."""
        self.itt += 1
        itt, cmdsn = self.itt, self.cmdsn
        self.cmdsn += 1
        self.send(w.command(cdb, itt=itt, cmdsn=cmdsn, edtl=read or len(data),
                            read=bool(read), write=bool(data), lun=self.lun))
        got = bytearray()
        while True:
            bhs, seg = self.recv_pdu()
            op = bhs[0] & 0x3F
            f = w.fields(bhs)
            if op == 0x31:  # R2T
                offset, length = f["f40"], f["f44"]
                pos, datasn = offset, 0
                while pos < offset + length:
                    n = min(self.max_send, offset + length - pos)
                    self.send(w.data_out(data[pos:pos + n], itt=itt, ttt=f["ttt"],
                                         datasn=datasn, offset=pos, lun=self.lun,
                                         final=pos + n >= offset + length))
                    pos += n
                    datasn += 1
            elif op == 0x25:
                got[f["f40"]:f["f40"] + len(seg)] = seg
                if f["flags"] & 0x01:
                    return f["b3"], bytes(got), b""
            elif op == 0x21:
                return f["b3"], bytes(got), seg[2:]
            elif op == 0x20:
                continue
            else:
                raise AssertionError(f"unexpected opcode {op:#x}")

    def read10(self, lba: int, blocks: int) -> bytes:
        status, data, sense = self.scsi(struct.pack(">BBIBHB", 0x28, 0, lba, 0, blocks, 0),
                                        read=blocks * 512)
        assert status == 0, sense.hex()
        return data

    def write10(self, lba: int, data: bytes) -> None:
        status, _, sense = self.scsi(struct.pack(">BBIBHB", 0x2A, 0, lba, 0, len(data) // 512,
                                                 0), data=data)
        assert status == 0, sense.hex()

    def logout(self) -> None:
        self.itt += 1
        self.send(w.logout(itt=self.itt, cmdsn=self.cmdsn))
        self.recv_op(0x26)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopbackService:
    """``python -m services.blockexport`` with iSCSI only, on 127.0.0.1 (or in namespace
    ``ns`` when given), its log in a file."""

    def __init__(self, redis_url: str, logfile: Path, ns=None, **settings) -> None:
        self.logfile = logfile
        self.port = int(settings.pop("iscsi_port", 0)) or free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTYARD_")}
        env.update({"BOOTYARD_REDIS_URL": redis_url, "PYTHONPATH": str(REPO)})
        values = {"iscsi_port": self.port, "iscsi_host": "127.0.0.1" if ns is None else "",
                  "metrics_host": "127.0.0.1", "metrics_port": 0, "interface": "", **settings}
        for key, value in values.items():
            env[f"BOOTYARD_BLOCKEXPORT__{key.upper()}"] = str(value)
        self.handle = logfile.open("a")
        self.start_mark = len(self.log()) if logfile.exists() else 0
        argv = [sys.executable, "-m", "services.blockexport"]
        if ns is None:
            self.proc = subprocess.Popen(argv, stdout=self.handle, stderr=subprocess.STDOUT,
                                         env=env, cwd=str(REPO))
        else:
            self.proc = ns.popen(*argv, stdout=self.handle, stderr=subprocess.STDOUT, env=env,
                                 cwd=str(REPO))
        wait_for(self._serving, 30, what="blockexport service to start")
        found = re.findall(r"event=listening .*metrics_port=(\d+)", self.log()[self.start_mark:])
        self.metrics_port = int(found[-1])

    def _serving(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"blockexport exited: {self.log()}")
        return "event=serving" in self.log()[self.start_mark:]

    def log(self) -> str:
        return self.logfile.read_text()

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.read().decode()

    def metric(self, name: str, **labels) -> float:
        want = {k: str(v) for k, v in labels.items()}
        for line in self.metrics().splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, rest = head.partition("{")
            if metric != name:
                continue
            found = dict(re.findall(r'(\w+)="([^"]*)"', rest))
            if found == want:
                return float(value)
        return 0.0

    def stop(self) -> None:
        stop_process(self.proc)
        self.handle.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self.handle.close()
