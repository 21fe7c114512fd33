"""The saved AoE target state (config string, mask and reserve lists) as Redis hash fields."""

from services.blockexport.policy import State
from services.blockexport.server import state_fields, state_from_fields

A, B = bytes.fromhex("525400000001"), bytes.fromhex("0200000000ff")


def test_round_trip():
    state = State(config=b"owner=web1\x00\xff", masks=(A, B), reserved=(B,))
    assert state_from_fields(state_fields(state)) == (state, [])
    assert state_from_fields({}) == (State(), [])


def test_bad_fields_are_reported_and_skipped():
    state, problems = state_from_fields({"config": "zz", "masks": "52:54:00:00:00:01,nope",
                                         "reserved": "02:00:00"})
    assert state == State(masks=(A,))
    assert [p[0] for p in problems] == ["config", "masks", "reserved"]
    assert "not a MAC address" in problems[1][2]
    _, problems = state_from_fields({"config": "00" * 1025})
    assert "longer than 1024" in problems[0][2]
