"""What a sync does and what its outcome means (pure: no Redis, sockets, clock or processes).

- :func:`rsync_argv`: the rsync command line of one sync, an argument list (never a shell), built
  from the mirror record and the settings: a new snapshot directory, hard links to unchanged files
  of the published snapshot (``--link-dest``), bounded time (``--timeout``, ``--contimeout``).
- :func:`metadata_argv`: a second pass over the repository metadata (``InRelease``, ``Packages``,
  ``repomd.xml`` ...) that the first pass hard-linked as unchanged, compared by checksum, not by
  size and mtime.
- :func:`classify_exit`: rsync's exit status as ftpsync reads it: 0 and 24 (files vanished on the
  upstream during the transfer) are success, 23 (partial transfer) and 30 (I/O timeout) are
  retried soon, 25 (``--max-delete`` reached) is never published, the rest are failures.
- :func:`updating_markers`, :func:`marker_in_output`: ftpsync's ``Archive-Update-in-Progress-*``
  files at the top of an upstream that is being updated: stop the copy, wait and retry later,
  never publish it.
- :func:`trace_text`: the trace file (``project/trace/<name>``) written into a snapshot before it
  is published, in ftpsync's format, so that mirrors of this mirror check freshness the usual way.
- :func:`parse_stats`: the figures of ``rsync --stats``.
- :func:`due_at`: when a mirror is synced next (its interval plus jitter; a retry sooner, with
  backoff).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
import time

from services.mirrorsync.itemized import ITEMIZE_ARGS
from shared.records import Mirror

# Why a sync did not publish (the ``reason`` of events, status and metrics): a closed set.
FAILURE_REASONS = (
    "unreachable",        # rsync could not reach the source (exit 5, 10, 12, 35 ...)
    "rsync_error",        # any other rsync failure
    "rsync_partial",      # exit 23: some files were not transferred
    "rsync_timeout",      # exit 30: no data for --timeout seconds
    "max_delete",         # exit 25: rsync's --max-delete was reached
    "deadline",           # the whole sync took longer than mirrorsync.deadline
    "upstream_updating",  # an Archive-Update-in-Progress-* file at the top of the upstream
    "check_failed",       # the new snapshot failed the repository check
    "disk_full",          # the volume ran (or would run) out of space
    "lock_lost",          # another replica holds the lock now (fencing)
    "io_error",           # a local file operation failed
)
# Reasons retried after mirrorsync.retry_delay (with backoff), not at the next interval: the
# upstream is probably mid-update or the network hiccuped.
RETRY_REASONS = frozenset({"rsync_partial", "rsync_timeout", "upstream_updating",
                           "check_failed", "unreachable"})

OK_EXITS = frozenset({0, 24})
RETRY_EXITS = {23: "rsync_partial", 30: "rsync_timeout"}
NO_PUBLISH_EXITS = {25: "max_delete"}
UNREACHABLE_EXITS = frozenset({5, 10, 12, 35})
EXIT_MEANINGS = {
    0: "success", 1: "syntax or usage error", 2: "protocol incompatibility",
    3: "errors selecting input/output files, dirs", 4: "requested action not supported",
    5: "error starting client-server protocol", 6: "daemon unable to append to log-file",
    10: "error in socket I/O", 11: "error in file I/O", 12: "error in rsync protocol data stream",
    13: "errors with program diagnostics", 14: "error in IPC code",
    20: "received SIGUSR1 or SIGINT", 21: "some error returned by waitpid()",
    22: "error allocating core memory buffers", 23: "partial transfer due to error",
    24: "partial transfer due to vanished source files", 25: "--max-delete limit stopped deletions",
    30: "timeout in data send/receive", 35: "timeout waiting for daemon connection",
}

# The attributes a snapshot keeps (rsync's --archive without owner, group and devices, modes
# fixed as Debian's ftpsync fixes them): the same in every snapshot, so rsync never has a reason
# to change an unchanged file's attributes in place, where a clone shares its inode with the
# published snapshot.
ATTRIBUTES = ("--links", "--perms", "--times", "--chmod=D755,F644")

UPDATE_MARKER = "Archive-Update-in-Progress-"
TMP_DIR = ".~tmp~"  # rsync's --delay-updates / partial directory: never copied


@dataclasses.dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str | None  # one of FAILURE_REASONS when not ok
    detail: str


def classify_exit(code: int, stderr: str = "") -> Verdict:
    """What rsync's exit status ``code`` (negative: killed by that signal) means for a sync."""
    meaning = EXIT_MEANINGS.get(code, f"exit status {code}" if code >= 0 else f"signal {-code}")
    if code in OK_EXITS:
        return Verdict(True, None, meaning)
    if "No space left on device" in stderr:
        return Verdict(False, "disk_full", f"rsync exit {code}: no space left on device")
    if code in RETRY_EXITS:
        return Verdict(False, RETRY_EXITS[code], f"rsync exit {code}: {meaning}")
    if code in NO_PUBLISH_EXITS:
        return Verdict(False, NO_PUBLISH_EXITS[code], f"rsync exit {code}: {meaning}")
    if code in UNREACHABLE_EXITS:
        return Verdict(False, "unreachable", f"rsync exit {code}: {meaning}")
    return Verdict(False, "rsync_error", f"rsync exit {code}: {meaning}")


def is_daemon_source(source: str) -> bool:
    return source.startswith("rsync://")


def source_arg(source: str) -> str:
    """The source as rsync is given it: always with a trailing slash (copy the contents)."""
    return source if source.endswith("/") else source + "/"


def rsync_argv(mirror: Mirror, dest: str, *, rsync: str = "rsync", link_dest: str | None = None,
               io_timeout: int = 300, contimeout: int = 30, extra_excludes: tuple[str, ...] = ()
               ) -> list[str]:
    """The argument list that copies ``mirror`` into the new snapshot directory ``dest``.

    ``dest`` is either empty, with ``link_dest`` the published snapshot (absolute), whose
    unchanged files are hard-linked instead of copied, or a clone of the published snapshot
    made after the last publish (:meth:`~services.mirrorsync.snapshots.Snapshots.prepare_next`):
    rsync then only writes what changed, each changed file to a new inode renamed into place
    (never ``--inplace``), and deletes what the upstream (or the mirror's ``exclude``) no longer
    has. The attributes kept are :data:`ATTRIBUTES`: modes fixed as Debian's ftpsync fixes them,
    no owner or group, so that rsync never changes a file's attributes in place (in a clone that
    would change the published file too). Include patterns come before exclude patterns (rsync
    takes the first match), rsync's own temporary directories are never copied. The itemized
    output (:mod:`services.mirrorsync.itemized`) says what the run did."""
    argv = [rsync, "--recursive", *ATTRIBUTES, "--hard-links", "--delete", "--delete-excluded",
            "--stats", "--no-human-readable", *ITEMIZE_ARGS, f"--timeout={io_timeout}"]
    if is_daemon_source(mirror.source):
        argv.append(f"--contimeout={contimeout}")
    if link_dest:
        argv.append(f"--link-dest={link_dest}")
    if mirror.bwlimit:
        argv.append(f"--bwlimit={mirror.bwlimit}")
    argv.append(f"--exclude={TMP_DIR}/")
    argv.append(f"--include=/{UPDATE_MARKER}*")  # always copied, whatever the mirror excludes
    argv += [f"--include={p}" for p in mirror.include]
    argv += [f"--exclude={p}" for p in (*mirror.exclude, *extra_excludes)]
    argv += ["--", source_arg(mirror.source), dest.rstrip("/") + "/"]
    return argv


# Repository metadata, compared by checksum in a second pass: rsync's quick check (size and
# mtime) takes an index rewritten within one second with the same size for unchanged, and would
# hard-link the published (old) InRelease beside new Packages files.
METADATA_PATTERNS = ("InRelease", "Release", "Release.gpg", "Packages*", "Sources*", "Index",
                     "Translation-*", "repomd.xml*", "SHA256SUMS*", "MD5SUMS*", "CHECKSUM*")


_METADATA = re.compile("|".join(fnmatch.translate(p) for p in METADATA_PATTERNS))


def is_metadata(name: str) -> bool:
    """Whether a file name is repository metadata (:data:`METADATA_PATTERNS`)."""
    return _METADATA.match(name) is not None


def split_source(source: str) -> tuple[str, str]:
    """(the rsync module or local directory, the path inside it) of a source:
    ``rsync://h/mod/debian/`` is (``rsync://h/mod/``, ``debian/``); a local directory is itself."""
    if not is_daemon_source(source):
        return source_arg(source), ""
    host, _, rest = source[len("rsync://"):].partition("/")
    module, _, inside = rest.partition("/")
    inside = inside.strip("/")
    return f"rsync://{host}/{module}/", (inside + "/" if inside else "")


def metadata_list(mirror: Mirror, paths) -> bytes:
    """The ``--files-from`` list (NUL-separated) of :func:`metadata_argv`: ``paths`` relative to
    the source, each as ``<path inside the module>/./<path>`` so that rsync copies it to
    ``<snapshot>/<path>`` (rsync 3.5 reports files as vanished when --files-from names paths
    below a module's subdirectory source, so the source is always the module itself)."""
    _, inside = split_source(mirror.source)
    return b"".join(((f"{inside}./{p}" if inside else p).encode("utf-8", "surrogateescape")
                     + b"\0") for p in paths)


def metadata_argv(mirror: Mirror, dest: str, files_from: str, *, rsync: str = "rsync",
                  io_timeout: int = 300, contimeout: int = 30) -> list[str]:
    """The second pass: the metadata files the first pass left as they were (listed in
    ``files_from`` by :func:`metadata_list`), compared by checksum, into the same new snapshot (a
    file that differs is written to a new inode, never into the hard link it replaces). A file
    gone from the upstream meanwhile is skipped (the check then finds the tree inconsistent)."""
    root, _ = split_source(mirror.source)
    argv = [rsync, *ATTRIBUTES, "--checksum", "--stats", "--no-human-readable", "--from0",
            *ITEMIZE_ARGS,
            f"--files-from={files_from}", "--ignore-missing-args", f"--timeout={io_timeout}"]
    if is_daemon_source(mirror.source):
        argv.append(f"--contimeout={contimeout}")
    if mirror.bwlimit:
        argv.append(f"--bwlimit={mirror.bwlimit}")
    argv += ["--", root, dest.rstrip("/") + "/"]
    return argv


_MARKER_LINE = re.compile(rb"^[^\n]{11} \d+ (" + re.escape(b"Archive-Update-in-Progress-")
                          + rb"[^/\n]*)$", re.MULTILINE)


def marker_in_output(chunk: bytes) -> str | None:
    """The first ``Archive-Update-in-Progress-*`` name at the top of the tree in a piece of the
    sync's itemized output (:mod:`services.mirrorsync.itemized`), or None. rsync copies the top
    directory's files first, so an upstream being updated shows at the start of the run."""
    match = _MARKER_LINE.search(chunk)
    return match.group(1).decode("utf-8", "replace") if match else None


def updating_markers(names) -> list[str]:
    """The ``Archive-Update-in-Progress-*`` names among a directory's ``names``."""
    return sorted(n for n in names if n.startswith(UPDATE_MARKER))


@dataclasses.dataclass(frozen=True)
class Stats:
    files: int = 0              # files in the source (regular files and directories)
    regular_files: int = 0      # regular files among them (names: hard links counted each)
    files_transferred: int = 0  # regular files copied (not hard-linked)
    total_bytes: int = 0        # size of the source's files
    bytes_transferred: int = 0  # size of the files copied
    bytes_received: int = 0     # bytes rsync received on the wire


_STATS = {
    "Number of files": "files",
    "Number of regular files transferred": "files_transferred",
    "Total file size": "total_bytes",
    "Total transferred file size": "bytes_transferred",
    "Total bytes received": "bytes_received",
}


def parse_stats(text: str) -> Stats:
    """The figures of ``rsync --stats`` output (absent figures are 0)."""
    values = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        field = _STATS.get(name.strip())
        if sep and field:
            match = re.match(r"\s*([\d,.]+)", rest)
            if match:
                values[field] = int(re.sub(r"[,.]", "", match.group(1)))
            if field == "files":
                reg = re.search(r"\breg: ([\d,.]+)", rest)
                values["regular_files"] = int(re.sub(r"[,.]", "", reg.group(1))) if reg else 0
    return Stats(**values)


def trace_text(*, started: float, finished: float, upstream: str, serial: str, stats: Stats,
               creator: str, host: str) -> str:
    """A trace file in ftpsync's format (project/trace/<name>), times in UTC."""
    spent = max(int(finished - started), 0)
    rate = stats.bytes_received // spent if spent else stats.bytes_received

    def date(ts: float) -> str:
        return time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(ts))

    return (f"{time.strftime('%a %b %d %H:%M:%S UTC %Y', time.gmtime(finished))}\n"
            f"Date: {date(finished)}\n"
            f"Date-Started: {date(started)}\n"
            f"Archive serial: {serial}\n"
            f"Creator: {creator}\n"
            f"Running on host: {host}\n"
            f"Upstream-mirror: {upstream_host(upstream)}\n"
            f"Total bytes received in rsync: {stats.bytes_received}\n"
            f"Total time spent in rsync: {spent}\n"
            f"Average rate: {rate} B/s\n")


def upstream_host(source: str) -> str:
    if is_daemon_source(source):
        return source[len("rsync://"):].split("/", 1)[0]
    return "localhost"


def archive_serial(upstream_trace: str | None, finished: float) -> str:
    """The upstream's ``Archive serial`` (from its master trace) if it has one, else the date
    the snapshot was made (YYYYMMDDHH)."""
    for line in (upstream_trace or "").splitlines():
        if line.startswith("Archive serial:"):
            return line.split(":", 1)[1].strip()
    return time.strftime("%Y%m%d%H", time.gmtime(finished))


def due_at(*, last_attempt: float | None, last_result: str | None, failures: int,
           interval: int, jitter: float, retry_delay: float, rand: float) -> float:
    """When a mirror is synced next, as a Unix time.

    Never attempted: now (0). After a publish or a failure that is not retried early: the last
    attempt plus the interval plus up to ``jitter`` of it (``rand`` in [0, 1)), so that mirrors
    with one interval do not all start at once. After a failure whose reason is in
    :data:`RETRY_REASONS`: ``retry_delay`` doubled for each consecutive failure, at most the
    interval."""
    if last_attempt is None:
        return 0.0
    if last_result in RETRY_REASONS and failures > 0:
        return last_attempt + min(retry_delay * 2 ** min(failures - 1, 20), interval)
    return last_attempt + interval + jitter * interval * rand
