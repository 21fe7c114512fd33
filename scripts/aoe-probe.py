"""Read sectors from an AoE target: a small diagnostic initiator (raw socket; needs root).

    python scripts/aoe-probe.py --interface eth0 --target 7.3 [--lba 0] [--count 2] [--timeout 10]

Broadcasts Query Config until e<shelf>.<slot> answers (up to --timeout seconds), prints its
config (buffer count, sectors per frame, firmware), IDENTIFY's size, then reads --count sectors
from --lba and prints their md5. Exit status 1 with a reason if the target does not answer or
answers with an error. Used by scripts/compose_test.sh and by hand to check an export.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import select
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from services.blockexport import codec  # noqa: E402
from services.blockexport.codec import Ata, Command, Config, Frame, Header  # noqa: E402


def exchange(sock, mac: bytes, frame: Frame, timeout: float) -> Frame | None:
    sock.send(codec.encode(frame))
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            break
        try:
            reply = codec.decode(sock.recv(10000))
        except codec.DecodeError:
            continue
        h = reply.header
        if h.is_response and h.tag == frame.header.tag and h.dst == mac:
            return reply
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interface", required=True)
    parser.add_argument("--target", required=True, help="SHELF.SLOT, e.g. 7.3")
    parser.add_argument("--lba", type=int, default=0)
    parser.add_argument("--count", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    shelf, slot = (int(x) for x in args.target.split("."))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(codec.ETHERTYPE))
    sock.bind((args.interface, codec.ETHERTYPE))
    mac = bytes(sock.getsockname()[4])
    tag = 0x0A0E0000
    deadline = time.monotonic() + args.timeout
    config = None
    while config is None and time.monotonic() < deadline:
        tag += 1
        config = exchange(sock, mac, Frame(Header(codec.BROADCAST_MAC, mac, shelf, slot,
                                                  Command.QUERY_CONFIG, tag), Config()), 1.0)
    if config is None:
        print(f"aoe-probe: e{args.target} did not answer Query Config on {args.interface} "
              f"within {args.timeout:.0f}s", file=sys.stderr)
        return 1
    target = config.header.src
    print(f"e{args.target} at {codec.format_mac(target)}: buffer_count="
          f"{config.body.buffer_count} sectors_per_frame={config.body.sectors} "
          f"firmware={config.body.firmware:#06x}")
    data = bytearray()
    lba = args.lba
    per = max(1, min(config.body.sectors, 255))
    requests = [(0xEC, 0, 1)] + [(0x24, lba + i, min(per, args.count - i))
                                 for i in range(0, args.count, per)]
    for command, at, count in requests:
        tag += 1
        reply = exchange(sock, mac, Frame(Header(target, mac, shelf, slot, Command.ATA, tag),
                                          Ata(aflags=0x40, count=count, command=command, lba=at)),
                         args.timeout)
        if reply is None or reply.header.error or reply.body.command & 0x01:
            why = "no answer" if reply is None else (
                f"AoE error {reply.header.error}" if reply.header.error else
                f"ATA status {reply.body.command:#x} error {reply.body.feature:#x}")
            print(f"aoe-probe: ATA {command:#x} at {at}: {why}", file=sys.stderr)
            return 1
        if command == 0xEC:
            words = reply.body.data
            sectors = int.from_bytes(words[200:208], "little")
            print(f"size {sectors} sectors ({sectors * 512} bytes)")
        else:
            data += reply.body.data[:count * 512]
    print(f"md5 {hashlib.md5(bytes(data)).hexdigest()} lba={args.lba} count={args.count}")  # noqa: S324
    return 0


if __name__ == "__main__":
    sys.exit(main())
