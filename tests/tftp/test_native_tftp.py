"""The compiled TFTP per-block path (scripts/build_native.py, mypyc) and its pure-Python
fallback: shared/native.py decides in services/tftp/__init__.py; the session, codec and server
tests pass with either (this file runs them on the one the main run did not use)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import services.tftp as package
from harness.nativekit import env, run_tests
from services.tftp import codec, session
from shared.native import MANIFEST, extension_files

REPO = Path(__file__).resolve().parents[2]
TESTS = ["tests/tftp/test_session.py", "tests/tftp/test_session_requests.py",
         "tests/tftp/test_tftp_codec.py", "tests/tftp/test_server.py",
         "tests/tftp/test_server_requests.py", "tests/tftp/test_pump.py",
         "tests/tftp/test_balance_cpu.py"]
WHICH = ("import services.tftp as p; from services.tftp import session, codec; "
         "print(p.NATIVE, p.NATIVE_REASON, session.__file__, codec.__file__)")


def test_the_flag_says_which_modules_are_loaded():
    files = [Path(m.__file__).name for m in (session, codec)]
    if package.NATIVE:
        assert files == extension_files(package.COMPILED, package.GROUP)[:2], files
    else:
        assert files == ["session.py", "codec.py"], (files, package.NATIVE_REASON)
        assert package.NATIVE_REASON


def test_the_session_codec_and_server_tests_pass_on_the_pure_python_modules():
    """BOOTYARD_TFTP_NATIVE=0: the sources, even where a build is present."""
    run = subprocess.run([sys.executable, "-c", WHICH], capture_output=True, text=True,
                         env=env(PYTHONPATH=str(REPO), BOOTYARD_TFTP_NATIVE="0"), cwd=REPO,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    native, *rest = run.stdout.split()
    assert native == "False" and all(f.endswith(".py") for f in rest[-2:]), run.stdout
    run_tests(REPO, TESTS, BOOTYARD_TFTP_NATIVE="0")


def copy_tree(tmp_path: Path) -> Path:
    """The service's sources and what the tests import, without any build."""
    root = tmp_path / "repo"
    ignore = shutil.ignore_patterns("*.so", MANIFEST, "__pycache__")
    for part in ("services", "shared", "tests/tftp", "tests/harness", "scripts"):
        shutil.copytree(REPO / part, root / part, ignore=ignore)
    for name in ("conftest.py",):
        if (REPO / "tests" / name).exists():
            shutil.copy(REPO / "tests" / name, root / "tests" / name)
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def which(root: Path, **extra) -> list[str]:
    run = subprocess.run([sys.executable, "-c", WHICH], capture_output=True, text=True,
                         env=env(PYTHONPATH=str(root), **extra), cwd=root, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


def test_a_build_is_used_until_its_source_changes_and_its_tests_pass(tmp_path):
    """Built from a copy of the sources: the compiled modules load and pass the session, codec
    and server tests; an edited source (or BOOTYARD_TFTP_NATIVE=0) brings back the pure ones."""
    root = copy_tree(tmp_path)
    assert which(root)[0] == "False"                       # not built: sources
    build = subprocess.run([sys.executable, "scripts/build_native.py", "services.tftp"], cwd=root,
                           capture_output=True, text=True, timeout=600, env=env())
    assert build.returncode == 0 and "compiled session, codec" in build.stdout, build.stderr
    manifest = json.loads((root / "services/tftp" / MANIFEST).read_text())
    assert manifest["sources"]["session.py"] == hashlib.sha256(
        (root / "services/tftp/session.py").read_bytes()).hexdigest()
    native, _reason, *files = which(root)
    assert native == "True" and all(f.endswith(".so") for f in files), files
    run_tests(root, TESTS)
    assert which(root, BOOTYARD_TFTP_NATIVE="0")[0] == "False"
    pxd = root / "services/tftp/pump.pxd"
    declarations = pxd.read_bytes()
    pxd.write_bytes(declarations + b"\n# edited after the build\n")  # the pump's C side
    native, *reason = which(root)
    assert native == "False" and "pump.pxd changed since the build" in " ".join(reason)
    pxd.write_bytes(declarations)
    assert which(root)[0] == "True"
    with (root / "services/tftp/codec.py").open("a") as f:
        f.write("\n# edited after the build\n")
    native, *reason = which(root)
    assert native == "False" and "codec.py changed since the build" in " ".join(reason)
    subprocess.run([sys.executable, "scripts/build_native.py", "--clean", "services.tftp"], cwd=root,
                   check=True, timeout=60, env=env())
    assert not list((root / "services/tftp").glob("*.so"))
