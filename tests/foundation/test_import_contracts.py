"""``make lint``'s import contracts (pyproject.toml ``[tool.importlinter]``, docs/architecture.md)
catch what they are there for. Each case breaks one rule in a copy of the tree and runs the same
``lint-imports`` that ``make lint`` runs; the untouched copy passes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


@pytest.fixture
def tree(tmp_path):
    """The packages and pyproject.toml, copied: the contracts are checked on this copy."""
    for package in ("shared", "services", "cli", "lab"):
        shutil.copytree(REPO / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    return tmp_path


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    assert LINT_IMPORTS.exists(), f"{LINT_IMPORTS} missing: make install (import-linter is a test extra)"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=120)


def add(tree: Path, module: str, text: str) -> None:
    path = tree / (module.replace(".", "/") + ".py")
    path.parent.mkdir(exist_ok=True)
    (path.parent / "__init__.py").touch()
    with path.open("a") as f:
        f.write(f"\n{text}\n")


def test_the_tree_keeps_every_contract(tree):
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("module, line, expected", [
    # the example: a codec that imports redis
    ("services.tftp.codec", "import redis", "services.tftp.codec is not allowed to import redis"),
    # a new service's session is held to the same floor, also through shared/
    ("services.blockexport.session", "from shared import store",
     "services.blockexport.session is not allowed to import redis"),
    ("services.dhcp.policy", "import asyncio", "services.dhcp.policy is not allowed to import asyncio"),
    ("services.http.render", "import socket", "services.http.render is not allowed to import socket"),
    # services do not import each other
    ("services.dhcp.server", "from services.tftp import render",
     "services.dhcp is not allowed to import services.tftp"),
    # shared/ is the floor
    ("shared.schema", "from services.dhcp import codec", "shared is not allowed to import services"),
    # one door to Redis
    ("services.http.access", "import redis", "services is not allowed to import redis"),
    ("shared.events", "import redis", "shared is not allowed to import redis"),
    ("cli.commands", "import redis", "cli is not allowed to import redis"),
])
def test_a_broken_rule_fails_the_check(tree, module, line, expected):
    add(tree, module, line)
    result = lint_imports(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in " ".join(result.stdout.split()), result.stdout
