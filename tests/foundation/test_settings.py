import dataclasses

import pytest

from shared.settings import (
    CommonSettings,
    SettingsError,
    describe,
    load_settings,
    port_number,
    setting,
)


@dataclasses.dataclass(frozen=True)
class DemoSection:
    interfaces: tuple[str, ...] = setting((), help="interfaces to serve")
    port: int = setting(67, help="server port", check=port_number)
    proxy: bool = setting(False, help="proxyDHCP mode")
    offer_hold: float = setting(30.0, help="seconds")
    server: str | None = setting(None, help="address")
    mode: str = setting("a", choices=("a", "b"))


@dataclasses.dataclass(frozen=True)
class DemoSettings(CommonSettings):
    dhcp: DemoSection = dataclasses.field(default_factory=DemoSection)


def test_defaults():
    cfg = load_settings(DemoSettings, None, {})
    assert cfg.redis.url == "redis://127.0.0.1:6379/0"
    assert cfg.dhcp.port == 67 and cfg.dhcp.interfaces == () and cfg.log.format == "kv"


def test_yaml_then_environment(tmp_path):
    path = tmp_path / "bootyard.yaml"
    path.write_text("redis:\n  url: redis://db:6379/1\ndhcp:\n  interfaces: [eth1, eth2]\n"
                    "  port: 6767\n  proxy: yes\ntftp:\n  anything: goes\n")
    env = {"BOOTYARD_DHCP__PORT": "1067", "BOOTYARD_LOG__FORMAT": "json",
           "BOOTYARD_TFTP__ROOT": "/srv/tftp", "BOOTYARD_DHCP__OFFER_HOLD": "2.5",
           "BOOTYARD_DHCP__SERVER": "10.0.0.1"}
    cfg = load_settings(DemoSettings, path, env)
    assert cfg.dhcp.interfaces == ("eth1", "eth2")
    assert cfg.dhcp.port == 1067 and cfg.dhcp.proxy is True and cfg.dhcp.offer_hold == 2.5
    assert cfg.redis.url == "redis://db:6379/1" and cfg.log.format == "json"
    assert cfg.dhcp.server == "10.0.0.1"


def test_config_path_from_environment_and_redis_url_shortcut(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("dhcp:\n  interfaces: eth0,eth1\n")
    cfg = load_settings(DemoSettings, None, {"BOOTYARD_CONFIG": str(path),
                                             "BOOTYARD_REDIS_URL": "redis://r:1/2"})
    assert cfg.dhcp.interfaces == ("eth0", "eth1") and cfg.redis.url == "redis://r:1/2"


@pytest.mark.parametrize("env,message", [
    ({"BOOTYARD_DHCP__PORT": "abc"},
     "dhcp.port = 'abc' (from environment BOOTYARD_DHCP__PORT): expected an integer"),
    ({"BOOTYARD_DHCP__PORT": "70000"}, "a port must be between 0 and 65535"),
    ({"BOOTYARD_DHCP__PROXY": "maybe"}, "dhcp.proxy = 'maybe' (from environment "
                                        "BOOTYARD_DHCP__PROXY): expected true or false"),
    ({"BOOTYARD_DHCP__MODE": "c"}, "dhcp.mode = 'c' (from environment BOOTYARD_DHCP__MODE): "
                                   "must be one of a, b"),
    ({"BOOTYARD_DHCP__INTERFACE": "eth0"}, "dhcp.interface: unknown key (from environment "
                                           "BOOTYARD_DHCP__INTERFACE)"),
    ({"BOOTYARD_DHPC__PORT": "1"}, "BOOTYARD_DHPC__PORT: unknown section 'dhpc'"),
    ({"BOOTYARD_PORT": "1"}, "BOOTYARD_PORT: not a setting"),
    ({"BOOTYARD_LOG__FORMAT": "xml"}, "must be one of kv, json"),
])
def test_bad_values_name_key_source_and_reason(env, message):
    with pytest.raises(SettingsError) as err:
        load_settings(DemoSettings, None, env)
    assert message in str(err.value)


def test_bad_file_contents_name_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("dhcp:\n  port: [1, 2]\n")
    with pytest.raises(SettingsError, match=rf"dhcp.port = \[1, 2\] \(from file {path}\)"):
        load_settings(DemoSettings, path, {})
    path.write_text("dhcpd:\n  port: 1\n")
    with pytest.raises(SettingsError, match="dhcpd: unknown section in file"):
        load_settings(DemoSettings, path, {})
    path.write_text("dhcp: [\n")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_settings(DemoSettings, path, {})
    with pytest.raises(SettingsError, match="cannot read it"):
        load_settings(DemoSettings, tmp_path / "missing.yaml", {})


def test_describe_lists_every_setting():
    keys = [row[0] for row in describe(DemoSettings)]
    assert "redis.url" in keys and "dhcp.interfaces" in keys and "log.level" in keys
