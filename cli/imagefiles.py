"""The file work of ``bootyard image import|verify`` (cli/images.py has the commands): read a
directory, a tarball, an ISO (``bsdtar``), a Debian package (``dpkg-deb``) or an http(s) URL,
copy the files :mod:`shared.images` chooses into a staging directory inside the images
directory, hashing them as they are copied, then rename each into ``<images>/<name>/``; and
re-hash an image's files against its record. Imported only when one of those commands runs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.parse
from pathlib import Path

from shared import images as layout

CHUNK = 1 << 20


# ---------------------------------------------------------------------------- the import

class _Stage:
    """A directory inside the images directory (one filesystem, so files move by rename)."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.dir = Path(tempfile.mkdtemp(prefix=f".import-{name}-", dir=root))
        self.kept: dict[str, tuple[Path, str, int]] = {}  # source name -> (file, sha256, size)
        self.count = 0

    def keep(self, source_name: str, reader) -> None:
        self.count += 1
        path = self.dir / f"f{self.count}"
        digest = hashlib.sha256()
        size = 0
        with open(path, "wb") as fh:
            while chunk := reader.read(CHUNK):
                size += len(chunk)
                if size > layout.MAX_FILE:
                    raise layout.ImageError(f"{source_name}: larger than "
                                            f"{layout.MAX_FILE >> 30} GiB")
                digest.update(chunk)
                fh.write(chunk)
        self.kept[source_name] = (path, digest.hexdigest(), size)

    def place(self, targets: dict[str, str]) -> tuple[dict[str, str], dict[str, int]]:
        """Rename the chosen files to their targets; (target -> sha256, target -> size)."""
        digests, sizes = {}, {}
        for source_name, target in targets.items():
            path, digest, size = self.kept[source_name]
            final = self.root / target
            final.parent.mkdir(parents=True, exist_ok=True)
            path.chmod(0o644)
            os.replace(path, final)
            digests[target], sizes[target] = digest, size
        return digests, sizes

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def import_image(name: str, source: str, root: Path, *, kernel: str | None = None,
                 initrds=(), squashfs: str | None = None, as_kind: str | None = None,
                 description: str = "") -> tuple[dict[str, str], dict[str, int]]:
    """Copy the image's files into ``root/<name>/``; (the record's fields, target -> size)."""
    stage = _Stage(root, name)
    wanted = {layout.clean(n) for n in (kernel, squashfs, *initrds) if n}
    try:
        if source.startswith(("http://", "https://")):
            source_kind = fetched_kind = "url"
            local = Path()
            if source.endswith("/"):
                names = _fetch_directory(stage, source, kernel, initrds, squashfs)
            else:
                local = _download(stage, source)
                fetched_kind = as_kind or _sniff(local, source)
                names = _read_file(stage, local, fetched_kind, wanted)
        else:
            path = Path(source)
            if not path.exists():
                raise layout.ImageError(f"{source}: no such file or directory")
            source = str(path.resolve())
            local = path
            source_kind = fetched_kind = as_kind or ("dir" if path.is_dir()
                                                     else _sniff(path, source))
            names = (_list_dir(path) if source_kind == "dir"
                     else _read_file(stage, path, source_kind, wanted))
        selection = layout.choose(names, kernel=kernel, initrds=initrds, squashfs=squashfs)
        targets = layout.target_names(name, selection)
        for chosen in selection.files:  # a directory or an ISO: only the chosen files are read
            if chosen not in stage.kept:
                _keep_one(stage, local, fetched_kind, chosen)
        digests, sizes = stage.place(targets)
    finally:
        stage.remove()
    fields = layout.record_fields(
        selection, targets, digests, source_kind=source_kind, source=source,
        imported=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), description=description)
    return fields, sizes


def _sniff(path: Path, source: str) -> str:
    with open(path, "rb") as fh:
        found = layout.sniff(fh.read(0x8800))
    if found is None:
        raise layout.ImageError(f"{source}: not a directory, tarball, ISO or Debian package "
                                "(say which with --as)")
    return found


def _list_dir(top: Path) -> list[str]:
    names = []
    for directory, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if not d.startswith(".import-")]
        names += [Path(directory, f).relative_to(top).as_posix() for f in files
                  if Path(directory, f).is_file()]
    return names


def _keep_one(stage: _Stage, source: Path, kind: str, name: str) -> None:
    if kind == "dir":
        with open(source / name, "rb") as fh:
            stage.keep(name, fh)
        return
    proc = subprocess.Popen(["bsdtar", "-xOf", str(source), name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stage.keep(name, proc.stdout)
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace").strip()
        proc.stderr.close()
        if proc.wait() != 0:
            raise layout.ImageError(f"bsdtar -xOf {source} {name}: {err}")


def _read_file(stage: _Stage, path: Path, kind: str, wanted: set[str]) -> list[str]:
    if kind == "iso":
        return _read_iso(stage, path, wanted)
    if kind == "deb":
        if shutil.which("dpkg-deb") is None:
            raise layout.ImageError("reading a .deb needs dpkg-deb (Debian package dpkg)")
        proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(path)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            names = _read_tar_stream(stage, proc.stdout, wanted)
        finally:
            proc.stdout.close()
            err = proc.stderr.read().decode(errors="replace").strip()
            proc.stderr.close()
            code = proc.wait()
        if code != 0:
            raise layout.ImageError(f"dpkg-deb --fsys-tarfile {path}: {err or f'exit {code}'}")
        return names
    if kind == "tarball":
        with open(path, "rb") as fh:
            return _read_tar_stream(stage, fh, wanted)
    raise layout.ImageError(f"unknown source kind {kind}")


def _read_tar_stream(stage: _Stage, fileobj, wanted: set[str]) -> list[str]:
    """Read a tar stream once (compressed with gzip, xz or bzip2, or not), keeping every member
    that could be chosen; the names of all its regular files."""
    names = []
    try:
        with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                names.append(member.name)
                if layout.candidate(member.name) or layout.clean(member.name) in wanted:
                    reader = tar.extractfile(member)
                    stage.keep(member.name, reader)
    except tarfile.TarError as exc:
        raise layout.ImageError(f"not a readable tar archive: {exc}") from None
    return names


def _read_iso(_stage: _Stage, path: Path, _wanted: set[str]) -> list[str]:
    """An ISO's file names (its chosen files are read afterwards, one by one)."""
    if shutil.which("bsdtar") is None:
        raise layout.ImageError("reading an ISO needs bsdtar (Debian package libarchive-tools)")
    listed = subprocess.run(["bsdtar", "-tf", str(path)], capture_output=True, text=True)
    if listed.returncode != 0:
        raise layout.ImageError(f"bsdtar -tf {path}: {listed.stderr.strip()}")
    return [n for n in listed.stdout.splitlines() if n and not n.endswith("/")]


def _open_url(url: str):
    import urllib.request
    request = urllib.request.Request(url, headers={"User-Agent": "bootyard-image-import"})
    try:
        return urllib.request.urlopen(request, timeout=60)  # noqa: S310 - http(s) only
    except OSError as exc:
        raise layout.ImageError(f"{url}: {getattr(exc, 'reason', None) or exc}") from None


def _download(stage: _Stage, url: str) -> Path:
    with _open_url(url) as response:
        stage.keep("(download)", response)
    return stage.kept.pop("(download)")[0]


def _fetch_directory(stage: _Stage, url: str, kernel, initrds, squashfs) -> list[str]:
    names = [kernel or "linux", *(initrds or ["initrd.gz"])] + ([squashfs] if squashfs else [])
    for name in names:
        with _open_url(urllib.parse.urljoin(url, layout.clean(name))) as response:
            stage.keep(name, response)
    return names


def check_files(root: Path, record) -> list[tuple[str, str]]:
    """(path, ``ok`` | what is wrong) for each file of an image record."""
    summed = dict(record.sha256)
    out = []
    for path in record.files:
        full = root / path
        if not full.is_file():
            out.append((path, f"missing ({full})"))
            continue
        if path not in summed:
            out.append((path, "no checksum recorded"))
            continue
        digest = hashlib.sha256()
        with open(full, "rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
        out.append((path, "ok" if digest.hexdigest() == summed[path]
                    else f"sha256 {digest.hexdigest()} differs from the recorded "
                         f"{summed[path]}"))
    return out
