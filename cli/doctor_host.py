"""``bootyard doctor`` without a MAC: the deploy host itself (the services' ``/healthz``, Redis
reachable and persistent, the DHCP interfaces, loaders and images present, mirrors fresh)."""

from __future__ import annotations

import time
from pathlib import Path

from cli.doctor_report import DoctorSettings, Report, http_fetch
from shared import paths
from shared.mirrors import MirrorState
from shared.schema import KINDS
from shared.store import InventoryStore, InventoryUnavailable
from shared.validation import parse_record


async def deploy_host_checks(report: Report, store: InventoryStore, cfg: DoctorSettings) -> None:
    for service, section in (("dhcp", cfg.dhcp), ("tftp", cfg.tftp), ("http", cfg.http)):
        host = section.metrics_host if section.metrics_host not in ("0.0.0.0", "") \
            else "127.0.0.1"
        url = f"http://{host}:{section.metrics_port}/healthz"
        status, body, _ = http_fetch(url)
        report.add("host", f"{service} service", status == 200,
                   f"{url}: " + (body.decode(errors="replace").strip()[:60] or "ok"
                                 if status == 200 else f"HTTP {status}" if status
                                 else "unreachable"),
                   f"start it (docker compose up -d {service}; docker compose logs {service})")
    try:
        await store.ping()
        report.add("host", "redis", True, f"{cfg.redis.url} answers")
    except InventoryUnavailable as exc:
        report.add("host", "redis", False, str(exc), "start redis-server; check redis.url")
        return
    try:
        persist = await store.persistence()
        durable = persist.get("appendonly") == "yes" or bool(persist.get("save"))
        report.add("host", "redis persistence", durable,
                   f"appendonly {persist.get('appendonly')}, appendfsync "
                   f"{persist.get('appendfsync')}, save {persist.get('save')!r}",
                   "redis.conf: appendonly yes (leases and the inventory survive a restart)")
    except InventoryUnavailable as exc:
        report.add("host", "redis persistence", None, f"not told: {exc}")
    from services.dhcp.transport import resolve_interfaces
    from shared.runtime import StartupError
    try:
        for iface in resolve_interfaces(cfg.dhcp.interfaces):
            report.add("host", f"dhcp interface {iface.name}", True, f"address {iface.address}")
    except StartupError as exc:
        report.add("host", "dhcp interfaces", False, str(exc), "set dhcp.interfaces")
    root = Path(cfg.tftp.root)
    profiles = {n: parse_record(KINDS["profile"], n, r)[0]
                for n, r in (await store.raw_all(KINDS["profile"])).items()}
    arches = {getattr(p, "arch", None) or "x86_64" for p in profiles.values()} or {"x86_64"}
    loaders = {"x86_64": (cfg.dhcp.ipxe_bios, cfg.dhcp.ipxe_efi),
               "i386": (cfg.dhcp.ipxe_bios, cfg.dhcp.ipxe_efi32),
               "arm64": (cfg.dhcp.ipxe_arm64,)}  # what the profiles' architectures boot
    for name in sorted({n for a in arches for n in loaders.get(a, ())}):
        try:
            path = paths.resolve_under(root, name)
        except paths.PathRefused as exc:
            report.add("host", f"loader {name}", False, str(exc), "fix the dhcp setting")
            continue
        report.add("host", f"loader {name}", path.is_file(),
                   str(path) + ("" if path.is_file() else " is missing"),
                   f"make tftp-root (fills {root})")
    images = Path(cfg.http.images_root)
    report.add("host", "images root", images.is_dir(), str(images) +
               ("" if images.is_dir() else " is missing"), "create it and copy the images")
    if images.is_dir():
        for name, profile in sorted(profiles.items()):
            if profile is None:
                continue
            for value in (profile.kernel, *profile.initrd, profile.root_image):
                if not value or "://" in value:
                    continue
                try:
                    path = paths.resolve_under(images, value)
                except paths.PathRefused:
                    continue
                if not path.is_file():
                    report.add("host", f"profile {name}", False, f"{path} is missing",
                               f"put {value} under {images}")
    await mirror_checks(report, store, time.time())


async def mirror_checks(report: Report, store: InventoryStore, now: float) -> None:
    """Each enabled mirror published within twice its interval (the BootyardMirrorStale rule),
    from the mirrorsync service's status records (shared/mirrors.py)."""
    mirrors = {n: parse_record(KINDS["mirror"], n, r)[0]
               for n, r in (await store.raw_all(KINDS["mirror"])).items()}
    statuses = await MirrorState(store.redis).statuses(mirrors) if mirrors else {}
    for name, mirror in sorted(mirrors.items()):
        if mirror is None or not mirror.enabled:
            continue
        status = statuses.get(name, {})
        fix = (f"bootyard mirror sync {name}; bootyard mirror status {name}; is the "
               "mirrorsync service running? (docker compose logs mirrorsync)")
        if not status.get("last_success"):
            why = status.get("last_error") or status.get("last_result") or "never synced"
            report.add("host", f"mirror {name}", False, f"never published ({why})", fix)
            continue
        age = now - float(status["last_success"])
        limit = 2 * mirror.interval
        detail = (f"published {_age(age)} ago (limit {_age(limit)}: twice its interval), "
                  f"{status.get('size', '?')} bytes, {status.get('files', '?')} files")
        if status.get("failures", "0") not in ("", "0"):
            detail += f"; {status['failures']} failed syncs since: {status.get('last_error', '')}"
        report.add("host", f"mirror {name}", age <= limit, detail, fix)


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"
