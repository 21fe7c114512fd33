"""Compiled hot paths: which modules of a package run as mypyc extension modules.

``scripts/build_native.py`` (``make native``, part of ``make install`` and the image) compiles a
package's listed modules with mypyc, from the same typed Python source, into extension modules
beside the sources, and writes ``native.json`` with the SHA-256 of each source it compiled.
Python imports an extension module before a ``.py`` of the same name, so the package's
``__init__`` calls :func:`choose` before any of those modules is imported: the compiled ones are
used only when every one is there for this interpreter, ``native.json`` matches the sources as
they are now (an edited ``.py`` is never shadowed by an older build) and the package's switch
(an environment variable) is not ``0``; otherwise the pure-Python sources, for all of them.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os
import sys

MANIFEST = "native.json"
# the switches (environment variables, not settings: shared/settings.py lets them through)
SWITCHES = frozenset({"BOOTYARD_DHCP_NATIVE", "BOOTYARD_TFTP_NATIVE"})
# the packages with compiled modules (each __init__ names COMPILED, GROUP and SWITCH)
PACKAGES = ("services.dhcp", "services.tftp")


def extension_files(compiled: tuple[str, ...], group: str) -> list[str]:
    """The file names a build leaves for this interpreter (modules, then mypyc's group lib)."""
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    return [name + suffix for name in (*compiled, f"{group}__mypyc")]


def reason_not_native(here: str, compiled: tuple[str, ...], group: str,
                      switch: str) -> str | None:
    """None when the compiled modules in ``here`` can be used, else why not."""
    if os.environ.get(switch, "1") == "0":
        return f"{switch}=0"
    try:
        with open(os.path.join(here, MANIFEST), "rb") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        return "not built (make native)"
    except (OSError, ValueError) as exc:
        return f"{MANIFEST} unreadable: {exc}"
    for name in extension_files(compiled, group):
        if not os.path.exists(os.path.join(here, name)):
            return f"no {name} for this Python (rebuild: make native)"
    recorded = manifest.get("sources", {}) if isinstance(manifest, dict) else {}
    for name in source_files(here, compiled):
        with open(os.path.join(here, name), "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != recorded.get(name):
                return f"{name} changed since the build (rebuild: make native)"
    return None


def source_files(here: str, compiled: tuple[str, ...]) -> list[str]:
    """The files a build is made from, as ``native.json`` records them: each module's ``.py``,
    and its ``.pxd`` where it has one (Cython's C declarations: an edit changes the build)."""
    names = []
    for name in compiled:
        names.append(f"{name}.py")
        if os.path.exists(os.path.join(here, f"{name}.pxd")):
            names.append(f"{name}.pxd")
    return names


def use_sources(here: str) -> None:
    """Make the package in ``here`` load its submodules from source even where an extension
    module of the same name is present."""
    m = importlib.machinery
    sys.path_importer_cache[here] = m.FileFinder(
        here, (m.SourceFileLoader, m.SOURCE_SUFFIXES),
        (m.SourcelessFileLoader, m.BYTECODE_SUFFIXES))


def choose(here: str, compiled: tuple[str, ...], group: str, switch: str) -> str | None:
    """Decide for the package in ``here`` (call it from its ``__init__``); returns None when
    the compiled modules will be used, else the reason they are not."""
    reason = reason_not_native(here, compiled, group, switch)
    if reason is not None:
        use_sources(here)
    return reason
