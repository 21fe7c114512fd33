"""The inventory documentation covers every key and field the schema knows."""

import re
from pathlib import Path

from shared.schema import KINDS

DOC = (Path(__file__).parents[2] / "docs" / "inventory.md").read_text()


def section(kind: str) -> str:
    match = re.search(rf"^## {kind} — `bootyard:{kind}:<\w+>`$(.*?)(?=^## )", DOC, re.M | re.S)
    assert match, f"docs/inventory.md has no section for {kind}"
    return match.group(1)


def test_every_field_of_every_kind_is_documented():
    for name, kind in KINDS.items():
        text = section(name)
        documented = set(re.findall(r"^\| `([a-z0-9_.<>]+)` \|", text, re.M))
        expected = set(kind.fields) | ({"var.<name>"} if kind.has_vars else set())
        assert documented == expected, f"{name}: documented {documented ^ expected} differ"
