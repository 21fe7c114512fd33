"""Fixtures of the CLI tests: the `bootyard` command run in-process against the test's Redis,
and a raw Redis client to look behind it."""

from harness.clikit import cli, raw  # noqa: F401 - pytest fixtures
