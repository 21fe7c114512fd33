"""What one rsync run did, read from its itemized output (pure: text in, figures out).

The sync's rsync runs with ``--itemize-changes`` twice (``-ii``: unchanged files are listed too)
and ``--out-format=%i %l %n``: one line per name in the new snapshot (``%i`` the 11-character
change summary, ``%l`` the length, ``%n`` the name, directories ending in ``/``), and one
``*deleting`` line per name removed from it. From that one listing the sync knows, without
walking the snapshot again:

- how many regular files the snapshot has and their bytes (the check's file count);
- which files came over the wire (new inodes) and which were kept (the very file the base
  already had, or a hard link to the published snapshot's): repository metadata among the kept
  ones is compared again by checksum (:func:`services.mirrorsync.policy.metadata_argv`);
- which names were deleted;
- names whose attributes rsync changed in place (``.f...p.....``): in a base cloned from the
  published snapshot that would also change the published file, so the sync's options make it
  impossible (fixed modes, no owner or group) and :attr:`Itemized.changed_in_place` says if it
  happened anyway.

rsync writes a name's unprintable bytes as ``\\#ooo`` (octal); :func:`unescape` undoes it.
"""

from __future__ import annotations

import dataclasses
import re

OUT_FORMAT = "%i %l %n"
ITEMIZE_ARGS = ("--itemize-changes", "--itemize-changes", f"--out-format={OUT_FORMAT}")

_ESCAPE = re.compile(rb"\\#([0-7]{3})")


def unescape(name: str) -> str:
    """A name as rsync printed it, with its ``\\#ooo`` escapes turned back into bytes."""
    if "\\#" not in name:
        return name
    raw = name.encode("utf-8", "surrogateescape")
    raw = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 8)]), raw)
    return raw.decode("utf-8", "surrogateescape")


@dataclasses.dataclass
class Itemized:
    files: int = 0                      # regular files in the snapshot (names)
    size: int = 0                       # their bytes
    transferred: list[str] = dataclasses.field(default_factory=list)  # came over the wire
    kept: dict[str, int] = dataclasses.field(default_factory=dict)    # not transferred: size
    deleted: list[str] = dataclasses.field(default_factory=list)
    changed_in_place: list[str] = dataclasses.field(default_factory=list)
    lines: int = 0

    def kept_matching(self, predicate) -> list[str]:
        """Kept regular files whose base name ``predicate`` accepts, sorted."""
        return sorted(n for n in self.kept if predicate(n.rsplit("/", 1)[-1]))


def parse(text: str) -> Itemized:
    """Read rsync's ``-ii --out-format='%i %l %n'`` lines; other lines (``--stats``, the
    ``created directory`` notice) are skipped."""
    out = Itemized()
    for line in text.splitlines():
        if len(line) < 13 or line[11] != " ":
            continue
        flags, rest = line[:11], line[12:]
        length, sep, name = rest.partition(" ")
        if not sep or not length.isdigit():
            continue
        name = unescape(name)
        out.lines += 1
        if flags.startswith("*deleting"):
            out.deleted.append(name.rstrip("/"))
            continue
        update, kind = flags[0], flags[1]
        if kind != "f":
            continue
        size = int(length)
        out.files += 1
        out.size += size
        if update == ">":
            out.transferred.append(name)
        else:  # ".": the base's file; "h": a hard link; "c": copied locally
            out.kept[name] = size
            if update == "." and flags[2:].strip(" ."):
                out.changed_in_place.append(name)
    return out
