"""Coverage-guided fuzz targets (atheris, libFuzzer) for every codec and pure input path.

``python scripts/fuzz/targets.py PROTOCOL [libFuzzer flags] [CORPUS_DIR ...]`` fuzzes one
protocol's target; scripts/fuzz/run.py drives it. A target feeds one input to the code that
reads what a client sends and checks what must always hold: the only exception allowed is the
codec's own refusal (``DecodeError`` and friends: counted and dropped by the services); a
message that decodes encodes again and decodes to the same thing; a decision is one of the
declared outcomes. Anything else (an IndexError, a struct.error, a hang) is a finding: libFuzzer
stops, writes the input to ``crash-*`` and exits non-zero.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
# atheris follows coverage in Python bytecode: the DHCP codec and policy from their source, not
# the mypyc build (services/dhcp/__init__.py); the service-level fuzzing runs the build
os.environ.setdefault("BOOTYARD_DHCP_NATIVE", "0")

import atheris  # noqa: E402

with atheris.instrument_imports():
    from services.blockexport import codec as aoe_codec, policy as aoe_policy
    from services.dhcp import codec as dhcp_codec, policy as dhcp_policy
    from services.http import files as http_files
    from services.tftp import codec as tftp_codec, session as tftp_session
    from shared import paths


DHCP_CTX = dhcp_policy.ServerContext(server_ip="198.18.0.1",
                                     http_base_url="http://198.18.0.1:8080")


def dhcp(data: bytes) -> None:
    try:
        message = dhcp_codec.decode(data)
    except dhcp_codec.DecodeError:
        return
    try:
        again = dhcp_codec.decode(dhcp_codec.encode(message))
    except dhcp_codec.TooBig:  # more options than 548 bytes hold even with overload: the
        pass                   # declared refusal (a reply that big is counted, never sent)
    else:
        assert (again.xid, again.chaddr, again.options) == (message.xid, message.chaddr,
                                                            message.options), "round trip"
    dhcp_policy.screen(message, None, None, DHCP_CTX)
    dhcp_policy.requested_address(message)
    dhcp_policy.client_hostname(message, None)
    dhcp_policy.choose_boot(message, None, None, None, DHCP_CTX, message.chaddr[:6].hex(":"))


TFTP_LIMITS = tftp_session.Limits()


def tftp(data: bytes) -> None:
    try:
        message = tftp_codec.decode(data)
    except tftp_codec.DecodeError:
        return
    try:
        encoded = tftp_codec.encode(message)
    except UnicodeEncodeError:  # a client's ERROR text that is not ASCII: decoded with
        assert isinstance(message, tftp_codec.Error)  # replacement characters, never sent back
    else:
        assert tftp_codec.decode(encoded) == message, "round trip"
    if isinstance(message, tftp_codec.Request):
        tftp_session.negotiate(message, 1 << 20, TFTP_LIMITS)
        try:
            paths.clean_relative(message.filename)
        except paths.PathRefused:
            pass


AOE_TARGET = aoe_policy.Target(name="fuzz", shelf=1, slot=1, sectors=2048,
                               mac=b"\x02\x00\x00\x00\x00\x01", max_sectors=2)
AOE_OUTCOMES = (aoe_policy.Reply, aoe_policy.Drop, aoe_policy.Read, aoe_policy.Write,
                aoe_policy.Flush)


def aoe(data: bytes) -> None:
    try:
        frame = aoe_codec.decode(data)
    except aoe_codec.DecodeError:
        return
    state = aoe_policy.State()
    for _ in range(2):  # twice: the second request sees what the first changed
        state, outcome = aoe_policy.decide(AOE_TARGET, state, frame)
        assert isinstance(outcome, AOE_OUTCOMES), outcome
        if isinstance(outcome, aoe_policy.Reply):
            aoe_codec.encode(outcome.frame)


def http(data: bytes) -> None:
    """What the HTTP service parses itself (aiohttp parses the request line and headers): the
    Range header and the path a client asks for."""
    fdp = atheris.FuzzedDataProvider(data)
    size = fdp.ConsumeIntInRange(0, 1 << 40)
    text = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
    ranges = http_files.parse_ranges(text, size)
    if ranges:
        assert all(0 <= first <= last < size for first, last in ranges), ranges
        assert sum(last - first + 1 for first, last in ranges) <= size, "ranges overlap"
    try:
        path = paths.clean_relative(text)
    except paths.PathRefused:
        return
    assert ".." not in path.parts and not path.is_absolute(), path


TARGETS = {"dhcp": dhcp, "tftp": tftp, "aoe": aoe, "http": http}


def main() -> None:
    protocol = sys.argv.pop(1)
    atheris.Setup(sys.argv, TARGETS[protocol])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
