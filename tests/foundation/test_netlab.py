"""The network lab itself: namespaces are made, wired, reachable, and always removed."""

import subprocess

import pytest

from harness.netlab import Lab, list_namespaces

pytestmark = pytest.mark.lab


def test_segment_connects_server_and_clients():
    with Lab() as lab:
        seg = lab.segment(clients=2, client_addresses=True)
        assert seg.server.address == seg.address(1)
        for client in seg.clients:
            client.run("ping", "-c", "1", "-W", "2", seg.server.address)
        seg.clients[0].run("ping", "-c", "1", "-W", "2", seg.clients[1].address)
        names = [ns.name for ns in lab.namespaces]
        assert set(names) <= set(list_namespaces())
        # nothing of the lab is in the root namespace
        root_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        assert "br0" not in root_links and "vb" not in root_links
        tap = seg.add_tap()
        assert tap in seg.switch.run("ip", "-o", "link").stdout
    assert not set(names) & set(list_namespaces())


def test_lab_is_removed_even_when_the_test_fails():
    names = []
    with pytest.raises(RuntimeError):
        with Lab() as lab:
            seg = lab.segment(clients=1)
            proc = seg.server.popen("sleep", "60")
            names = [ns.name for ns in lab.namespaces]
            raise RuntimeError("test failed here")
    assert proc.poll() is not None
    assert not set(names) & set(list_namespaces())


def test_fixture_gives_a_lab(lab):
    seg = lab.segment()
    out = seg.server.run("ip", "-4", "-o", "addr", "show", "eth0").stdout
    assert seg.address(1) + "/24" in out
