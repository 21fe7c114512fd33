import os

import pytest

from shared.addresses import (
    AddressError,
    mac_to_bytes,
    normalise_ipv4,
    normalise_mac,
)
from shared.paths import PathRefused, clean_relative, resolve_under


@pytest.mark.parametrize("spelling", [
    "52:54:00:ab:cd:ef", "52-54-00-AB-CD-EF", "5254.00ab.cdef", "525400ABCDEF",
    " 52:54:00:Ab:cD:eF ", "01-52-54-00-ab-cd-ef", "52:54:0:ab:cd:ef".replace(":0:", ":00:"),
])
def test_mac_spellings_normalise_to_one(spelling):
    assert normalise_mac(spelling) == "52:54:00:ab:cd:ef"


def test_single_digit_octets_as_arp_prints_them():
    assert normalise_mac("2:4:0:a:b:c") == "02:04:00:0a:0b:0c"


@pytest.mark.parametrize("bad", ["", "52:54:00:ab:cd", "52:54:00:ab:cd:ef:01", "zz:54:00:ab:cd:ef",
                                 "52:54-00:ab:cd:ef", "5254.00ab.cdeg", "hello"])
def test_bad_macs_say_why(bad):
    with pytest.raises(AddressError, match="not a MAC address"):
        normalise_mac(bad)


def test_mac_bytes_round_trip():
    assert mac_to_bytes("52-54-00-ab-cd-ef") == bytes.fromhex("525400abcdef")


def test_ipv4():
    assert normalise_ipv4(" 10.0.0.1 ") == "10.0.0.1"
    with pytest.raises(AddressError, match="999.1.1.1"):
        normalise_ipv4("999.1.1.1")


@pytest.fixture
def root(tmp_path):
    served = tmp_path / "root"
    (served / "pxelinux.cfg").mkdir(parents=True)
    (served / "pxelinux.0").write_bytes(b"loader")
    (tmp_path / "secret").write_text("secret")
    os.symlink(tmp_path / "secret", served / "escape")
    os.symlink(served / "pxelinux.0", served / "inside-link")
    return served


def test_names_inside_the_root_resolve(root):
    assert resolve_under(root, "pxelinux.0") == root / "pxelinux.0"
    assert resolve_under(root, "/pxelinux.0") == root / "pxelinux.0"  # leading slash = the root
    assert resolve_under(root, "pxelinux.cfg\\default") == root / "pxelinux.cfg" / "default"
    assert resolve_under(root, "inside-link") == root / "pxelinux.0"
    assert resolve_under(root, "./a//b") == root / "a" / "b"


@pytest.mark.parametrize("name,reason", [
    ("../secret", "traversal"), ("pxelinux.cfg/../../secret", "traversal"),
    ("..\\secret", "traversal"), ("%2e%2e/secret", "encoded"), ("..%2fsecret", "encoded"),
    ("%5c..%5csecret", "encoded"), ("a\x00b", "control_char"), ("C:\\boot.ini", "absolute"),
    ("escape", "escape"), ("x" * 1100, "too_long"),
])
def test_escapes_are_refused_with_a_reason(root, name, reason):
    with pytest.raises(PathRefused) as err:
        resolve_under(root, name)
    assert err.value.reason == reason


def test_absolute_path_stays_inside_the_root(root):
    # "/etc/passwd" means <root>/etc/passwd, which does not exist: a not-found, never the host's.
    assert resolve_under(root, "/etc/passwd") == root / "etc" / "passwd"


def test_empty_name_is_the_root():
    assert str(clean_relative("/")) == "."
