"""The classic stack from the seeds, as the lab's baseline: dnsmasq (DHCP + TFTP) and nginx (HTTP).

Both run in the lab's server namespace with their own configuration, pid, lease and log files
(lab-facts pitfall 12: never the global defaults). Per-host boot files are written out as static
files (which is exactly what bootyard renders on request instead).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from lab.plan import BootPlan


def dnsmasq_conf(plan: BootPlan, workdir: Path) -> str:
    srv = plan.server_ip
    lines = [
        "port=0",  # no DNS
        "user=root",  # the lab's roots are in private temporary directories
        "interface=eth0", "bind-interfaces", "log-dhcp", "log-facility=-",
        f"pid-file={workdir / 'dnsmasq.pid'}",
        f"dhcp-leasefile={workdir / 'dnsmasq.leases'}",
        f"dhcp-range={plan.pool[0]},{plan.pool[1]},255.255.255.0,1h",
        "enable-tftp", f"tftp-root={plan.tftp_root}",
        "dhcp-userclass=set:ipxe,iPXE",
        "dhcp-match=set:ipxe,175",
        "dhcp-vendorclass=set:httpclient,HTTPClient",
        "dhcp-match=set:efi64,option:client-arch,7",
        "dhcp-match=set:efi64,option:client-arch,9",
        f"dhcp-option=option:router,{srv}",
        "dhcp-option-force=tag:httpclient,60,HTTPClient",
    ]
    for n, host in enumerate(plan.hosts):
        tag = f"h{n}"
        lines.append(f"dhcp-host={host.mac},{host.ip},{host.name},set:{tag}")
        script = f"{plan.http_base}/boot/{host.mac}.ipxe"
        if host.boot == "pxelinux":
            lines.append(f"dhcp-boot=tag:{tag},pxelinux.0,,{srv}")
        elif host.boot == "grub":
            lines.append(f"dhcp-boot=tag:{tag},grub/x86_64-efi/core.efi,,{srv}")
        else:
            lines.append(f"dhcp-boot=tag:{tag},tag:ipxe,{script}")
            lines.append(f"dhcp-boot=tag:{tag},tag:!ipxe,tag:httpclient,"
                         f"{plan.http_base}/images/ipxe.efi")
            lines.append(f"dhcp-boot=tag:{tag},tag:!ipxe,tag:efi64,tag:!httpclient,ipxe.efi,,{srv}")
            lines.append(f"dhcp-boot=tag:{tag},tag:!ipxe,tag:!efi64,tag:!httpclient,"
                         f"undionly.kpxe,,{srv}")
    # Unknown machines: the default script (what bootyard's HTTP service does for them).
    # (dnsmasq tags every configured host "known"; the rules never overlap, so order is moot.)
    lines.append(f"dhcp-boot=tag:!known,tag:ipxe,{plan.http_base}/boot/default.ipxe")
    lines.append(f"dhcp-boot=tag:!known,tag:!ipxe,tag:efi64,ipxe.efi,,{srv}")
    lines.append(f"dhcp-boot=tag:!known,tag:!ipxe,tag:!efi64,undionly.kpxe,,{srv}")
    return "\n".join(lines) + "\n"


def nginx_conf(plan: BootPlan, workdir: Path, *, workers: str = "1", connections: int = 256,
               tuning: str = "") -> str:
    """The seeds' nginx for ``plan`` (its server_ip, http_port, www_root). The boot bench's
    storm (scripts/bench/storm_stacks.py) asks for Debian's defaults: ``workers="auto"``,
    768 connections and keep-alive, ``tuning`` lines going into the http block."""
    return f"""user root;
worker_processes {workers};
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log;
events {{ worker_connections {connections}; }}
http {{
    types {{ application/efi efi; text/plain ipxe cfg; application/octet-stream img squashfs; }}
    default_type application/octet-stream;
    access_log {workdir}/nginx-access.log;
    client_body_temp_path {workdir}/nginx-tmp/body;
    proxy_temp_path {workdir}/nginx-tmp/proxy;
    fastcgi_temp_path {workdir}/nginx-tmp/fastcgi;
    uwsgi_temp_path {workdir}/nginx-tmp/uwsgi;
    scgi_temp_path {workdir}/nginx-tmp/scgi;
    sendfile on;
{tuning}    server {{
        listen {plan.server_ip}:{plan.http_port};
        root {plan.www_root};
    }}
}}
"""


def write_boot_files(plan: BootPlan) -> None:
    """The per-host files a classic setup keeps on disk: iPXE scripts, PXELINUX configs."""
    boot = plan.www_root / "boot"
    boot.mkdir(parents=True, exist_ok=True)
    for host in plan.hosts:
        (boot / f"{host.mac}.ipxe").write_text(ipxe_script(plan, host.kind, host.cmdline))
        if host.boot == "pxelinux":
            cfg = plan.tftp_root / "pxelinux.cfg"
            cfg.mkdir(exist_ok=True)
            (cfg / ("01-" + host.mac.replace(":", "-"))).write_text(
                "DEFAULT linux\nPROMPT 0\nTIMEOUT 0\nSERIAL 0 115200\n"
                "LABEL linux\n  KERNEL images/vmlinuz\n"
                f"  APPEND initrd=images/initrd.img {host.cmdline}\n")
        if host.boot == "grub":  # GRUB looks for $prefix/grub.cfg-01-<mac> first
            (plan.tftp_root / "grub" / ("grub.cfg-01-" + host.mac.replace(":", "-"))).write_text(
                "set timeout=0\n"
                f"echo 'bootyard-lab: grub loading {host.name}'\n"
                f"linux /images/vmlinuz {host.cmdline}\n"
                "initrd /images/initrd.img\n"
                "boot\n")
    (boot / "default.ipxe").write_text(ipxe_script(plan, "discovery", ""))


def ipxe_script(plan: BootPlan, kind: str, cmdline: str) -> str:
    if kind == "local":
        return "#!ipxe\necho bootyard-lab: local boot\nexit\n"
    if kind == "discovery":  # what a classic setup does for a machine it does not know
        return "#!ipxe\necho bootyard-lab: unknown machine ${net0/mac}, not in the inventory\nexit\n"
    base = f"{plan.http_base}/images"
    root = f" rooturl={base}/root.squashfs" if kind == "live" else ""
    return ("#!ipxe\n"
            f"kernel {base}/vmlinuz initrd=initrd.img {cmdline}{root}\n"
            f"initrd {base}/initrd.img\n"
            "boot\n")


class ClassicStack:
    name = "classic"

    def __init__(self, plan: BootPlan, server_ns, workdir: Path) -> None:
        self.plan = plan
        self.ns = server_ns
        self.workdir = workdir

    def start(self) -> None:
        for binary in ("dnsmasq", "nginx"):
            if shutil.which(binary) is None:
                raise RuntimeError(f"{binary} missing: run 'make install' (dnsmasq-base, nginx-light)")
        write_boot_files(self.plan)
        (self.workdir / "nginx-tmp").mkdir(exist_ok=True)
        conf = self.workdir / "dnsmasq.conf"
        conf.write_text(dnsmasq_conf(self.plan, self.workdir))
        nconf = self.workdir / "nginx.conf"
        nconf.write_text(nginx_conf(self.plan, self.workdir))
        self.dnsmasq_log = open(self.workdir / "dnsmasq.log", "w")
        self.ns.popen("dnsmasq", "--keep-in-foreground", f"--conf-file={conf}",
                      stdout=self.dnsmasq_log, stderr=subprocess.STDOUT)
        self.nginx_out = open(self.workdir / "nginx.out", "w")
        self.ns.popen("nginx", "-c", str(nconf), "-p", str(self.workdir),
                      stdout=self.nginx_out, stderr=subprocess.STDOUT)
        self._wait_http()

    def _wait_http(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        url = f"{self.plan.http_base}/images/initrd.img"
        while time.monotonic() < deadline:
            r = self.ns.run("curl", "-sf", "-o", "/dev/null", "-r", "0-0", url, check=False)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"nginx did not serve {url} within {timeout}s: "
                           f"{(self.workdir / 'nginx-error.log').read_text()[-400:]}")

    def events(self, mac: str) -> list:
        return []  # dnsmasq and nginx keep no boot timeline

    def stop(self) -> None:
        pass  # the lab kills the processes it started
