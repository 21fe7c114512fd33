"""Fixtures of the fleet tests (groups, overrides, one-shot boots, custom DHCP options): the
`bootyard` command in-process against the test's Redis, and a raw Redis client."""

from harness.clikit import cli, raw  # noqa: F401 - pytest fixtures
