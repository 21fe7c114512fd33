"""ipmi_sim's chassis control program (lan.conf ``chassis_control``): the simulated BMC's power
and boot device act on a QEMU machine (vmctl.Vm).

ipmi_sim runs it through a shell as ``chassis_control.py STATE DEVICE get power [boot]`` (prints
``power:1|0``, ``boot:pxe|default``) or ``... set power 1|0`` / ``set boot pxe`` / ``set reset 1``
(prints nothing on success). ``set boot pxe`` is a one-time boot device: the next power-on starts
QEMU with ``-boot order=n`` and forgets it, as a BMC does after the boot.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vmctl import Vm  # noqa: E402


def main(argv: list[str]) -> int:
    state, _device, op, *params = argv
    vm = Vm(Path(state))
    bootdev = vm.dir / "bootdev"
    with open(vm.dir / "chassis.log", "a") as log:
        log.write(" ".join([op, *params]) + "\n")
    if op == "get":
        for name in params:
            if name == "power":
                print(f"power:{1 if vm.running() else 0}")
            elif name == "boot":
                print(f"boot:{bootdev.read_text() if bootdev.exists() else 'default'}")
            else:
                print(f"Invalid parameter: {name}")
                return 1
        return 0
    if op != "set":
        print(f"Unknown operation: {op}")
        return 1
    pairs = list(zip(params[0::2], params[1::2]))
    for name, value in pairs:
        value = value.strip('"')
        if name == "power":
            if value == "1":
                pxe = bootdev.exists() and bootdev.read_text() == "pxe"
                vm.start(pxe=pxe)
                bootdev.unlink(missing_ok=True)
            else:
                vm.stop()
        elif name == "reset":
            pxe = bootdev.exists() and bootdev.read_text() == "pxe"
            vm.stop()
            vm.start(pxe=pxe)
            bootdev.unlink(missing_ok=True)
        elif name == "boot":
            bootdev.write_text(value)
        else:
            print(f"Invalid parameter: {name}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
