"""What the AoE fast paths (aoe_direct.DirectReads, aoe_writes.DirectWrites) use of the
server, for their tests: the export at shelf 7 slot 3, the replies sent and the I/O queued."""

from __future__ import annotations

from services.blockexport.server import Pending, Served


class Sent:
    """A transport that keeps every reply frame."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send_parts(self, head: bytes, data) -> bool:
        self.frames.append(head + bytes(data))
        return True


class Server:
    def __init__(self, served: Served) -> None:
        self.by_address = {(7, 3): served}
        self.transport = Sent()
        self.touched: list[bytes] = []
        self.queued: list[Pending] = []

    def _touch(self, served, mac) -> None:
        self.touched.append(mac)

    def queue_io(self, served, outcome, received, src, wire=None) -> None:
        self.queued.append(Pending(outcome, received, src, wire))
