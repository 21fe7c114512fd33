"""The high-availability tests use the DHCP service fixture of the DHCP lab tests."""

from harness.dhcpkit import dhcp_process  # noqa: F401 - a fixture
