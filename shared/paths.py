"""The one path sanitiser: every file name a client asks for (TFTP, HTTP) goes through here.

Rules (documented for operators in docs/security.md):

- The name is relative to the served root. A leading ``/`` is allowed and means the root, as
  tftpd-hpa's ``--secure`` does, because firmware often asks for ``/pxelinux.0``.
- Backslashes are path separators (Windows-style loaders send ``boot\\x64\\wdsnbp.com``).
- Refused outright: NUL bytes and control characters, ``..`` components, percent-encoded dots,
  slashes or backslashes (``%2e``, ``%2f``, ``%5c``: a name that arrives still encoded is an
  attack, not a file), drive letters, and names longer than 1024 bytes.
- Symlinks inside the root are followed, but the resolved path must still be inside the root.
- Names are case-sensitive, as the file system is.

Callers get a :class:`pathlib.Path` (which may not exist: that is a "not found", not a refusal)
or a :class:`PathRefused` naming the reason.

Resolving is on every file request's path (a boot storm asks for thousands of kernels):
:func:`realpath` lets the kernel resolve an existing path in three system calls rather than one
``lstat`` per component in Python, with the same answer as :func:`os.path.realpath`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

MAX_NAME_BYTES = 1024
_ENCODED_SEPARATOR = re.compile(r"%(2e|2f|5c|00)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[a-zA-Z]:")


class PathRefused(ValueError):
    """A requested name that is not allowed; ``reason`` is a short machine-friendly word."""

    def __init__(self, name: str, reason: str, detail: str) -> None:
        super().__init__(f"refused {name!r}: {detail}")
        self.name = name
        self.reason = reason


def clean_relative(name: str) -> PurePosixPath:
    """Check ``name`` and return it as a relative path with no ``.``, ``..`` or empty parts."""
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise PathRefused(name, "too_long", f"name longer than {MAX_NAME_BYTES} bytes")
    if _CONTROL.search(name):
        raise PathRefused(name, "control_char", "NUL or control character in name")
    if _ENCODED_SEPARATOR.search(name):
        raise PathRefused(name, "encoded", "percent-encoded dot, slash, backslash or NUL")
    text = name.replace("\\", "/")
    if _DRIVE.match(text):
        raise PathRefused(name, "absolute", "drive letters are not allowed")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise PathRefused(name, "traversal", "'..' is not allowed in names")
    if not parts:
        return PurePosixPath(".")
    return PurePosixPath(*parts)


_O_PATH = getattr(os, "O_PATH", 0)  # Linux


def realpath(path: str | Path) -> str:
    """:func:`os.path.realpath` of ``path``. An existing path is opened (``O_PATH``: no read
    permission needed, nothing read) and the kernel's name for the descriptor read back from
    ``/proc/self/fd``; a path that cannot be opened (missing, a dangling or looping link, no
    search permission, no ``/proc``) goes to :func:`os.path.realpath`."""
    if _O_PATH:
        try:
            fd = os.open(path, _O_PATH | os.O_CLOEXEC)
        except OSError:
            return os.path.realpath(path)
        try:
            resolved = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            resolved = ""
        finally:
            os.close(fd)
        # not "(unreachable)/..." (outside this process's root) nor a file deleted meanwhile
        if resolved.startswith("/") and not resolved.endswith(" (deleted)"):
            return resolved
    return os.path.realpath(path)


def resolve_under(root: Path | str, name: str) -> Path:
    """Map a client's ``name`` to a path under ``root``, refusing anything that escapes it.

    The result is fully resolved (symlinks followed). It may not exist.
    """
    root_real = realpath(root)
    relative = clean_relative(name)
    candidate = realpath(os.path.join(root_real, str(relative)))
    if candidate != root_real and not candidate.startswith(root_real.rstrip("/") + "/"):
        raise PathRefused(name, "escape", "resolves outside the served root (symlink?)")
    return Path(candidate)
