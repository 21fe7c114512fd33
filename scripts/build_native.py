"""Compile the DHCP packet path (codec, policy, replies) with mypyc, from the same typed Python
source, into extension modules beside the sources (``make install``, the image).

    python scripts/build_native.py            # build (or say why not, and exit 0)
    python scripts/build_native.py --clean    # remove what a build left

Optional by design: without mypy (the ``native`` extra), a C compiler or Python's headers
(gcc, python3-dev), or when compilation fails, it says so and exits 0, and the service runs the
pure-Python modules. ``services/dhcp/__init__.py`` loads the compiled modules only when
``native.json`` (written last, here) records the SHA-256 of each module's current source:
an edited ``.py`` is never shadowed by an older build. ``BOOTYARD_DHCP_NATIVE=0`` turns them off.
docs/dhcp.md "Compiled packet path"; the measurements are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "services" / "dhcp"
sys.path.insert(0, str(REPO))

from services.dhcp import COMPILED, MANIFEST, SHARED_LIB  # noqa: E402


def sources() -> list[Path]:
    return [PACKAGE / f"{name}.py" for name in COMPILED]


def clean() -> None:
    (PACKAGE / MANIFEST).unlink(missing_ok=True)
    for name in (*COMPILED, SHARED_LIB):
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            (PACKAGE / f"{name}{suffix}").unlink(missing_ok=True)


def build(verbose: bool) -> str | None:
    """Build in place; None on success, else why not (nothing is left half-built)."""
    try:
        import mypyc  # noqa: F401
    except ImportError:
        return "mypy (with mypyc) is not installed: pip install '.[native]'"
    if not shutil.which(os.environ.get("CC", "cc")):
        return "no C compiler (Debian: gcc)"
    with tempfile.TemporaryDirectory(prefix="bootyard-native-") as tmp:
        # a child process: setuptools and mypyc write to stdout, and a failure stays there
        # (a Distribution of its own: setup() would read pyproject.toml, which is not for this)
        mods = ["--follow-imports=silent", *(str(p.relative_to(REPO)) for p in sources())]
        code = (
            "from setuptools import Distribution\n"
            "from mypyc.build import mypycify\n"
            f"d = Distribution({{'name': 'bootyard-dhcp-native', 'ext_modules': mypycify(\n"
            f"    {mods!r}, opt_level='3', target_dir={tmp!r},\n"
            f"    group_name='services.dhcp.{SHARED_LIB}')}})\n"
            f"d.script_args = ['-q', 'build_ext', '--inplace', '--build-temp', {tmp!r}]\n"
            "d.parse_command_line()\n"
            "d.run_commands()\n")
        res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                             text=True)
    if verbose or res.returncode:
        sys.stdout.write(res.stdout[-4000:])
        sys.stderr.write(res.stderr[-4000:])
    if res.returncode:
        clean()
        last = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
        return f"mypyc failed (exit {res.returncode}): {last}"
    manifest = {"python": sys.version.split()[0],
                "sources": {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                            for p in sources()}}
    (PACKAGE / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clean", action="store_true", help="remove the compiled modules")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    clean()
    if args.clean:
        return 0
    why = build(args.verbose)
    if why is not None:
        print(f"build_native: not compiled ({why}); the DHCP service runs the pure-Python "
              "modules", file=sys.stderr)
        return 0
    print(f"build_native: compiled {', '.join(COMPILED)} (services/dhcp/{MANIFEST})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
