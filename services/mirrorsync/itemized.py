"""What one rsync run changed, read from its itemized output (pure: text in, names out).

The sync's rsync runs with ``--itemize-changes`` and ``--out-format=%i %l %n``: one line per name
rsync changed in the new snapshot (``%i`` the 11-character change summary, ``%l`` the length,
``%n`` the name, directories ending in ``/``), and one ``*deleting`` line per name removed from
it. Unchanged names are not listed (listing them, ``-ii``, costs rsync a write per file); the
snapshot's file count and size come from ``--stats``
(:func:`services.mirrorsync.policy.parse_stats`). From the lines the sync knows:

- which files came over the wire (new inodes: every other file is the base's, or a hard link to
  the published snapshot's), so which repository metadata rsync kept as unchanged and must be
  compared again by checksum (:func:`services.mirrorsync.policy.metadata_argv`);
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
ITEMIZE_ARGS = ("--itemize-changes", f"--out-format={OUT_FORMAT}")

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
    transferred: set[str] = dataclasses.field(default_factory=set)  # came over the wire
    listed: dict[str, int] = dataclasses.field(default_factory=dict)  # other files listed: size
    deleted: set[str] = dataclasses.field(default_factory=set)
    changed_in_place: list[str] = dataclasses.field(default_factory=list)


def parse(text: str) -> Itemized:
    """Read rsync's ``--itemize-changes --out-format='%i %l %n'`` lines; other lines
    (``--stats``, the ``created directory`` notice) are skipped."""
    out = Itemized()
    for line in text.splitlines():
        if len(line) < 13 or line[11] != " ":
            continue
        flags, rest = line[:11], line[12:]
        length, sep, name = rest.partition(" ")
        if not sep or not length.isdigit():
            continue
        name = unescape(name)
        if flags.startswith("*deleting"):
            out.deleted.add(name.rstrip("/"))
            continue
        update, kind = flags[0], flags[1]
        if kind != "f":
            continue
        if update == ">":
            out.transferred.add(name)
        else:  # "." the base's file, attributes changed; "c" copied locally; "h" a hard link
            out.listed[name] = int(length)
            if update == "." and flags[2:].strip(" ."):
                out.changed_in_place.append(name)
    return out
