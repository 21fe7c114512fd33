"""The DHCP service. Its packet path (codec, policy, replies) may run compiled.

``scripts/build_native.py`` (``make install``, the image) compiles those three modules with
mypyc into extension modules beside their sources, and writes ``native.json`` with the SHA-256
of each source it compiled. Python would import an extension module before a ``.py`` of the same
name, so this package decides which one is used, before any of them is imported: the compiled
ones only when every one is there for this interpreter and ``native.json`` matches the sources
as they are now (an edited ``.py`` is never shadowed by an older build), and
``BOOTYARD_DHCP_NATIVE`` is not ``0``; otherwise the pure-Python sources, for all three.
``NATIVE`` says which, ``NATIVE_REASON`` why (the service logs both when it starts).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os
import sys

COMPILED = ("codec", "policy", "replies", "server")  # what scripts/build_native.py compiles
MANIFEST = "native.json"
SHARED_LIB = "native"  # mypyc's group library: native__mypyc.<suffix>


def _native_reason(here: str) -> str | None:
    """None when the compiled modules can be used, else why not."""
    if os.environ.get("BOOTYARD_DHCP_NATIVE", "1") == "0":
        return "BOOTYARD_DHCP_NATIVE=0"
    try:
        with open(os.path.join(here, MANIFEST), "rb") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        return "not built (scripts/build_native.py)"
    except (OSError, ValueError) as exc:
        return f"{MANIFEST} unreadable: {exc}"
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    for name in (*COMPILED, f"{SHARED_LIB}__mypyc"):
        if not os.path.exists(os.path.join(here, name + suffix)):
            return f"no {name}{suffix} for this Python (rebuild: scripts/build_native.py)"
    recorded = manifest.get("sources", {}) if isinstance(manifest, dict) else {}
    for name in COMPILED:
        with open(os.path.join(here, f"{name}.py"), "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != recorded.get(f"{name}.py"):
                return f"{name}.py changed since the build (rebuild: scripts/build_native.py)"
    return None


def _use_sources(here: str) -> None:
    """Make this package's submodules load from source even where an extension is present."""
    m = importlib.machinery
    sys.path_importer_cache[here] = m.FileFinder(
        here, (m.SourceFileLoader, m.SOURCE_SUFFIXES),
        (m.SourcelessFileLoader, m.BYTECODE_SUFFIXES))


NATIVE_REASON = _native_reason(__path__[0])
NATIVE = NATIVE_REASON is None
if not NATIVE:
    _use_sources(__path__[0])
