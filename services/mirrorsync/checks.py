"""The check a new snapshot must pass before it is published (files only: no Redis or sockets).

- apt (a ``dists/`` directory): with the mirror's ``keyring``, each suite's ``InRelease`` (or
  ``Release`` + ``Release.gpg``) must verify with it (``gpgv``). Each ``dists/<suite>/InRelease``
  (else ``Release``) lists index
  files with their sizes and hashes; every listed file that is present must match them, and of
  each index (``main/binary-amd64/Packages`` and its ``.gz``, ``.xz``, ``.bz2`` forms) at least
  one form must be present (Debian's own Release lists uncompressed forms mirrors leave out).
  Every ``Packages`` and ``Sources`` index is then read: each file it lists must be present with
  its size, and with its hash (SHA256, else SHA1, else MD5) unless the file is the very file
  (same inode, hard-linked by the clone or ``--link-dest``) of the published snapshot, which
  passed this check when it was published.
- yum/dnf (a ``repodata/repomd.xml``): each file repomd.xml lists must be present with its
  checksum (and size when given); every package ``primary`` lists must be present with its size
  and checksum (same inode rule).
- any other tree: rsync's exit status (checked before) and a file count: a snapshot with no files,
  or with fewer than ``1 - max_shrink`` of the published snapshot's, is refused.

:func:`check_snapshot` returns a :class:`CheckResult`; its ``problem`` names the file and what is
wrong with it, for the log line, the event and ``bootyard mirror status``.
"""

from __future__ import annotations

import bz2
import dataclasses
import fnmatch
import gzip
import hashlib
import lzma
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

HASH_FIELDS = (("SHA256", "sha256"), ("SHA1", "sha1"), ("MD5Sum", "md5"))
COMPRESSIONS = ("", ".gz", ".xz", ".bz2", ".lzma", ".zst")
RPM_NS = "{http://linux.duke.edu/metadata/repo}"
COMMON_NS = "{http://linux.duke.edu/metadata/common}"


class CheckFailed(Exception):
    """The snapshot must not be published; the message names the file and the reason."""


@dataclasses.dataclass(frozen=True)
class CheckResult:
    kind: str          # apt, yum or files
    files: int         # regular files in the snapshot
    size: int          # their bytes
    verified: int      # files whose hash was computed
    problem: str | None = None
    # the hashes this check computed or reused, for the next check (see check_snapshot)
    hashes: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.problem is None


def detect(root: Path) -> str:
    """apt, yum or files: what the tree at ``root`` looks like."""
    if (root / "dists").is_dir():
        return "apt"
    if (root / "repodata" / "repomd.xml").is_file():
        return "yum"
    with os.scandir(root) as entries:  # one level down, without listing those directories
        if any(entry.is_dir(follow_symlinks=False) and
               os.path.isfile(os.path.join(entry.path, "repodata", "repomd.xml"))
               for entry in entries):
            return "yum"
    return "files"


def count_files(root: Path) -> tuple[int, int]:
    """(regular files, bytes) under ``root`` (hard links counted once per name; symlinks not)."""
    files = size = 0
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    try:
                        size += entry.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        continue
                    files += 1
    return files, size


def excluded(rel: str, patterns: tuple[str, ...]) -> bool:
    """Whether rsync exclude ``patterns`` (as in a mirror record) leave out the file ``rel``: a
    pattern starting with ``/`` matches from the top, one without a ``/`` matches any component,
    a trailing ``/`` matches a directory (so everything below it). Close to rsync's rules for the
    patterns operators use to leave out architectures, suites or ISO images."""
    parts = rel.split("/")
    for pattern in patterns:
        pat = pattern.rstrip("/")
        directory = pattern.endswith("/")
        if pat.startswith("/"):
            depth = pat.count("/")
            if len(parts) >= depth + (1 if directory else 0) and \
                    fnmatch.fnmatchcase("/".join(parts[:depth]), pat[1:]):
                return True
        elif "/" not in pat:
            candidates = parts[:-1] if directory else parts
            if any(fnmatch.fnmatchcase(c, pat) for c in candidates):
                return True
        else:
            for i in range(len(parts)):
                n = pat.count("/") + 1
                if i + n <= len(parts) - (1 if directory else 0) and \
                        fnmatch.fnmatchcase("/".join(parts[i:i + n]), pat):
                    return True
    return False


class _Checker:
    def __init__(self, root: Path, published: Path | None,
                 excludes: tuple[str, ...] = (), hashes: dict | None = None) -> None:
        self.root = root
        self.published = published
        self.excludes = excludes
        self.verified = 0
        self.known = hashes or {}  # (dev, ino, size, mtime_ns, algo) -> digest
        self.hashes: dict = {}

    def _same_as_published(self, rel: str, st: os.stat_result) -> bool:
        if self.published is None:
            return False
        try:
            old = os.stat(self.published / rel)
        except OSError:
            return False
        return (old.st_dev, old.st_ino) == (st.st_dev, st.st_ino)

    def file(self, rel: str, size: int | None, algo: str | None, digest: str | None,
             listed_in: str, trust_published: bool = True) -> None:
        """Check one listed file; raises CheckFailed."""
        path = self.root / rel
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise CheckFailed(f"{rel}: listed in {listed_in} but missing") from None
        if size is not None and st.st_size != size:
            raise CheckFailed(f"{rel}: size {st.st_size}, {listed_in} says {size}")
        if algo and digest and not (trust_published and self._same_as_published(rel, st)):
            # an index file the published snapshot shares (the same inode: never written in
            # place) was hashed when that snapshot was checked: its hash is known, and compared
            # with what the (maybe new) Release says
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, algo)
            got = self.known.get(key) if self._same_as_published(rel, st) else None
            if got is None:
                got = file_hash(path, algo)
                self.verified += 1
            if not trust_published:
                self.hashes[key] = got
            if got != digest.lower():
                raise CheckFailed(f"{rel}: {algo} {got}, {listed_in} says {digest.lower()}")


def file_hash(path: Path, algo: str) -> str:
    digest = hashlib.new(algo)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_compressed(path: Path) -> bytes:
    """The contents of an index file, decompressed by its suffix."""
    suffix = path.suffix
    if suffix == ".gz":
        return gzip.decompress(path.read_bytes())
    if suffix in (".xz", ".lzma"):
        return lzma.decompress(path.read_bytes())
    if suffix == ".bz2":
        return bz2.decompress(path.read_bytes())
    if suffix == ".zst":
        if not shutil.which("zstd"):
            raise CheckFailed(f"{path.name}: zstd-compressed and the zstd program is missing")
        return subprocess.run(["zstd", "-dc", "--", str(path)], check=True,
                              capture_output=True, timeout=600).stdout
    return path.read_bytes()


# ---------------------------------------------------------------------------------------- apt

def deb822(text: str) -> Iterator[dict[str, str]]:
    """Paragraphs of a deb822 file (Release, Packages, Sources); continuation lines are kept,
    joined by newlines, without their leading space."""
    para: dict[str, str] = {}
    last = None
    for line in text.splitlines():
        if not line.strip():
            if para:
                yield para
            para, last = {}, None
        elif line[0] in " \t" and last:
            para[last] += "\n" + line.strip()
        elif ":" in line:
            last, value = line.split(":", 1)
            para[last] = value.strip()
    if para:
        yield para


def release_text(path: Path) -> str:
    """A Release or InRelease file's text, without the OpenPGP armour of an InRelease."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if text.startswith("-----BEGIN PGP SIGNED MESSAGE-----"):
        head, _, body = text.partition("\n\n")
        text = body.split("\n-----BEGIN PGP SIGNATURE-----", 1)[0]
        text = "\n".join(line[2:] if line.startswith("- ") else line for line in text.split("\n"))
    return text


def release_entries(text: str) -> dict[str, tuple[int, str, str]]:
    """{path: (size, algorithm, digest)} listed by a Release file, with its strongest hash."""
    fields = next(deb822(text), {})
    entries: dict[str, tuple[int, str, str]] = {}
    for field, algo in reversed(HASH_FIELDS):  # weakest first, so the strongest wins
        for line in fields.get(field, "").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1].isdigit():
                entries[parts[2]] = (int(parts[1]), algo, parts[0])
    return entries


def _strongest(para: dict[str, str]) -> tuple[str | None, str | None]:
    for field, algo in HASH_FIELDS:
        if para.get(field):
            return algo, para[field]
    return None, None


def verify_signature(suite_dir: Path, keyring: str, root: Path) -> None:
    """``gpgv`` with ``keyring`` on the suite's InRelease, else Release + Release.gpg."""
    inrelease, release, detached = (suite_dir / n for n in ("InRelease", "Release", "Release.gpg"))
    if inrelease.is_file():
        argv, signed = ["gpgv", "--keyring", keyring, "--", str(inrelease)], inrelease
    elif release.is_file() and detached.is_file():
        argv, signed = ["gpgv", "--keyring", keyring, "--", str(detached), str(release)], release
    else:
        raise CheckFailed(f"{suite_dir.relative_to(root).as_posix()}: no InRelease and no "
                          "Release.gpg to verify with the mirror's keyring")
    if not os.path.isfile(keyring):
        raise CheckFailed(f"keyring {keyring} (the mirror's keyring field) is not a file")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        raise CheckFailed(f"{signed.relative_to(root).as_posix()}: signature not verified with "
                          f"{keyring}: {lines[-1] if lines else 'gpgv exit ' + str(done.returncode)}")


def check_apt(checker: _Checker, keyring: str | None = None) -> None:
    dists = checker.root / "dists"
    releases = sorted(p for p in dists.rglob("*") if p.name in ("InRelease", "Release")
                      and p.is_file())
    suites = {}
    for path in releases:  # InRelease wins over Release in one suite directory
        if path.parent not in suites or path.name == "InRelease":
            suites[path.parent] = path
    if not suites:
        raise CheckFailed("dists/: no InRelease or Release file")
    for suite_dir, release in sorted(suites.items()):
        rel_release = release.relative_to(checker.root).as_posix()
        text = release_text(release)
        entries = release_entries(text)
        if not entries:
            if "Component" in next(deb822(text), {}):
                continue  # a component's Release (main/binary-amd64/Release): no index list
            raise CheckFailed(f"{rel_release}: lists no index files (no SHA256/SHA1/MD5Sum)")
        if keyring:
            verify_signature(suite_dir, keyring, checker.root)
        present_bases: dict[str, bool] = {}
        indices = []
        for name, (size, algo, digest) in sorted(entries.items()):
            rel = (suite_dir / name).relative_to(checker.root).as_posix()
            base = _strip_compression(name)
            present = (checker.root / rel).is_file()
            present_bases[base] = present_bases.get(base, False) or present
            if present:
                checker.file(rel, size, algo, digest, rel_release, trust_published=False)
                if base.rsplit("/", 1)[-1] in ("Packages", "Sources"):
                    indices.append(rel)
        missing = sorted(b for b, ok in present_bases.items() if not ok and "/by-hash/" not in b
                         and not excluded((suite_dir / b).relative_to(checker.root).as_posix(),
                                          checker.excludes))
        if missing:
            raise CheckFailed(f"{rel_release} lists {missing[0]} but no form of it is present"
                              + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        checked_bases = set()
        for rel in indices:  # one form of each index is enough: they hold the same list
            base = _strip_compression(rel)
            if base in checked_bases:
                continue
            checked_bases.add(base)
            text = read_compressed(checker.root / rel).decode("utf-8", errors="replace")
            if base.endswith("Sources"):
                _check_sources(checker, rel, text)
            else:
                _check_packages(checker, rel, text)


def _strip_compression(name: str) -> str:
    for suffix in COMPRESSIONS[1:]:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _check_packages(checker: _Checker, index: str, text: str) -> None:
    for para in deb822(text):
        filename = para.get("Filename")
        if not filename:
            raise CheckFailed(f"{index}: package {para.get('Package', '?')} has no Filename")
        size = int(para["Size"]) if para.get("Size", "").isdigit() else None
        algo, digest = _strongest(para)
        checker.file(filename, size, algo, digest, index)


def _check_sources(checker: _Checker, index: str, text: str) -> None:
    for para in deb822(text):
        directory = para.get("Directory", "")
        for field, algo in (("Checksums-Sha256", "sha256"), ("Checksums-Sha1", "sha1"),
                            ("Files", "md5")):
            if para.get(field):
                for line in para[field].splitlines():
                    parts = line.split()
                    if len(parts) == 3:
                        checker.file(f"{directory}/{parts[2]}", int(parts[1]), algo, parts[0],
                                     index)
                break


# ---------------------------------------------------------------------------------------- yum

def check_yum(checker: _Checker) -> None:
    repomds = sorted(checker.root.glob("repodata/repomd.xml")) + \
        sorted(checker.root.glob("*/repodata/repomd.xml"))
    for repomd in repomds:
        base = repomd.parent.parent
        rel_repomd = repomd.relative_to(checker.root).as_posix()
        try:
            tree = ET.parse(repomd)
        except ET.ParseError as exc:
            raise CheckFailed(f"{rel_repomd}: not valid XML ({exc})") from None
        primary = None
        for data in tree.getroot().iter(f"{RPM_NS}data"):
            location = data.find(f"{RPM_NS}location")
            checksum = data.find(f"{RPM_NS}checksum")
            size = data.find(f"{RPM_NS}size")
            if location is None or checksum is None:
                raise CheckFailed(f"{rel_repomd}: a <data type={data.get('type')!r}> without "
                                  "location or checksum")
            rel = (base / location.get("href", "")).relative_to(checker.root).as_posix()
            checker.file(rel, int(size.text) if size is not None and size.text else None,
                         _algo(checksum.get("type")), (checksum.text or "").strip(), rel_repomd,
                         trust_published=False)
            if data.get("type") == "primary":
                primary = rel
        if primary is None:
            raise CheckFailed(f"{rel_repomd}: lists no primary metadata")
        _check_primary(checker, base, primary)


def _algo(name: str | None) -> str:
    name = (name or "sha256").lower()
    return {"sha": "sha1"}.get(name, name)


def _check_primary(checker: _Checker, base: Path, primary: str) -> None:
    data = read_compressed(checker.root / primary)
    for _event, element in ET.iterparse(_BytesReader(data)):
        if element.tag != f"{COMMON_NS}package":
            continue
        location = element.find(f"{COMMON_NS}location")
        size = element.find(f"{COMMON_NS}size")
        checksum = element.find(f"{COMMON_NS}checksum")
        if location is None:
            raise CheckFailed(f"{primary}: a package without <location>")
        rel = (base / location.get("href", "")).relative_to(checker.root).as_posix()
        checker.file(rel, int(size.get("package")) if size is not None else None,
                     _algo(checksum.get("type")) if checksum is not None else None,
                     (checksum.text or "").strip() if checksum is not None else None, primary)
        element.clear()


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._data) if n < 0 else self._pos + n
        chunk = bytes(self._data[self._pos:end])
        self._pos += len(chunk)
        return chunk


# ---------------------------------------------------------------------------------------- all

def check_snapshot(root: Path, *, check: str = "auto", published: Path | None = None,
                   published_files: int | None = None, max_shrink: float = 0.5,
                   excludes: tuple[str, ...] = (), keyring: str | None = None,
                   counted: tuple[int, int] | None = None,
                   hashes: dict | None = None) -> CheckResult:
    """Check the snapshot at ``root`` (``check``: auto, apt, yum or files) against the
    ``published`` snapshot (None for a first sync). Index files matching the mirror's
    ``excludes`` may be missing (a mirror of some architectures or suites only). ``counted``:
    the snapshot's (files, bytes) as the sync's rsync listed them
    (:mod:`services.mirrorsync.itemized`), so that the tree is not walked again; without it
    the tree is counted here. ``hashes``: the result's ``hashes`` of the check that let the
    ``published`` snapshot through: index files it shares are not hashed again."""
    kind = detect(root) if check == "auto" else check
    files, size = counted if counted is not None else count_files(root)
    checker = _Checker(root, published, excludes, hashes)
    try:
        if files == 0:
            raise CheckFailed("the snapshot has no files (is the source right?)")
        if published_files and files < published_files * (1 - max_shrink):
            raise CheckFailed(f"the snapshot has {files} files, the published one "
                              f"{published_files}: more than {max_shrink:.0%} fewer (upstream "
                              "emptied?)")
        if kind == "apt":
            if not (root / "dists").is_dir():
                raise CheckFailed("check=apt but there is no dists/ directory")
            check_apt(checker, keyring)
        elif kind == "yum":
            if not detect(root) == "yum":
                raise CheckFailed("check=yum but there is no repodata/repomd.xml")
            check_yum(checker)
    except CheckFailed as exc:
        return CheckResult(kind, files, size, checker.verified, str(exc))
    except (OSError, ValueError, EOFError, lzma.LZMAError, subprocess.SubprocessError) as exc:
        return CheckResult(kind, files, size, checker.verified,
                           f"cannot read an index: {exc}")
    return CheckResult(kind, files, size, checker.verified, hashes=checker.hashes)
