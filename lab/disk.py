"""A tiny "local disk" for scenario 7: an MBR whose boot code prints a line on the serial port.

When the deploy host sends a machine to local boot (iPXE ``exit``), SeaBIOS moves on to the next
boot device, this disk, and its 16-bit boot code writes ``BOOTYARD-MARKER local-disk-<token>`` to
COM1 (0x3f8) and halts. So the test sees positive proof that the machine booted from its disk,
not merely that the network boot stopped. The code is hand-assembled below (no assembler needed).

It starts with ``cli``: SeaBIOS mirrors its screen to the serial port from a buffer it flushes on
the timer interrupt, and on a loaded machine the tail of its "Booting from Hard Disk..." line
came out in the middle of the marker (``..B.`` then ``OOTYARD-MARKER``); with interrupts off
nothing of SeaBIOS's can land between the marker's characters. The marker starts its own line.
"""

from __future__ import annotations

import struct
from pathlib import Path

ORIGIN = 0x7C00


def boot_sector(message: str) -> bytes:
    text = b"\r\n" + message.encode("ascii") + b"\r\n\0"
    code = bytearray()
    code += b"\xfa"                  # cli                  (see the module's docstring)
    code += b"\x31\xc0"              # xor ax, ax
    code += b"\x8e\xd8"              # mov ds, ax
    msg_fixup = len(code) + 1
    code += b"\xbe\x00\x00"          # mov si, msg          (patched below)
    loop = len(code)
    code += b"\xac"                  # next: lodsb
    code += b"\x08\xc0"              # or al, al
    jz_at = len(code)
    code += b"\x74\x00"              # jz halt              (patched below)
    code += b"\x88\xc3"              # mov bl, al
    code += b"\xba\xfd\x03"          # mov dx, 0x3fd        (line status register)
    wait = len(code)
    code += b"\xec"                  # wait: in al, dx
    code += b"\xa8\x20"              # test al, 0x20        (transmit holding register empty)
    code += bytes([0x74, (wait - (len(code) + 2)) & 0xFF])  # jz wait
    code += b"\xba\xf8\x03"          # mov dx, 0x3f8        (data register)
    code += b"\x88\xd8"              # mov al, bl
    code += b"\xee"                  # out dx, al
    code += bytes([0xEB, (loop - (len(code) + 2)) & 0xFF])  # jmp next
    halt = len(code)
    code += b"\xfa\xf4"              # halt: cli; hlt
    code += bytes([0xEB, (halt - (len(code) + 2)) & 0xFF])  # jmp halt
    code[jz_at + 1] = halt - (jz_at + 2)
    struct.pack_into("<H", code, msg_fixup, ORIGIN + len(code))
    sector = bytes(code) + text
    if len(sector) > 446:
        raise ValueError("message too long for the boot sector")
    return sector.ljust(510, b"\0") + b"\x55\xaa"


def make_disk(path: Path, message: str, size_mb: int = 1) -> Path:
    path.write_bytes(boot_sector(message).ljust(size_mb * 1024 * 1024, b"\0"))
    return path
