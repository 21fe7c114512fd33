"""The web console in a real browser: Debian's headless Chromium, driven over WebDriver
(chromedriver), against the HTTP service as a process and a real Redis. Log in, see hosts move
through their boot stages as events arrive (live, over the server-sent events), filter, change a
boot mode and see it in Redis, check the session cookie and the CSRF rule, log out.

``BOOTYARD_SCREENSHOTS=<dir>`` (``make screenshots``) also writes the pages' PNGs there."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis
from httpkit import ADMIN_TOKEN

from harness.netlab import wait_for
from shared import keys

FRESH = "52:54:00:0c:00:01"
STUCK = "52:54:00:0c:00:02"


def emit(client, mac, ts, service, kind, **fields):
    """An event as the services write it (both streams), at time ``ts``."""
    entry = {"ts": f"{ts:.3f}", "service": service, "kind": kind, "mac": mac, **fields}
    client.xadd(keys.EVENTS_STREAM, entry)
    client.xadd(keys.host_events(mac), entry)


def rows(browser):
    return browser.js("return [...document.querySelectorAll('#machines tbody tr')]"
                      ".filter(r => !r.hidden).map(r => r.dataset.mac + ' ' + r.dataset.state)")


def test_console_login_live_states_filter_boot_mode_logout(console, redis_url, tmp_path):
    proc, browser = console
    shots = Path(os.environ.get("BOOTYARD_SCREENSHOTS") or tmp_path)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.hset("bootyard:profile:debian12", mapping={
        "kernel": "debian12/linux", "initrd": "debian12/initrd.gz", "install": "preseed"})
    client.hset(f"bootyard:host:{FRESH}", mapping={"hostname": "web1", "ip": "10.0.0.21",
                                                  "profile": "debian12", "tags": "web"})
    client.hset(f"bootyard:host:{STUCK}", mapping={"hostname": "db1", "ip": "10.0.0.22",
                                                  "profile": "debian12", "tags": "db"})
    base = f"http://127.0.0.1:{proc.admin_port}"

    browser.get(base + "/console/")
    assert browser.url == base + "/console/login"  # no session: the login form
    browser.type("#token", "wrong")
    browser.click("#login")
    browser.wait("return document.querySelector('p.error') !== null", what="the refusal")
    assert "wrong token" in browser.text("p.error")
    browser.type("#token", ADMIN_TOKEN)
    browser.click("#login")
    browser.wait("return location.pathname === '/console/'", what="logged in")
    browser.wait("return document.getElementById('live').textContent === 'live'",
                 what="the live stream connected")
    assert sorted(rows(browser)) == [f"{FRESH} idle", f"{STUCK} idle"]
    assert "token" not in browser.url

    cookies = {c["name"]: c for c in browser.cmd("GET", "/cookie")}
    session = cookies["bootyard_console"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert browser.js("return document.cookie") == ""  # the page's scripts cannot read it

    # hosts move through their stages as the services' events arrive
    now = time.time()
    for kind in ("dhcp.offer", "dhcp.ack"):
        emit(client, FRESH, now, "dhcp", kind, ip="10.0.0.21", boot_file="undionly.kpxe")
        emit(client, STUCK, now - 100, "dhcp", kind, ip="10.0.0.22", boot_file="undionly.kpxe")
    emit(client, STUCK, now - 99, "tftp", "tftp.transfer", ip="10.0.0.22",
         file="undionly.kpxe", result="not_found")
    browser.wait(f"return document.querySelector('tr[data-mac=\"{STUCK}\"]')"
                 ".dataset.state === 'stuck'", what="the stuck host shown stuck")
    browser.wait(f"return document.querySelector('tr[data-mac=\"{FRESH}\"]')"
                 ".dataset.state === 'progressing'", what="the fresh host progressing")
    reason = browser.text(f'tr[data-mac="{STUCK}"] td.reason')
    assert reason.startswith("asked TFTP for undionly.kpxe: not found")
    emit(client, FRESH, time.time(), "tftp", "tftp.transfer", ip="10.0.0.21",
         file="undionly.kpxe", result="ok")
    browser.wait(f"return document.querySelector('tr[data-mac=\"{FRESH}\"] td:nth-child(6)')"
                 ".textContent === 'loader fetched'", what="the fresh host reached its loader")
    browser.screenshot(shots / "console-machines.png")

    # filters
    browser.js("const s = document.getElementById('f-state'); s.value = 'stuck';"
               "s.dispatchEvent(new Event('input'))")
    assert rows(browser) == [f"{STUCK} stuck"]
    browser.js("const s = document.getElementById('f-state'); s.value = '';"
               "s.dispatchEvent(new Event('input'));"
               "const t = document.getElementById('f-tag'); t.value = 'web';"
               "t.dispatchEvent(new Event('input'))")
    assert rows(browser) == [f"{FRESH} progressing"]
    browser.js("const t = document.getElementById('f-tag'); t.value = '';"
               "t.dispatchEvent(new Event('input'))")
    assert len(rows(browser)) == 2

    # one machine: its stages, record, timeline; set its boot mode through the API's validation
    browser.click(f'a[href="/console/machines/{STUCK}"]')
    browser.wait("return document.getElementById('reason') !== null", what="machine page")
    assert "not found" in browser.text("#reason")
    browser.wait("return document.querySelectorAll('#events tbody tr').length >= 3",
                 what="the timeline")
    assert browser.js("return [...document.querySelectorAll('#events tr.attempt')]"
                      ".map(r => r.textContent)") == [
        f"boot attempt {STUCK}@{round(float(f'{now - 100:.3f}') * 1000)}"]
    assert browser.js("return [...document.querySelectorAll('.stage b')]"
                      ".map(b => b.textContent)") == ["dhcp", "offered", "bound"]
    assert browser.js("return [...document.querySelectorAll('#attempts tbody tr')]"
                      ".map(r => r.dataset.attempt + ' ' + r.textContent.includes('stuck'))") == [
        f"{STUCK}@{round(float(f'{now - 100:.3f}') * 1000)} true"]
    browser.screenshot(shots / "console-machine.png")
    browser.click('button[data-mode="local"]')
    wait_for(lambda: client.hget(f"bootyard:host:{STUCK}", "boot_mode") == "local", 10,
             what="boot mode written to Redis")
    browser.wait("return document.getElementById('mode').textContent === 'local'",
                 what="the page shows the new mode")

    # the cookie alone does not write: a write needs the session's CSRF token
    request = urllib.request.Request(
        f"{base}/api/v1/hosts/{STUCK}", method="PATCH", data=json.dumps(
            {"boot_mode": "install"}).encode(),
        headers={"Content-Type": "application/json",
                 "Cookie": f"bootyard_console={session['value']}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 403
    assert client.hget(f"bootyard:host:{STUCK}", "boot_mode") == "local"

    storage_page(browser, client, shots)

    browser.click("#logout")
    browser.wait("return location.pathname === '/console/login'", what="logged out")
    browser.get(base + "/console/")
    assert browser.url == base + "/console/login"
    client.close()


def storage_page(browser, client, shots: Path) -> None:
    """The mirrors and exports overview: from the nav, each mirror's freshness from the
    mirrorsync status, each export's size, overlays and sessions from what the blockexport
    service published; live when a sync ends."""
    now = time.time()
    client.hset("bootyard:mirror:debian", mapping={
        "source": "rsync://deb.example/debian/", "path": "debian", "interval": "21600"})
    client.hset(keys.mirror_status("debian"), mapping={
        "state": "idle", "last_success": f"{now - 3600:.0f}", "size": str(3 << 30),
        "files": "120345", "last_result": "published"})
    client.hset("bootyard:mirror:rocky", mapping={
        "source": "rsync://rocky.example/rocky/", "path": "rocky", "interval": "3600"})
    client.hset(keys.mirror_status("rocky"), mapping={
        "state": "idle", "last_success": f"{now - 5 * 3600:.0f}", "size": str(2 << 30),
        "files": "9000", "last_result": "published"})
    client.hset("bootyard:export:web-root", mapping={
        "kind": "aoe", "backing": "/srv/disks/golden.img", "cow": "yes", "aoe_shelf": "1",
        "aoe_slot": "1"})
    client.hset(keys.export_status("web-root"), mapping={
        "kind": "aoe", "size": str(8 << 30), "overlays": "2", "overlay_bytes": str(300 << 20),
        "free_bytes": str(50 << 30), "up": "1", "updated": f"{now:.0f}"})
    client.hset(keys.export_attached("web-root"), FRESH, f"{now + 600:.0f}")
    client.hset("bootyard:export:db-root", mapping={
        "kind": "iscsi", "backing": "/srv/disks/db.img", "iqn": "iqn.2026-11.org.example:db"})
    browser.click("#nav-storage")
    browser.wait("return document.querySelectorAll('#exports tbody tr').length === 2",
                 what="the overview")
    assert browser.js("return [...document.querySelectorAll('#mirrors tbody tr')]"
                      ".map(r => r.dataset.mirror + ' ' + r.dataset.fresh)") == [
        "debian true", "rocky false"]
    assert browser.text('tr[data-mirror="debian"] td:nth-child(3)').startswith(
        "fresh (60 min old, limit 12.0 h)")
    assert browser.text('tr[data-mirror="rocky"] td:nth-child(3)').startswith("stale")
    assert browser.text('tr[data-mirror="debian"] td:nth-child(5)') == "3.0 GiB"
    assert browser.js("return [...document.querySelectorAll('#exports tbody tr')]"
                      ".map(r => r.dataset.export + ' ' + r.dataset.state)") == [
        "db-root not served", "web-root up"]
    assert browser.text('tr[data-export="web-root"] td.overlays') == "2"
    assert browser.text('tr[data-export="web-root"] td:nth-child(7)') == "300.0 MiB"
    assert browser.text('tr[data-export="web-root"] td.sessions').strip() == FRESH
    browser.screenshot(shots / "console-storage.png")
    # a sync fails: the mirrorsync service's event refreshes the page
    client.hset(keys.mirror_status("rocky"), mapping={
        "state": "failed", "failures": "1", "last_error": "rsync exit 10 (socket I/O)"})
    client.xadd(keys.EVENTS_STREAM, {"ts": f"{time.time():.3f}", "service": "mirrorsync",
                                     "kind": "mirror.failed", "mirror": "rocky",
                                     "reason": "rsync_failed"})
    browser.wait("return document.querySelector('tr[data-mirror=\"rocky\"] td:nth-child(8)')"
                 ".textContent.startsWith('rsync exit 10')", what="the failed sync shown")


def test_console_with_5000_hosts_and_a_stream_of_events(console, redis_url, capsys):
    """5,000 hosts in the inventory and 100 events a second arriving: the list renders, filters
    and stays live. The times are printed (docs/console.md quotes them), not asserted."""
    proc, browser = console
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    pipe = client.pipeline(transaction=False)
    macs = [f"52:54:00:{n >> 16 & 255:02x}:{n >> 8 & 255:02x}:{n & 255:02x}" for n in range(5000)]
    for n, mac in enumerate(macs):
        pipe.hset(f"bootyard:host:{mac}", mapping={"hostname": f"node{n}",
                                                    "tags": "even" if n % 2 == 0 else "odd"})
    pipe.execute()
    base = f"http://127.0.0.1:{proc.admin_port}"
    browser.get(base + "/console/login")
    browser.type("#token", ADMIN_TOKEN)
    start = time.monotonic()
    browser.click("#login")
    browser.wait("return document.querySelectorAll('#machines tbody tr').length === 5000",
                 60, "5000 rows")
    loaded = time.monotonic() - start
    filtered = browser.js(
        "const t0 = performance.now(); const f = document.getElementById('f-text');"
        "f.value = 'node4999'; f.dispatchEvent(new Event('input'));"
        "return [performance.now() - t0, [...document.querySelectorAll('#machines tbody tr')]"
        ".filter(r => !r.hidden).length]")
    assert filtered[1] == 1
    browser.js("const f = document.getElementById('f-text'); f.value = '';"
               "f.dispatchEvent(new Event('input'))")
    browser.wait("return document.getElementById('live').textContent === 'live'", 15, "live")
    # 100 events a second for 5 seconds, on 500 hosts
    sent = 0
    t0 = time.monotonic()
    while sent < 500:
        mac = macs[sent % 500]
        emit(client, mac, time.time(), "dhcp", "dhcp.offer", ip="10.0.9.9",
             boot_file="undionly.kpxe")
        sent += 1
        time.sleep(max(0.0, t0 + sent / 100 - time.monotonic()))
    browser.wait("return Number(document.getElementById('live').dataset.events) >= 500", 30,
                 "every event seen by the page")
    browser.wait(f"return document.querySelector('tr[data-mac=\"{macs[499]}\"]')"
                 ".dataset.state === 'progressing'", 30, "the last host updated")
    responsive = browser.js("const t0 = performance.now(); const f = "
                            "document.getElementById('f-tag'); f.value = 'odd';"
                            "f.dispatchEvent(new Event('input'));"
                            "return performance.now() - t0")
    with capsys.disabled():
        print(f"\nconsole, 5000 hosts: login to 5000 rows {loaded:.2f} s; text filter "
              f"{filtered[0]:.0f} ms; after 500 events at 100/s, tag filter {responsive:.0f} ms")
    client.close()
