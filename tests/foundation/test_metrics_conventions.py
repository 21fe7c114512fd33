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
    import tomllib
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    assert "Apache License" in (repo / "LICENSE").read_text().splitlines()[0] + \
        (repo / "LICENSE").read_text()[:200]


def test_declarations_refuse_other_units_and_scrape_target_labels():
    """One naming pattern (docs/metrics.md, Rules): base units at the end, histograms of time in
    _duration_seconds, a noun before the unit, no label a scrape target already carries."""
    import pytest
    refused = [
        (lambda: metrics.histogram("bootyard_test_latency_ms", "x", (1,)), "base units"),
        (lambda: metrics.counter("bootyard_test_kilobytes_total", "x"), "base units"),
        (lambda: metrics.histogram("bootyard_test_reply_seconds", "x", (1,)), "_duration_seconds"),
        (lambda: metrics.counter("bootyard_test_bytes_total", "x"), "must name what it measures"),
        (lambda: metrics.gauge("bootyard_test_seconds_left", "x"), "the unit goes at the end"),
        (lambda: metrics.counter("bootyard_test_events_total", "x", {"service": ("a",)}),
         "scrape target's label"),
        (lambda: metrics.gauge("bootyard_test_things", "x", {"instance": ("a",)}),
         "scrape target's label"),
    ]
    for declare, reason in refused:
        with pytest.raises(ValueError, match=reason):
            declare()
    metrics.histogram("bootyard_test_reply_duration_seconds", "x", (1,))
    metrics.histogram("bootyard_test_reply_size_bytes", "x", (1,))
    metrics.counter("bootyard_test_sent_bytes_total", "x", {"component": ("a",)})
    metrics.gauge("bootyard_test_last_timestamp_seconds", "x")
