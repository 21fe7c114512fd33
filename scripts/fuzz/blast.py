"""Send mutated copies of valid messages to a running service (run inside a lab namespace).

``python blast.py KIND TARGET SEEDS COUNT SECONDS [RNG_SEED]``
KIND: ``udp`` (TARGET host:port; broadcast allowed), ``tcp`` (host:port: one connection per
input, 8 at a time, the answer read and dropped), ``raw`` (TARGET interface: whole Ethernet
frames on it), ``iscsi`` (host:port: a login, the first seed, then mutated PDUs of the others
on each connection; :func:`iscsi`). SEEDS: a file of hex-encoded valid messages, one per
line. Stops after COUNT
inputs or SECONDS, whichever comes first, and prints ``sent N`` (bounded in count and time).
"""

from __future__ import annotations

import random
import socket
import sys
import threading
import time

INTERESTING = (0, 1, 0x7F, 0x80, 0xFF)


def mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    """One mutation of a seed: byte flips, interesting bytes, cuts, growth, a splice."""
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        if op == 0 and data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            data[rng.randrange(len(data))] = rng.choice(INTERESTING)
        elif op == 2 and data:
            del data[rng.randrange(len(data)):]
        elif op == 3:
            at = rng.randrange(len(data) + 1)
            data[at:at] = rng.randbytes(rng.randint(1, 64))
        elif op == 4 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 5:
            other = rng.choice(seeds)
            cut = rng.randrange(len(other) + 1)
            data = data[:rng.randrange(len(data) + 1)] + bytearray(other[cut:])
        elif op == 6 and len(data) > 2:  # a length-like 16-bit field set to an edge value
            at = rng.randrange(len(data) - 1)
            data[at:at + 2] = rng.choice((b"\x00\x00", b"\xff\xff", b"\x7f\xff", b"\x00\x01"))
    return bytes(data)


def tcp(target: str, rng: random.Random, count: int, deadline: float, stream, wait: float) -> int:
    """8 connections at a time until ``count`` inputs or ``deadline``; ``stream(local_rng,
    room)`` gives (the bytes for one connection, how many inputs they are, at most ``room``);
    the answer is read (for at most ``wait`` s of silence) and dropped."""
    host, port = target.rsplit(":", 1)
    lock = threading.Lock()
    state = {"sent": 0}

    def worker(n: int) -> None:
        local = random.Random(rng.random() + n)
        while time.monotonic() < deadline:
            with lock:
                room = count - state["sent"]
                if room <= 0:
                    return
                data, inputs = stream(local, room)
                state["sent"] += inputs
            try:
                with socket.create_connection((host, int(port)), timeout=2) as conn:
                    conn.settimeout(wait)
                    conn.sendall(data)
                    conn.shutdown(socket.SHUT_WR)
                    while conn.recv(65536):
                        pass
            except OSError:
                pass

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return state["sent"]


def iscsi(target: str, seeds: list[bytes], rng: random.Random, count: int,
          deadline: float) -> int:
    """On each connection the login (seeds[0]) then 1-31 mutated PDUs of seeds[1:], or (one
    in five) a mutated login then mutated PDUs; every PDU one input."""
    login, pdus = seeds[0], seeds[1:]

    def stream(local: random.Random, room: int) -> tuple[bytes, int]:
        many = min(local.randint(1, 32), room)
        first = login if local.random() < 0.8 else mutate(local, [login])
        return first + b"".join(mutate(local, pdus) for _ in range(many - 1)), many

    return tcp(target, rng, count, deadline, stream, wait=0.3)


def main() -> int:
    kind, target, seeds_file, count, seconds = sys.argv[1:6]
    rng = random.Random(int(sys.argv[6]) if len(sys.argv) > 6 else 1)
    seeds = [bytes.fromhex(line) for line in open(seeds_file).read().split()]
    count, deadline = int(count), time.monotonic() + float(seconds)
    sent = 0
    if kind == "udp":
        host, port = target.rsplit(":", 1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setblocking(False)
        while sent < count and (sent % 256 or time.monotonic() < deadline):
            try:
                sock.sendto(mutate(rng, seeds), (host, int(port)))
            except (BlockingIOError, OSError):
                time.sleep(0.001)  # the send buffer is full (or a too-big datagram): go on
            sent += 1
    elif kind == "raw":
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        sock.bind((target, 0))
        while sent < count and (sent % 256 or time.monotonic() < deadline):
            try:
                sock.send(mutate(rng, seeds)[:1514])
            except OSError:
                time.sleep(0.001)
            sent += 1
    elif kind == "iscsi":
        sent = iscsi(target, seeds, rng, count, deadline)
    else:
        sent = tcp(target, rng, count, deadline,
                   lambda local, room: (mutate(local, seeds), 1), wait=0.5)
    print(f"sent {sent}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
