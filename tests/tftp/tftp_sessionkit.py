"""What the read-session tests share: the peer, a request and a file's bytes."""

from __future__ import annotations

import random

from services.tftp.codec import Opcode, Request

PEER = ("198.18.0.10", 40000)


def request(**options) -> Request:
    return Request(Opcode.RRQ, "f", "octet", tuple((k, str(v)) for k, v in options.items()))


def payload(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)
