"""Metrics as Prometheus users expect them: a build info with the version, no _created series."""

import urllib.request
from importlib import metadata

from shared import metrics


async def test_build_info_has_the_version_and_no_created_series():
    runner = await metrics.start_metrics_server("127.0.0.1", 0)
    try:
        port = metrics.bound_port(runner)
        import asyncio
        text = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10)
            .read().decode())
    finally:
        await runner.cleanup()
    version = metadata.version("bootyard")
    assert f'bootyard_build_info{{version="{version}"}} 1.0' in text
    assert "bootyard_redis_errors_total{" in text  # counters are there ...
    assert "_created" not in text  # ... without their _created series


def test_license_matches_pyproject():
    from pathlib import Path
    repo = Path(__file__).parents[2]
    assert 'license = { text = "Apache-2.0" }' in (repo / "pyproject.toml").read_text()
    assert "Apache License" in (repo / "LICENSE").read_text().splitlines()[0] + \
        (repo / "LICENSE").read_text()[:200]
