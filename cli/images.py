"""``bootyard image import|verify``: put a distribution's netboot kernel, initrd (and squashfs)
into the images directory and record them as an image, with each file's SHA-256
(docs/inventory.md "Images").

Sources: a directory, a tarball (``netboot.tar.gz``), an ISO (read with ``bsdtar``, Debian's
libarchive-tools: no loop mount), a Debian package (``debian-installer-12-netboot-amd64``, read
with ``dpkg-deb``), or an http(s) URL of any of those, or of a directory (``.../netboot/
debian-installer/amd64/``, with the file names given or ``linux`` and ``initrd.gz``).
Which files are taken is decided by :mod:`shared.images` from their names.

Files are written into a staging directory inside the images directory, hashed as they are
copied, and then renamed to ``<images>/<name>/<file>`` one by one (a download in progress keeps
reading the old file: cli/imagefiles.py); the record is written last, through the same checks
as every write. This module imports only the standard library's lightest parts at the top (it is
loaded with the parser, on every ``bootyard`` start).
"""

from __future__ import annotations

SOURCE_KINDS = ("dir", "tarball", "iso", "deb")


def add_verbs(verbs, common, id_name: str) -> None:
    sub = verbs.add_parser(
        "import", parents=[common],
        help="copy a distribution's netboot kernel and initrd into the images directory and "
             "record them (from a directory, tarball, ISO, .deb or http(s) URL)")
    sub.add_argument("id", metavar=id_name)
    sub.add_argument("source", metavar="SOURCE",
                     help="directory, tarball, ISO, .deb file, or http(s) URL (of one of those, "
                          "or of a directory ending in /)")
    sub.add_argument("--kernel", metavar="PATH", help="the kernel's path inside the source "
                     "(default: found by name)")
    sub.add_argument("--initrd", metavar="PATH", action="append", default=[],
                     help="an initrd's path inside the source (repeatable; default: the "
                          "initrd beside the kernel)")
    sub.add_argument("--squashfs", metavar="PATH", help="a squashfs root image's path inside "
                     "the source (default: the only *.squashfs, if there is one)")
    sub.add_argument("--as", dest="source_kind", choices=SOURCE_KINDS,
                     help="what SOURCE is (default: from its contents)")
    sub.add_argument("--description", help="free text for the record")
    _images_dir_option(sub)
    sub = verbs.add_parser("verify", parents=[common],
                           help="check each image's files against their recorded SHA-256")
    sub.add_argument("ids", nargs="*", metavar=id_name, help="only these images (default: all)")
    _images_dir_option(sub)


def _images_dir_option(sub) -> None:
    sub.add_argument("--images-dir", metavar="DIR",
                     help="the images directory (default: http.images_root of BOOTYARD_CONFIG "
                          "or BOOTYARD_HTTP__IMAGES_ROOT, else /var/lib/bootyard/images)")


def images_dir(args):
    """The directory HTTP serves under /images/ (and TFTP under its images prefix)."""
    import dataclasses
    import os
    from pathlib import Path

    if args.images_dir:
        return Path(args.images_dir)
    from services.http.settings import HttpSection
    from shared import settings as settings_mod

    # built here, not declared: with postponed annotations a class in this function would name
    # HttpSection as a string the settings loader resolves in the module, where it is not
    Images = dataclasses.make_dataclass(
        "Images", [("http", HttpSection, dataclasses.field(default_factory=HttpSection))],
        frozen=True)
    try:
        cfg = settings_mod.load_settings(Images, None, os.environ)
    except settings_mod.SettingsError as exc:
        from cli.commands import CliError
        raise CliError(f"settings error: {exc}") from None
    return Path(cfg.http.images_root)


async def run(args, kind, store, out) -> int:
    import asyncio

    from cli.commands import CliError
    from cli.imagefiles import check_files, import_image
    from shared import images as layout

    root = images_dir(args)
    if not root.is_dir():
        raise CliError(f"images directory {root} does not exist (give --images-dir, or set "
                       "http.images_root)")
    if args.verb == "verify":
        return await _verify(args, kind, store, root, out, check_files)
    from cli.commands import _print_warnings, who
    from shared import audit, inventory

    name = kind.canonical_id(args.id)
    try:
        fields, sizes = await asyncio.to_thread(import_image, name, args.source, root,
                                                kernel=args.kernel, initrds=args.initrd,
                                                squashfs=args.squashfs, as_kind=args.source_kind,
                                                description=args.description or "")
    except layout.ImageError as exc:
        raise CliError(f"image {name}: {exc}") from None
    written = await inventory.write_many(store, kind, [name], fields, mode="replace",
                                         record=audit.recorder(who()))
    _print_warnings(written)
    print(f"imported image {name} from {fields['source_kind']} {fields['source']}", file=out)
    for pair in fields["sha256"].split(","):
        path, digest = pair.rsplit("=", 1)
        print(f"  {path}  {sizes[path]} bytes  sha256 {digest}", file=out)
    print(f"boot it with: bootyard profile add NAME --image {name} --install preseed "
          "(or kickstart, cloud-init)", file=out)
    return 0


# ---------------------------------------------------------------------------- verify

async def _verify(args, kind, store, root, out, check_files) -> int:
    import asyncio

    from shared.validation import parse_record

    names = [kind.canonical_id(i) for i in args.ids] or sorted(
        (await store.raw_all(kind)).keys())
    bad = 0
    for name in names:
        raw = await store.raw(kind, name)
        if not raw:
            print(f"{name}: no such image (key {kind.key(name)})", file=out)
            bad += 1
            continue
        record, problems = parse_record(kind, name, raw)
        if record is None:
            print(f"{name}: invalid record: {'; '.join(map(str, problems))}", file=out)
            bad += 1
            continue
        results = await asyncio.to_thread(check_files, root, record)
        for path, verdict in results:
            print(f"{name}: {path}: {verdict}", file=out)
            bad += verdict not in ("ok", "no checksum recorded")
    return 1 if bad else 0


