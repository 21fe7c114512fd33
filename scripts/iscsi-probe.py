"""Read blocks from an iSCSI target: a small diagnostic initiator (TCP, no root needed).

    python scripts/iscsi-probe.py --portal 10.0.0.1[:3260] --target IQN [--lun 0] [--lba 0]
        [--count 8] [--initiator IQN] [--user NAME --secret-file FILE] [--timeout 20]

Logs in (CHAP with --user and the secret read from --secret-file, never from the command
line), prints the size READ CAPACITY (10) reports, reads --count 512-byte blocks from --lba with
READ (10) and prints their md5, logs out. Exit status 1 with a reason if the login or a command
fails. Used by scripts/compose_test.sh and by hand to check an export.
"""

from __future__ import annotations

import argparse
import hashlib
import struct
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "blockexport")]

from iscsiclient import Client, LoginFailed  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--portal", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--lun", type=int, default=0)
    parser.add_argument("--lba", type=int, default=0)
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--initiator", default="iqn.2026-11.org.bootyard:iscsi-probe")
    parser.add_argument("--user", default="")
    parser.add_argument("--secret-file")
    parser.add_argument("--timeout", type=float, default=20)
    args = parser.parse_args()
    host, _, port = args.portal.partition(":")
    secret = Path(args.secret_file).read_text().strip() if args.secret_file else ""
    try:
        client = Client(host, int(port or 3260), timeout=args.timeout)
    except OSError as exc:
        print(f"iscsi-probe: cannot connect to {args.portal}: {exc}", file=sys.stderr)
        return 1
    try:
        client.lun = args.lun
        client.login(args.target, args.initiator, user=args.user, secret=secret)
        status, data, sense = client.scsi(bytes([0x25]) + bytes(9), read=8)
        if status:
            print(f"iscsi-probe: READ CAPACITY (10) failed: status {status:#x} sense "
                  f"{sense.hex()}", file=sys.stderr)
            return 1
        last, block = struct.unpack(">II", data[:8])
        print(f"target {args.target} lun {args.lun}: {last + 1} blocks of {block} bytes")
        blocks = client.read10(args.lba, args.count)
        print(f"md5 {hashlib.md5(blocks).hexdigest()} lba {args.lba} count {args.count}")  # noqa: S324
        client.logout()
        return 0
    except LoginFailed as exc:
        print(f"iscsi-probe: login refused: status class {exc.status[0]} detail "
              f"{exc.status[1]}", file=sys.stderr)
        return 1
    except (OSError, ConnectionError, AssertionError) as exc:
        print(f"iscsi-probe: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
