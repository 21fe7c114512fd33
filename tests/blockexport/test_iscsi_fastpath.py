"""The short ways through the iSCSI target: a SCSI Command taken straight from its BHS
(``Session.read_command``, what ``Connection._frames`` calls for F/R commands without data)
does what the general decode does, and leaves everything unusual to it."""

from __future__ import annotations

import struct

import iscsiwire as w
from test_iscsi_session import READ10, feed, session

from services.blockexport import iscsi_pdu as p

BHS = struct.Struct(">BB2xB3sQIIII16s")


def fields(raw: bytes):
    op, _, _, _, lun, itt, edtl, cmdsn, _, cdb = BHS.unpack_from(raw)
    return op & 0x40, lun, itt, edtl, cmdsn, cdb


def test_read_command_does_what_receive_does():
    general, short = session(), session()
    raws = [w.command(READ10, itt=7 + i, cmdsn=1 + i, edtl=32768, read=True, lun=0)
            for i in range(3)]
    for raw in raws:
        general.receive(p.decode(raw))
        assert short.read_command(*fields(raw))
    a, b = general.drain(), short.drain()
    assert [(t.itt, t.lun, t.cdb, t.read, t.write, t.edtl, t.cmdsn, t.executing)
            for t in a.execute] == [(t.itt, t.lun, t.cdb, t.read, t.write, t.edtl, t.cmdsn,
                                     t.executing) for t in b.execute]
    assert general.expcmdsn == short.expcmdsn == 4
    for s, out in ((general, a), (short, b)):
        s.complete(out.execute[0], 0, bytes(32768))
    assert [bytes(x) for x in general.drain().send] == [bytes(x) for x in short.drain().send]


def test_read_command_leaves_the_unusual_to_receive():
    s = session()
    ahead = w.command(READ10, itt=9, cmdsn=2, edtl=512, read=True)
    assert not s.read_command(*fields(ahead))  # out of order: waits for the gap
    feed(s, w.command(READ10, itt=8, cmdsn=5, edtl=512, read=True))  # ahead, held
    assert not s.read_command(*fields(w.command(READ10, itt=7, cmdsn=1, edtl=512,
                                                read=True)))  # a PDU waits for a gap
    s2 = session()
    immediate = w.command(READ10, itt=7, cmdsn=1, edtl=512, read=True, immediate=True)
    assert not s2.read_command(*fields(immediate))
    feed(s2, w.command(READ10, itt=7, cmdsn=1, edtl=512, read=True))
    assert not s2.read_command(*fields(w.command(READ10, itt=7, cmdsn=2, edtl=512,
                                                 read=True)))  # ITT in use: Rejected there
    assert s2.expcmdsn == 2


def test_data_out_from_the_buffer_is_what_decode_makes():
    from services.blockexport.iscsi_conn import _data_out
    payload = bytes(range(256)) * 16
    raw = w.data_out(payload, itt=5, ttt=9, datasn=3, offset=8192, final=True, lun=1)
    buf = bytearray(b"junk" + raw)
    assert _data_out(buf, 4, len(payload)) == p.decode(raw)


class Collecting:
    """The transport's side of send_mixed: what it buffers, in order."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def get_write_buffer_size(self) -> int:
        return sum(map(len, self.parts))

    def writelines(self, parts) -> None:
        self.parts += [bytes(x) for x in parts]


def test_send_mixed_keeps_the_order_when_the_socket_fills(tmp_path):
    """Headers, file data (sendfile) and more headers arrive in order, whether the socket
    takes everything or the rest goes through the transport when it fills up."""
    import os
    import socket

    from services.blockexport.iscsi_send import send_mixed
    from services.blockexport.iscsi_worker import FileData

    content = os.urandom(1 << 20)
    path = tmp_path / "disk"
    path.write_bytes(content)
    fd = os.open(path, os.O_RDONLY)
    try:
        for sndbuf in (1 << 22, 8192):  # room for all; the socket fills after a few KiB
            a, b = socket.socketpair()
            a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
            a.setblocking(False)
            frames, expected = [], b""
            for i in range(6):
                header = bytes([i]) * 48
                frames += [header, FileData(fd, i * 65536, 65536)]
                expected += header + content[i * 65536:(i + 1) * 65536]
            frames.append(b"tail")
            expected += b"tail"
            transport = Collecting()
            send_mixed(transport, a.fileno(), frames)
            a.close()
            received = b""
            while chunk := b.recv(1 << 20):
                received += chunk
            b.close()
            assert received + b"".join(transport.parts) == expected
            assert bool(transport.parts) == (sndbuf == 8192)
    finally:
        os.close(fd)
