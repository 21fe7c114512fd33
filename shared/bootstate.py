"""Where is a machine in its boot, and why did it stop: a host's events -> its boot state.

Pure (no Redis, no clock): :func:`boot_state` is handed the host's events (oldest first or not:
they are ordered by ``ts`` here), its inventory records and ``now``. Every service's events are
read as they are written (``dhcp.*`` by the DHCP service and its lease script, ``tftp.transfer``,
``http.script`` / ``http.file`` / ``http.install`` / ``http.denied`` / ``http.install_done`` /
``http.booted``, ``blockexport.*``); an event only needs ``ts``, ``kind`` and ``fields`` (a
:class:`shared.events.Event`, or anything shaped like it).

A boot is a sequence of stages (:data:`STAGES`). Each stage has an expected time to the next one
(:class:`Expected`, the ``bootstate`` settings section); a boot that stays at a stage past it is
*stuck*, and the reason (:mod:`shared.bootreasons`) says, from what the events show and what they
lack, what most likely went wrong and what to do. A boot that reached its last stage (install
done, local disk, a live, netroot or sanboot system up: its OS called the booted URL) is
*finished*; otherwise it is *progressing*.

Boot attempts: an event written with its attempt id (``attempt``: decided by the DHCP service
when it sees the firmware's DISCOVER, shared/events.py) belongs to that attempt. For events
without one, the attempt is derived: the firmware's DHCP (a DISCOVER, OFFER or ACK with a boot
file or a client architecture) after a finished attempt, a stuck one that had got its address, or
after the kernel was fetched (the machine rebooted into its firmware), starts a new attempt; its
DHCP retries before it got an address are the same attempt. The state speaks of the latest;
earlier ones stay listed. A TFTP size probe the firmware aborts (``tsize_probe``) is benign and
never a reason. What ``bootyard doctor`` did acting as the host's firmware (the events between its
``doctor.start`` and ``doctor.end``) is not a boot.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from shared.bootcontext import BOOTED_MODES
from shared.bootreasons import reason as _reason
from shared.settings import positive, setting

# The stages of a boot, in order. A boot reaches a subset of them (an iPXE ROM has no loader
# to fetch, an install has no root image, a local boot stops at the script's "local").
STAGES = ("dhcp", "offered", "bound", "loader", "script", "kernel", "initrd", "os_dhcp", "root",
          "installer", "installed", "local", "up")
STAGE_TEXT = {
    "dhcp": "first DHCP", "offered": "offered an address", "bound": "bound an address",
    "loader": "loader fetched", "script": "boot script fetched", "kernel": "kernel fetched",
    "initrd": "initrd fetched", "os_dhcp": "the OS asked DHCP",
    "root": "root or block device attached", "installer": "installer fetched its file",
    "installed": "install done", "local": "booting from its disk", "up": "up (said it booted)"}
STATES = ("idle", "progressing", "finished", "stuck")
# Stuck reasons (a closed set: the metrics' reason label).
REASONS = ("dhcp_ignored", "dhcp_unanswered", "dhcp_refused", "offer_not_requested",
           "no_boot_file", "http_client_tftp_path", "tftp_not_found", "tftp_failed",
           "boot_file_not_fetched", "script_not_fetched", "script_error", "kernel_not_fetched",
           "initrd_not_fetched", "no_os_dhcp", "install_file_refused",
           "install_file_not_fetched", "root_not_fetched", "install_timeout",
           "export_not_attached", "export_not_read", "iscsi_login_refused", "iscsi_session_lost",
           "block_io_error", "never_up")
_RANK = {s: i for i, s in enumerate(STAGES)}
_KERNEL_NAME = re.compile(r"(vmlinu[xz]|bzimage|kernel|linux)[^/]*$", re.I)
_INITRD_NAME = re.compile(r"(initrd|initramfs)[^/]*$", re.I)
_SCRIPT_NAME = re.compile(r"(^|/)(pxelinux\.cfg/|grub[^/]*\.cfg[^/]*$|[^/]*\.ipxe$)", re.I)
_LOADER_NAME = re.compile(r"\.(efi|kpxe|pxe|0|lkrn)$", re.I)


@dataclasses.dataclass(frozen=True)
class Expected:
    """Seconds a boot may stay at each stage before it counts as stuck (settings section
    ``bootstate``; docs/console.md)."""
    dhcp: float = setting(30.0, help="seconds from the first DHCP packet to an OFFER",
                          check=positive)
    offered: float = setting(30.0, help="seconds from an OFFER to the ACK", check=positive)
    bound: float = setting(30.0, help="seconds from the ACK to the loader fetched",
                           check=positive)
    loader: float = setting(60.0, help="seconds from the loader to its boot script",
                            check=positive)
    script: float = setting(60.0, help="seconds from the boot script to the kernel",
                            check=positive)
    kernel: float = setting(120.0, help="seconds from the kernel to the initrd", check=positive)
    initrd: float = setting(300.0, help="seconds from the initrd to the OS's DHCP",
                            check=positive)
    os_dhcp: float = setting(600.0, help="seconds from the OS's DHCP to the installer's file, "
                                         "the live root, the block device or up",
                             check=positive)
    root: float = setting(600.0, help="seconds from the root or block device attached to "
                                      "the OS saying it is up (booted URL) or the installer's "
                                      "file", check=positive)
    installer: float = setting(7200.0, help="seconds from the installer's file to install "
                                            "done", check=positive)
    booted: bool = setting(True, help="live, netroot and sanboot boots finish when their OS "
                                      "calls the booted URL (docs/http.md); false: when it "
                                      "asks DHCP (no booted call expected)")

    def of(self, stage: str) -> float | None:
        return getattr(self, stage, None)


class EventLike(Protocol):
    ts: float
    kind: str
    fields: dict[str, str]


@dataclasses.dataclass(frozen=True)
class StageTime:
    stage: str
    ts: float  # when it was first reached in the attempt
    seconds: float  # how long it took to reach the next stage (the current one: until now)


@dataclasses.dataclass(frozen=True)
class Attempt:
    number: int  # 1 for the host's first attempt in the events read
    id: str  # "<mac>@<start in ms>": stable while the attempt's first event is read
    start: float
    state: str  # progressing, finished, stuck
    stage: str
    since: float  # when the stage was reached
    stages: tuple[StageTime, ...]
    reason: str = ""  # stuck: what most likely went wrong and what to do
    reason_code: str = ""  # one of REASONS
    outcome: str = ""  # the boot script's outcome (install, live, local ...), when known
    events: int = 0

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["stages"] = [dataclasses.asdict(s) for s in self.stages]
        return out

    def summary(self) -> dict[str, Any]:
        """One line's worth: the attempt without its stages (the state's ``history``)."""
        return {"number": self.number, "id": self.id, "start": self.start, "state": self.state,
                "stage": self.stage, "since": self.since, "reason_code": self.reason_code,
                "reason": self.reason, "outcome": self.outcome, "events": self.events}


@dataclasses.dataclass(frozen=True)
class BootState:
    mac: str
    state: str  # one of STATES
    stage: str = ""
    since: float | None = None
    reason: str = ""
    reason_code: str = ""
    attempt: Attempt | None = None
    attempts: tuple[Attempt, ...] = ()

    @property
    def stage_text(self) -> str:
        return STAGE_TEXT.get(self.stage, self.stage)

    def as_dict(self) -> dict[str, Any]:
        return {"mac": self.mac, "state": self.state, "stage": self.stage,
                "stage_text": self.stage_text if self.stage else "", "since": self.since,
                "reason": self.reason, "reason_code": self.reason_code,
                "attempt": self.attempt.as_dict() if self.attempt else None,
                "attempts": len(self.attempts),
                "history": [a.summary() for a in self.attempts]}


def _base(path: str | None) -> str:
    if not path:
        return ""
    if "://" in path:
        path = path.split("://", 1)[1].partition("/")[2].partition("?")[0]
    return posixpath.basename(path.rstrip("/"))


class _Build:
    """One attempt while its events are read."""

    def __init__(self, number: int, first: EventLike, profile: Any, host: Any,
                 expected: Expected, ident: str | None = None) -> None:
        self.number = number
        self.start = first.ts
        self.ident = ident  # the attempt id its events carry (None: derived, see build)
        self.expected = expected
        self.reached: dict[str, float] = {}  # stage -> when first reached (reach() only)
        self._stage, self._rank = "dhcp", -1  # the furthest stage reached
        self._names: dict[str, set[str]] = {}  # names(), per profile field
        self.profile = profile
        self.host = host
        self.offers = 0
        self.requested = False
        self.offer_ip = ""
        self.boot_file = ""
        self.arch = ""
        self.outcome = ""
        self.script_reason = ""
        self.failures: list[tuple[float, str, str]] = []  # (ts, code, text)
        self.ignored: list[tuple[float, str]] = []
        self.events = 0
        self.last = first.ts
        # block devices: export -> (transport, target) attached; export -> (op, reason) failing
        self.attached: dict[str, tuple[str, str]] = {}
        self.read_from: set[str] = set()
        self.io_errors: dict[str, tuple[str, str]] = {}
        self.login_ok = float("-inf")  # the last iSCSI login
        self.login_failed: list[tuple[float, str, dict[str, str]]] = []
        self.session_lost = float("-inf")  # the last iSCSI logout / reset
        self.session_lost_how = ""

    # -- what a file is, for this host --------------------------------------------------------
    def names(self, field: str) -> set[str]:
        """The file names the profile's ``field`` names (read only: kept for the attempt)."""
        found = self._names.get(field)
        if found is None:
            value = getattr(self.profile, field, None) if self.profile is not None else None
            values = () if not value else value if isinstance(value, (tuple, list)) else (value,)
            found = self._names[field] = {_base(v) for v in values if v}
        return found

    def classify(self, path: str) -> str | None:
        name = _base(path)
        if not name:
            return None
        kernels, initrds, roots = (self.names("kernel"), self.names("initrd"),
                                   self.names("root_image"))
        if self.boot_file and name == _base(self.boot_file):
            return "loader"
        if name in kernels:
            return "kernel"
        if name in initrds:
            return "initrd"
        if name in roots:
            return "root"
        if _SCRIPT_NAME.search(path):
            return "script"
        if not kernels and _KERNEL_NAME.search(name):
            return "kernel"
        if not initrds and _INITRD_NAME.search(name):
            return "initrd"
        if _LOADER_NAME.search(name):
            return "loader"
        return None

    # -- reading ------------------------------------------------------------------------------
    def reach(self, stage: str, ts: float) -> None:
        if stage not in self.reached:
            self.reached[stage] = ts
            if _RANK[stage] > self._rank:
                self._stage, self._rank = stage, _RANK[stage]

    @property
    def stage(self) -> str:
        """The furthest stage reached ("dhcp" before any)."""
        return self._stage

    def add(self, e: EventLike) -> None:
        self.events += 1
        self.last = max(self.last, e.ts)
        f, kind, ts = e.fields, e.kind, e.ts
        if kind == "dhcp.discover":
            self.reach("dhcp", ts)
            if f.get("arch"):
                self.arch = f["arch"]
            elif _RANK[self.stage] >= _RANK["script"]:
                self.reach("os_dhcp", ts)
        elif kind in ("dhcp.offer", "dhcp.ack"):
            self.reach("dhcp", ts)
            firmware = bool(f.get("boot_file"))
            if not firmware and _RANK[self.stage] >= _RANK["script"]:
                self.reach("os_dhcp", ts)
                return
            if firmware:
                self.boot_file = f["boot_file"]
            if kind == "dhcp.offer":
                self.reach("offered", ts)
                self.offers += 1
                self.offer_ip = f.get("ip", self.offer_ip)
            else:
                self.reach("offered", ts)
                self.reach("bound", ts)
                self.requested = True
                self.offer_ip = f.get("ip", self.offer_ip)
        elif kind == "dhcp.nak":
            self.reach("dhcp", ts)
            self.requested = True
            self.failures.append((ts, "dhcp_refused",
                                  f"DHCP refused its REQUEST for {f.get('ip', '?')}: "
                                  f"{f.get('reason', 'no reason given')}"))
        elif kind == "dhcp.ignored":
            self.reach("dhcp", ts)
            self.ignored.append((ts, f.get("reason", "?") +
                                 (f" ({f['detail']})" if f.get("detail") else "")))
        elif kind == "tftp.transfer":
            self._file(ts, f.get("file", ""), f.get("result", ""), f.get("detail", ""), "TFTP")
        elif kind == "http.file":  # a 404 under /images/ carries result=not_found
            self._file(ts, f.get("path", ""), f.get("result") or "ok", "", "HTTP")
        elif kind == "http.script":
            self.reach("script", ts)
            self.outcome = f.get("outcome", "")
            self.script_reason = f.get("reason", "")
            if self.outcome == "local":
                self.reach("local", ts)
        elif kind == "http.render_error":
            self.failures.append((ts, "script_error",
                                  f"cannot render its {f.get('template', 'template')}: "
                                  f"{f.get('reason', '?')} (fix the profile's template)"))
        elif kind == "http.install":
            self.reach("installer", ts)
        elif kind == "http.denied":
            why = f.get("reason", "")
            what = f.get("file", "install file")
            what = {"booted": "its booted call", "done": "its install-done call"}.get(
                what, f"install file {what}")
            text = {"bad_token": f"{what} refused: wrong token (the token in the "
                                 "URL is not this host's: check http.token_secret and the "
                                 "install URL on the command line)",
                    "address": f"{what} refused: address {e.fields.get('ip', '?')}"
                               " is not the host's reserved or leased address (give it its "
                               "reserved IP, or turn on http.token_in_scripts)",
                    "unknown_host": f"{what} refused: the MAC is not in the "
                                    "inventory"}.get(why, f"{what} refused: {why}")
            self.failures.append((ts, "install_file_refused", text))
        elif kind == "http.install_done":
            self.reach("installed", ts)
        elif kind == "http.booted":
            self.reach("up", ts)
        elif kind.startswith("blockexport."):
            self._block(ts, kind[len("blockexport."):], f)

    def _block(self, ts: float, kind: str, f: dict[str, str]) -> None:
        export = f.get("export", "?")
        if kind == "attach":
            self.reach("root", ts)
            self.attached[export] = (f.get("transport", "aoe"), f.get("target", ""))
        elif kind == "first_read":
            self.reach("root", ts)
            self.read_from.add(export)
        elif kind == "iscsi_login":
            self.reach("root", ts)
            self.attached.setdefault(export, ("iscsi", f.get("target", "")))
            self.login_ok = ts
        elif kind == "iscsi_login_failed":
            self.login_failed.append((ts, f.get("reason", ""), f))
        elif kind in ("iscsi_logout", "iscsi_reset"):
            self.session_lost = ts
            self.session_lost_how = "logged out" if kind == "iscsi_logout" else \
                "reset" + (f": {f['reason']}" if f.get("reason") else "")
        elif kind == "io_error":
            self.io_errors[export] = (f.get("op", "I/O"), f.get("reason", "?"))
        elif kind == "io_recovered":
            self.io_errors.pop(export, None)

    def _file(self, ts: float, path: str, result: str, detail: str, proto: str) -> None:
        if result == "tsize_probe":
            return  # the firmware asked for the size and ended the transfer: benign
        what = self.classify(path)
        if result in ("ok", "unconfirmed"):
            if what is not None:
                if what == "loader" and "bound" not in self.reached:
                    self.reach("bound", ts)
                self.reach(what, ts)
            return
        if result == "not_found":
            self.failures.append((ts, "tftp_not_found", f"asked {proto} for {path}: not found "
                                                        "(is the file under the files root?)"))
        else:
            self.failures.append((ts, "tftp_failed", f"{proto} transfer of {path} failed: "
                                                     f"{result}" + (f" ({detail})" if detail
                                                                    else "")))

    # -- where it ends ------------------------------------------------------------------------
    def mode(self) -> str:
        if self.outcome:
            return self.outcome
        return getattr(self.host, "boot_mode", "") or "install"

    def finished(self) -> bool:
        r = self.reached
        if "installed" in r or "local" in r:
            return True
        mode = self.mode()
        if mode == "install" and getattr(self.profile, "install", "none") in (None, "none") \
                and self.profile is not None:
            return "os_dhcp" in r  # a kernel with no installer: up once its OS asked DHCP
        if mode in BOOTED_MODES and self.expected.booted:
            return "up" in r  # its OS called the booted URL
        if mode == "live":
            return "root" in r or ("os_dhcp" in r and not self.names("root_image"))
        if mode in ("netroot", "sanboot"):
            return "os_dhcp" in r  # (booted: false: "up" inferred from the OS's DHCP)
        return "up" in r

    def stuck_at(self, now: float, expected: Expected) -> bool:
        if self.finished():
            return False
        if self.outcome in ("error", "disabled", "unknown"):
            return True  # the script itself says this boot goes nowhere
        limit = expected.of(self.stage)
        return limit is not None and now - self.reached.get(self.stage, self.start) > limit

    def id(self, mac: str) -> str:
        return self.ident or f"{mac}@{round(self.start * 1000)}"

    def build(self, mac: str, now: float, expected: Expected) -> Attempt:
        order = sorted(self.reached.items(), key=lambda kv: (kv[1], _RANK[kv[0]]))
        stages = []
        for i, (stage, ts) in enumerate(order):
            end = order[i + 1][1] if i + 1 < len(order) else now
            stages.append(StageTime(stage, ts, round(max(0.0, end - ts), 3)))
        stage = self.stage
        if self.finished():
            state, code, reason = "finished", "", ""
        elif self.stuck_at(now, expected):
            state = "stuck"
            code, reason = _reason(self, now, expected)
        else:
            state, code, reason = "progressing", "", ""
        return Attempt(number=self.number, id=self.id(mac),
                       start=self.start, state=state, stage=stage,
                       since=self.reached.get(stage, self.start), stages=tuple(stages),
                       reason=reason, reason_code=code, outcome=self.outcome,
                       events=self.events)


BOOT_KINDS = ("dhcp.", "tftp.", "http.", "blockexport.")  # the events of a boot


def carried_attempt(e: EventLike) -> str | None:
    """The attempt id an event was written with (``attempt``: shared/events.py), or None."""
    return getattr(e, "attempt", None) or e.fields.get("attempt") or None


def _firmware_dhcp(e: EventLike) -> bool:
    """A DHCP event of the firmware (or a boot loader), not of a running OS."""
    if e.kind == "dhcp.discover":
        return bool(e.fields.get("arch"))
    return e.kind in ("dhcp.offer", "dhcp.ack") and bool(e.fields.get("boot_file"))


DOCTOR_LIMIT = 300.0  # seconds a doctor.start without its doctor.end is taken to cover


def _doctor_windows(ordered: Sequence[EventLike]) -> list[tuple[float, float]]:
    """The spans between ``doctor.start`` and ``doctor.end`` (cli/doctor.py's probes)."""
    windows, start = [], None
    for e in ordered:
        if e.kind == "doctor.start":
            start = e.ts
        elif e.kind == "doctor.end" and start is not None:
            windows.append((start, e.ts))
            start = None
    if start is not None:
        windows.append((start, start + DOCTOR_LIMIT))
    return windows


def _split(events: Iterable[EventLike], expected: Expected, host: Any,
           profile: Any) -> tuple[list[_Build], list[tuple[EventLike, _Build | None]]]:
    """The attempts, and each event (in time order) with the attempt it belongs to (None: not
    a boot event, or the doctor's)."""
    ordered = sorted(events, key=lambda e: e.ts)
    probes = _doctor_windows(ordered)
    built: list[_Build] = []
    current: _Build | None = None
    labelled: list[tuple[EventLike, _Build | None]] = []
    for e in ordered:
        if not e.kind.startswith(BOOT_KINDS) or \
                any(start <= e.ts <= end for start, end in probes):
            labelled.append((e, None))  # bootyard doctor acting as the firmware: not a boot
            continue
        if e.kind in ("dhcp.release", "dhcp.decline", "dhcp.expire", "http.discovery"):
            labelled.append((e, current))
            continue
        ident = carried_attempt(e)
        if ident is not None:  # written with the event (the DHCP service decided it)
            new = current is None or current.ident != ident
        else:  # derived: events written before attempt ids were, or without one
            new = current is None or (_firmware_dhcp(e) and (
                current.finished() or _RANK[current.stage] >= _RANK["kernel"]
                or (_RANK[current.stage] >= _RANK["bound"]
                    and current.stuck_at(e.ts, expected))))
            # (the firmware's DHCP retries before it got an address: one attempt)
        if new:
            current = _Build(len(built) + 1, e, profile, host, expected, ident)
            built.append(current)
        current.add(e)
        labelled.append((e, current))
    return built, labelled


def attempts(mac: str, events: Iterable[EventLike], now: float,
             expected: Expected | None = None, host: Any = None,
             profile: Any = None) -> list[Attempt]:
    """Every boot attempt in ``events`` (oldest first)."""
    expected = expected or Expected()
    built, _ = _split(events, expected, host, profile)
    return [b.build(mac, now if i == len(built) - 1 else built[i + 1].start, expected)
            for i, b in enumerate(built)]


def attempt_of_each(mac: str, events: Iterable[EventLike], expected: Expected | None = None,
                    host: Any = None, profile: Any = None) -> list[tuple[EventLike, str | None]]:
    """Each event in time order with the id of the boot attempt it belongs to (what a
    timeline shows beside each event; None for events outside any attempt)."""
    _, labelled = _split(events, expected or Expected(), host, profile)
    return [(e, b.id(mac) if b is not None else None) for e, b in labelled]


def boot_state(mac: str, events: Sequence[EventLike], now: float,
               expected: Expected | None = None, host: Any = None,
               profile: Any = None) -> BootState:
    """The host's boot state at ``now``: its latest attempt's stage, since when, and whether it
    is progressing, finished or stuck (with the reason). No events: ``idle``."""
    found = attempts(mac, events, now, expected, host, profile)
    if not found:
        return BootState(mac, "idle")
    last = found[-1]
    return BootState(mac, last.state, last.stage, last.since, last.reason, last.reason_code,
                     last, tuple(found))
