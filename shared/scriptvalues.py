"""What goes into a boot script, checked once (pure: no sockets, no Redis, no clock).

Locations: where a kernel, initrd or root image is (:class:`Location`: a clean path under the
images root, an http(s) URL or a tftp URL, :func:`parse_location`, also used by shared/fields.py
at write time) and how each loader writes it (:class:`PathMapper`: a TFTP path or an HTTP URL;
:func:`grub_device_path`, :func:`grub_word` for GRUB). Kernel arguments: printable, one line, with
no ``$`` (iPXE and GRUB expand it) and no ``||``/``&&`` word (iPXE runs them)
(:func:`args_problem`, :func:`check_args`). :class:`PlanError` is what the boot plan
(shared/bootplan.py) says when the inventory does not say enough to boot a host.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
import urllib.parse

DEFAULT_PORTS = {"http": 80, "https": 443, "tftp": 69}


class PlanError(ValueError):
    """The inventory does not say enough to boot this host; the text names record and field."""



# ------------------------------------------------------------------------------ locations

# Characters a location may hold: what a URL needs, minus what any loader's script syntax gives
# a meaning to (whitespace, quotes, $, ;, |, backquote, backslash, braces, <>, #).
_LOCATION_CHARS = re.compile(r"[A-Za-z0-9._~:/?=&%+,@!*()\[\]-]+")
_IMAGE_PATH = re.compile(r"[A-Za-z0-9._~+,@-]+(/[A-Za-z0-9._~+,@-]+)*")


@dataclasses.dataclass(frozen=True)
class Location:
    """Where a kernel, initrd or root image is: ``image`` (a path under the images root,
    served by TFTP under ``/<images_prefix>/`` and by HTTP under ``/images/``), or a URL
    (``http``, ``https``, ``tftp``) used as is."""

    scheme: str  # image, http, https, tftp
    value: str   # the path (no leading '/') or the whole URL
    host: str = ""  # URL host[:port] (netloc)
    path: str = ""  # URL path

    @property
    def name(self) -> str:
        """The file name (last path component)."""
        return posixpath.basename(self.value if self.scheme == "image" else self.path)


def parse_location(text: str) -> Location:
    """A profile's kernel/initrd/root_image value as a :class:`Location`; ValueError says why."""
    if not text or not _LOCATION_CHARS.fullmatch(text):
        raise ValueError("a path under the images root or an http://, https:// or tftp:// URL, "
                         "without spaces, quotes or any of $ ; | ` \\ { } < > #")
    if "://" in text:
        parts = urllib.parse.urlsplit(text)
        if parts.scheme not in ("http", "https", "tftp"):
            raise ValueError(f"URL scheme {parts.scheme!r}: only http, https and tftp are "
                             "loaded by every loader")
        if not parts.hostname:
            raise ValueError("the URL names no server")
        if parts.scheme == "tftp" and (parts.query or parts.fragment):
            raise ValueError("a tftp URL has no query")
        return Location(parts.scheme, text, parts.netloc, parts.path or "/")
    path = text.lstrip("/")
    if not _IMAGE_PATH.fullmatch(path) or any(p in (".", "..") for p in path.split("/")):
        raise ValueError("a path under the images root: names of letters, digits and "
                         "'. _ ~ + , @ -', separated by '/', no '.' or '..'")
    return Location("image", path)


class PathMapper:
    """Where a :class:`Location` is fetched from, per transport: the one place that writes
    image paths as TFTP paths or HTTP URLs."""

    def __init__(self, base_url: str | None, images_prefix: str = "images") -> None:
        self.base_url = base_url.rstrip("/") if base_url else None
        self.images_prefix = images_prefix.strip("/")

    def tftp_path(self, loc: Location) -> str:
        """For a loader that fetches over TFTP from its own server: ``/<prefix>/<path>``."""
        return "/" + "/".join(p for p in (self.images_prefix, loc.value) if p)

    def http_url(self, loc: Location) -> str:
        """An image as a URL of the HTTP service (URLs unchanged)."""
        if loc.scheme != "image":
            return loc.value
        if self.base_url is None:
            raise PlanError(f"{loc.value}: an image served over HTTP needs the HTTP service's "
                            "base URL (tftp.http_base_url)")
        return f"{self.base_url}/images/{urllib.parse.quote(loc.value, safe='/._-~+')}"


def grub_device_path(url: str) -> str:
    """``scheme://server[:port]/path`` as GRUB's ``(scheme,server[:port])/path``; the
    scheme's default port is left out."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port
    server = parts.hostname or ""
    if port is not None and port != DEFAULT_PORTS.get(parts.scheme):
        server = f"{server}:{port}"
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return f"({parts.scheme},{server}){path}"


_GRUB_PLAIN = re.compile(r"[A-Za-z0-9._,:/=@+%-]+")


def grub_word(word: str) -> str:
    """One GRUB word: plain, or single-quoted (no ``$`` expansion inside single quotes)."""
    if _GRUB_PLAIN.fullmatch(word):
        return word
    return "'" + word.replace("'", "'\\''") + "'"


# ------------------------------------------------------------------------------ the one check

_FORBIDDEN_WORDS = ("||", "&&")
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def args_problem(text: str) -> str | None:
    """Why ``text`` cannot go on a kernel command line in a script, or None. One line of
    printable text; no ``$`` (iPXE and GRUB expand it); no ``||``/``&&`` word (iPXE runs what
    follows as a command)."""
    control = _CONTROL.search(text)
    if control is not None:
        return (f"control character {control.group()!r} (a line break would start a new script "
                "command)")
    if "$" in text:
        return "'$' (iPXE and GRUB expand ${...} in scripts)"
    for word in text.split():
        if word in _FORBIDDEN_WORDS or word.startswith(_FORBIDDEN_WORDS):
            return f"{word!r} (iPXE would run what follows as a command)"
    return None


def check_args(args, what: str) -> None:
    for arg in args:
        problem = args_problem(arg)
        if problem:
            raise PlanError(f"{what}={arg[:80]!r} cannot go into a boot script: {problem}")
