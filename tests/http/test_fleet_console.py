"""The console's machine page for fleet work, in Debian's headless Chromium against the HTTP
service as a process and a real Redis: the effective values with their sources (groups), and
the reinstall / rescue-once / cancel buttons writing through the admin API."""

from __future__ import annotations

import redis
from httpkit import ADMIN_TOKEN

from harness.netlab import wait_for

MAC = "52:54:00:0d:00:01"


def test_machine_page_shows_effective_values_and_one_shot_buttons(console, redis_url):
    proc, browser = console
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.hset("bootyard:profile:debian12", mapping={
        "kernel": "debian12/linux", "initrd": "debian12/initrd.gz", "install": "preseed"})
    client.hset("bootyard:profile:live-rescue", mapping={
        "kernel": "rescue/vmlinuz", "root_image": "rescue/root.squashfs"})
    client.hset("bootyard:group:rack1", mapping={
        "match.tags": "rack1", "profile": "debian12", "kernel_args": "console=ttyS0"})
    client.hset(f"bootyard:host:{MAC}", mapping={"hostname": "web7", "tags": "rack1",
                                                "boot_mode": "local"})
    base = f"http://127.0.0.1:{proc.admin_port}"
    browser.get(base + "/console/")
    browser.type("#token", ADMIN_TOKEN)
    browser.click("#login")
    browser.wait("return location.pathname === '/console/'", what="logged in")
    browser.get(f"{base}/console/machines/{MAC}")
    browser.wait("return document.querySelectorAll('#effective tr').length >= 5",
                 what="the effective values")
    rows = browser.js("return [...document.querySelectorAll('#effective tr')]"
                      ".map(r => [...r.cells].map(c => c.textContent).join(' | '))")
    assert "profile | debian12 | group:rack1" in rows
    assert "kernel_args | console=ttyS0 | group:rack1" in rows
    assert "boot_mode | local | host" in rows
    assert browser.text("#groups").startswith("Groups: rack1 (1)")

    browser.click("#reinstall")
    wait_for(lambda: client.hget(f"bootyard:host:{MAC}", "boot_mode") == "install", 10,
             what="reinstall written")
    browser.type("#rescue-profile", "live-rescue")
    browser.click("#rescue")
    wait_for(lambda: client.hget(f"bootyard:host:{MAC}", "once_profile") == "live-rescue", 10,
             what="rescue written")
    browser.wait("return document.getElementById('groups').textContent"
                 ".includes('one-shot: live live-rescue')", what="the one-shot shown")
    browser.click("#rescue-cancel")
    wait_for(lambda: client.hget(f"bootyard:host:{MAC}", "once_profile") is None, 10,
             what="rescue cancelled")
    history = [e[1]["who"] for e in client.xrange("bootyard:audit")]
    assert history[-3:] == ["api:console@127.0.0.1"] * 3
    client.close()
