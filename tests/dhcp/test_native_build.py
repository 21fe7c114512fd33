"""The compiled DHCP packet path (scripts/build_native.py) and its pure-Python fallback: which one
runs is decided by services/dhcp/__init__.py (shared/native.py), and the codec, policy and reply tests pass with
either (this file runs them again with the compiled modules turned off)."""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import shutil
import subprocess
import sys
from pathlib import Path

import services.dhcp as package
from harness.nativekit import env, run_tests
from services.dhcp import codec, policy, replies, server, transport
from shared.native import MANIFEST

REPO = Path(__file__).resolve().parents[2]
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
WHICH = ("import services.dhcp as p; "
         "from services.dhcp import codec, policy, replies, server, transport; "
         "print(p.NATIVE, p.NATIVE_REASON, codec.__file__, policy.__file__, replies.__file__, "
         "server.__file__, transport.__file__)")


def test_the_flag_says_which_modules_are_loaded():
    """NATIVE is true exactly when the compiled modules are the extension modules."""
    files = [Path(m.__file__).name for m in (codec, policy, replies, server, transport)]
    if package.NATIVE:
        assert files == [f"{n}{SUFFIX}" for n in package.COMPILED], files
    else:
        assert files == [f"{n}.py" for n in package.COMPILED], (files, package.NATIVE_REASON)
        assert package.NATIVE_REASON


def test_the_codec_policy_and_reply_tests_pass_on_the_pure_python_modules():
    """BOOTYARD_DHCP_NATIVE=0: the sources, even where a build is present; and the same tests
    the compiled modules pass (in the main run, when built) pass on them."""
    run = subprocess.run([sys.executable, "-c", WHICH], capture_output=True, text=True,
                         env=env(PYTHONPATH=str(REPO), BOOTYARD_DHCP_NATIVE="0"), cwd=REPO,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    native, *rest = run.stdout.split()
    assert native == "False" and all(f.endswith(".py") for f in rest[-5:]), run.stdout
    tests = ["tests/dhcp/test_dhcp_codec.py", "tests/dhcp/test_dhcp_policy.py",
             "tests/dhcp/test_replies.py", "tests/dhcp/test_codec_golden_scapy.py",
             "tests/dhcp/test_policy_ipxe_golden.py", "tests/dhcp/test_event_order.py",
             "tests/dhcp/test_client_identity.py"]  # the last two: DhcpServer.handle
    run_tests(REPO, tests, BOOTYARD_DHCP_NATIVE="0")


def fake_package(tmp_path: Path, manifest: dict | None, built: bool = True) -> Path:
    """services/dhcp with the real __init__ and sources, and stand-ins for a build (never
    imported: only the decision is checked)."""
    pkg = tmp_path / "services" / "dhcp"
    pkg.mkdir(parents=True)
    (tmp_path / "services" / "__init__.py").write_text("")
    (tmp_path / "shared").mkdir()
    for name in ("__init__.py", "native.py"):  # what the package's __init__ imports
        shutil.copy(REPO / "shared" / name, tmp_path / "shared")
    for source in (REPO / "services" / "dhcp").glob("*.py"):  # the real __init__ and sources
        shutil.copy(source, pkg)
    if built:
        for name in (*package.COMPILED, f"{package.GROUP}__mypyc"):
            (pkg / f"{name}{SUFFIX}").write_bytes(b"not an ELF file")
    if manifest is not None:
        (pkg / MANIFEST).write_text(json.dumps(manifest))
    return pkg


def decision(root: Path, **extra) -> str:
    run = subprocess.run([sys.executable, "-c", "import services.dhcp as p; "
                          "print(p.NATIVE, p.NATIVE_REASON)"], capture_output=True, text=True,
                         env=env(PYTHONPATH=str(root), **extra), cwd=root, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def sources_of(pkg: Path) -> dict:
    return {"sources": {f"{n}.py": hashlib.sha256((pkg / f"{n}.py").read_bytes()).hexdigest()
                        for n in package.COMPILED}}


def test_a_build_is_used_only_while_it_matches_the_sources(tmp_path):
    pkg = fake_package(tmp_path, None)
    assert decision(tmp_path) == "False not built (make native)"
    (pkg / MANIFEST).write_text(json.dumps(sources_of(pkg)))
    assert decision(tmp_path) == "True None"
    assert decision(tmp_path, BOOTYARD_DHCP_NATIVE="0") == "False BOOTYARD_DHCP_NATIVE=0"
    with (pkg / "policy.py").open("a") as f:  # edited after the build: never shadowed
        f.write("\n# an edit\n")
    assert decision(tmp_path) == ("False policy.py changed since the build "
                                  "(rebuild: make native)")


def test_a_build_for_another_python_is_not_used(tmp_path):
    pkg = fake_package(tmp_path, None, built=False)
    (pkg / MANIFEST).write_text(json.dumps(sources_of(pkg)))
    assert decision(tmp_path) == (f"False no codec{SUFFIX} for this Python "
                                  "(rebuild: make native)")


def test_the_sources_load_when_a_stale_build_is_present(tmp_path):
    """The fallback really imports the .py (the stand-in extensions would fail to load)."""
    pkg = fake_package(tmp_path, {"sources": {}})
    shutil.rmtree(tmp_path / "shared")
    shutil.copytree(REPO / "shared", tmp_path / "shared")
    run = subprocess.run([sys.executable, "-c", WHICH], capture_output=True, text=True,
                         env=env(PYTHONPATH=str(tmp_path)), cwd=tmp_path, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[-5:] == [str(pkg / f"{n}.py") for n in package.COMPILED]


def test_the_build_script_without_mypy_says_so_and_leaves_the_sources(tmp_path):
    """No mypy (a venv without the native extra): exit 0, a message, nothing built."""
    root = tmp_path / "repo"
    pkg = fake_package(root, None, built=False)
    (root / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "build_native.py", root / "scripts")
    blocker = tmp_path / "nomypy"
    blocker.mkdir()
    (blocker / "mypyc.py").write_text("raise ImportError('no mypyc here')\n")
    run = subprocess.run([sys.executable, str(root / "scripts" / "build_native.py"),
                          "services.dhcp"],
                         capture_output=True, text=True, cwd=root, timeout=60,
                         env=env(PYTHONPATH=f"{blocker}:{root}"))
    assert run.returncode == 0, run.stderr
    assert "not compiled (mypy (with mypyc) is not installed" in run.stderr
    assert sorted(p.name for p in pkg.iterdir()) == sorted(
        p.name for p in (REPO / "services" / "dhcp").glob("*.py"))


def test_the_switch_is_not_refused_as_an_unknown_setting():
    """BOOTYARD_DHCP_NATIVE is read before settings exist; the settings layer lets it pass."""
    from services.dhcp.settings import DhcpSettings
    from shared.settings import load_settings
    cfg = load_settings(DhcpSettings, environ={"BOOTYARD_DHCP_NATIVE": "0",
                                               "BOOTYARD_DHCP__INTERFACES": "eth0"})
    assert cfg.dhcp.interfaces == ("eth0",)
