"""``bootyard image import|verify`` (cli/images.py) and the image kind: files taken by name from a
directory, a tarball, an ISO (bsdtar), a Debian package (dpkg-deb) and http URLs, copied with
their SHA-256 into the images directory; profiles that name an image boot its files; an unknown
image is refused on every write path and reported by validate."""

from __future__ import annotations

import hashlib
import http.server
import io
import subprocess
import tarfile
import threading

import pytest

from shared import bootplan, checks
from shared.images import ImageError, choose, sniff
from shared.records import Host, Image, Profile
from shared.schema import KINDS

KERNEL = b"kernel bytes " * 100
INITRD = b"initrd bytes " * 300


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _netboot_tree(top):
    """Debian's netboot layout, with the graphical installer beside the text one."""
    for variant, extra in (("text", b""), ("gtk", b"gtk")):
        d = top / "usr/lib/debian-installer/images/12/amd64" / variant / "debian-installer/amd64"
        d.mkdir(parents=True)
        (d / "linux").write_bytes(KERNEL + extra)
        (d / "initrd.gz").write_bytes(INITRD + extra)
        (d / "pxelinux.0").write_bytes(b"pxe")
    return top


@pytest.fixture
def images(tmp_path):
    out = tmp_path / "images"
    out.mkdir()
    return out


def _check_imported(raw, images, name="deb12"):
    record = raw.hgetall(f"bootyard:image:{name}")
    assert record["kernel"] == f"{name}/linux"
    assert record["initrd"] == f"{name}/initrd.gz"
    assert record["sha256"] == (f"{name}/linux={_sha(KERNEL)},"
                                f"{name}/initrd.gz={_sha(INITRD)}")
    assert (images / name / "linux").read_bytes() == KERNEL
    assert (images / name / "initrd.gz").read_bytes() == INITRD
    assert [p.name for p in images.iterdir()] == [name]  # no staging left behind
    return record


def test_import_directory_takes_the_text_installer(cli, raw, tmp_path, images):
    tree = _netboot_tree(tmp_path / "tree")
    code, out, err = cli("image", "import", "deb12", str(tree), "--images-dir", str(images))
    assert code == 0, err
    record = _check_imported(raw, images)
    assert record["source_kind"] == "dir"
    assert f"deb12/linux  {len(KERNEL)} bytes  sha256 {_sha(KERNEL)}" in out
    code, out, _ = cli("image", "verify", "--images-dir", str(images))
    assert code == 0 and "deb12: deb12/linux: ok" in out


def test_import_tarball_and_deb(cli, raw, tmp_path, images):
    tree = _netboot_tree(tmp_path / "tree")
    tarball = tmp_path / "netboot.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tree / "usr/lib/debian-installer/images/12/amd64/text", arcname=".")
    code, _out, err = cli("image", "import", "deb12", str(tarball), "--images-dir", str(images))
    assert code == 0, err
    assert _check_imported(raw, images)["source_kind"] == "tarball"
    # a real .deb built with dpkg-deb (the layout of debian-installer-12-netboot-amd64)
    (tree / "DEBIAN").mkdir()
    (tree / "DEBIAN/control").write_text(
        "Package: test-netboot\nVersion: 1\nArchitecture: all\nMaintainer: t <t@example.org>\n"
        "Description: test\n")
    deb = tmp_path / "test-netboot.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(deb)], check=True,
                   capture_output=True)
    code, _out, err = cli("image", "import", "deb12", str(deb), "--images-dir", str(images))
    assert code == 0, err
    assert _check_imported(raw, images)["source_kind"] == "deb"


def test_import_iso_without_a_loop_mount(cli, raw, tmp_path, images):
    tree = tmp_path / "iso"
    (tree / "install.amd").mkdir(parents=True)
    (tree / "install.amd/vmlinuz").write_bytes(KERNEL)
    (tree / "install.amd/initrd.gz").write_bytes(INITRD)
    iso = tmp_path / "debian.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-R", "-o", str(iso), str(tree)],
                   check=True, capture_output=True)
    code, _out, err = cli("image", "import", "inst", str(iso), "--images-dir", str(images))
    assert code == 0, err
    record = raw.hgetall("bootyard:image:inst")
    assert record["source_kind"] == "iso"
    assert record["kernel"] == "inst/vmlinuz"
    assert (images / "inst/vmlinuz").read_bytes() == KERNEL
    assert record["sha256"].split(",")[1] == f"inst/initrd.gz={_sha(INITRD)}"


def test_import_over_http_archive_and_directory(cli, raw, tmp_path, images):
    tree = _netboot_tree(tmp_path / "tree")
    served = tree / "usr/lib/debian-installer/images/12/amd64/text"
    with tarfile.open(served / "netboot.tar.gz", "w:gz") as tar:
        tar.add(served / "debian-installer", arcname="./debian-installer")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(served), **kw)

        def log_message(self, *a):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        code, _out, err = cli("image", "import", "deb12", f"{base}/netboot.tar.gz",
                              "--images-dir", str(images))
        assert code == 0, err
        assert _check_imported(raw, images)["source_kind"] == "url"
        code, _out, err = cli("image", "import", "dir12", f"{base}/debian-installer/amd64/",
                              "--images-dir", str(images))
        assert code == 0, err
        assert raw.hget("bootyard:image:dir12", "sha256") == (
            f"dir12/linux={_sha(KERNEL)},dir12/initrd.gz={_sha(INITRD)}")
        code, _out, err = cli("image", "import", "nope", f"{base}/missing.tar.gz",
                              "--images-dir", str(images))
        assert code == 1 and "missing.tar.gz" in err and "Traceback" not in err
    finally:
        server.shutdown()


def test_verify_reports_a_changed_file(cli, raw, tmp_path, images):
    tree = _netboot_tree(tmp_path / "tree")
    assert cli("image", "import", "deb12", str(tree), "--images-dir", str(images))[0] == 0
    (images / "deb12/initrd.gz").write_bytes(b"changed")
    code, out, _ = cli("image", "verify", "deb12", "--images-dir", str(images))
    assert code == 1
    assert f"deb12/initrd.gz: sha256 {_sha(b'changed')} differs from the recorded " \
           f"{_sha(INITRD)}" in out


def test_ambiguous_or_empty_sources_say_what_to_give(cli, tmp_path, images):
    tree = tmp_path / "two"
    for d in ("a", "b"):
        (tree / d).mkdir(parents=True)
        (tree / d / "vmlinuz").write_bytes(KERNEL)
        (tree / d / "initrd.img").write_bytes(INITRD)
    code, _out, err = cli("image", "import", "x", str(tree), "--images-dir", str(images))
    assert code == 1 and "a/vmlinuz + a/initrd.img; b/vmlinuz + b/initrd.img" in err
    assert "--kernel" in err
    code, _out, err = cli("image", "import", "x", str(tree), "--kernel", "b/vmlinuz",
                          "--images-dir", str(images))
    assert code == 0, err
    (tmp_path / "empty").mkdir()
    code, _out, err = cli("image", "import", "y", str(tmp_path / "empty"),
                          "--images-dir", str(images))
    assert code == 1 and "no kernel with an initrd" in err


def test_profile_boots_its_image_and_unknown_image_is_refused(cli, raw, tmp_path, images):
    tree = _netboot_tree(tmp_path / "tree")
    assert cli("image", "import", "deb12", str(tree), "--images-dir", str(images))[0] == 0
    code, _out, err = cli("profile", "add", "inst", "--image", "nope", "--install", "preseed")
    assert code == 1 and "no such image (key bootyard:image:nope" in err
    code, _out, err = cli("profile", "add", "inst", "--image", "deb12", "--install", "preseed")
    assert code == 0, err
    assert cli("host", "add", "52:54:00:00:00:01", "--profile", "inst")[0] == 0
    # deleting the image leaves the profile with nothing to boot: refused
    code, _out, err = cli("image", "rm", "deb12")
    assert code == 1 and "no such image" in err
    raw.delete("bootyard:image:deb12")  # behind the CLI's back: validate says it
    code, out, _ = cli("validate", "--no-templates")
    assert code == 1 and "bootyard:profile:inst image='deb12': no such image" in out


def test_plan_takes_the_image_files_unless_the_profile_sets_its_own():
    image = Image("deb12", kernel="deb12/linux", initrd=("deb12/initrd.gz",))
    host = Host("52:54:00:00:00:01", profile="inst")
    facts = bootplan.Facts(base_url="http://10.0.0.1:8080")
    profile = Profile("inst", image="deb12")
    plan = bootplan.plan(host.mac, host, bootplan.with_image(profile, image), None, facts)
    assert (plan.kernel.value, [i.value for i in plan.initrds]) == (
        "deb12/linux", ["deb12/initrd.gz"])
    own = Profile("inst", image="deb12", kernel="other/vmlinuz")
    plan = bootplan.plan(host.mac, host, bootplan.with_image(own, image), None, facts)
    assert plan.kernel.value == "other/vmlinuz"
    plan = bootplan.plan(host.mac, host, bootplan.with_image(profile, None), None, facts)
    assert plan.outcome == "error" and "image=deb12: no such image" in plan.reason
    problems = checks.validate_dump({"host": {host.mac: {"profile": "inst"}},
                                     "profile": {"inst": {"image": "deb12"}}, "image": {}})
    assert any(p.field == "image" and "no such image" in p.reason for p in problems)


def test_image_record_checks():
    kind = KINDS["image"]
    from shared.validation import parse_record
    record, problems = parse_record(kind, "a", {
        "kernel": "a/linux", "initrd": "a/initrd.gz",
        "sha256": f"a/linux={_sha(KERNEL)},a/other={_sha(INITRD)}"})
    assert record is None
    assert any(p.field == "sha256" and "not one of the image's" in p.reason for p in problems)
    assert any(p.severity == "warning" and "no checksum for a/initrd.gz" in p.reason
               for p in problems)
    _record, problems = parse_record(kind, "a", {"kernel": "http://x/linux"})
    assert any("not URLs" in p.reason for p in problems)


def test_choose_and_sniff():
    names = ["./debian-installer/amd64/linux", "./debian-installer/amd64/initrd.gz",
             "./debian-installer/amd64/gtk/linux", "./debian-installer/amd64/gtk/initrd.gz",
             "./casper/filesystem.squashfs"]
    chosen = choose(names)
    assert chosen.kernel == "./debian-installer/amd64/linux"
    assert chosen.squashfs == "./casper/filesystem.squashfs"
    with pytest.raises(ImageError, match="no such file"):
        choose(names, kernel="boot/vmlinuz")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("x"), io.BytesIO(b""))
    assert sniff(buf.getvalue()) == "tarball"
    assert sniff(b"!<arch>\ndebian-binary   ") == "deb"
    assert sniff(b"\0" * 0x8001 + b"CD001" + b"\0" * 10) == "iso"
    assert sniff(b"hello") is None


def test_images_export_and_import_like_the_other_kinds(cli, raw, tmp_path, images):
    tree = _netboot_tree(tmp_path / "tree")
    assert cli("image", "import", "deb12", str(tree), "--images-dir", str(images))[0] == 0
    code, text, _ = cli("export")
    assert code == 0 and "images:\n  deb12:\n" in text
    assert f"  - deb12/linux={_sha(KERNEL)}\n" in text  # the checksums as a YAML list
    before = raw.hgetall("bootyard:image:deb12")
    raw.delete("bootyard:image:deb12")
    dump = tmp_path / "inventory.yaml"
    dump.write_text(text)
    code, out, err = cli("import", str(dump))
    assert code == 0, err
    assert raw.hgetall("bootyard:image:deb12") == before
    code, out, _ = cli("image", "list")
    assert code == 0 and "deb12/linux" in out and "dir" in out


def test_images_directory_from_the_settings(cli, raw, tmp_path, images, monkeypatch):
    """Without --images-dir the directory is http.images_root (as in the compose cli container,
    BOOTYARD_HTTP__IMAGES_ROOT): compose-test found this path failing with a NameError."""
    tree = _netboot_tree(tmp_path / "tree")
    monkeypatch.setenv("BOOTYARD_HTTP__IMAGES_ROOT", str(images))
    code, out, err = cli("image", "import", "deb12", str(tree))
    assert code == 0, err
    assert (images / "deb12" / "linux").exists()
