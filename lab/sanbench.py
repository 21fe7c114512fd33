"""A boot sector that measures how fast a SAN-booted disk reads through INT 13h (iPXE ``sanboot``).

It prints ``AOE-SANBENCH-START`` on COM1, reads ``calls`` x ``sectors`` sectors from LBA 1 with
INT 13h extended reads (AH=42h, drive 0x80, into 1000:0000), prints ``AOE-SANBENCH-END`` and
halts (``BOOTYARD-FAIL int13 read`` on a failed read). The lab's console reader timestamps the
two lines; bytes / time is the MB/s (make bench-aoe). The machine code was assembled once with
GNU as (``as --32``, ``.code16``, linked at 0) from this source, kept here for reading:

    cli; xor ax,ax; mov ds,ax; mov es,ax; mov ss,ax; mov sp,0x7c00; sti
    mov si,start_msg; call puts
    mov cx,[calls]
  1: push cx; mov si,dap; mov ah,0x42; mov dl,0x80; int 0x13; pop cx; jc fail
    mov ax,[count]; add [dap+8],ax; adc word [dap+10],0; loop 1b
    mov si,end_msg; call puts
  halt: cli; hlt; jmp halt
  fail: mov si,fail_msg; call puts; jmp halt
  puts: lodsb; or al,al; jz 9f; call putc; jmp puts; 9: ret
  putc: push dx; push ax; mov dx,0x3fd; 4: in al,dx; test al,0x20; jz 4b; pop ax;
        mov dx,0x3f8; out dx,al; pop dx; ret
  calls (0x60): dw 0;  dap (0x62): db 16,0; count (0x64): dw 0; dw 0,0x1000; dq 1
  messages from 0x72
"""

from __future__ import annotations

import struct
from pathlib import Path

CODE = bytes.fromhex(
    "fa31c08ed88ec08ed0bc007cfbbe727ce831008b0e607c51be627cb442b280cd13597218a1647c01066a7c"
    "83166c7c00e2e5be877ce80c00faf4ebfcbe9a7ce80200ebf4ac08c07405e80300ebf6c35250bafd03eca8"
    "2074fb58baf803ee5ac3000010000000000000100100000000000000414f452d53414e42454e43482d5354"
    "4152540d0a00414f452d53414e42454e43482d454e440d0a00424f4f54594152442d4641494c20696e7431"
    "3320726561640d0a00")
CALLS, COUNT = 0x60, 0x64
START, END = "AOE-SANBENCH-START", "AOE-SANBENCH-END"


def boot_sector(calls: int, sectors: int) -> bytes:
    if not 1 <= sectors <= 127 or not 1 <= calls <= 0xFFFF:
        raise ValueError("1-127 sectors per call, 1-65535 calls")
    code = bytearray(CODE)
    struct.pack_into("<H", code, CALLS, calls)
    struct.pack_into("<H", code, COUNT, sectors)
    return bytes(code).ljust(510, b"\0") + b"\x55\xaa"


def make_disk(path: Path, size_mb: int, sectors: int = 64) -> int:
    """A disk of ``size_mb`` MiB whose boot sector reads all of it after itself; returns the
    number of bytes it reads."""
    total = size_mb * 2048 - 1  # sectors after the boot sector
    calls = total // sectors
    block = bytes(range(256)) * 4096  # 1 MiB of data (not a sparse file: both targets read it)
    with open(path, "wb") as f:
        f.write(boot_sector(calls, sectors))
        f.write(block[512:])
        for _ in range(size_mb - 1):
            f.write(block)
    return calls * sectors * 512
