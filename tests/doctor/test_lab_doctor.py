"""``bootyard doctor`` against the real DHCP, TFTP and HTTP services in a namespace lab: the
deploy host is the server namespace (where the services and the doctor run, one config for all,
as in production), the host's machine is not powered on. A healthy host passes every step;
four faults (the host disabled, its loader missing, its initrd missing, its install token
refused) each fail the step that finds them, before any machine boots."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.dhcpkit import seed_inventory, unix_redis  # noqa: F401 - pytest fixture
from harness.netlab import wait_for

pytestmark = pytest.mark.lab
REPO = Path(__file__).resolve().parents[2]
MAC = "52:54:00:0d:0c:01"
SECRET = "doctor-lab-secret"


class Deploy:
    """The three services in the server namespace, and the doctor run there."""

    def __init__(self, seg, redis_url: str, tmp: Path) -> None:
        self.seg, self.tmp = seg, tmp
        self.tftp_root, self.images = tmp / "tftp", tmp / "images"
        self.tftp_root.mkdir()
        (self.tftp_root / "undionly.kpxe").write_bytes(b"\x55" * 70000)
        (self.tftp_root / "ipxe.efi").write_bytes(b"\x4d\x5a" * 9000)
        (self.images / "debian12").mkdir(parents=True)
        (self.images / "debian12" / "linux").write_bytes(b"k" * 5000)
        (self.images / "debian12" / "initrd.gz").write_bytes(b"i" * 7000)
        templates = tmp / "templates"
        shutil.copytree(REPO / "templates", templates)
        (tmp / "mirror").mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTYARD_")}
        self.env.update({
            "PYTHONPATH": str(REPO), "BOOTYARD_REDIS_URL": redis_url,
            "BOOTYARD_DHCP__INTERFACES": "eth0", "BOOTYARD_DHCP__METRICS_HOST": "127.0.0.1",
            "BOOTYARD_TFTP__ROOT": str(self.tftp_root),
            "BOOTYARD_TFTP__METRICS_HOST": "127.0.0.1",
            "BOOTYARD_HTTP__TOKEN_SECRET": SECRET, "BOOTYARD_HTTP__IMAGES_ROOT": str(self.images),
            "BOOTYARD_HTTP__MIRROR_ROOT": str(tmp / "mirror"),
            "BOOTYARD_HTTP__TEMPLATES_DIR": str(templates),
            "BOOTYARD_HTTP__METRICS_HOST": "127.0.0.1",
        })
        self.procs = []
        for name in ("dhcp", "tftp", "http"):
            log = (tmp / f"{name}.log").open("wb")
            self.procs.append(seg.server.popen(sys.executable, "-m", f"services.{name}",
                                               env=self.env, cwd=REPO, stdout=log,
                                               stderr=subprocess.STDOUT))
        for port in (9101, 9102, 9103):
            wait_for(lambda p=port: self.seg.server.run(
                "curl", "-sf", f"http://127.0.0.1:{p}/healthz", check=False).returncode == 0,
                30, what=f"service on :{port} healthy")

    def doctor(self, *args: str, **env: str) -> tuple[int, list[str]]:
        run = self.seg.server.run(sys.executable, "-m", "cli", "doctor", *args, check=False,
                                  env={**self.env, **env}, cwd=REPO, timeout=120)
        assert "Traceback" not in run.stderr, run.stderr
        return run.returncode, run.stdout.splitlines()


def step(lines: list[str], text: str) -> str:
    found = [line for line in lines if text in line]
    assert found, f"no step {text!r} in:\n" + "\n".join(lines)
    return found[0]


@pytest.fixture
def deploy(lab, unix_redis, tmp_path):  # noqa: F811 - the fixture above
    seg = lab.segment()
    client = unix_redis.client()
    seed_inventory(client, seg)
    client.hset("bootyard:profile:debian12", mapping={
        "kernel": "debian12/linux", "initrd": "debian12/initrd.gz", "install": "preseed"})
    client.hset(f"bootyard:host:{MAC}", mapping={
        "hostname": "web1", "ip": seg.address(20), "profile": "debian12",
        "var.root_password_hash": "$6$salt$hash"})
    yield Deploy(seg, unix_redis.url, tmp_path), client, seg
    client.close()


def test_doctor_passes_a_healthy_host_and_the_deploy_host_and_leaves_no_lease(deploy):
    d, client, seg = deploy
    client.hset("bootyard:netboot:catalina", mapping={  # a Mac would ask for it with BSDP
        "index": "1001", "title": "Catalina", "boot_file": "netboot/i386/booter",
        "root_path": "http://198.18.0.1/catalina.dmg"})
    code, lines = d.doctor(MAC)
    assert code == 0, "\n".join(lines)
    assert not [line for line in lines if line.startswith("FAIL")]
    ip = seg.address(20)
    assert step(lines, "inventory boot plan").startswith("PASS")
    bios = step(lines, "dhcp      BIOS PXE (arch 0):")
    assert bios.startswith("PASS") and f"OFFER {ip}" in bios and "'undionly.kpxe'" in bios
    assert "'ipxe.efi'" in step(lines, "dhcp      UEFI x86-64 PXE (arch 7):")
    assert "/boot/ipxe?mac=" in step(lines, "dhcp      iPXE (arch 0):")
    assert step(lines, "dhcp      BSDP (Mac NetBoot)").endswith("LIST answered with Catalina")
    assert step(lines, "tftp      boot file undionly.kpxe").endswith("70000 bytes")
    assert step(lines, "http      iPXE script").startswith("PASS")
    assert step(lines, "http      initrd debian12/initrd.gz").endswith("7000 bytes")
    assert step(lines, "http      install file").startswith("PASS")
    # no lease left behind: the address is released
    assert client.hget(f"bootyard:lease:{ip}", "state") == "released"
    # nor a boot attempt: its DISCOVER began one, the doctor put the host's back (it had none)
    assert not client.exists(f"bootyard:attempt:{MAC}")
    # the probes are in the timeline between the doctor's markers, and the TFTP probe was benign
    wait_for(lambda: "http.install" in [e[1]["kind"] for e in client.xrange(
        f"bootyard:events:{MAC}")], 10, what="the HTTP service's events written")
    timeline = sorted((float(e[1]["ts"]), e[1]["kind"])
                      for e in client.xrange(f"bootyard:events:{MAC}"))
    marks = {kind: ts for ts, kind in timeline if kind.startswith("doctor.")}
    assert all(marks["doctor.start"] <= ts <= marks["doctor.end"] for ts, _kind in timeline)
    assert {"dhcp.offer", "dhcp.ack", "dhcp.release", "http.script", "http.install"} <= {
        kind for _ts, kind in timeline}
    results = [e[1].get("result") for e in client.xrange("bootyard:events")
               if e[1]["kind"] == "tftp.transfer"]
    assert results and set(results) == {"tsize_probe"}
    # ... and its boot state is not a boot
    listed = d.seg.server.run(sys.executable, "-m", "cli", "host", "list", env=d.env, cwd=REPO)
    assert listed.stdout.splitlines()[1].split()[-1] == "idle"

    code, lines = d.doctor()  # the deploy host itself
    assert code == 0, "\n".join(lines)
    for text in ("dhcp service", "tftp service", "http service", "redis persistence",
                 "dhcp interface eth0", "loader undionly.kpxe", "images root"):
        assert step(lines, text).startswith("PASS"), text


def test_doctor_never_sends_dhcp_on_an_interface_the_service_does_not_serve(deploy):
    d, client, _ = deploy
    before = client.xlen("bootyard:events")
    code, lines = d.doctor(MAC, "--interface", "lo")
    assert code == 1
    assert "refused to send DHCP on lo: not one of dhcp.interfaces (eth0)" in step(
        lines, "dhcp      probe")
    kinds = [e[1]["kind"] for e in client.xrange("bootyard:events")][before:]
    assert not [k for k in kinds if k.startswith("dhcp.")]


def test_doctor_finds_four_faults_before_the_machine_boots(deploy):
    d, client, seg = deploy
    # DHCP: the host disabled
    client.hset(f"bootyard:host:{MAC}", "enabled", "no")
    code, lines = d.doctor(MAC)
    assert code == 1
    assert step(lines, "inventory enabled").startswith("FAIL")
    bios = step(lines, "dhcp      BIOS PXE (arch 0):")
    assert bios.startswith("FAIL") and "ignored it (host_disabled" in bios
    assert "--enabled true" in bios
    client.hdel(f"bootyard:host:{MAC}", "enabled")

    # TFTP: a missing loader
    (d.tftp_root / "undionly.kpxe").unlink()
    code, lines = d.doctor(MAC)
    assert code == 1
    line = step(lines, "tftp      boot file undionly.kpxe")
    assert line.startswith("FAIL") and "ERROR 1" in line and "tftp.root" in line
    (d.tftp_root / "undionly.kpxe").write_bytes(b"\x55" * 70000)

    # HTTP: a missing initrd
    (d.images / "debian12" / "initrd.gz").unlink()
    code, lines = d.doctor(MAC)
    assert code == 1
    assert "HTTP 404" in step(lines, "http      initrd debian12/initrd.gz")
    assert step(lines, "host      image debian12/initrd.gz").startswith("FAIL")
    (d.images / "debian12" / "initrd.gz").write_bytes(b"i" * 7000)

    # install: a template that does not render names the variable it lacks
    client.hdel(f"bootyard:host:{MAC}", "var.root_password_hash")
    code, lines = d.doctor(MAC)
    line = step(lines, "http      install file")
    assert line.startswith("FAIL") and "HTTP 500" in line and "root_password_hash" in line
    client.hset(f"bootyard:host:{MAC}", "var.root_password_hash", "$6$salt$hash")

    # install: a refused token (the doctor's config has another secret than the service's)
    code, lines = d.doctor(MAC, BOOTYARD_HTTP__TOKEN_SECRET="not-the-service-secret")
    assert code == 1
    line = step(lines, "http      install file")
    assert line.startswith("FAIL") and "HTTP 403" in line and "token is refused" in line
