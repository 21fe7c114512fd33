"""POST /discovery/report and the discovery boot script, on the boot listener in-process with the
test's real Redis (leases written as the DHCP service writes them)."""

from __future__ import annotations

import json

from enlistkit import MAC, REPORT, report_body

from shared import audit, keys
from shared.schema import KINDS

JSON = {"Content-Type": "application/json"}
URL = f"/discovery/report?mac={MAC}"


async def test_a_leased_machine_is_recorded_with_its_hardware(env, boot, raw):
    client = await boot()
    await env.lease("127.0.0.1", MAC)
    resp = await client.post(URL, data=report_body(), headers=JSON)
    assert resp.status == 200, await resp.text()
    assert (await resp.text()).splitlines()[-1] == "action=poweroff"
    stored = raw.hgetall(KINDS["discovered"].key(MAC))
    assert stored["ip"] == "127.0.0.1" and stored["reports"] == "1"
    hw = json.loads(stored["hw"])
    assert hw["disks"][0]["size_bytes"] == REPORT["disks"][0]["size_bytes"]
    assert hw["nics"][0]["mac"] == MAC and hw["dmi"]["serial"] == "LAB-0042"
    first = stored["first_seen"]
    resp = await client.post(URL, data=report_body(cpus=4), headers=JSON)
    assert resp.status == 200
    stored = raw.hgetall(KINDS["discovered"].key(MAC))
    assert stored["reports"] == "2" and stored["first_seen"] == first
    assert json.loads(stored["hw"])["cpus"] == 4
    entries = await audit.history(env.client, KINDS["discovered"].key(MAC))
    assert [e.who for e in entries] == ["http:discovery", "http:discovery"]
    reports = await env.events_of("discovery.report")
    assert reports[-1].mac == MAC and reports[-1].fields["serial"] == "LAB-0042"
    assert reports[-1].fields["result"] == "recorded"


async def test_a_report_is_refused_from_an_address_without_the_macs_lease(env, boot, raw):
    client = await boot()
    await env.lease("127.0.0.1", "52:54:00:e0:00:99")  # another machine's lease
    resp = await client.post(URL, data=report_body(), headers=JSON)
    assert resp.status == 403 and "holds no lease" in await resp.text()
    await env.lease("127.0.0.1", MAC, state="released")
    resp = await client.post(URL, data=report_body(), headers=JSON)
    assert resp.status == 403
    assert not raw.exists(KINDS["discovered"].key(MAC))
    refused = await env.events_of("discovery.refused")
    assert [e.fields["reason"] for e in refused] == ["no_lease", "no_lease"]


async def test_size_shape_rate_and_switch_bound_what_an_unknown_machine_may_send(env, boot, raw):
    client = await boot(max_report_bytes=2048, reports_per_minute=3)
    await env.lease("127.0.0.1", MAC)
    resp = await client.post(URL, data=b"{" + b" " * 4096 + b"}", headers=JSON)
    assert resp.status == 413
    resp = await client.post(URL, data=report_body(cpu=2), headers=JSON)
    assert resp.status == 422 and "unknown member 'cpu'" in await resp.text()
    resp = await client.post(URL, data=report_body(disks=[{"name": "vda;reboot"}]),
                             headers=JSON)
    assert resp.status == 422 and "disks[0].name" in await resp.text()
    resp = await client.post(URL, data=report_body(), headers=JSON)
    assert resp.status == 429  # the fourth report this minute from this MAC
    assert not raw.exists(KINDS["discovered"].key(MAC))
    off = await boot(enabled=False)
    resp = await off.post(URL, data=report_body(), headers=JSON)
    assert resp.status == 404 and "discovery.enabled" in await resp.text()


async def test_a_new_machine_past_max_records_is_refused(env, boot, raw):
    client = await boot(max_records=1)
    await env.put("discovered", "52:54:00:e0:00:77", ip="10.0.0.77", reports=1)
    await env.lease("127.0.0.1", MAC)
    resp = await client.post(URL, data=report_body(), headers=JSON)
    assert resp.status == 507 and "discovery.max_records" in await resp.text()


async def test_a_known_hosts_report_replaces_its_hw(env, boot, raw):
    client = await boot()
    await env.put("host", MAC, ip="127.0.0.1", boot_mode="local")
    resp = await client.post(URL, data=report_body(), headers=JSON)  # its reserved address
    assert resp.status == 200 and "host_updated" in await resp.text()
    host = raw.hgetall(KINDS["host"].key(MAC))
    assert json.loads(host["hw"])["dmi"]["vendor"] == "QEMU"
    assert not raw.exists(KINDS["discovered"].key(MAC))


async def test_a_matching_rule_adopts_the_machine_at_once(env, boot, raw):
    client = await boot()
    await env.put("profile", "node", kernel="vmlinuz", initrd="initrd.img")
    await env.put("host", "52:54:00:e0:00:50", hostname="node-1", profile="node")
    await env.put("discovery_rule", "qemu", match="dmi.vendor=qemu,dmi.product=Standard PC*",
                  profile="node", hostname="node-{n}", tags="rack1")
    await env.put("discovery_rule", "dell", match="dmi.vendor=Dell*", profile="node")
    await env.lease("127.0.0.1", MAC)
    resp = await client.post(URL, data=report_body(), headers=JSON)
    assert resp.status == 200
    assert (await resp.text()).splitlines()[-1] == "action=reboot"  # it boots its profile now
    host = raw.hgetall(KINDS["host"].key(MAC))
    assert host["hostname"] == "node-2" and host["profile"] == "node"
    assert host["tags"] == "rack1" and json.loads(host["hw"])["cpus"] == 2
    assert not raw.exists(KINDS["discovered"].key(MAC))
    whos = [e.who for e in await audit.history(env.client, count=20)]
    assert "http:rule:qemu" in whos
    adopted = await env.events_of("discovery.adopted")
    assert adopted[-1].fields["rule"] == "qemu" and adopted[-1].fields["hostname"] == "node-2"


async def test_two_rules_of_one_priority_adopt_nothing_and_say_so(env, boot, raw):
    client = await boot()
    await env.put("profile", "node", kernel="vmlinuz")
    await env.put("discovery_rule", "a", match="dmi.vendor=QEMU", profile="node")
    await env.put("discovery_rule", "b", match="firmware=bios", profile="node")
    await env.lease("127.0.0.1", MAC)
    resp = await client.post(URL, data=report_body(), headers=JSON)
    assert (await resp.text()).splitlines()[-1] == "action=poweroff"
    assert not raw.exists(KINDS["host"].key(MAC))
    assert raw.exists(KINDS["discovered"].key(MAC))
    ties = await env.events_of("discovery.rule_tie")
    assert "rules a and b both match" in ties[-1].fields["reason"]


async def test_an_unknown_mac_gets_the_discovery_boot_when_enabled(env, boot):
    client = await boot(cmdline="console=ttyS0")
    for url in (f"/boot/ipxe?mac={MAC}", f"/boot/{MAC}.ipxe",
                f"/boot/discovery.ipxe?mac={MAC}"):
        text = await (await client.get(url)).text()
        assert "kernel http://10.0.0.1:8080/images/discovery/vmlinuz initrd=initrd.img " \
               f"bootyard.mac={MAC} bootyard.server=http://10.0.0.1:8080 " \
               "bootyard.after=poweroff bootyard.poll=30 console=ttyS0 || goto failed" in text, url
        assert "initrd --name initrd.img http://10.0.0.1:8080/images/discovery/initrd.img" \
               in text
    text = await (await client.get(f"/boot/grub.cfg?mac={MAC}")).text()  # UEFI HTTP boot
    assert "linux (http,10.0.0.1:8080)/images/discovery/vmlinuz bootyard.mac=" in text
    assert "initrd (http,10.0.0.1:8080)/images/discovery/initrd.img" in text
    waiting = await boot(after="wait")
    text = await (await waiting.get(f"/boot/ipxe?mac={MAC}")).text()
    assert "bootyard.after=wait" in text
    off = await boot(enabled=False)
    text = await (await off.get(f"/boot/ipxe?mac={MAC}")).text()
    assert "vmlinuz" not in text and "not in the inventory" in text  # the message, as before
    text = await (await off.get(f"/boot/discovery.ipxe?mac={MAC}")).text()
    assert "no discovery boot: discovery is not enabled" in text


async def test_a_report_the_image_would_send_is_accepted_as_it_is(env, boot, raw):
    """The JSON lab/discovery_image.py's /init writes for a VM without a serial (empty texts,
    two NICs, one without link) has the shape the service accepts."""
    client = await boot()
    await env.lease("127.0.0.1", MAC)
    body = ('{"dmi":{"vendor":"QEMU","product":"Standard PC (i440FX + PIIX, 1996)",'
            '"serial":"","uuid":"","board_vendor":"","board_product":"","bios_vendor":'
            '"SeaBIOS","bios_version":"1.16.2-debian-1.16.2-1"},"cpus":1,"cpu_model":'
            '" QEMU Virtual CPU version 2.5+","memory_bytes":536870912,"disks":[{"name":"vda",'
            '"size_bytes":1234567168,"serial":"","model":""}],"nics":[{"name":"eth0","mac":'
            f'"{MAC}","link":"up","driver":"virtio_net"}},{{"name":"eth1","mac":'
            '"52:54:00:e0:00:02","link":"down","driver":"e1000"}],"firmware":"bios",'
            '"arch":"x86_64"}\n')
    resp = await client.post(URL, data=body.encode(), headers=JSON)
    assert resp.status == 200, await resp.text()
    hw = json.loads(raw.hgetall(keys.object_key("discovered", MAC))["hw"])
    assert hw["cpu_model"] == "QEMU Virtual CPU version 2.5+"
    assert [n["link"] for n in hw["nics"]] == ["up", "down"]


async def test_a_waiting_machine_learns_when_it_has_been_adopted(env, boot):
    client = await boot(after="wait", poll_seconds=5)
    text = await (await client.get(f"/boot/ipxe?mac={MAC}")).text()
    assert "bootyard.after=wait bootyard.poll=5" in text
    url = f"/discovery/next?mac={MAC}"
    assert (await client.get(url)).status == 403  # no lease for this MAC here
    await env.lease("127.0.0.1", MAC)
    resp = await client.post(URL, data=report_body(), headers=JSON)
    assert (await resp.text()).splitlines()[-1] == "action=wait"
    assert (await (await client.get(url)).text()).splitlines()[-1] == "action=wait"
    await env.put("host", MAC, profile="node", hostname="node7")
    answer = await (await client.get(url)).text()
    assert answer.splitlines()[-1] == "action=reboot" and "host node7" in answer


async def test_a_chunked_report_is_read_whole_and_bounded(env, boot, raw):
    client = await boot(max_report_bytes=4096)
    await env.lease("127.0.0.1", MAC)

    async def pieces(data: bytes, size: int = 100):
        for i in range(0, len(data), size):
            yield data[i:i + size]

    resp = await client.post(URL, data=pieces(report_body()), headers=JSON)  # no length
    assert resp.status == 200, await resp.text()
    assert raw.hget(KINDS["discovered"].key(MAC), "reports") == "1"
    resp = await client.post(URL, data=pieces(b" " * 5000 + report_body()), headers=JSON)
    assert resp.status == 413
