"""The real service in a namespace lab against real clients: tftp-hpa, atftp, curl, busybox
tftp and tftpy's client fetch static and per-host files byte-identical."""

from __future__ import annotations

import os
import time

import pytest
from tftp_lab import MAC, TftpService, client_command, sha256

from services.tftp import render
from shared.records import Host, Profile

pytestmark = pytest.mark.lab

CLIENTS = [("tftp-hpa", {}), ("atftp", {}), ("atftp", {"blksize": 1468}),
           ("atftp", {"windowsize": 16}), ("atftp", {"blksize": 1468, "windowsize": 16}),
           ("curl", {}), ("curl", {"blksize": 1468}), ("busybox", {}),
           ("busybox", {"blksize": 1468}), ("tftpy", {}), ("tftpy", {"blksize": 1468})]


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "root"
    (root / "images").mkdir(parents=True)
    (root / "boot.bin").write_bytes(os.urandom(1_000_000))
    (root / "exact.bin").write_bytes(os.urandom(1468 * 512))   # a multiple of both blksizes
    (root / "big.bin").write_bytes(os.urandom(20 << 20))        # streamed from disk
    return root


def expected(kind: str) -> bytes:
    host = Host(mac=MAC, hostname="web1", profile="debian12")
    profile = Profile(name="debian12", kernel="debian12/linux", initrd=("debian12/initrd.gz",),
                      cmdline="console=ttyS0 hostname={{ host.hostname }}")
    return render.render(kind, render.plan(MAC, host, profile)).encode()


@pytest.mark.parametrize("kind,options", CLIENTS,
                         ids=[f"{k}-{'-'.join(f'{a}{b}' for a, b in o.items()) or 'plain'}"
                              for k, o in CLIENTS])
def test_real_clients_static_and_per_host(lab, root, tmp_path, kind, options):
    seg = lab.segment(clients=1, client_addresses=True)
    service = TftpService(seg, root, tmp_path, cache_file_max=4 << 20)
    service.add_host()
    service.add_lease(seg.clients[0].address)
    client = seg.clients[0]
    server = seg.address(1)
    names = ["boot.bin", "exact.bin", "big.bin", "pxelinux.cfg/01-52-54-00-12-34-56",
             "pxelinux.cfg/default", "boot/grub/grub.cfg-01-52-54-00-12-34-56",
             "boot/grub/grub.cfg", "boot.ipxe"]
    rendered = {"pxelinux.cfg/01-52-54-00-12-34-56": "pxelinux",
                "pxelinux.cfg/default": "pxelinux",
                "boot/grub/grub.cfg-01-52-54-00-12-34-56": "grub", "boot/grub/grub.cfg": "grub",
                "boot.ipxe": "ipxe"}
    for i, name in enumerate(names):
        local = tmp_path / f"got{i}"
        result = client.run(*client_command(kind, server, name, local, options),
                            check=False, timeout=120, cwd=tmp_path)
        assert result.returncode == 0 and local.exists(), (name, result.stdout, result.stderr,
                                                           service.log.read_text()[-3000:])
        if name in rendered:  # per-host: by MAC in the name, or by the client's DHCP lease
            assert local.read_bytes() == expected(rendered[name]), name
        else:
            assert sha256(local) == sha256(root / name), name
    assert service.alive()
    # every transfer is on the host's timeline (static files attributed through the lease)
    deadline = time.monotonic() + 5
    while len(service.events()) < len(names) and time.monotonic() < deadline:
        time.sleep(0.1)
    events = service.events()
    # each transfer once; in request order only within one process: tftp.workers (one per
    # CPU by default) write their batches independently (docs/tftp.md, Worker processes)
    assert sorted(e["file"] for e in events) == sorted(names)
    assert {e["result"] for e in events} == {"ok"} and {e["kind"] for e in events} == \
        {"tftp.transfer"}
    if "blksize" in options and kind != "tftp-hpa":
        assert {e["blksize"] for e in events} == {str(options["blksize"])}
    if "windowsize" in options:
        assert {e["windowsize"] for e in events} == {str(options["windowsize"])}


def test_real_clients_refused_paths_and_writes(lab, root, tmp_path):
    seg = lab.segment(clients=1, client_addresses=True)
    (tmp_path / "secret").write_text("outside")
    (root / "link").symlink_to(tmp_path / "secret")
    service = TftpService(seg, root, tmp_path)
    client, server = seg.clients[0], seg.address(1)
    for name in ["../secret", "link", "..%2fsecret", "..\\secret"]:
        local = tmp_path / "x"
        result = client.run(*client_command("atftp", server, name, local), check=False,
                            timeout=30)
        assert result.returncode != 0 and (not local.exists() or local.stat().st_size == 0)
        assert "outside" not in (local.read_text() if local.exists() else "")
    upload = tmp_path / "up.bin"
    upload.write_bytes(b"evil" * 100)
    result = client.run("atftp", "-p", "-l", str(upload), "-r", "boot.bin", server, "69",
                        check=False, timeout=30)
    assert result.returncode != 0
    result = client.run("curl", "-sS", "-T", str(upload), f"tftp://{server}/new.bin",
                        check=False, timeout=30)
    assert result.returncode != 0 and not (root / "new.bin").exists()
    assert (root / "boot.bin").stat().st_size == 1_000_000
    log = service.log.read_text()
    assert log.count("reason=path") == 4 and log.count("reason=write") == 2
    assert service.alive()
