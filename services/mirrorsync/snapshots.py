"""Snapshots of one mirror on the mirror volume, and the atomic publish (files only).

Layout under ``mirrorsync.root`` (the volume the HTTP service serves as ``/mirror/``)::

    <path>                                  symlink -> .snapshots/<path>/<id>  (the published tree)
    .snapshots/<path>/<id>                  a complete, checked snapshot (id: 20261205T161700Z)
    .snapshots/<path>/<id>.partial          a sync in progress (or one killed: removed by the next)
    .snapshots/<path>/<id>.next             a clone of the published snapshot <id>: the next base

A sync writes a new ``.partial`` directory beside the published snapshot: the ``.next`` clone of
it made right after the last publish (every file a hard link to the published one), into which
rsync writes only what changed, or, without a clone, an empty directory into which rsync
hard-links unchanged files itself (``--link-dest``). It renames it to its final name once checked, then publishes it
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
from collections.abc import Callable
from pathlib import Path

SNAPSHOTS_DIR = ".snapshots"
PARTIAL = ".partial"
NEXT = ".next"  # <id>.next: a clone of snapshot <id>, the base of the next sync
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
                      if p.is_dir() and not p.name.endswith((PARTIAL, NEXT)))

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

    def new_partial(self, now: float | None = None, base: Path | None = None) -> Path:
        """A new partial snapshot: an empty directory, or ``base`` (a prepared clone) renamed."""
        self.dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time()))
        name, n = stamp, 1
        while (self.dir / name).exists() or (self.dir / (name + PARTIAL)).exists():
            n += 1
            name = f"{stamp}-{n}"
        partial = self.dir / (name + PARTIAL)
        if base is not None:
            os.rename(base, partial)
        else:
            partial.mkdir()
        return partial

    def prepared(self, published: Path | None) -> Path | None:
        """The clone of the ``published`` snapshot made after it was published, if there is one
        (a clone of an older snapshot is not used: prune removes it)."""
        if published is None:
            return None
        clone = self.dir / (published.name + NEXT)
        return clone if clone.is_dir() and not clone.is_symlink() else None

    def prepare_next(self, published: Path,
                     collect: Callable[[str], bool] | None = None) -> tuple[Path, list[str] | None]:
        """Clone the ``published`` snapshot as the next sync's base (:func:`clone_tree`): into
        ``<id>.next.partial`` (a clone cut short by a kill is a partial, removed by the next
        sync), then renamed ``<id>.next``. Clones of other snapshots are removed. Returns the
        clone and the files in it whose name ``collect`` accepts (None: the clone was there)."""
        for stale in self.dir.iterdir():
            if stale.name.endswith(NEXT) and stale.name != published.name + NEXT:
                remove_tree(stale)
        clone = self.dir / (published.name + NEXT)
        if clone.is_dir():
            return clone, None
        work = clone.with_name(clone.name + PARTIAL)
        if work.exists():
            remove_tree(work)
        found = clone_tree(published, work, collect)
        os.rename(work, clone)
        return clone, found

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


def clone_tree(src: Path, dst: Path, collect: Callable[[str], bool] | None = None) -> list[str]:
    """Copy the tree ``src`` to ``dst`` with every regular file a hard link to ``src``'s (no data
    copied), directories made anew and symbolic links copied (a link shares nothing with
    ``src``'s, so rsync may change it). rsync replaces a changed file by renaming a new file over
    its name, so writing the clone never writes into ``src``'s files. Returns the regular files
    (relative paths) whose name ``collect`` accepts."""
    os.mkdir(dst)
    stack = [(str(src), str(dst), "")]
    dirs = []
    found = []
    while stack:
        s_dir, d_dir, rel = stack.pop()
        with os.scandir(s_dir) as entries:
            for entry in entries:
                target = os.path.join(d_dir, entry.name)
                if entry.is_dir(follow_symlinks=False):
                    os.mkdir(target)
                    stack.append((entry.path, target, f"{rel}{entry.name}/"))
                    dirs.append((entry.path, target))
                elif entry.is_symlink():
                    os.symlink(os.readlink(entry.path), target)
                    st = entry.stat(follow_symlinks=False)
                    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
                else:
                    os.link(entry.path, target, follow_symlinks=False)
                    if collect is not None and collect(entry.name):
                        found.append(rel + entry.name)
    dirs.append((str(src), str(dst)))
    for s_dir, d_dir in dirs:  # modes and times of directories, once their entries are made
        st = os.stat(s_dir)
        os.chmod(d_dir, st.st_mode & 0o7777)
        os.utime(d_dir, ns=(st.st_atime_ns, st.st_mtime_ns))
    return found


def find_files(root: Path, accept: Callable[[str], bool]) -> list[str]:
    """Regular files under ``root`` (relative paths) whose name ``accept`` accepts."""
    found = []
    stack = [(str(root), "")]
    while stack:
        directory, rel = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, f"{rel}{entry.name}/"))
                elif entry.is_file(follow_symlinks=False) and accept(entry.name):
                    found.append(rel + entry.name)
    return found


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
    into a file hard-linked from another snapshot). No fsync: the snapshot's other files are not
    synced either (a ``kill -9`` loses nothing the kernel has; the publish's rename is what makes
    the snapshot visible)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.rename(tmp, path)
