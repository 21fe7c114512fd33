"""make lock: write constraints.txt, the exact versions of bootyard's runtime and test
dependencies (and theirs) as installed in the interpreter running this script (the .venv).

`make install`, the container build (deploy/Dockerfile) and `make compose-test`'s wheels install
with ``-c constraints.txt``, so every machine runs the versions the tests passed with. After
upgrading a package in the venv and running the tests, `make lock` records the new versions;
shared/pins.py names the versions of the two packages whose private internals bootyard uses
(tests/foundation/test_packaging.py checks that both files agree).

    python scripts/lock.py            # write constraints.txt
    python scripts/lock.py --check    # exit 1 if constraints.txt differs from what it would write
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "constraints.txt"
EXTRAS = ("test", "native")
HEADER = """\
# Exact versions of bootyard's runtime and test dependencies, the ones the tests passed with.
# Written by `make lock` (scripts/lock.py) from the .venv; used by `make install`, deploy/Dockerfile
# and make compose-test (pip install -c constraints.txt). Do not edit by hand.
"""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure() -> dict[str, str]:
    """{canonical name: installed version} of every distribution the project's runtime and
    ``EXTRAS`` requirements need, recursively, for this interpreter (markers evaluated)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    roots = [Requirement(r) for r in project["dependencies"]]
    for extra in EXTRAS:
        roots += [Requirement(r) for r in project["optional-dependencies"][extra]]
    found: dict[str, str] = {}
    seen: set[tuple[str, tuple[str, ...]]] = set()
    todo = [(r, "") for r in roots]
    while todo:
        req, extra = todo.pop()
        if req.marker and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonical(req.name)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            sys.exit(f"lock: {req.name} ({req}) is not installed in {sys.prefix}: run make install")
        wanted_extras = sorted(req.extras)
        if (name, tuple(wanted_extras)) in seen:
            continue
        seen.add((name, tuple(wanted_extras)))
        found[name] = dist.version
        for sub in dist.requires or []:
            sub_req = Requirement(sub)
            if sub_req.marker is None:
                todo.append((sub_req, ""))
                continue
            for ext in [""] + wanted_extras:  # a dependency's own extras pull more in
                if sub_req.marker.evaluate({"extra": ext}):
                    todo.append((Requirement(str(sub_req).split(";")[0]), ""))
                    break
    return found


def render(versions: dict[str, str]) -> str:
    return HEADER + "".join(f"{name}=={version}\n" for name, version in sorted(versions.items()))


def main(argv: list[str]) -> int:
    text = render(closure())
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text() != text:
            print("lock: constraints.txt is not what the .venv has installed: run make lock",
                  file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"lock: wrote {OUT.relative_to(REPO)} ({text.count('==')} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
