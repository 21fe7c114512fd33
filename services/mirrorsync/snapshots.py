"""Snapshots of one mirror on the mirror volume, and the atomic publish (files only).

Layout under ``mirrorsync.root`` (the volume the HTTP service serves as ``/mirror/``)::

    <path>                                  symlink -> .snapshots/<path>/<id>  (the published tree)
    .snapshots/<path>/<id>                  a complete, checked snapshot (id: 20261205T161700Z)
    .snapshots/<path>/<id>.partial          a sync in progress (or one killed: removed by the next)

A sync writes a new ``.partial`` directory beside the published snapshot, hard-linking unchanged
files to it (rsync ``--link-dest``), renames it to its final name once checked, then publishes it
by creating a new symlink and renaming it over ``<path>`` (``rename(2)`` replaces the old link in
one step: a client resolving ``/mirror/<path>/...`` finds the old tree or the new one, never a
mix or nothing). The link is relative, so it resolves the same wherever the volume is mounted.

Old snapshots are removed beyond ``keep``, never the published one. Removing a snapshot a client
is still downloading from is safe: the client's open file descriptor keeps the file's data until
it closes it (unlinking removes the name, not the open file), and files the new snapshot shares
with it are hard links that live on under their other names.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

SNAPSHOTS_DIR = ".snapshots"
PARTIAL = ".partial"
ADOPTED_PREFIX = "adopted-"  # a directory kept by hand before, adopted as the first snapshot


class PublishError(Exception):
    pass


class Snapshots:
    def __init__(self, root: Path | str, path: str) -> None:
        self.root = Path(root)
        self.path = path
        self.link = self.root / path
        self.dir = self.root / SNAPSHOTS_DIR / path

    def published(self) -> Path | None:
        """The published snapshot's directory, or None before the first publish."""
        if not self.link.is_symlink():
            return None
        target = self.root / os.readlink(self.link)
        return target if target.is_dir() else None

    def snapshots(self) -> list[Path]:
        """Complete snapshots, oldest first."""
        if not self.dir.is_dir():
            return []
        return sorted(p for p in self.dir.iterdir()
                      if p.is_dir() and not p.name.endswith(PARTIAL))

    def partials(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        return sorted(p for p in self.dir.iterdir() if p.name.endswith(PARTIAL))

    def clean_partials(self) -> list[str]:
        """Remove partial snapshots left by a sync that was killed or failed; call it only while
        holding the mirror's lock (another replica may be writing one)."""
        removed = []
        for partial in self.partials():
            remove_tree(partial)
            removed.append(partial.name)
        return removed

    def new_partial(self, now: float | None = None) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time()))
        name, n = stamp, 1
        while (self.dir / name).exists() or (self.dir / (name + PARTIAL)).exists():
            n += 1
            name = f"{stamp}-{n}"
        partial = self.dir / (name + PARTIAL)
        partial.mkdir()
        return partial

    def finish(self, partial: Path) -> Path:
        """Rename a checked partial snapshot to its final name."""
        final = partial.with_name(partial.name[: -len(PARTIAL)])
        os.rename(partial, final)
        return final

    def adopt_directory(self) -> Path | None:
        """A mirror kept by hand (``<path>`` a real directory) becomes the first snapshot, so its
        files are hard-linked by the first sync and the name can be a symlink from now on."""
        if self.link.is_dir() and not self.link.is_symlink():
            self.dir.mkdir(parents=True, exist_ok=True)
            adopted = self.dir / (ADOPTED_PREFIX + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
            os.rename(self.link, adopted)
            self.publish(adopted)
            return adopted
        return None

    def publish(self, snapshot: Path) -> None:
        """Make ``snapshot`` the published tree in one ``rename(2)`` of a new symlink."""
        if self.link.exists() and not self.link.is_symlink():
            raise PublishError(f"{self.link} is a real directory or file, not bootyard's symlink: "
                               "move it aside (the next sync adopts a directory)")
        target = os.path.relpath(snapshot, self.root)
        tmp = self.root / f".{self.path}.link-{os.getpid()}"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(target, tmp)
        os.rename(tmp, self.link)
        _fsync_dir(self.root)

    def prune(self, keep: int) -> list[str]:
        """Remove complete snapshots beyond the newest ``keep`` old ones; never the published
        one."""
        published = self.published()
        old = [p for p in self.snapshots() if published is None or p != published]
        doomed = old[: max(len(old) - keep, 0)]
        for path in doomed:
            remove_tree(path)
        return [p.name for p in doomed]


def remove_tree(path: Path) -> None:
    """Remove a snapshot directory (read-only directories included)."""
    def make_writable(func, name, _exc):
        os.chmod(os.path.dirname(name), 0o700)
        func(name)
    shutil.rmtree(path, onerror=make_writable)


def disk_space(path: Path | str) -> tuple[int, int]:
    """(free bytes for unprivileged writers, total bytes) of the file system holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through ``<path>.new`` and a rename (a new inode: never writes
    into a file hard-linked from another snapshot)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)
