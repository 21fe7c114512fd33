"""Checks of the Grafana dashboards in deploy/grafana/dashboards/ without a Grafana.

Grafana is not installable here, so a dashboard is checked by what Grafana would need from it:
  * structure: unique dashboard uids, unique panel ids, grid positions inside the 24-column grid
    that do not overlap, every query's datasource uid is the provisioned one, one row per service;
  * ``--promtool``: every panel query parses (each becomes a recording rule for
    ``promtool check rules``);
  * ``--prometheus URL``: every panel query returns data from a Prometheus scraping the running
    services (``make compose-test``), after every expected target is up.

Used by tests/deploy/test_dashboards.py (structure, syntax) and scripts/compose_test.sh (live).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "deploy" / "grafana" / "dashboards"
DATASOURCES = REPO / "deploy" / "grafana" / "provisioning" / "datasources"
GRID_COLUMNS = 24
# Grafana's interval variables, replaced by what Grafana would use for a 15 s scrape interval.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


def provisioned_uids() -> set[str]:
    uids = set()
    for path in sorted(DATASOURCES.glob("*.yaml")):
        for source in yaml.safe_load(path.read_text())["datasources"]:
            uids.add(source["uid"])
    return uids


def load_dashboards() -> dict[Path, dict]:
    return {path: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels_of(dashboard: dict) -> list[dict]:
    """Every panel, rows included, with collapsed rows' children."""
    out = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def queries(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL with Grafana's variables replaced) for every query of every panel."""
    out = []
    for panel in panels_of(dashboard):
        for target in panel.get("targets", []):
            expr = target.get("expr", "")
            for name, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(name, value)
            out.append((panel.get("title", "?"), expr))
    return out


def structure_problems(dashboards: dict[Path, dict], uids: set[str]) -> list[str]:
    problems = []
    seen_uids: dict[str, Path] = {}
    for path, dash in dashboards.items():
        where = path.name
        uid = dash.get("uid")
        if not uid:
            problems.append(f"{where}: no dashboard uid")
        elif uid in seen_uids:
            problems.append(f"{where}: uid {uid!r} also used by {seen_uids[uid].name}")
        else:
            seen_uids[uid] = path
        if not dash.get("title"):
            problems.append(f"{where}: no title")
        elif dash["title"] in {p.get("title") for p in panels_of(dash)}:
            problems.append(f"{where}: dashboard title {dash['title']!r} is a panel's title")
        ids: set[int] = set()
        cells: dict[tuple[int, int], str] = {}
        for panel in panels_of(dash):
            title = panel.get("title", "?")
            pid = panel.get("id")
            if not isinstance(pid, int):
                problems.append(f"{where}: panel {title!r} has no integer id")
            elif pid in ids:
                problems.append(f"{where}: panel id {pid} is used twice")
            else:
                ids.add(pid)
            grid = panel.get("gridPos") or {}
            if not all(isinstance(grid.get(k), int) for k in ("x", "y", "w", "h")):
                problems.append(f"{where}: panel {title!r} has no complete gridPos")
                continue
            if grid["x"] < 0 or grid["w"] <= 0 or grid["h"] <= 0 or grid["x"] + grid["w"] > GRID_COLUMNS:
                problems.append(f"{where}: panel {title!r} gridPos {grid} is outside the grid")
            for x in range(grid["x"], grid["x"] + grid["w"]):
                for y in range(grid["y"], grid["y"] + grid["h"]):
                    if (x, y) in cells:
                        problems.append(f"{where}: panel {title!r} overlaps {cells[(x, y)]!r}")
                        break
                    cells[(x, y)] = title
                else:
                    continue
                break
            if panel.get("type") == "row":
                continue
            if not panel.get("targets"):
                problems.append(f"{where}: panel {title!r} has no query")
            sources = [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets", [])]
            for source in sources:
                if not isinstance(source, dict) or source.get("uid") not in uids:
                    problems.append(f"{where}: panel {title!r} datasource {source!r} is not the "
                                    f"provisioned one ({', '.join(sorted(uids))})")
            for target in panel.get("targets", []):
                if not target.get("expr", "").strip():
                    problems.append(f"{where}: panel {title!r} has an empty query")
                if not target.get("refId"):
                    problems.append(f"{where}: panel {title!r} has a query without refId")
    return problems


def promtool_problems(dashboards: dict[Path, dict]) -> list[str]:
    """Each query as a recording rule; ``promtool check rules`` parses them all."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return ["promtool not found (Debian package prometheus; scripts/install-debian-packages.sh)"]
    rules = []
    for path, dash in dashboards.items():
        for n, (_title, expr) in enumerate(queries(dash)):
            rules.append({"record": f"dashboard:{path.stem.replace('-', '_')}:q{n}", "expr": expr})
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as handle:
        yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}, handle)
        handle.flush()
        run = subprocess.run([promtool, "check", "rules", handle.name],
                             capture_output=True, text=True)
    if run.returncode != 0:
        return [f"promtool check rules: {run.stdout}{run.stderr}"]
    return []


def _get(base: str, path: str, **params) -> dict:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}" if params else f"{base}{path}"
    with urllib.request.urlopen(url, timeout=10) as reply:
        body = json.load(reply)
    if body.get("status") != "success":
        raise RuntimeError(f"{url}: {body}")
    return body["data"]


def wait_targets(base: str, jobs: set[str], timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    state: dict[str, str] = {}
    while True:
        try:
            targets = _get(base, "/api/v1/targets")["activeTargets"]
            state = {t["labels"]["job"]: f"{t['health']} {t.get('lastError', '')}".strip()
                     for t in targets}
        except OSError as exc:
            state = {"(prometheus)": f"unreachable: {exc}"}
        if all(state.get(job) == "up" for job in jobs):
            print(f"targets up: {', '.join(sorted(jobs))}")
            return []
        if time.monotonic() > deadline:
            return [f"target {job}: {state.get(job, 'not configured')}"
                    for job in sorted(jobs) if state.get(job) != "up"]
        time.sleep(2)


def live_problems(base: str, dashboards: dict[Path, dict], timeout: float) -> list[str]:
    """Every query must return at least one series (rates need two scrapes: retry a while)."""
    pending = [(path.name, title, expr) for path, dash in dashboards.items()
               for title, expr in queries(dash)]
    deadline = time.monotonic() + timeout
    while True:
        still = []
        for name, title, expr in pending:
            result = _get(base, "/api/v1/query", query=expr)["result"]
            if not result:
                still.append((name, title, expr))
        if not still:
            print(f"{sum(len(queries(d)) for d in dashboards.values())} dashboard queries "
                  f"returned data")
            return []
        if time.monotonic() > deadline:
            return [f"{name}: panel {title!r}: no data for {expr}" for name, title, expr in still]
        pending = still
        time.sleep(3)


def wait_redis_up(base: str, timeout: float, scrape_interval: float = 15.0) -> list[str]:
    """After a Redis restart: a fresh scrape of every service says bootyard_redis_up == 1."""
    time.sleep(scrape_interval + 1)  # samples from before the restart do not count
    deadline = time.monotonic() + timeout
    while True:
        result = _get(base, "/api/v1/query", query="bootyard_redis_up")["result"]
        down = [r["metric"].get("job", "?") for r in result if float(r["value"][1]) != 1.0]
        if result and not down:
            print(f"bootyard_redis_up == 1 for {', '.join(sorted(r['metric'].get('job', '?') for r in result))}")
            return []
        if time.monotonic() > deadline:
            return [f"bootyard_redis_up is not 1 for {', '.join(down) or 'any service'}"]
        time.sleep(2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--promtool", action="store_true", help="check query syntax with promtool")
    parser.add_argument("--prometheus", metavar="URL", help="evaluate every query against it")
    parser.add_argument("--wait-targets", type=float, default=0, metavar="SECONDS")
    parser.add_argument("--expect-jobs", default="", help="comma-separated scrape jobs that must be up")
    parser.add_argument("--wait-redis-up", type=float, default=0, metavar="SECONDS")
    args = parser.parse_args(argv)

    dashboards = load_dashboards()
    if not dashboards:
        print(f"no dashboards in {DASHBOARDS}", file=sys.stderr)
        return 1
    problems = structure_problems(dashboards, provisioned_uids())
    if args.promtool:
        problems += promtool_problems(dashboards)
    if args.prometheus and args.wait_redis_up:
        problems += wait_redis_up(args.prometheus, args.wait_redis_up)
    elif args.prometheus:
        jobs = {j for j in args.expect_jobs.split(",") if j}
        problems += wait_targets(args.prometheus, jobs, args.wait_targets)
        if not problems:
            problems += live_problems(args.prometheus, dashboards, timeout=90)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
