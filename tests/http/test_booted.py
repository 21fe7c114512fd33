"""``/booted/<mac>`` and ``/booted``: a live, netroot or sanboot system says it is up (an
``http.booted`` event, which the boot state reads as the stage ``up``), allowed as the done
callback is: the host's token, or its reserved or leased address."""

from __future__ import annotations

import time

from httpkit import MAC, SECRET

from services.http.access import host_token
from shared import keys
from shared.bootstate import boot_state

OTHER = "52:54:00:ab:cd:ef"


async def setup(inv, mac=MAC, **host):
    await inv.put("profile", "live", kernel="live/vmlinuz", initrd="live/initrd.img",
                  root_image="live/root.squashfs")
    fields = dict(hostname="web1", profile="live", boot_mode="live")
    fields.update(host)
    await inv.put("host", mac, **fields)


async def test_booted_by_reserved_address_and_the_live_script_names_it(inventory, http):
    await setup(inventory, ip="127.0.0.1")
    script = await (await http.get(f"/boot/ipxe?mac={MAC}")).text()
    assert f"bootyard.booted=http://10.0.0.1:8080/booted/{MAC} " in script
    resp = await http.get(f"/booted/{MAC}")
    assert resp.status == 200 and await resp.text() == f"bootyard: {MAC} is up\n"
    events = await inventory.events_of("http.booted", MAC)
    assert [(e.fields["via"], e.fields["ip"]) for e in events] == [("reserved", "127.0.0.1")]
    state = boot_state(MAC, await inventory.events_of(mac=MAC), time.time())
    assert state.stage == "up"


async def test_booted_needs_the_token_from_another_address(inventory, http):
    await setup(inventory, ip="10.9.9.9")
    refused = await http.post(f"/booted/{MAC}")
    assert refused.status == 403
    denied = await inventory.events_of("http.denied", MAC)
    assert denied[-1].fields["file"] == "booted" and denied[-1].fields["reason"] == "address"
    assert (await http.post(f"/booted/{MAC}?token=nope")).status == 403
    ok = await http.put(f"/booted/{MAC}?token={host_token(SECRET, MAC)}")
    assert ok.status == 200
    assert (await inventory.events_of("http.booted", MAC))[-1].fields["via"] == "token"
    assert (await http.delete(f"/booted/{MAC}")).status == 405
    assert (await http.get(f"/booted/{OTHER}")).status == 403  # not in the inventory


async def test_booted_without_a_mac_finds_the_host_by_its_address(inventory, http):
    # a sanboot golden image shared by many hosts cannot carry a per-host URL
    assert (await http.get("/booted")).status == 403  # nobody at 127.0.0.1
    await setup(inventory, mac=OTHER)  # no reserved address: its lease says who it is
    await inventory.client.hset(keys.lease("127.0.0.1"), mapping={
        "mac": OTHER, "client": OTHER, "state": "bound", "expires": str(int(time.time()) + 600),
        "subnet": "lab", "hostname": ""})
    resp = await http.get("/booted")
    assert resp.status == 200 and OTHER in await resp.text()
    assert (await inventory.events_of("http.booted", OTHER))[-1].fields["via"] == "lease"
    await setup(inventory, ip="127.0.0.1")  # a reserved address wins
    resp = await http.get("/booted")
    assert resp.status == 200 and MAC in await resp.text()
