"""The shipped alerts fire for real, and reach the receiver Alertmanager routes them to.

One stack in a lab namespace (processes there share its loopback): a real redis-server (Unix
socket), the DHCP service serving the lab segment with a two-address pool, the HTTP service,
Debian's Prometheus and Alertmanager, and a webhook receiver standing in for the operator's. The
Prometheus configuration is the shipped deploy/prometheus/prometheus.yml with loopback targets
and one-second scrape and evaluation intervals; its rules are the shipped alerts.yml with every
``for`` shortened to a few seconds (the expressions are the shipped ones, checked below). The
Alertmanager configuration is the shipped one with the receiver's URL pointed at the test's
receiver and short group waits.

Each test provokes its condition for real (a cmdline template and an install file that cannot render, DHCP clients
in namespaces exhausting the pool, a host whose boot stops after its script, Redis gone while
events pile up) and waits, bounded, until Alertmanager's API lists the alert and the receiver
got it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness.dhcpkit import DhcpProcess, UnixRedis
from harness.labservice import LabService
from harness.netlab import Lab, wait_for
from services.http.access import host_token

pytestmark = [pytest.mark.lab, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PROM_PORT, AM_PORT, RECEIVER_PORT = 9090, 9093, 9099
HTTP_PORT = 8080
STUCK_MAC = "52:54:00:a1:e7:01"
BROKEN_MAC = "52:54:00:a1:e7:02"
FOR = "2s"  # every rule's `for`, shortened
ALERT_WAIT = 150  # seconds an alert may take to reach Alertmanager and the receiver

RECEIVER = """
import http.server, sys
out = sys.argv[2]
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(out, "ab") as f:
            f.write(body + b"\\n")
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Hook).serve_forever()
"""


class HttpProcess(LabService):
    service = "http"
    defaults = {"host": "127.0.0.1", "port": str(HTTP_PORT), "admin_host": "127.0.0.1",
                "metrics_host": "127.0.0.1", "metrics_port": "9103",
                "token_secret": "ops17-alert-test-secret"}

    def _serving(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"http exited: {self.log()}")
        return "event=listening" in self.log()


def prometheus_config(rules: Path, ports: dict[str, int]) -> dict:
    """The shipped prometheus.yml for loopback: the jobs of the services running here, their
    targets on 127.0.0.1 (same ports, same target labels), alerts to our Alertmanager."""
    shipped = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    config = dict(shipped, rule_files=[str(rules)])
    config["global"] = dict(shipped["global"], scrape_interval="1s", evaluation_interval="1s")
    config["alerting"] = {"alertmanagers": [{"static_configs": [
        {"targets": [f"127.0.0.1:{AM_PORT}"]}]}]}
    jobs = []
    for job in shipped["scrape_configs"]:
        if job["job_name"] not in ports:
            continue
        static = job["static_configs"][0]
        port = int(static["targets"][0].rsplit(":", 1)[1])
        assert port == ports[job["job_name"]], f"{job['job_name']} scraped on {port}"
        jobs.append(dict(job, static_configs=[dict(static, targets=[f"127.0.0.1:{port}"])]))
    assert {j["job_name"] for j in jobs} == set(ports)
    config["scrape_configs"] = jobs
    return config


def rules_copy() -> dict:
    """The shipped rules with every ``for`` shortened to :data:`FOR`; nothing else changes."""
    shipped = yaml.safe_load((REPO / "deploy" / "prometheus" / "alerts.yml").read_text())
    copy = yaml.safe_load(yaml.safe_dump(shipped))
    for group in copy["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = FOR
    strip = [{k: v for k, v in r.items() if k != "for"} for g in shipped["groups"] for r in g["rules"]]
    assert strip == [{k: v for k, v in r.items() if k != "for"}
                     for g in copy["groups"] for r in g["rules"]]
    return copy


def alertmanager_config() -> dict:
    """The shipped alertmanager.yml, its receiver pointed at the test's, groups sent at once."""
    config = yaml.safe_load((REPO / "deploy" / "alertmanager" / "alertmanager.yml").read_text())
    assert [r["name"] for r in config["receivers"]] == ["operator"]
    config["receivers"][0]["webhook_configs"][0]["url"] = \
        f"http://127.0.0.1:{RECEIVER_PORT}/alerts"
    for route in [config["route"], *config["route"].get("routes", [])]:
        route.update(group_wait="1s", group_interval="1s")
    return config


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.lab = Lab()
        self.seg = self.lab.segment(clients=3)
        self.ns = self.seg.server
        self.redis = UnixRedis(tmp / "redis")
        self.services: list[LabService] = []

    def start(self) -> None:
        self.redis.start()
        self.seed()
        self.services.append(DhcpProcess(self.ns, self.redis.url, self.tmp / "dhcp.log",
                                         metrics_port="9101"))
        images = self.tmp / "images"
        images.mkdir()
        (images / "tiny.bin").write_bytes(b"x" * 64)
        templates = self.tmp / "templates"
        templates.mkdir(exist_ok=True)  # an install file that cannot render: the 5xx alert
        (templates / "am-broken.ks.j2").write_text("network --hostname={{ vars.am_missing }}\n")
        self.http = HttpProcess(self.ns, self.redis.url, self.tmp / "http.log",
                                templates_dir=str(templates),
                                images_root=str(images),
                                extra_env={"BOOTYARD_BOOTSTATE__SCRIPT": "1"})
        self.services.append(self.http)
        (self.tmp / "rules.yml").write_text(yaml.safe_dump(rules_copy()))
        (self.tmp / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config(
            self.tmp / "rules.yml", {"bootyard-dhcp": 9101, "bootyard-http": 9103})))
        (self.tmp / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager_config()))
        self.received = self.tmp / "received.jsonl"
        self.received.touch()
        (self.tmp / "receiver.py").write_text(RECEIVER)
        self.logs = {}
        self.popen("receiver", sys.executable, str(self.tmp / "receiver.py"), str(RECEIVER_PORT),
                   str(self.received))
        self.popen("alertmanager", shutil.which("prometheus-alertmanager"),
                   f"--config.file={self.tmp / 'alertmanager.yml'}",
                   f"--storage.path={self.tmp / 'am-data'}",
                   f"--web.listen-address=127.0.0.1:{AM_PORT}", "--cluster.listen-address=")
        self.popen("prometheus", shutil.which("prometheus"),
                   f"--config.file={self.tmp / 'prometheus.yml'}",
                   f"--storage.tsdb.path={self.tmp / 'prom-data'}",
                   f"--web.listen-address=127.0.0.1:{PROM_PORT}")
        wait_for(lambda: self.ready(f"http://127.0.0.1:{AM_PORT}/-/ready", "alertmanager"), 60,
                 what="alertmanager ready")
        wait_for(lambda: self.ready(f"http://127.0.0.1:{PROM_PORT}/-/ready", "prometheus"), 60,
                 what="prometheus ready")
        wait_for(lambda: self.query('up{job=~"bootyard-.*"} == 1', at_least=2), 60,
                 what="both services scraped")

    def seed(self) -> None:
        client = self.redis.client()
        base = self.seg.network.rsplit(".", 1)[0]
        client.hset("bootyard:subnet:lab", mapping={
            "network": self.seg.network, "ranges": f"{base}.100-{base}.101",
            "router": self.seg.address(1), "lease_time": "600"})
        client.hset("bootyard:profile:am-live", mapping={
            "kernel": "vmlinuz", "initrd": "initrd.img", "cmdline": "console=ttyS0"})
        # A cmdline template that cannot render (written as redis-cli would: no write checks)
        client.hset("bootyard:profile:am-broken", mapping={
            "kernel": "vmlinuz", "initrd": "initrd.img",
            "cmdline": "console=ttyS0 {{ vars.am_missing }}",
            "install": "kickstart", "template": "am-broken.ks.j2"})
        client.hset(f"bootyard:host:{STUCK_MAC}", mapping={"profile": "am-live"})
        client.hset(f"bootyard:host:{BROKEN_MAC}", mapping={"profile": "am-broken"})

    def popen(self, name: str, *argv: str) -> None:
        self.logs[name] = self.tmp / f"{name}.log"
        handle = self.logs[name].open("w")
        proc = self.ns.popen(*argv, stdout=handle, stderr=subprocess.STDOUT, cwd=str(self.tmp))
        self.procs = getattr(self, "procs", {})
        self.procs[name] = proc

    def ready(self, url: str, name: str) -> bool:
        if self.procs[name].poll() is not None:
            raise RuntimeError(f"{name} exited: {self.logs[name].read_text()[-2000:]}")
        return self.ns.run("curl", "-fsS", "--max-time", "3", url, check=False).returncode == 0

    def get(self, url: str, *args: str) -> str:
        return self.ns.run("curl", "-sS", "-g", "--max-time", "10", *args, url,
                           timeout=30).stdout

    def query(self, expr: str, at_least: int = 1) -> list[dict] | None:
        out = self.get(f"http://127.0.0.1:{PROM_PORT}/api/v1/query", "-G",
                       "--data-urlencode", f"query={expr}")
        result = json.loads(out)["data"]["result"]
        return result if len(result) >= at_least else None

    def alerts(self, labels: dict[str, str]) -> list[dict]:
        filters = [a for k, v in labels.items() for a in ("--data-urlencode", f'filter={k}="{v}"')]
        out = self.get(f"http://127.0.0.1:{AM_PORT}/api/v2/alerts", "-G", *filters)
        return [a for a in json.loads(out) if a["status"]["state"] == "active"]

    def delivered(self, labels: dict[str, str]) -> list[dict]:
        """Firing alerts with ``labels`` the receiver got."""
        found = []
        for line in filter(None, self.received.read_text().splitlines()):
            found += [a for a in json.loads(line)["alerts"] if a["status"] == "firing"
                      and labels.items() <= a["labels"].items()]
        return found

    def wait_alert(self, name: str, **labels: str) -> dict:
        """The labels of alert ``name`` (with ``labels``) once Alertmanager lists it and the
        receiver got it."""
        labels = {"alertname": name, **labels}
        active = wait_for(lambda: self.alerts(labels), ALERT_WAIT,
                          interval=1, what=f"Alertmanager to list {labels}")
        wait_for(lambda: self.delivered(labels), 30, interval=0.5,
                 what=f"the receiver to get {labels}")
        assert all(a["receivers"] == [{"name": "operator"}] for a in active)
        return active[0]["labels"]

    def metric(self, port: int, name: str) -> float:
        text = self.get(f"http://127.0.0.1:{port}/metrics")
        match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        return float(match.group(1)) if match else 0.0

    def close(self) -> None:
        for service in self.services:
            service.stop()
        self.lab.close()  # the Prometheus, Alertmanager and receiver processes with it
        if self.redis.proc is not None:
            self.redis.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    the_stack = Stack(tmp_path_factory.mktemp("alerts"))
    try:
        the_stack.start()
        yield the_stack
    finally:
        the_stack.close()


def boot_script(stack: Stack, mac: str) -> str:
    """GET /boot/ipxe?mac= from inside the namespace; returns the status code."""
    return stack.get(f"http://127.0.0.1:{HTTP_PORT}/boot/ipxe?mac={mac}",
                     "-o", "/dev/null", "-w", "%{http_code}")


def test_services_expose_build_info_and_no_created_series(stack):
    for port in (9101, 9103):
        text = stack.get(f"http://127.0.0.1:{port}/metrics")
        assert re.search(r'^bootyard_build_info\{version="[^"]+"\} 1\.0$', text, re.M), port
        assert "_created" not in text, port
        assert not re.search(r'[{,]service="', text), port  # no label clashing with the target's


def test_render_errors_alert(stack):
    wait_for(lambda: stack.query('bootyard_http_renders_total{template="cmdline",result="error"}'),
             30, what="the render counter scraped at 0")
    # the host gets a script that says it cannot boot (200); the error is counted and logged
    assert boot_script(stack, BROKEN_MAC) == "200"
    labels = stack.wait_alert("BootyardRenderErrors", template="cmdline")
    assert labels["service"] == "http" and labels["severity"] == "warning"


def test_http_server_errors_alert(stack):
    wait_for(lambda: stack.query('bootyard_http_requests_total{family="install",status="5xx"}'),
             30, what="the request counter scraped")
    token = host_token("ops17-alert-test-secret", BROKEN_MAC)
    for _ in range(6):  # the alert wants at least 5 in 10 minutes, and over 5% of the family
        assert stack.get(f"http://127.0.0.1:{HTTP_PORT}/install/{BROKEN_MAC}/ks.cfg"
                         f"?token={token}", "-o", "/dev/null", "-w", "%{http_code}") == "500"
    labels = stack.wait_alert("BootyardHttpServerErrors", family="install")
    assert labels["job"] == "bootyard-http" and labels["severity"] == "warning"


def test_pool_exhausted_alerts(stack):
    wait_for(lambda: stack.query('bootyard_dhcp_ignored_total{reason="pool_exhausted"}'), 30,
             what="the ignored counter scraped")
    udhcpc = ("busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "3", "-T", "1",
              "-s", "/bin/true")
    for client in stack.seg.clients[:2]:  # the pool's two addresses
        client.run(*udhcpc, timeout=30)
    refused = stack.seg.clients[2].run(*udhcpc, check=False, timeout=30)
    assert refused.returncode != 0
    assert stack.metric(9101, 'bootyard_dhcp_ignored_total{reason="pool_exhausted"}') >= 1
    labels = stack.wait_alert("BootyardPoolExhausted")
    assert labels["job"] == "bootyard-dhcp" and labels["severity"] == "critical"
    stack.wait_alert("BootyardPoolNearlyExhausted", subnet="lab")


def test_stuck_host_alert(stack):
    assert boot_script(stack, STUCK_MAC) == "200"  # then never asks for its kernel
    labels = stack.wait_alert("BootyardHostsStuck", reason="kernel_not_fetched")
    assert labels["severity"] == "warning" and "mac" not in labels


def test_events_dropped_alert(stack):
    """Last: Redis goes away for good. The HTTP service queues each /images/ fetch's event
    until its queue (20 000 events) is full, then drops the oldest."""
    wait_for(lambda: stack.query("bootyard_events_dropped_total"), 30,
             what="the dropped counter scraped")
    stack.redis.stop()
    stack.redis.proc = None
    url = f"http://127.0.0.1:{HTTP_PORT}/images/tiny.bin"
    deadline = time.monotonic() + 240
    while stack.metric(9103, "bootyard_events_dropped_total") == 0:
        assert time.monotonic() < deadline, "no event dropped after 240 s of /images/ fetches"
        stack.ns.run("wrk", "-t1", "-c8", "-d5s", url, timeout=60)
    labels = stack.wait_alert("BootyardEventsDropped", service="http")
    assert labels["job"] == "bootyard-http"
