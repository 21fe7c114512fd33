"""The Wake-on-LAN side of a test machine: listens on a lab segment (run it inside the lab's
network namespace) for a magic packet with the machine's MAC, as a NIC in standby does, and then
lets QEMU run the machine it held powered off (``-S``, resumed with QMP ``cont``).

    python wol_waker.py INTERFACE MAC VM_STATE_DIR SECONDS

Prints ``listening`` once its raw socket is bound, then ``woke <source MAC>`` and exits 0 when
it woke the machine; exits 1 after SECONDS without a magic packet. Every frame is looked at (a
NIC matches the pattern anywhere in a frame), so a packet on UDP port 9, 7 or ethertype 0x0842
all wake it.
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from vmctl import Vm  # noqa: E402

from shared.power import find_magic  # noqa: E402

ETH_P_ALL = 0x0003


def main(argv: list[str]) -> int:
    interface, mac, state, seconds = argv[0], argv[1].lower(), argv[2], float(argv[3])
    vm = Vm(state)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as sock:
        sock.bind((interface, 0))
        sock.settimeout(0.5)
        print("listening", flush=True)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                frame = sock.recv(2048)
            except TimeoutError:
                continue
            if find_magic(frame) == mac:
                vm.qmp("cont")
                print(f"woke {frame[6:12].hex(':')}", flush=True)
                return 0
    print("no magic packet", flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
