"""Fixtures for the DHCP tests (defined in harness.dhcpkit)."""

from harness.dhcpkit import dhcp_process, unix_redis  # noqa: F401 - pytest fixtures
