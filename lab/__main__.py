"""``python -m lab``: run the QEMU boot lab by hand, the demo, and the boot-time benchmark.

    python -m lab assets                      # fetch/build the boot assets (cached)
    python -m lab boot live --stack bootyard  # one scenario, console + timeline printed
    python -m lab demo                        # what `make demo` runs
    python -m lab bench --rounds 3            # what `make bench-boot` runs (inside flock)

Needs root (network namespaces, tap devices). Everything it starts is stopped and every namespace
removed when it ends, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lab.assets import AssetError, ensure_assets
from lab.qemu import BIOS, UEFI, UEFI_HTTP, BootFailed
from lab.runner import BootLab, Lab, format_stages

# scenario name -> (host kind, boot path, firmware)
SCENARIOS = {
    "bios": ("kernel", "ipxe", BIOS),
    "pxelinux": ("kernel", "pxelinux", BIOS),
    "grub": ("kernel", "grub", UEFI),
    "uefi": ("kernel", "ipxe", UEFI),
    "http": ("kernel", "ipxe", UEFI_HTTP),
    "live": ("live", "ipxe", BIOS),
    "local": ("local", "ipxe", BIOS),
}


def stage_summary(events) -> list[tuple[str, float]]:
    """(stage, seconds) from a host's events: power-on to the firmware's DHCP, DHCP, boot
    script and files, the kernel's start, the guest's DHCP, the root."""
    def first(kind, after=0.0):
        return next((e.ts for e in events if e.kind == kind and e.ts >= after), None)

    def last_before(kind, before):
        found = [e.ts for e in events if e.kind == kind and e.ts <= before]
        return found[-1] if found else None

    power = first("lab.power_on")
    init = first("lab.guest_init")
    if power is None or init is None:
        return []
    marks = [("power-on -> first DHCP packet (firmware)", power, first("dhcp.discover", power))]
    ack = first("dhcp.ack", power)
    marks.append(("DHCP (firmware/iPXE)", first("dhcp.discover", power), ack))
    loaded = last_before("http.file", init) or last_before("tftp.transfer", init)
    marks.append(("boot script, kernel and initrd", ack, loaded))
    marks.append(("kernel start -> /init", loaded, init))
    network = first("lab.guest_network", init)
    marks.append(("DHCP in the initramfs", init, network))
    end = first("lab.marker", init)
    if first("lab.live_root", init):
        marks.append(("squashfs fetch, overlay, switch_root", network, first("lab.live_root", init)))
    marks.append(("total, power-on -> marker", power, end))
    return [(name, b - a) for name, a, b in marks if a is not None and b is not None]


def run_one(scenario: str, stack: str, workdir: Path, assets, quiet: bool = False):
    kind, boot_path, firmware = SCENARIOS[scenario]
    with Lab() as netlab:
        boot = BootLab(netlab, workdir, stack=stack, assets=assets)
        try:
            host = boot.plan.add_host(f"{scenario}1", kind=kind, boot=boot_path)
            boot.start()
            result = boot.boot(host, firmware)
            timeline = ""
            if stack == "bootyard":
                timeline = boot.stack.cli("events", "--host", host.mac)
                summary = stage_summary(boot.events(host.mac))
                if summary:
                    timeline += "\ntime each stage took:\n" + "\n".join(
                        f"  {seconds:7.3f}s  {name}" for name, seconds in summary) + "\n"
            return host, result, timeline
        finally:
            boot.stop()


def cmd_boot(args, assets) -> int:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix=f"bootyard-lab-{args.scenario}-"))
    print(f"lab: scenario {args.scenario} on the {args.stack} stack; files in {workdir}")
    try:
        host, result, timeline = run_one(args.scenario, args.stack, workdir, assets)
    except BootFailed as exc:
        print(f"lab: FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"lab: {host.name} ({host.mac}) printed its marker {result.seconds:.2f}s after power-on")
    print("lab: console stages (seconds since power-on):")
    print(format_stages(result))
    if timeline:
        print(f"lab: bootyard events --host {host.mac}")
        print(timeline.rstrip())
    return 0


def cmd_demo(args, assets) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="bootyard-demo-"))
    print(f"demo: booting a diskless machine (SeaBIOS + iPXE, TCG) from the {args.stack} stack: "
          "DHCP -> iPXE script -> kernel + initramfs over HTTP -> squashfs live root")
    started = time.monotonic()
    try:
        host, result, timeline = run_one(args.scenario, args.stack, workdir, assets)
    except BootFailed as exc:
        print(f"demo: FAILED: {exc}\ndemo: files kept in {workdir}", file=sys.stderr)
        return 1
    print(f"\ndemo: {host.name} ({host.mac}) reached its marker {result.seconds:.2f}s after "
          f"power-on: {result.marker.text}")
    print("\ndemo: stages seen on the serial console (seconds since power-on, time taken):")
    print(format_stages(result))
    if timeline:
        print(f"\ndemo: the boot timeline, `bootyard events --host {host.mac}` "
              "(+N.NNNs = time since the previous event):")
        print(timeline.rstrip())
    print(f"\ndemo: done in {time.monotonic() - started:.0f}s; lab removed "
          f"(console and service logs: {workdir})")
    return 0


# Intervals between console stages that depend on the servers (the rest is the guest's CPU).
INTERVALS = (
    ("ipxe-dhcp", "net-boot-program", "ipxe-dhcp-done"),
    ("script+kernel", "ipxe-dhcp-done", "kernel-fetch"),
    ("guest-dhcp", "init", "network"),
    ("rootfs", "network", "rootfs"),
)


def intervals(stages: dict[str, float]) -> dict[str, float]:
    return {name: stages[b] - stages[a] for name, a, b in INTERVALS
            if a in stages and b in stages}


def cmd_bench(args, assets) -> int:
    stacks = ["classic", "bootyard"]
    scenarios = args.scenarios.split(",")
    times: dict[tuple[str, str], list[float]] = {}
    parts: dict[tuple[str, str, str], list[float]] = {}
    failures = 0
    base = Path(tempfile.mkdtemp(prefix="bootyard-bench-boot-"))
    print(f"bench-boot: {args.rounds} round(s) of {', '.join(scenarios)}, stacks alternating "
          f"(order flipped every round); power-on to marker, seconds; logs in {base}")
    for rnd in range(args.rounds):
        order = stacks if rnd % 2 == 0 else stacks[::-1]
        for scenario in scenarios:
            for stack in order:
                workdir = base / f"r{rnd}-{scenario}-{stack}"
                try:
                    _, result, _ = run_one(scenario, stack, workdir, assets)
                except BootFailed as exc:
                    failures += 1
                    print(f"  round {rnd + 1} {scenario:<6} {stack:<8} FAILED "
                          f"{str(exc).splitlines()[0]}")
                    continue
                times.setdefault((scenario, stack), []).append(result.seconds)
                for name, value in intervals(dict(result.stages)).items():
                    parts.setdefault((scenario, stack, name), []).append(value)
                stages = " ".join(f"{n}={t:.2f}" for n, t in result.stages)
                print(f"  round {rnd + 1} {scenario:<6} {stack:<8} {result.seconds:6.2f}s  "
                      f"[{stages}]", flush=True)
    summary = []
    print("\nscenario  stack     n  median    min    max")
    for scenario in scenarios:
        for stack in stacks:
            values = times.get((scenario, stack), [])
            if values:
                print(f"{scenario:<9} {stack:<8} {len(values):2d} {statistics.median(values):7.2f} "
                      f"{min(values):6.2f} {max(values):6.2f}")
        for name, _a, _b in INTERVALS:
            row = [parts.get((scenario, stack, name)) for stack in stacks]
            if all(row):
                print(f"{scenario:<9}   {name:<14} median " + "  ".join(
                    f"{stack}={statistics.median(v):.3f}s" for stack, v in zip(stacks, row)))
        ours, theirs = times.get((scenario, "bootyard")), times.get((scenario, "classic"))
        if ours and theirs:
            ratio = statistics.median(ours) / statistics.median(theirs)
            print(f"{scenario:<9} ratio bootyard/classic (median) = {ratio:.3f}")
            summary.append(f"{scenario}_bootyard={statistics.median(ours):.2f}s "
                           f"{scenario}_classic={statistics.median(theirs):.2f}s "
                           f"{scenario}_ratio={ratio:.3f}")
    print(f"RESULT boot {' '.join(summary) or 'no-complete-pairs'} failures={failures}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("assets", help="fetch and build the boot assets")
    p = sub.add_parser("boot", help="boot one scenario and print its timeline")
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--stack", choices=("bootyard", "classic"), default="bootyard")
    p.add_argument("--workdir", help="keep configs and logs here (default: a new temp dir)")
    p = sub.add_parser("demo", help="boot the demo machine and print its boot timeline")
    p.add_argument("--stack", choices=("bootyard", "classic"), default="bootyard")
    p.add_argument("--scenario", choices=sorted(SCENARIOS), default="live")
    p = sub.add_parser("bench", help="boot times, bootyard vs dnsmasq+nginx, alternating")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--scenarios", default="bios,live")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("lab: needs root (network namespaces and tap devices)", file=sys.stderr)
        return 2
    try:
        assets = ensure_assets()
    except AssetError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    if args.command == "assets":
        print(f"lab: assets ready in {assets.root} (kernel {assets.kernel_version})")
        return 0
    handler = {"boot": cmd_boot, "demo": cmd_demo, "bench": cmd_bench}[args.command]
    try:
        return handler(args, assets)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
