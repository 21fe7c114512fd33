"""The iSCSI login phase and text negotiation (RFC 7143 sections 6, 12 and 13). Pure: the
caller hands in the target list, the peer's address and random bytes for CHAP challenges.

:class:`Login` takes the Login Requests of one connection, one at a time, and answers each with
a Login Response (:class:`Step`). It ends with ``done`` (the session's :class:`Params`, the
target and the initiator's name) or ``failed`` (a status class/detail and a short ``reason``
label: ``chap``, ``not_allowed``, ``unknown_target``, ``missing_key``, ``bad_key``,
``version``, ``protocol``, ``auth_required``).

Answers to keys (13.x, 6.2): an unknown key gets ``NotUnderstood`` (``X-`` and ``X#`` keys
too); a value that is not valid for its key, or a list with no value we accept, gets ``Reject``;
a key that means nothing in this session type or stage (operational keys in a discovery session,
security keys in the operational stage) gets ``Irrelevant``; a key sent twice in one login ends
it (initiator error). Operational keys are answered with the value both sides then use
(13.1-13.24: min for lengths, OR for InitialR2T, AND for ImmediateData ...), so an initiator that
sends iPXE's fixed set (InitialR2T=Yes, ImmediateData=No, MaxRecvDataSegmentLength=8192,
FirstBurstLength=65536 ...) gets plain values back, never ``Reject`` (fatal to iPXE).

CHAP (12.1.3, RFC 1994) with MD5 (CHAP_A=5) only: one-way (the initiator proves it knows the
export's ``chap_secret``) and mutual (the target then proves it knows ``chap_mutual_secret``).
Secrets are compared in constant time and never appear in a result, a reason or a repr.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import ipaddress
from collections.abc import Callable, Mapping

from services.blockexport import iscsi_pdu as pdu
from services.blockexport.iscsi_pdu import DecodeError, LoginRequest, Numbers

SECURITY, OPERATIONAL, FULL_FEATURE = 0, 1, 3
CHAP_MD5 = 5
CHALLENGE_BYTES = 16

# status class, detail (11.13.5)
SUCCESS = (0, 0)
INITIATOR_ERROR = (2, 0)
AUTH_FAILED = (2, 1)
NOT_AUTHORIZED = (2, 2)
NOT_FOUND = (2, 3)
UNSUPPORTED_VERSION = (2, 5)
MISSING_PARAMETER = (2, 7)
SESSION_TYPE_UNSUPPORTED = (2, 9)
NO_SESSION = (2, 10)
INVALID_DURING_LOGIN = (2, 11)
TARGET_ERROR = (3, 0)
OUT_OF_RESOURCES = (3, 2)

LOGIN_FAILURE_REASONS = ("chap", "auth_required", "not_allowed", "no_host", "unknown_target",
                         "missing_key", "bad_key", "version", "protocol", "timeout",
                         "too_many_connections", "export_down")


@dataclasses.dataclass(frozen=True)
class TargetConfig:
    """What the login needs of one export (its secrets are not in its repr)."""
    iqn: str
    export: str
    chap_user: str = ""
    chap_secret: str = dataclasses.field(default="", repr=False)
    mutual_user: str = ""
    mutual_secret: str = dataclasses.field(default="", repr=False)
    allow: tuple[str, ...] = ()  # initiator IQNs and/or addresses/networks; empty: anyone

    @property
    def chap(self) -> bool:
        return bool(self.chap_secret)


def allowed(target: TargetConfig, initiator: str, address: str) -> bool:
    """Whether the allow-list lets ``initiator`` from ``address`` in: empty lets everyone in;
    else the initiator's name or its address (or a network holding it) must be listed."""
    if not target.allow:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        ip = None
    for entry in target.allow:
        if entry.startswith(("iqn.", "eui.", "naa.")):
            if entry.lower() == initiator.lower():
                return True
            continue
        try:
            if ip is not None and ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


@dataclasses.dataclass(frozen=True)
class Params:
    """The negotiated operational parameters of a session (13.x), with RFC defaults."""
    header_digest: bool = False
    data_digest: bool = False
    max_send_dsl: int = 8192  # the initiator's MaxRecvDataSegmentLength: what we may send
    max_recv_dsl: int = 8192  # ours, as declared
    max_burst: int = 262144
    first_burst: int = 65536
    initial_r2t: bool = True
    immediate_data: bool = True
    max_outstanding_r2t: int = 1
    data_pdu_in_order: bool = True
    data_sequence_in_order: bool = True


@dataclasses.dataclass(frozen=True)
class Offer:
    """Our side of the negotiation (settings)."""
    max_recv_dsl: int = 262144
    max_burst: int = 1048576
    first_burst: int = 262144
    max_outstanding_r2t: int = 8
    portal_group: int = 1


@dataclasses.dataclass(frozen=True)
class Step:
    """One Login Response to send, and where the login is after it."""
    response: bytes  # the whole PDU, header and data
    state: str  # "continue", "done", "failed"
    reason: str = ""  # failed: a LOGIN_FAILURE_REASONS label
    detail: str = ""  # failed: words for the log (never a secret)


# -- value checks ----------------------------------------------------------------------------

def _number(value: str, lo: int, hi: int) -> int | None:
    try:
        n = int(value, 0) if value.lower().startswith("0x") else int(value)
    except ValueError:
        return None
    return n if lo <= n <= hi else None


def _boolean(value: str) -> bool | None:
    return {"Yes": True, "No": False}.get(value)


def decode_binary(value: str) -> bytes | None:
    """A CHAP binary value: 0x<hex> or 0b<base64> (6.1)."""
    try:
        if value[:2] in ("0x", "0X"):
            text = value[2:]
            return bytes.fromhex(text if len(text) % 2 == 0 else "0" + text)
        if value[:2] in ("0b", "0B"):
            return base64.b64decode(value[2:], validate=True)
    except ValueError:
        return None
    return None


def chap_response(ident: int, secret: bytes, challenge: bytes) -> bytes:
    """RFC 1994: MD5 over the identifier, the secret and the challenge."""
    return hashlib.md5(bytes([ident]) + secret + challenge).digest()  # noqa: S324 - CHAP is MD5


DISCOVERY_IRRELEVANT = frozenset({
    "MaxConnections", "InitialR2T", "ImmediateData", "MaxBurstLength", "FirstBurstLength",
    "MaxOutstandingR2T", "DataPDUInOrder", "DataSequenceInOrder", "TaskReporting"})
SECURITY_KEYS = frozenset({"AuthMethod", "CHAP_A", "CHAP_I", "CHAP_C", "CHAP_N", "CHAP_R"})
DECLARATIVE = frozenset({"InitiatorName", "InitiatorAlias", "TargetName", "SessionType",
                         "TargetAlias", "TargetAddress", "TargetPortalGroupTag"})
MAX_KEY_NAME, MAX_VALUE = 63, 8192


class Login:
    """One connection's login phase (see the module docstring)."""

    def __init__(self, *, targets: Callable[[str], TargetConfig | None],
                 visible: Callable[[str, str], list[TargetConfig]], address: str,
                 offer: Offer, statsn: int, challenge: Callable[[int], bytes],
                 tsih: Callable[[], int], target_alias: str = "") -> None:
        self.targets = targets
        self.visible = visible
        self.address = address
        self.offer = offer
        self.statsn = statsn
        self.challenge = challenge
        self.new_tsih = tsih
        self.alias = target_alias
        self.seen: set[str] = set()
        self.pending = b""  # text of Login Requests with C set
        self.first: LoginRequest | None = None
        self.stage = SECURITY
        self.initiator = ""
        self.session_type = "Normal"
        self.target: TargetConfig | None = None
        self.authenticated = False
        self.chap_state = ""  # "", "method", "challenged", "done"
        self.chap_id = 0
        self.chap_challenge = b""
        self.values: dict[str, object] = {}
        self.params = Params(max_recv_dsl=offer.max_recv_dsl)
        self.tsih = 0
        self.cmdsn = 0
        self.tpgt_sent = False
        self.declared = False

    # -- the entry point ---------------------------------------------------------------------
    def receive(self, req: LoginRequest) -> Step:
        if self.first is None:
            self.first = req
            self.cmdsn = req.cmdsn
            if req.version_min > 0:
                return self._fail(req, UNSUPPORTED_VERSION, "version",
                                  f"version range {req.version_min}-{req.version_max}")
            if req.tsih:
                return self._fail(req, NO_SESSION, "protocol",
                                  f"TSIH {req.tsih}: adding a connection to a session is not "
                                  "supported (MaxConnections=1)")
        elif req.itt != self.first.itt or req.isid != self.first.isid:
            return self._fail(req, INITIATOR_ERROR, "protocol",
                              "ITT or ISID changed during the login")
        if req.csg == 2 or req.csg == FULL_FEATURE or (req.transit and req.nsg == 2) \
                or (req.transit and req.nsg <= req.csg):
            return self._fail(req, INITIATOR_ERROR, "protocol",
                              f"stage {req.csg} -> {req.nsg} is not a valid transition")
        if req.csg < self.stage:
            return self._fail(req, INITIATOR_ERROR, "protocol", "stage went backwards")
        self.stage = req.csg
        if req.cont:
            if len(self.pending) + len(req.data) > pdu.MAX_TEXT:
                return self._fail(req, INITIATOR_ERROR, "protocol", "login text too long")
            self.pending += req.data
            return Step(self._response(req, transit=False, csg=req.csg, nsg=0), "continue")
        text, self.pending = self.pending + req.data, b""
        try:
            pairs = pdu.parse_text(text)
        except DecodeError as exc:
            return self._fail(req, INITIATOR_ERROR, "bad_key", str(exc))
        return self._negotiate(req, pairs)

    # -- one request's keys ---------------------------------------------------------------------
    def _negotiate(self, req: LoginRequest, pairs: list[tuple[str, str]]) -> Step:
        answers: list[tuple[str, str]] = []
        keys = dict(pairs)
        for key, _value in pairs:
            if key in self.seen and not key.startswith("CHAP_"):
                return self._fail(req, INITIATOR_ERROR, "bad_key", f"key {key} sent twice")
            self.seen.add(key)
        if self.first is req or not self.initiator:
            failed = self._leading(req, keys)
            if failed is not None:
                return failed
            if self.session_type == "Normal" and not self.tpgt_sent:
                answers.append(("TargetPortalGroupTag", str(self.offer.portal_group)))
                self.tpgt_sent = True
        for key, value in pairs:
            if key in ("InitiatorName", "SessionType", "TargetName", "InitiatorAlias"):
                continue
            if key in SECURITY_KEYS:
                continue
            answer = self._answer(key, value)
            if answer is not None:
                answers.append((key, answer))
        if req.csg == SECURITY:
            step = self._security(req, keys, answers)
            if step is not None:
                return step
        elif any(k in SECURITY_KEYS for k in keys):
            answers += [(k, "Irrelevant") for k, _ in pairs if k in SECURITY_KEYS]
        if req.csg == OPERATIONAL and self._needs_auth() and not self.authenticated:
            return self._fail(req, AUTH_FAILED, "auth_required",
                              "the target requires CHAP; the initiator skipped security "
                              "negotiation")
        transit = req.transit
        nsg = req.nsg if transit else 0
        if req.csg == OPERATIONAL or (transit and nsg == FULL_FEATURE):
            answers += self._declare()
            answers = _dedupe(answers)
        data = pdu.format_text(answers)
        done = transit and nsg == FULL_FEATURE
        if done:
            self.tsih = self.new_tsih()
            self.params = self._params()
        response = self._response(req, transit=transit, csg=req.csg, nsg=nsg, data=data)
        return Step(response, "done" if done else "continue")

    def _leading(self, req: LoginRequest, keys: Mapping[str, str]) -> Step | None:
        self.initiator = keys.get("InitiatorName", "")
        if not self.initiator:
            return self._fail(req, MISSING_PARAMETER, "missing_key",
                              "the first Login Request has no InitiatorName")
        self.session_type = keys.get("SessionType", "Normal")
        if self.session_type not in ("Normal", "Discovery"):
            return self._fail(req, SESSION_TYPE_UNSUPPORTED, "bad_key",
                              f"SessionType={self.session_type[:40]}")
        if self.session_type == "Discovery":
            return None
        name = keys.get("TargetName", "")
        if not name:
            return self._fail(req, MISSING_PARAMETER, "missing_key",
                              "a normal session's first Login Request has no TargetName")
        target = self.targets(name)
        if target is None:
            return self._fail(req, NOT_FOUND, "unknown_target", f"no target {name[:223]}")
        if not allowed(target, self.initiator, self.address):
            return self._fail(req, NOT_AUTHORIZED, "not_allowed",
                              f"initiator {self.initiator[:223]} from {self.address} is not in "
                              f"the allow-list of export {target.export}")
        self.target = target
        return None

    def _needs_auth(self) -> bool:
        return self.session_type == "Normal" and self.target is not None and self.target.chap

    # -- security stage: AuthMethod and CHAP --------------------------------------------------
    def _security(self, req: LoginRequest, keys: Mapping[str, str],
                  answers: list[tuple[str, str]]) -> Step | None:
        need = self._needs_auth()
        if "AuthMethod" in keys and self.chap_state == "":
            offered = [v.strip() for v in keys["AuthMethod"].split(",")]
            if need:
                if "CHAP" not in offered:
                    answers.append(("AuthMethod", "Reject"))
                    return self._fail(req, AUTH_FAILED, "auth_required",
                                      f"the target requires CHAP; the initiator offered "
                                      f"AuthMethod={keys['AuthMethod'][:60]}", answers)
                answers.append(("AuthMethod", "CHAP"))
                self.chap_state = "method"
            else:
                answers.append(("AuthMethod", "None" if "None" in offered else "Reject"))
                if "None" in offered:
                    self.authenticated = True
                else:
                    return self._fail(req, AUTH_FAILED, "auth_required",
                                      "no authentication is configured for this target, and "
                                      "the initiator did not offer AuthMethod=None", answers)
        elif "AuthMethod" not in keys and self.chap_state == "" and not need:
            self.authenticated = True
        if self.chap_state == "method" and "CHAP_A" in keys:
            algorithms = [a.strip() for a in keys["CHAP_A"].split(",")]
            if str(CHAP_MD5) not in algorithms:
                answers.append(("CHAP_A", "Reject"))
                return self._fail(req, AUTH_FAILED, "chap",
                                  f"CHAP_A={keys['CHAP_A'][:40]}: only MD5 (5) is supported",
                                  answers)
            self.chap_id = self.challenge(1)[0]
            self.chap_challenge = self.challenge(CHALLENGE_BYTES)
            answers += [("CHAP_A", str(CHAP_MD5)), ("CHAP_I", str(self.chap_id)),
                        ("CHAP_C", "0x" + self.chap_challenge.hex())]
            self.chap_state = "challenged"
            return Step(self._response(req, transit=False, csg=SECURITY, nsg=0,
                                       data=pdu.format_text(_dedupe(answers))), "continue")
        if self.chap_state == "challenged" and ("CHAP_N" in keys or "CHAP_R" in keys):
            return self._chap_reply(req, keys, answers)
        if need and not self.authenticated:  # no transit before CHAP is done (T=0)
            return Step(self._response(req, transit=False, csg=SECURITY, nsg=0,
                                       data=pdu.format_text(_dedupe(answers))), "continue")
        return None

    def _chap_reply(self, req: LoginRequest, keys: Mapping[str, str],
                    answers: list[tuple[str, str]]) -> Step:
        target = self.target
        assert target is not None
        name, value = keys.get("CHAP_N", ""), keys.get("CHAP_R", "")
        got = decode_binary(value)
        want = chap_response(self.chap_id, target.chap_secret.encode(), self.chap_challenge)
        ok_name = hmac.compare_digest(name.encode(), target.chap_user.encode()) \
            if target.chap_user else True
        if got is None or not hmac.compare_digest(got, want) or not ok_name:
            return self._fail(req, AUTH_FAILED, "chap",
                              f"CHAP response of user {name[:64]!r} does not match the "
                              f"export's chap_user and chap_secret")
        self.authenticated = True
        self.chap_state = "done"
        if "CHAP_I" in keys or "CHAP_C" in keys:
            ident = _number(keys.get("CHAP_I", ""), 0, 255)
            challenge = decode_binary(keys.get("CHAP_C", ""))
            if not target.mutual_secret:
                return self._fail(req, AUTH_FAILED, "chap",
                                  "the initiator asked for mutual CHAP; the export has no "
                                  "chap_mutual_secret")
            if ident is None or not challenge or challenge == self.chap_challenge:
                return self._fail(req, AUTH_FAILED, "chap",
                                  "mutual CHAP challenge missing, malformed or a copy of ours")
            answers += [("CHAP_N", target.mutual_user or target.iqn),
                        ("CHAP_R", "0x" + chap_response(ident, target.mutual_secret.encode(),
                                                        challenge).hex())]
        transit = req.transit
        nsg = req.nsg if transit else 0
        if transit and nsg == FULL_FEATURE:
            answers += self._declare()
            self.tsih = self.new_tsih()
            self.params = self._params()
        return Step(self._response(req, transit=transit, csg=SECURITY, nsg=nsg,
                                   data=pdu.format_text(_dedupe(answers))),
                    "done" if transit and nsg == FULL_FEATURE else "continue")

    # -- operational keys ---------------------------------------------------------------------------
    def _answer(self, key: str, value: str) -> str | None:
        """Our answer to one key (None: none is given, as for declarations we just note)."""
        if len(key) > MAX_KEY_NAME or len(value) > MAX_VALUE:
            return "Reject"
        discovery = self.session_type == "Discovery"
        if key in DISCOVERY_IRRELEVANT and discovery:
            return "Irrelevant"
        offer = self.offer
        if key in ("HeaderDigest", "DataDigest"):
            for choice in (v.strip() for v in value.split(",")):
                if choice in ("None", "CRC32C"):
                    self.values[key] = choice == "CRC32C"
                    return choice
            return "Reject"
        if key == "MaxRecvDataSegmentLength":
            n = _number(value, 512, 2**24 - 1)
            if n is None:
                return "Reject"
            self.values[key] = n
            return None  # declarative: ours is declared separately
        numbers = {"MaxBurstLength": (512, 2**24 - 1, offer.max_burst, min),
                   "FirstBurstLength": (512, 2**24 - 1, offer.first_burst, min),
                   "MaxOutstandingR2T": (1, 65535, offer.max_outstanding_r2t, min),
                   "MaxConnections": (1, 65535, 1, min),
                   "DefaultTime2Wait": (0, 3600, 0, max),
                   "DefaultTime2Retain": (0, 3600, 0, min),
                   "ErrorRecoveryLevel": (0, 2, 0, min),
                   "iSCSIProtocolLevel": (0, 31, 1, min)}
        if key in numbers:
            lo, hi, ours, pick = numbers[key]
            n = _number(value, lo, hi)
            if n is None:
                return "Reject"
            result = pick(n, ours)
            self.values[key] = result
            return str(result)
        booleans = {"InitialR2T": (False, any), "ImmediateData": (True, all),
                    "DataPDUInOrder": (True, any), "DataSequenceInOrder": (True, any),
                    "IFMarker": (False, all), "OFMarker": (False, all)}
        if key in booleans:
            ours, pick = booleans[key]
            b = _boolean(value)
            if b is None:
                return "Reject"
            result = pick((b, ours))
            self.values[key] = result
            return "Yes" if result else "No"
        if key in ("IFMarkInt", "OFMarkInt"):
            return "Reject"  # obsolete (13.25): MUST be answered Reject
        if key == "TaskReporting":
            return "RFC3720"
        if key in ("TargetAlias", "TargetAddress", "TargetPortalGroupTag"):
            return "Irrelevant"  # declared by targets, not initiators
        return "NotUnderstood"

    def _declare(self) -> list[tuple[str, str]]:
        """Our MaxRecvDataSegmentLength, declared once (keys the initiator leaves out keep
        their RFC defaults on both sides, so nothing else is offered)."""
        if self.declared:
            return []
        self.declared = True
        return [("MaxRecvDataSegmentLength", str(self.offer.max_recv_dsl))]

    def _params(self) -> Params:
        v = self.values
        max_burst = int(v.get("MaxBurstLength", 262144))
        first_burst = min(int(v.get("FirstBurstLength", 65536)), max_burst)
        return Params(header_digest=bool(v.get("HeaderDigest", False)),
                      data_digest=bool(v.get("DataDigest", False)),
                      max_send_dsl=int(v.get("MaxRecvDataSegmentLength", 8192)),
                      max_recv_dsl=self.offer.max_recv_dsl,
                      max_burst=max_burst, first_burst=first_burst,
                      initial_r2t=bool(v.get("InitialR2T", True)),
                      immediate_data=bool(v.get("ImmediateData", True)),
                      max_outstanding_r2t=int(v.get("MaxOutstandingR2T", 1)))

    # -- responses ---------------------------------------------------------------------------------
    def numbers(self) -> Numbers:
        return Numbers(self.statsn, self.cmdsn, self.cmdsn)

    def _response(self, req: LoginRequest, *, transit: bool, csg: int, nsg: int,
                  data: bytes = b"", status: tuple[int, int] = SUCCESS) -> bytes:
        header = pdu.login_response(self.numbers(), transit=transit, cont=False, csg=csg,
                                    nsg=nsg, isid=req.isid,
                                    tsih=self.tsih if transit and nsg == FULL_FEATURE else 0,
                                    itt=req.itt, status_class=status[0],
                                    status_detail=status[1], data=data)
        self.statsn = (self.statsn + 1) & 0xFFFFFFFF
        return pdu.frame(header, data)

    def refuse(self, req: LoginRequest, status: tuple[int, int], reason: str,
               detail: str) -> Step:
        """A failed Login Response decided outside the negotiation (no host, export gone)."""
        return self._fail(req, status, reason, detail)

    def _fail(self, req: LoginRequest, status: tuple[int, int], reason: str,
              detail: str, answers: list[tuple[str, str]] | None = None) -> Step:
        data = pdu.format_text(_dedupe(answers)) if answers else b""
        return Step(self._response(req, transit=False, csg=req.csg, nsg=0, status=status,
                                   data=data), "failed", reason, detail)


def _dedupe(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    seen: set[str] = set()
    out = []
    for key, value in pairs:
        if key not in seen:
            seen.add(key)
            out.append((key, value))
    return out


def send_targets(value: str, visible: list[TargetConfig], portal: str,
                 portal_group: int) -> list[tuple[str, str]]:
    """The answer to ``SendTargets=<value>`` (appendix C): every visible target for ``All``,
    the named one for a name, with the portal the initiator reached."""
    if value == "All":
        chosen = visible
    else:
        chosen = [t for t in visible if t.iqn == value]
    out: list[tuple[str, str]] = []
    for target in sorted(chosen, key=lambda t: t.iqn):
        out += [("TargetName", target.iqn), ("TargetAddress", f"{portal},{portal_group}")]
    return out
