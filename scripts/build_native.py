"""Compile the hot paths with mypyc, from the same typed Python source, into extension modules
beside the sources (``make native``, part of ``make install`` and the image): the DHCP packet
path (services/dhcp: codec, policy, replies, server, transport) and the TFTP per-block path
(services/tftp: session, codec, content; and its lock-step pump, built with Cython from
``pump.py`` and ``pump.pxd``). Each package's ``__init__`` names its modules (``COMPILED``, and
``CYTHON`` for those of them Cython builds); shared/native.py has the rules for when a build is
used.

    python scripts/build_native.py                    # every package (or say why not, exit 0)
    python scripts/build_native.py services.tftp      # one package
    python scripts/build_native.py --clean            # remove what a build left

Optional by design: without mypy (the ``native`` extra), a C compiler or Python's headers
(gcc, python3-dev), or when compilation fails, it says so and exits 0, and the service runs the
pure-Python modules. ``native.json`` (written last) records the SHA-256 of each module's
source: an edited ``.py`` is never shadowed by an older build. docs/dhcp.md "Compiled packet
path", docs/tftp.md; the measurements are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shared.native import MANIFEST, PACKAGES, extension_files, source_files  # noqa: E402


class Package:
    def __init__(self, dotted: str) -> None:
        self.dotted = dotted
        self.dir = REPO.joinpath(*dotted.split("."))
        module = importlib.import_module(dotted)
        self.compiled: tuple[str, ...] = module.COMPILED
        self.group: str = module.GROUP
        # the modules among COMPILED that Cython builds (the rest: mypyc)
        self.cython: tuple[str, ...] = getattr(module, "CYTHON", ())

    def sources(self) -> list[Path]:
        return [self.dir / f"{name}.py" for name in self.compiled]

    def clean(self) -> None:
        (self.dir / MANIFEST).unlink(missing_ok=True)
        for name in extension_files(self.compiled, self.group):
            (self.dir / name).unlink(missing_ok=True)


def build(pkg: Package, verbose: bool) -> str | None:
    """Build in place; None on success, else why not (nothing is left half-built)."""
    try:
        import mypyc  # noqa: F401
    except ImportError:
        return "mypy (with mypyc) is not installed: pip install '.[native]'"
    if pkg.cython:
        try:
            import Cython  # noqa: F401
        except ImportError:
            return "Cython is not installed: pip install '.[native]'"
    if not shutil.which(os.environ.get("CC", "cc")):
        return "no C compiler (Debian: gcc)"
    with tempfile.TemporaryDirectory(prefix="bootyard-native-") as tmp:
        # a child process: setuptools and mypyc write to stdout, and a failure stays there
        # (a Distribution of its own: setup() would read pyproject.toml, which is not for this)
        mods = ["--follow-imports=silent", *(str(p.relative_to(REPO)) for p in pkg.sources()
                                             if p.stem not in pkg.cython)]
        cy = [(f"{pkg.dotted}.{m}", str((pkg.dir / f"{m}.py").relative_to(REPO)))
              for m in pkg.cython]
        name = "bootyard-" + pkg.dotted.replace(".", "-") + "-native"
        code = (
            "from setuptools import Distribution\n"
            "from mypyc.build import mypycify\n"
            "from setuptools import Extension\n"
            f"exts = mypycify({mods!r}, opt_level='3', target_dir={tmp!r},\n"
            f"    group_name='{pkg.dotted}.{pkg.group}')\n"
            f"if {cy!r}:\n"
            "    from Cython.Build import cythonize\n"
            f"    exts += cythonize([Extension(n, [s], extra_compile_args=['-O2'])\n"
            f"                       for n, s in {cy!r}], build_dir={tmp!r}, quiet=True,\n"
            "                      compiler_directives={'language_level': 3})\n"
            f"d = Distribution({{'name': {name!r}, 'ext_modules': exts}})\n"
            f"d.script_args = ['-q', 'build_ext', '--inplace', '--build-temp', {tmp!r}]\n"
            "d.parse_command_line()\n"
            "d.run_commands()\n")
        res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                             text=True)
    if verbose or res.returncode:
        sys.stdout.write(res.stdout[-4000:])
        sys.stderr.write(res.stderr[-4000:])
    if res.returncode:
        pkg.clean()
        last = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
        return f"mypyc or Cython failed (exit {res.returncode}): {last}"
    manifest = {"python": sys.version.split()[0],
                "sources": {name: hashlib.sha256((pkg.dir / name).read_bytes()).hexdigest()
                            for name in source_files(str(pkg.dir), pkg.compiled)}}
    (pkg.dir / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")  # last
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("packages", nargs="*", metavar="PACKAGE",
                        help=f"one of {', '.join(PACKAGES)} (default: all)")
    parser.add_argument("--clean", action="store_true", help="remove the compiled modules")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.packages) - set(PACKAGES))
    if unknown:
        parser.error(f"no compiled modules in {', '.join(unknown)}: one of {', '.join(PACKAGES)}")
    for dotted in args.packages or PACKAGES:
        pkg = Package(dotted)
        pkg.clean()
        if args.clean:
            continue
        why = build(pkg, args.verbose)
        if why is not None:
            print(f"build_native: {dotted} not compiled ({why}); it runs the pure-Python "
                  "modules", file=sys.stderr)
            continue
        print(f"build_native: compiled {', '.join(pkg.compiled)} ({dotted}, {MANIFEST})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
