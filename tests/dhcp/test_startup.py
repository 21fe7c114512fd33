"""The DHCP service refuses to start without an explicitly configured interface."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def start(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BOOTYARD_")}
    clean.update(env)
    return subprocess.run([sys.executable, "-m", "services.dhcp"], capture_output=True,
                          text=True, env=clean, cwd=REPO, timeout=30)


@pytest.mark.parametrize("env, message", [
    ({}, "dhcp.interfaces is empty"),
    ({"BOOTYARD_DHCP__INTERFACES": "by-nosuch0"}, "no interface 'by-nosuch0'"),
    ({"BOOTYARD_DHCP__INTERFACES": "eth9", "BOOTYARD_DHCP__EVENTS": "some"},
     "dhcp.events = 'some'"),
])
def test_refuses_to_start(env, message):
    result = start(**env)
    assert result.returncode == 2
    assert message in result.stderr


def test_check_config_lists_dhcp_settings():
    result = subprocess.run([sys.executable, "-m", "services.dhcp", "--check-config"],
                            capture_output=True, text=True, cwd=REPO, timeout=30,
                            env={**os.environ, "BOOTYARD_DHCP__INTERFACES": "eth1,eth2"})
    assert result.returncode == 0
    assert "dhcp.interfaces = ('eth1', 'eth2')" in result.stdout
    assert "dhcp.proxy = False" in result.stdout
