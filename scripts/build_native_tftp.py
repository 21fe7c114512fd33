"""Compile the TFTP per-block path (services/tftp/session.py and codec.py) with mypyc, from the
same typed source, into extension modules beside the sources (``make native-tftp``, part of
``make install``); shared/native.py has the rules for when they are used.

    python scripts/build_native_tftp.py            # build (or say why not, and exit 0)
    python scripts/build_native_tftp.py --clean    # remove what a build left

Optional by design: without mypy (mypyc), a C compiler or Python's headers, or when compilation
fails, it says so and exits 0, and the service runs the pure-Python modules.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "services" / "tftp"
sys.path.insert(0, str(REPO))

from services.tftp import COMPILED, GROUP  # noqa: E402
from shared.native import MANIFEST, extension_files  # noqa: E402


def clean() -> None:
    (PACKAGE / MANIFEST).unlink(missing_ok=True)
    for name in extension_files(COMPILED, GROUP):
        (PACKAGE / name).unlink(missing_ok=True)


def build(verbose: bool) -> str | None:
    """Build in place; None on success, else why not (nothing is left half-built)."""
    try:
        import mypyc  # noqa: F401
    except ImportError:
        return "mypy (with mypyc) is not installed: pip install mypy"
    if not shutil.which(os.environ.get("CC", "cc")):
        return "no C compiler (Debian: gcc)"
    sources = [f"services/tftp/{name}.py" for name in COMPILED]
    with tempfile.TemporaryDirectory(prefix="bootyard-native-tftp-") as tmp:
        # a child process (setuptools and mypyc print; a failure stays there), with a
        # Distribution of its own (setup() would read pyproject.toml, which is not for this)
        code = (
            "from setuptools import Distribution\n"
            "from mypyc.build import mypycify\n"
            f"d = Distribution({{'name': 'bootyard-tftp-native', 'ext_modules': mypycify(\n"
            f"    {['--follow-imports=silent', *sources]!r}, opt_level='3',\n"
            f"    target_dir={tmp!r}, group_name='services.tftp.{GROUP}')}})\n"
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
                "sources": {f"{name}.py": hashlib.sha256(
                    (PACKAGE / f"{name}.py").read_bytes()).hexdigest() for name in COMPILED}}
    (PACKAGE / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")  # last
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
        print(f"build_native_tftp: not compiled ({why}); the TFTP service runs the "
              "pure-Python modules", file=sys.stderr)
        return 0
    print(f"build_native_tftp: compiled {', '.join(COMPILED)} (services/tftp/{MANIFEST})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
