"""Helpers of the enlistment tests (a unique module name: conftest modules of other areas
never shadow it)."""

from __future__ import annotations

import json

MAC = "52:54:00:e0:00:01"
REPORT = {"dmi": {"vendor": "QEMU", "product": "Standard PC (i440FX + PIIX, 1996)",
                  "serial": "LAB-0042", "uuid": "5a2c9d1e-0000-4000-8000-000000000001"},
          "cpus": 2, "cpu_model": "QEMU Virtual CPU version 2.5+", "memory_bytes": 536870912,
          "disks": [{"name": "vda", "size_bytes": 3221225472 + 4096, "serial": "disk-1",
                     "model": ""}],
          "nics": [{"name": "eth0", "mac": MAC, "link": "up", "driver": "virtio_net"}],
          "firmware": "bios", "arch": "x86_64"}


def report_body(**changes) -> bytes:
    return json.dumps({**REPORT, **changes}).encode()
