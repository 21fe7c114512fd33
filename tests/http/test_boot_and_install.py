"""The boot/install routes against a real Redis inventory, through aiohttp's test client."""

from __future__ import annotations

import time

from httpkit import MAC, SECRET, make_service

from harness.waiting import wait_until
from services.http.access import host_token
from shared.schema import KINDS

PROFILE = dict(kernel="debian/linux", initrd="debian/initrd.gz", install="preseed",
               cmdline="auto=true url={{ urls.preseed }} hostname={{ host.hostname }} "
                       "{{ vars.console }}",
               **{"var.console": "console=ttyS0", "var.root_password_hash": "$6$salt$hash"})


async def setup(inv, **host):
    await inv.put("profile", "debian12", **PROFILE)
    fields = dict(hostname="web1", ip="127.0.0.1", profile="debian12")
    fields.update(host)
    await inv.put("host", MAC, **fields)


EXPECTED_INSTALL = """#!ipxe
# bootyard: web1 (52:54:00:12:34:56) profile debian12 boot mode install
echo bootyard: web1 (52:54:00:12:34:56): install debian12
kernel http://10.0.0.1:8080/images/debian/linux initrd=initrd.gz auto=true \
url=http://10.0.0.1:8080/install/52:54:00:12:34:56/preseed.cfg hostname=web1 console=ttyS0 \
|| goto failed
initrd --name initrd.gz http://10.0.0.1:8080/images/debian/initrd.gz || goto failed
boot || goto failed
:failed
echo bootyard: web1 (52:54:00:12:34:56): install failed: ${errno}
sleep 10
exit
"""


def coalesced(text: str) -> float:
    line = next(l for l in text.splitlines()
                if l.startswith('bootyard_http_events_coalesced_total{kind="http.script"}'))
    return float(line.split()[-1])


async def test_ipxe_script_by_query_and_by_path(inventory, http):
    await setup(inventory)
    before = coalesced(await (await http.get("/metrics")).text())
    for url in (f"/boot/ipxe?mac={MAC}", "/boot/52-54-00-12-34-56.ipxe",
                "/boot/ipxe?mac=5254.0012.3456"):
        resp = await http.get(url)
        assert resp.status == 200, url
        assert await resp.text() == EXPECTED_INSTALL
    # the same event for the same host within a second is written once (boot loops, load)
    events = await inventory.events_of("http.script", MAC)
    assert len(events) == 1 and events[-1].fields["outcome"] == "install"
    assert coalesced(await (await http.get("/metrics")).text()) == before + 2


async def test_each_mode_from_the_inventory(inventory, http):
    await setup(inventory)
    await inventory.put("export", "web1-root", kind="iscsi", backing="/srv/web1.img",
                        iqn="iqn.2026-11.org.example:web1")
    await inventory.put("profile", "san", export="web1-root")
    await inventory.put("host", MAC, hostname="web1", profile="san", boot_mode="sanboot")
    text = await (await http.get(f"/boot/ipxe?mac={MAC}")).text()
    assert "set initiator-iqn iqn.2026-11.org.bootyard:web1\n" \
           "sanboot iscsi:10.0.0.1:::0:iqn.2026-11.org.example:web1 || goto failed\n" in text
    await inventory.put("host", MAC, hostname="web1", profile="san", boot_mode="local")
    assert (await (await http.get(f"/boot/ipxe?mac={MAC}")).text()).endswith(
        "echo bootyard: web1 (52:54:00:12:34:56): booting from the local disk\nexit\n")


async def test_render_cache_follows_inventory_changes(inventory, http):
    await setup(inventory)
    assert await (await http.get(f"/boot/ipxe?mac={MAC}")).text() == EXPECTED_INSTALL
    await inventory.put("host", MAC, hostname="web2", ip="127.0.0.1", profile="debian12")
    text = await (await http.get(f"/boot/ipxe?mac={MAC}")).text()
    assert "hostname=web2" in text and "hostname=web1" not in text


async def test_unknown_host_is_recorded_as_discovery(inventory, http):
    resp = await http.get("/boot/ipxe?mac=52:54:00:99:99:99&arch=x86_64")
    assert resp.status == 200
    text = await resp.text()
    assert text.startswith("#!ipxe\n# bootyard: unknown host 52:54:00:99:99:99\n")
    report = await http.get("/boot/discover?mac=52:54:00:99:99:99&arch=x86_64&platform=pcbios"
                            "&product=Standard%20PC&serial=")
    assert report.status == 200
    events = await inventory.events_of("http.discovery", "52:54:00:99:99:99")
    assert [e.fields.get("stage") for e in events] == ["ipxe", "report"]
    assert events[0].fields["arch"] == "x86_64"
    assert events[1].fields["platform"] == "pcbios"
    assert events[1].fields["product"] == "Standard PC" and "serial" not in events[1].fields


async def test_bad_mac_is_400(inventory, http):
    resp = await http.get("/boot/ipxe?mac=nonsense")
    assert resp.status == 400 and "not a MAC address" in await resp.text()
    assert (await http.get("/boot/ipxe")).status == 400


async def test_grub_config(inventory, http):
    await setup(inventory)
    text = await (await http.get(f"/boot/grub.cfg?mac={MAC}")).text()
    assert "    linux (http,10.0.0.1:8080)/images/debian/linux auto=true " \
           "url=http://10.0.0.1:8080/install/52:54:00:12:34:56/preseed.cfg hostname=web1 " \
           "console=ttyS0\n" in text


# ---------------------------------------------------------------- install files and security

async def test_preseed_by_path_from_the_reserved_address(inventory, http):
    await setup(inventory)
    resp = await http.get(f"/install/{MAC}/preseed.cfg")
    assert resp.status == 200
    text = await resp.text()
    token = host_token(SECRET, MAC)
    assert "d-i passwd/root-password-crypted password $6$salt$hash\n" in text
    assert f'in-target curl -fsS -X POST "http://10.0.0.1:8080/install/{MAC}/done?token={token}"' \
        in text
    assert "d-i netcfg/get_hostname string web1\n" in text
    (event,) = await inventory.events_of("http.install", MAC)
    assert event.fields["via"] == "reserved" and event.fields["file"] == "preseed.cfg"
    # the profile installs with preseed: it has no kickstart
    assert (await http.get(f"/install/{MAC}/ks.cfg")).status == 404


async def test_kickstart_by_anaconda_mac_header(inventory, http):
    await setup(inventory)
    await inventory.put("profile", "debian12", kernel="k", install="kickstart",
                        **{"var.root_password_hash": "$6$x$y"})
    resp = await http.get("/install/ks.cfg", headers={
        "X-RHN-Provisioning-MAC-0": "eth0 52:54:00:aa:aa:aa",
        "X-RHN-Provisioning-MAC-1": f"eth1 {MAC.upper()}"})
    assert resp.status == 200
    text = await resp.text()
    assert text.startswith(f"# kickstart for web1 ({MAC}), profile debian12, by bootyard\n")
    assert "rootpw --iscrypted $6$x$y\n" in text
    by_path = await http.get(f"/install/{MAC}/ks.cfg")
    assert await by_path.text() == text


async def test_wrong_address_is_403_even_with_the_mac_header(inventory, http):
    await setup(inventory, ip="127.0.0.2")  # the test client connects from 127.0.0.1
    await inventory.put("profile", "debian12", kernel="k", install="kickstart",
                        **{"var.root_password_hash": "$6$x$y"})
    spoofed = await http.get("/install/ks.cfg",
                             headers={"X-RHN-Provisioning-MAC-0": f"eth0 {MAC}"})
    assert spoofed.status == 403
    assert "$6$" not in await spoofed.text()
    assert (await http.get(f"/install/{MAC}/ks.cfg")).status == 403
    bad = await http.get(f"/install/{MAC}/ks.cfg?token={'0' * 64}")
    assert bad.status == 403
    odd = await http.get(f"/install/{MAC}/ks.cfg?token=%C3%A9t%C3%A9")  # non-ASCII token
    assert odd.status == 403
    denied = await inventory.events_of("http.denied", MAC)
    # (the second bad token within a second is the same event: written once)
    assert [e.fields["reason"] for e in denied] == ["address", "address", "bad_token"]
    # with the host's token it works from anywhere
    ok = await http.get(f"/install/{MAC}/ks.cfg?token={host_token(SECRET, MAC)}")
    assert ok.status == 200 and "rootpw --iscrypted $6$x$y" in await ok.text()
    # an unknown MAC is refused too
    assert (await http.get("/install/52:54:00:00:00:01/ks.cfg")).status == 403


async def test_current_lease_grants_access_and_an_expired_one_does_not(inventory, http):
    await setup(inventory, ip="")  # no reserved address: a pool lease
    key = "bootyard:lease:127.0.0.1"
    await inventory.client.hset(key, mapping={"mac": MAC, "state": "bound", "subnet": "lab",
                                              "expires": str(int(time.time()) + 600),
                                              "hostname": ""})
    assert (await http.get(f"/install/{MAC}/preseed.cfg")).status == 200
    await inventory.client.hset(key, "expires", str(int(time.time()) - 1))
    assert (await http.get(f"/install/{MAC}/preseed.cfg")).status == 403
    await inventory.client.hset(key, mapping={"expires": str(int(time.time()) + 600),
                                              "mac": "52:54:00:00:00:02"})
    assert (await http.get(f"/install/{MAC}/preseed.cfg")).status == 403


async def test_broken_template_is_500_and_an_event(inventory, http):
    await setup(inventory)
    (inventory.tmp / "templates" / "broken.j2").write_text(
        "first line\n{% for x in vars.items() %}{{ x }}\n")  # unclosed for
    await inventory.put("profile", "debian12", kernel="k", install="preseed", template="broken.j2")
    resp = await http.get(f"/install/{MAC}/preseed.cfg")
    assert resp.status == 500
    body = await resp.text()
    # the public answer names what failed, not the template or Jinja2's text (the log does)
    assert body == "bootyard: cannot render this host's preseed; the HTTP service log says why\n"
    # a strict undefined variable is a render error too (no half file)
    (inventory.tmp / "templates" / "undef.j2").write_text("start\n{{ vars.nope }}\nend\n")
    await inventory.put("profile", "debian12", kernel="k", install="preseed", template="undef.j2")
    resp = await http.get(f"/install/{MAC}/preseed.cfg")
    assert resp.status == 500 and "start" not in await resp.text()
    events = await inventory.events_of("http.render_error", MAC)
    assert [e.fields["template"] for e in events] == ["broken.j2", "undef.j2"]
    assert "syntax error" in events[0].fields["reason"]
    assert "nope" in events[1].fields["reason"]


async def test_sandbox_refuses_unsafe_attribute_access(inventory, http):
    await setup(inventory)
    (inventory.tmp / "templates" / "evil.j2").write_text(
        "{{ vars.__class__.__mro__[1].__subclasses__() }}\n")
    await inventory.put("profile", "debian12", kernel="k", install="preseed", template="evil.j2")
    resp = await http.get(f"/install/{MAC}/preseed.cfg")
    assert resp.status == 500


async def test_cloud_init_files(inventory, http):
    await setup(inventory)
    await inventory.put("profile", "debian12", kernel="k", install="cloud-init",
                        **{"var.ssh_key": "ssh-ed25519 AAAA test"})
    meta = await http.get(f"/install/{MAC}/meta-data")
    assert await meta.text() == "instance-id: bootyard-525400123456\nlocal-hostname: web1\n"
    user = await (await http.get(f"/install/{MAC}/user-data")).text()
    assert user.startswith("#cloud-config\n") and "  - ssh-ed25519 AAAA test\n" in user
    assert f"/install/{MAC}/done?token={host_token(SECRET, MAC)}" in user
    vendor = await http.get(f"/install/{MAC}/vendor-data")
    assert vendor.status == 200 and "timezone: UTC" in await vendor.text()


async def test_install_done_switches_to_local_exactly_once(inventory, http):
    await setup(inventory, ip="10.9.9.9")
    token = host_token(SECRET, MAC)
    assert (await http.post(f"/install/{MAC}/done")).status == 403  # no token, wrong address
    first = await http.post(f"/install/{MAC}/done?token={token}")
    assert first.status == 200 and "recorded" in await first.text()
    raw = await inventory.store.raw(KINDS["host"], MAC)
    assert raw["boot_mode"] == "local" and raw["hostname"] == "web1"
    second = await http.get(f"/install/{MAC}/done?token={token}")
    assert second.status == 200 and "already" in await second.text()
    done = await inventory.events_of("http.install_done", MAC)
    assert len(done) == 1 and done[0].fields["via"] == "token"
    await inventory.cache.refresh()
    script = await (await http.get(f"/boot/ipxe?mac={MAC}")).text()
    assert script.endswith("booting from the local disk\nexit\n")


async def test_token_in_scripts_is_opt_in(inventory, aiohttp_client):
    await setup(inventory)
    plain = await aiohttp_client(make_service(inventory).app())
    assert "token=" not in await (await plain.get(f"/boot/ipxe?mac={MAC}")).text()
    opted = await aiohttp_client(make_service(inventory, token_in_scripts=True).app())
    assert f"preseed.cfg?token={host_token(SECRET, MAC)}" in \
        await (await opted.get(f"/boot/ipxe?mac={MAC}")).text()


async def test_inventory_unavailable_is_503(inventory, aiohttp_client):
    from shared.cache import BrokenInventory

    svc = make_service(inventory)
    svc.inventory = BrokenInventory()
    client = await aiohttp_client(svc.app())
    resp = await client.get(f"/boot/ipxe?mac={MAC}")
    assert resp.status == 503 and "inventory unavailable" in await resp.text()
    assert (await client.get("/healthz")).status == 503


async def test_the_request_line_says_how_an_install_file_was_allowed(inventory, http, caplog):
    await setup(inventory, ip="10.9.9.9")  # not the client's address: only its token serves
    token = host_token(SECRET, MAC)
    with caplog.at_level("INFO", logger="bootyard.http"):
        assert (await http.get(f"/install/{MAC}/preseed.cfg?token={token}")).status == 200
        await wait_until(lambda: any(r.getMessage() == "request" and
                                     r.fields.get("family") == "install"
                                     for r in caplog.records), 5, "the request line")
    (line,) = [r for r in caplog.records if r.getMessage() == "request"
               and r.fields.get("family") == "install"]
    assert line.fields["auth"] == "token" and token not in str(line.fields)
