"""Static files: ``/images/...`` and ``/mirror/...`` from directories; only small files
(``SMALL_FILE``) are read into memory, to go out with their headers in one write.

Every name goes through :func:`shared.paths.resolve_under`. A whole file (no ``Range``: what
firmware and iPXE ask for) goes out as :class:`WholeFile`: opened, checked and closed in the event
loop (a local file system answers in microseconds; the thread pool's hand-offs cost more, and a
boot storm asks for thousands of kernels) and sent with ``loop.sendfile`` (``sendfile(2)`` on the
default asyncio loop). Range requests go through aiohttp's :class:`~aiohttp.web.FileResponse`,
which answers one byte range. Both answer HEAD, ``If-None-Match``/``If-Modified-Since`` (304) and
``If-Match``/``If-Unmodified-Since`` (412). This module adds what FileResponse lacks: several
ranges in one request (``multipart/byteranges``, RFC 9110 §14.6, streamed in chunks),
``If-Range`` with an ETag, bootyard's content types (``.efi`` is ``application/efi``, as OVMF's
HTTP boot wants), and HTML directory listings for people.
"""

from __future__ import annotations

import asyncio
import datetime
import html
import os
import secrets
import stat
import urllib.parse
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

from aiohttp import hdrs, web

from shared.paths import PathRefused, resolve_under

MAX_RANGES = 64
CHUNK = 256 * 1024
# Files up to this size are read into memory and sent with their headers in one write (GRUB's
# small-file delay: see _small_file); larger ones go out by sendfile.
SMALL_FILE = 64 * 1024
LISTING_LIMIT = 10_000
CONTENT_TYPES = {
    ".efi": "application/efi",
    ".kpxe": "application/octet-stream",
    ".kkpxe": "application/octet-stream",
    ".pxe": "application/octet-stream",
    ".lkrn": "application/octet-stream",
    ".0": "application/octet-stream",
    ".c32": "application/octet-stream",
    ".img": "application/octet-stream",
    ".gz": "application/gzip",
    ".xz": "application/x-xz",
    ".zst": "application/zstd",
    ".squashfs": "application/vnd.squashfs",
    ".sfs": "application/vnd.squashfs",
    ".iso": "application/x-iso9660-image",
    ".ipxe": "text/plain; charset=utf-8",
    ".cfg": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".deb": "application/vnd.debian.binary-package",
    ".rpm": "application/x-rpm",
    ".xml": "application/xml",
    ".json": "application/json",
    ".html": "text/html; charset=utf-8",
    ".sig": "application/pgp-signature",
    ".gpg": "application/pgp-keys",
}
DEFAULT_TYPE = "application/octet-stream"
NO_EXTENSION_TYPES = {"vmlinuz": DEFAULT_TYPE, "linux": DEFAULT_TYPE, "initrd": DEFAULT_TYPE,
                      "Release": "text/plain; charset=utf-8",
                      "InRelease": "text/plain; charset=utf-8"}


def content_type(path: Path) -> str:
    name = path.name
    suffix = path.suffix.lower()
    if suffix in CONTENT_TYPES:
        return CONTENT_TYPES[suffix]
    return NO_EXTENSION_TYPES.get(name, DEFAULT_TYPE)


def etag_of(st: os.stat_result) -> str:
    """The same strong ETag aiohttp's FileResponse sends (so 304s agree across both paths)."""
    return f"{st.st_mtime_ns:x}-{st.st_size:x}"


def parse_ranges(header: str, size: int) -> list[tuple[int, int]] | None:
    """``Range: bytes=...`` as inclusive (first, last) pairs clipped to ``size``, overlapping
    and adjacent ones merged, in file order (RFC 9110 §14.2 lets a server coalesce them): the
    parts of one response never add up to more than the file, however many ranges repeat it.

    None: the header is not a valid bytes range set, or has more than MAX_RANGES ranges (it is
    then ignored and the whole file sent, RFC 9110 §14.2). []: valid but nothing satisfiable
    (416).
    """
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec.strip():
        return None
    out = []
    items = spec.split(",")
    if len(items) > MAX_RANGES:
        return None
    for item in items:
        first, dash, last = item.strip().partition("-")
        if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
            return None
        if first == "":
            if last == "":
                return None
            length = int(last)
            if length == 0:
                continue
            out.append((max(size - length, 0), size - 1))
            continue
        start = int(first)
        end = int(last) if last else size - 1
        if last and end < start:
            return None
        if start >= size:
            continue
        out.append((start, min(end, size - 1)))
    if size <= 0:
        return []
    merged: list[tuple[int, int]] = []
    for first, last in sorted(out):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def _if_range_holds(value: str, etag: str, mtime: float) -> bool:
    value = value.strip()
    if value.startswith('"'):
        return value == f'"{etag}"'
    if value.startswith("W/"):
        return False  # weak validators never match in If-Range
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return False
    return int(when.timestamp()) == int(mtime)


def _precondition_status(request: web.Request, etag: str, mtime: float) -> int | None:
    """304/412 for the multi-range path (FileResponse does this itself for the others)."""
    if request.if_match is not None:
        if not any(e.value in (etag, "*") and not e.is_weak for e in request.if_match):
            return 412
    elif request.if_unmodified_since is not None and \
            int(mtime) > request.if_unmodified_since.timestamp():
        return 412
    if request.if_none_match is not None:
        if any(e.value in (etag, "*") for e in request.if_none_match):
            return 304
    elif request.if_modified_since is not None and \
            int(mtime) <= request.if_modified_since.timestamp():
        return 304
    return None


async def serve(request: web.Request, root: str, name: str) -> web.StreamResponse:
    """Answer a GET/HEAD for ``name`` under ``root``: a file, a listing, or 403/404."""
    try:
        path = resolve_under(root, name)
    except PathRefused as exc:
        raise web.HTTPForbidden(text=f"refused: {exc.reason}\n") from None
    try:
        st = path.stat()
    except OSError:
        raise web.HTTPNotFound(text="not found\n") from None
    if stat.S_ISDIR(st.st_mode):
        if not request.path.endswith("/"):
            raise web.HTTPMovedPermanently(location=request.path + "/")
        return await _listing(request, path)
    if not stat.S_ISREG(st.st_mode):
        raise web.HTTPNotFound(text="not found\n")
    headers = {hdrs.CONTENT_TYPE: content_type(path)}
    etag, mtime = etag_of(st), st.st_mtime
    range_header = request.headers.get(hdrs.RANGE)
    if range_header is None and st.st_size <= SMALL_FILE:
        return await _small_file(request, path, st, headers)
    if range_header is not None:
        if_range = request.headers.get(hdrs.IF_RANGE)
        if if_range is not None and not _if_range_holds(if_range, etag, mtime):
            return _file_response(request.clone(headers=_without(request, hdrs.RANGE,
                                                                  hdrs.IF_RANGE)), path, headers)
        ranges = parse_ranges(range_header, st.st_size)
        if ranges is None:  # not a bytes range set we understand: ignore it, send it all
            request = request.clone(headers=_without(request, hdrs.RANGE, hdrs.IF_RANGE))
        elif not ranges:
            raise web.HTTPRequestRangeNotSatisfiable(
                headers={hdrs.CONTENT_RANGE: f"bytes */{st.st_size}"})
        elif len(ranges) == 1:
            first, last = ranges[0]
            fixed = _without(request, hdrs.IF_RANGE)
            fixed[hdrs.RANGE] = f"bytes={first}-{last}"
            request = request.clone(headers=fixed)
        else:
            status = _precondition_status(request, etag, mtime)
            if status is not None:
                raise web.HTTPNotModified(headers={hdrs.ETAG: f'"{etag}"'}) if status == 304 \
                    else web.HTTPPreconditionFailed()
            return await _multipart(request, path, st, ranges, headers[hdrs.CONTENT_TYPE], etag)
        return _file_response(request, path, headers)
    return _whole_file(request, path, headers)


def _validators(st: os.stat_result) -> dict[str, str]:
    return {hdrs.ETAG: f'"{etag_of(st)}"', hdrs.LAST_MODIFIED: formatdate(st.st_mtime, usegmt=True)}


def _whole_file(request: web.Request, path: Path, headers: dict[str, str]) -> web.StreamResponse:
    """The whole file, or 304/412 for its validators; 404 if it is gone or no longer a file."""
    try:
        fobj = open(path, "rb")  # noqa: SIM115 - WholeFile.prepare closes it
    except OSError:
        raise web.HTTPNotFound(text="not found\n") from None
    try:
        st = os.fstat(fobj.fileno())  # the file being sent, should the name have moved on
        if not stat.S_ISREG(st.st_mode):
            raise web.HTTPNotFound(text="not found\n")
        status = _precondition_status(request, etag_of(st), st.st_mtime)
        if status == 304:
            raise web.HTTPNotModified(headers=_validators(st))
        if status == 412:
            raise web.HTTPPreconditionFailed()
    except BaseException:
        fobj.close()
        raise
    return WholeFile(fobj, st.st_size, {**headers, **_validators(st),
                                        hdrs.ACCEPT_RANGES: "bytes"})


class WholeFile(web.StreamResponse):
    """A 200 with an open file's ``size`` bytes, sent by ``loop.sendfile`` after the headers;
    the file is closed once sent (or failed). A file that shrank while being sent ends the
    connection (the client sees a short body, never the next answer as this one's end)."""

    def __init__(self, fobj, size: int, headers: dict[str, str]) -> None:
        super().__init__(headers=headers)
        self.content_length = size
        self._fobj = fobj

    async def prepare(self, request):
        if self.prepared:  # the server middleware already sent it
            return None
        fobj, self._fobj = self._fobj, None
        try:
            writer = await super().prepare(request)
            size = self.content_length or 0
            if request.method != "HEAD" and size:
                transport = request.transport
                if transport is None:
                    raise ConnectionResetError("the client went away")
                sent = await asyncio.get_running_loop().sendfile(transport, fobj, 0, size)
                if sent < size:
                    self.force_close()
                    raise ConnectionResetError("file shrank while being sent")
            await super().write_eof()
            return writer
        finally:
            fobj.close()


async def _small_file(request: web.Request, path: Path, st: os.stat_result,
                      headers: dict[str, str]) -> web.Response:
    """A small file read into memory and answered as one buffer, so its headers and body leave
    in one write (one TCP segment): GRUB 2.06's HTTP client polls 400 ms for a body that is not
    queued with the headers, and FileResponse writes the headers before its sendfile."""
    validators = _validators(st)
    status = _precondition_status(request, etag_of(st), st.st_mtime)
    if status == 304:
        raise web.HTTPNotModified(headers=validators)
    if status == 412:
        raise web.HTTPPreconditionFailed()
    # (HEAD too: aiohttp sends the Content-Length of the body and leaves the body out)
    body = await asyncio.get_running_loop().run_in_executor(None, _read_small, path, st.st_size)
    return web.Response(body=body, headers={**headers, **validators,
                                            hdrs.ACCEPT_RANGES: "bytes"})


def _read_small(path: Path, size: int) -> bytes:
    with open(path, "rb") as fobj:
        return fobj.read(size)  # the size stat gave: the length the headers announce


def _without(request: web.Request, *names: str) -> dict[str, str]:
    """The request's headers without ``names``, for a cloned request. Also without any header
    whose value is not UTF-8 (aiohttp keeps such bytes as surrogates and cannot encode them
    again: found by make fuzz); no header the answer depends on can be one of those."""
    drop = {n.lower() for n in names}
    return {k: v for k, v in request.headers.items()
            if k.lower() not in drop and _utf8(v)}


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _FileResponse(web.FileResponse):
    """A FileResponse prepared with our (possibly cloned, Range-rewritten) request, once."""

    def __init__(self, request: web.Request, path: Path, headers: dict[str, str]) -> None:
        super().__init__(path, headers=headers, chunk_size=CHUNK)
        self._request_to_use = request

    async def prepare(self, request):
        if self.prepared:  # the server middleware already sent it
            return None
        return await super().prepare(self._request_to_use)


def _file_response(request: web.Request, path: Path, headers: dict[str, str]) -> web.FileResponse:
    return _FileResponse(request, path, headers)


# Set on a request whose client went away while its answer was being sent (the handler then
# returns normally: re-raised, aiohttp would log a client's reset as a server error).
CLIENT_GONE = "bootyard.client_gone"


async def _multipart(request: web.Request, path: Path, st: os.stat_result,
                     ranges: list[tuple[int, int]], ctype: str, etag: str) -> web.StreamResponse:
    boundary = secrets.token_hex(12)
    heads = [(f"\r\n--{boundary}\r\nContent-Type: {ctype}\r\n"
              f"Content-Range: bytes {a}-{b}/{st.st_size}\r\n\r\n").encode() for a, b in ranges]
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = sum(len(h) for h in heads) + sum(b - a + 1 for a, b in ranges) + len(tail)
    response = web.StreamResponse(status=206, headers={
        hdrs.CONTENT_TYPE: f"multipart/byteranges; boundary={boundary}",
        hdrs.ETAG: f'"{etag}"', hdrs.LAST_MODIFIED: formatdate(st.st_mtime, usegmt=True),
        hdrs.ACCEPT_RANGES: "bytes"})
    response.content_length = length
    try:
        await response.prepare(request)
        if request.method != "HEAD":
            await _send_parts(response, path, heads, ranges, tail)
        await response.write_eof()
    except ConnectionError:  # the client went away (before the headers too: a client that
        response.force_close()  # sends its request and resets) or the file shrank
        request[CLIENT_GONE] = True
    return response


async def _send_parts(response: web.StreamResponse, path: Path, heads: list[bytes],
                      ranges: list[tuple[int, int]], tail: bytes) -> None:
    loop = asyncio.get_running_loop()
    with open(path, "rb") as fobj:
        for head, (first, last) in zip(heads, ranges):
            await response.write(head)
            offset, remaining = first, last - first + 1
            while remaining > 0:
                chunk = await loop.run_in_executor(None, os.pread, fobj.fileno(),
                                                   min(CHUNK, remaining), offset)
                if not chunk:  # the file shrank under us: stop, the client sees a short body
                    raise ConnectionResetError("file shrank while being sent")
                await response.write(chunk)
                offset += len(chunk)
                remaining -= len(chunk)
        await response.write(tail)


async def _listing(request: web.Request, directory: Path) -> web.Response:
    loop = asyncio.get_running_loop()
    entries = await loop.run_in_executor(None, _scan, directory)
    title = html.escape(urllib.parse.unquote(request.path))
    rows = ['<tr><td><a href="../">../</a></td><td></td><td></td></tr>'] \
        if request.path.rstrip("/").count("/") > 1 else []
    for name, is_dir, size, mtime in entries:
        href = urllib.parse.quote(name) + ("/" if is_dir else "")
        when = datetime.datetime.fromtimestamp(mtime, datetime.UTC).strftime(
            "%Y-%m-%d %H:%M")
        rows.append(f'<tr><td><a href="{html.escape(href)}">{html.escape(name)}'
                    f'{"/" if is_dir else ""}</a></td><td>{when}</td>'
                    f'<td align="right">{"-" if is_dir else size}</td></tr>')
    more = f"<p>(listing cut at {LISTING_LIMIT} entries)</p>" \
        if len(entries) >= LISTING_LIMIT else ""
    body = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}"
            f"</title></head>\n<body><h1>Index of {title}</h1>\n<table>\n"
            "<tr><th align=\"left\">Name</th><th>Modified (UTC)</th><th>Size</th></tr>\n"
            + "\n".join(rows) + f"\n</table>{more}\n</body></html>\n")
    return web.Response(text=body, content_type="text/html", charset="utf-8")


def _scan(directory: Path) -> list[tuple[str, bool, int, float]]:
    out = []
    with os.scandir(directory) as it:
        for entry in it:
            if len(out) >= LISTING_LIMIT:
                break
            if entry.name.startswith("."):
                continue
            try:
                st = entry.stat()
            except OSError:
                continue
            out.append((entry.name, stat.S_ISDIR(st.st_mode), st.st_size, st.st_mtime))
    out.sort(key=lambda e: (not e[1], e[0]))
    return out
