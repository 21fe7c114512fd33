"""The docs cover what the code declares: every inventory key and field (docs/inventory.md),
every metric with its labels and label values (docs/metrics.md)."""

import json
import re
import subprocess
import sys
from pathlib import Path

from shared.schema import KINDS

REPO = Path(__file__).parents[2]
DOC = (REPO / "docs" / "inventory.md").read_text()


def section(kind: str) -> str:
    match = re.search(rf"^## {kind} — `bootyard:{kind}:<\w+>`$(.*?)(?=^## )", DOC, re.M | re.S)
    assert match, f"docs/inventory.md has no section for {kind}"
    return match.group(1)


def test_every_field_of_every_kind_is_documented():
    for name, kind in KINDS.items():
        text = section(name)
        documented = set(re.findall(r"^\| `([a-z0-9_.<>]+)` \|", text, re.M))
        expected = set(kind.fields) | ({"var.<name>"} if kind.has_vars else set()) \
            | {f"{family.prefix}<name>" for family in kind.families}
        assert documented == expected, f"{name}: documented {documented ^ expected} differ"


_DECLARED = """
import importlib, json, sys
from pathlib import Path
from prometheus_client.metrics import MetricWrapperBase
repo = Path(sys.argv[1])
modules = ["shared.metrics", "shared.events"] + [
    f"services.{p.parent.name}.metrics" for p in sorted(repo.glob("services/*/metrics.py"))]
suffix = {"counter": "_total", "info": "_info"}
found = {}
for module in map(importlib.import_module, modules):
    for metric in vars(module).values():
        if isinstance(metric, MetricWrapperBase):
            for family in metric.collect():
                values = sorted({v for s in family.samples for k, v in s.labels.items()
                                 if k != "le"})
                found[family.name + suffix.get(family.type, "")] = (
                    list(metric._labelnames), values)
print(json.dumps(found))
"""


def declared_metrics() -> dict[str, tuple[list[str], set[str]]]:
    """{exposed name: (label names, pre-initialised label values)} of every metric the metrics
    modules declare (services/*/metrics.py, shared/metrics.py, shared/events.py), read in a
    fresh process: label values other tests created in this one (a subnet's name) are not
    declarations."""
    out = subprocess.run([sys.executable, "-c", _DECLARED, str(REPO)], cwd=REPO, check=True,
                         capture_output=True, text=True, timeout=60)
    return {name: (labels, set(values))
            for name, (labels, values) in json.loads(out.stdout).items()}


def test_every_metric_is_documented_with_its_labels_and_values():
    doc = (REPO / "docs" / "metrics.md").read_text()
    rows = dict(re.findall(r"^\| `(bootyard_[a-z0-9_]+)` \|(.*)$", doc, re.M))
    declared = declared_metrics()
    assert set(rows) == set(declared), (f"docs/metrics.md lacks {set(declared) - set(rows)}, "
                                        f"names undeclared {set(rows) - set(declared)}")
    for name, (labels, values) in declared.items():
        missing = [f"`{x}`" for x in [*labels, *sorted(values)] if f"`{x}`" not in rows[name]]
        assert not missing, f"docs/metrics.md, row {name}: no {', '.join(missing)}"
