"""The console's Discovered page in Debian's headless Chromium (over WebDriver), against the HTTP
service as a process and a real Redis: the discovered machine is listed with its hardware, adopted
with a profile and a host name through the admin API (its checks, the session's CSRF token); a
write with the session cookie alone is refused."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import redis
from enlistkit import MAC, REPORT

from harness.netlab import stop_process, wait_for
from harness.webdriver import Browser
from shared import hardware
from shared.schema import KINDS

TOKEN = "console-token-0123456789"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def service(redis_url, tmp_path):
    ports = {"PORT": _port(), "ADMIN_PORT": _port(), "METRICS_PORT": _port()}
    (tmp_path / "images").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTYARD_")}
    env.update({f"BOOTYARD_HTTP__{k}": str(v) for k, v in ports.items()})
    env.update({"BOOTYARD_REDIS_URL": redis_url, "BOOTYARD_HTTP__HOST": "127.0.0.1",
                "BOOTYARD_HTTP__METRICS_HOST": "127.0.0.1",
                "BOOTYARD_HTTP__TOKEN_SECRET": "secret-0123456789",
                "BOOTYARD_HTTP__ADMIN_TOKEN": TOKEN,
                "BOOTYARD_HTTP__IMAGES_ROOT": str(tmp_path / "images"),
                "BOOTYARD_HTTP__MIRROR_ROOT": str(tmp_path),
                "BOOTYARD_HTTP__TEMPLATES_DIR": os.path.join(REPO, "templates")})
    proc = subprocess.Popen([sys.executable, "-m", "services.http"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "http.log", "wb"))

    def healthy() -> bool:
        assert proc.poll() is None, (tmp_path / "http.log").read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ports['METRICS_PORT']}/healthz",
                                        timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    wait_for(healthy, 20, what="the HTTP service healthy")
    browser = Browser()
    yield f"http://127.0.0.1:{ports['ADMIN_PORT']}", browser
    browser.close()
    stop_process(proc)


def test_the_discovered_page_adopts_a_machine(service, redis_url):
    base, browser = service
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.hset(KINDS["profile"].key("debian12"), mapping={"kernel": "debian12/linux"})
    client.hset(KINDS["discovered"].key(MAC), mapping={
        "ip": "198.18.5.120", "reports": "1", "last_seen": str(int(time.time())),
        "hw": hardware.dumps(hardware.check(REPORT))})
    browser.get(base + "/console/login")
    browser.type("#token", TOKEN)
    browser.click("#login")
    browser.wait("return location.pathname === '/console/'", what="logged in")
    browser.click('a[href="/console/discovered"]')
    browser.wait(f"return document.querySelector('tr[data-mac=\"{MAC}\"]') !== null",
                 what="the discovered machine listed")
    row = browser.text(f'tr[data-mac="{MAC}"]')
    assert "LAB-0042" in row and "vda 3.0 GiB" in row and f"{MAC} up" in row

    cookie = {c["name"]: c for c in browser.cmd("GET", "/cookie")}["bootyard_console"]
    request = urllib.request.Request(
        f"{base}/api/v1/discovered/{MAC}/adopt", method="POST",
        data=json.dumps({"profile": "debian12"}).encode(),
        headers={"Content-Type": "application/json",
                 "Cookie": f"bootyard_console={cookie['value']}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 403  # the cookie alone: no CSRF token
    assert not client.exists(KINDS["host"].key(MAC))

    browser.type(f'tr[data-mac="{MAC}"] input[data-field="hostname"]', "node7")
    browser.click(f'button[data-adopt="{MAC}"]')
    wait_for(lambda: client.exists(KINDS["host"].key(MAC)), 10, what="the host written")
    host = client.hgetall(KINDS["host"].key(MAC))
    assert host["profile"] == "debian12" and host["hostname"] == "node7"
    assert json.loads(host["hw"])["dmi"]["serial"] == "LAB-0042"
    browser.wait("return document.getElementById('adopt-result').textContent"
                 ".startsWith('adopted')", what="the page says so")
    browser.wait("return document.querySelectorAll('#discovered tbody tr').length === 0",
                 what="the list emptied")
    entries = client.xrevrange("bootyard:audit", count=5)
    assert any(f["who"] == "console" or f["who"].startswith("api:console")
               for _, f in entries), entries
    client.close()
