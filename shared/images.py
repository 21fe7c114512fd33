"""Which files of a distribution's netboot tree, archive or ISO are its kernel, initrd and
squashfs, and the image record that names them (pure: no files here; ``cli/images.py`` reads
and copies, docs/inventory.md "Images").

:func:`choose` looks at the file names of a source (a directory tree, a tarball, an ISO, a
Debian package's data) and picks a kernel with an initrd beside it:

- Debian's netboot (``netboot.tar.gz``, the package ``debian-installer-12-netboot-amd64``):
  ``.../debian-installer/amd64/linux`` + ``initrd.gz``; the text installer is taken, not the
  graphical (``gtk``) one;
- installer ISOs: ``install.amd/vmlinuz`` + ``initrd.gz`` (Debian), ``casper/vmlinuz`` +
  ``initrd`` (Ubuntu), ``images/pxeboot/vmlinuz`` + ``initrd.img`` (Fedora, RHEL and their kin);
- any one directory holding a kernel (``linux``, ``vmlinuz*``, ``bzImage``) and an initrd
  (``initrd*``, ``initramfs*``).

More than one such pair is refused with the list, so the operator names the files
(``--kernel``, ``--initrd``). A squashfs is taken when there is exactly one (``*.squashfs``,
``squashfs.img``).
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections.abc import Iterable, Mapping

KERNEL_NAME = re.compile(r"(linux|vmlinuz(-[^/]*)?|vmlinux|bzImage)")
INITRD_NAME = re.compile(r"(initrd|initramfs)([-._][^/]*)?")
SQUASHFS_NAME = re.compile(r"[^/]*\.squashfs|squashfs\.img")
# directory names of variants taken only when nothing else is there (Debian's graphical
# installer, Xen-only kernels)
VARIANTS = ("gtk", "xen")
MAX_FILE = 8 << 30  # the largest file an import copies (a squashfs of a desktop live image)


class ImageError(ValueError):
    """The source does not say which files to take; the message tells the operator what to do."""


@dataclasses.dataclass(frozen=True)
class Selection:
    """Files of the source (paths as the source names them) and what each becomes."""

    kernel: str
    initrds: tuple[str, ...]
    squashfs: str | None = None

    @property
    def files(self) -> tuple[str, ...]:
        return (self.kernel,) + self.initrds + ((self.squashfs,) if self.squashfs else ())


def clean(name: str) -> str:
    """A member name as a plain relative path (``./a//b`` -> ``a/b``; never above the top)."""
    return posixpath.normpath("/" + name).lstrip("/")


def _pairs(names: Iterable[str]) -> list[tuple[str, str]]:
    by_dir: dict[str, list[str]] = {}
    for name in names:
        by_dir.setdefault(posixpath.dirname(name), []).append(posixpath.basename(name))
    pairs = []
    for directory, files in sorted(by_dir.items()):
        kernels = sorted(f for f in files if KERNEL_NAME.fullmatch(f))
        initrds = sorted(f for f in files if INITRD_NAME.fullmatch(f))
        if len(kernels) == 1 and len(initrds) >= 1:
            initrd = _best_initrd(initrds)
            pairs.append((posixpath.join(directory, kernels[0]),
                          posixpath.join(directory, initrd)))
    return pairs


def _best_initrd(initrds: list[str]) -> str:
    for preferred in ("initrd.gz", "initrd.img", "initrd", "initrd.lz"):
        if preferred in initrds:
            return preferred
    return initrds[0]


def _variant(path: str) -> bool:
    return any(part in VARIANTS for part in path.split("/"))


def choose(names: Iterable[str], *, kernel: str | None = None,
           initrds: Iterable[str] = (), squashfs: str | None = None) -> Selection:
    """The kernel, initrds and squashfs among ``names`` (regular files of the source). Names
    given by the operator are looked up (clean paths relative to the source's top);
    :class:`ImageError` says what is missing or ambiguous."""
    found = {clean(n): n for n in names if clean(n)}
    wanted = [kernel, *initrds, squashfs]
    for name in wanted:
        if name and clean(name) not in found:
            near = [f for f in found if posixpath.basename(f) == posixpath.basename(name)]
            hint = f" (found: {', '.join(sorted(near)[:5])})" if near else ""
            raise ImageError(f"{name}: no such file in the source{hint}")
    if kernel:
        chosen_initrds = tuple(found[clean(i)] for i in initrds)
        if not chosen_initrds:  # the initrd beside the kernel, if there is one
            directory = posixpath.dirname(clean(kernel))
            beside = sorted(posixpath.basename(f) for f in found
                            if posixpath.dirname(f) == directory
                            and INITRD_NAME.fullmatch(posixpath.basename(f)))
            if beside:
                chosen_initrds = (found[posixpath.join(directory, _best_initrd(beside))],)
        selection = Selection(found[clean(kernel)], chosen_initrds)
    else:
        if initrds:
            raise ImageError("--initrd without --kernel: name the kernel too")
        pairs = _pairs(found)
        plain = [p for p in pairs if not _variant(p[0])]
        pairs = plain or pairs
        if not pairs:
            raise ImageError("no kernel with an initrd beside it in the source (looked for "
                             "linux, vmlinuz* or bzImage next to initrd* or initramfs*): give "
                             "--kernel and --initrd (paths inside the source)")
        if len(pairs) > 1:
            listed = "; ".join(f"{k} + {i}" for k, i in pairs[:8])
            raise ImageError(f"{len(pairs)} kernels with an initrd in the source ({listed}): "
                             "choose one with --kernel (and --initrd)")
        selection = Selection(found[pairs[0][0]], (found[pairs[0][1]],))
    if squashfs:
        return dataclasses.replace(selection, squashfs=found[clean(squashfs)])
    roots = [f for f in found if SQUASHFS_NAME.fullmatch(posixpath.basename(f))]
    if len(roots) == 1:
        return dataclasses.replace(selection, squashfs=found[roots[0]])
    return selection


def wanted_names(names: Iterable[str]) -> list[str]:
    """The names :func:`choose` could pick from (kernels, initrds, squashfs files): what a
    streamed archive must keep while it is read once."""
    return [n for n in names if _candidate(posixpath.basename(clean(n)))]


def _candidate(base: str) -> bool:
    return bool(KERNEL_NAME.fullmatch(base) or INITRD_NAME.fullmatch(base)
                or SQUASHFS_NAME.fullmatch(base))


def candidate(name: str) -> bool:
    """Whether a member of that name could be a kernel, initrd or squashfs."""
    return _candidate(posixpath.basename(clean(name)))


def target_names(name: str, selection: Selection) -> dict[str, str]:
    """Source file -> path under the images root (``<image>/<file name>``). Two chosen files
    with one name (two initrds called ``initrd.gz`` from two directories) are refused."""
    out: dict[str, str] = {}
    for source in selection.files:
        target = f"{name}/{posixpath.basename(clean(source))}"
        if target in out.values():
            raise ImageError(f"two chosen files are both called {posixpath.basename(target)}")
        out[source] = target
    return out


def record_fields(selection: Selection, targets: Mapping[str, str],
                  digests: Mapping[str, str], *, source_kind: str, source: str,
                  imported: str, description: str = "") -> dict[str, str]:
    """The image record's hash fields after an import (``digests``: target -> sha256)."""
    fields = {
        "kernel": targets[selection.kernel],
        "initrd": ",".join(targets[i] for i in selection.initrds),
        "squashfs": targets[selection.squashfs] if selection.squashfs else "",
        "sha256": ",".join(f"{t}={digests[t]}" for t in targets.values()),
        "source_kind": source_kind,
        "source": source,
        "imported": imported,
        "description": description,
    }
    return {k: v for k, v in fields.items() if v}


def sniff(head: bytes) -> str | None:
    """What a downloaded or given file is, from its first 64 KiB: ``deb``, ``iso``,
    ``tarball`` (tar, or tar compressed with gzip, xz, bzip2 or zstd), or None."""
    if head.startswith(b"!<arch>\ndebian-binary"):
        return "deb"
    if len(head) >= 0x8006 and head[0x8001:0x8006] == b"CD001":
        return "iso"
    if head[257:262] == b"ustar" or head.startswith((b"\x1f\x8b", b"\xfd7zXZ\x00", b"BZh",
                                                       b"\x28\xb5\x2f\xfd")):
        return "tarball"
    return None
