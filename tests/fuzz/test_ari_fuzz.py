"""ARI events from the websocket, as JSON text: parse_event either gives an event or raises
only what the reader catches (events.py: ValidationError, ValueError), and what a parsed
event carries is then read safely: the leg of its channel id, its caller ID, its SIAGA112_*
channel variables (checked by ids.channel_tags, as a resync reads them back)."""

from __future__ import annotations

import json
from typing import Any

import pydantic
from hypothesis import example, given
from hypothesis import strategies as st

from siaga112 import ids, legs
from siaga112.ari.models import KNOWN_TYPES, AriEvent, StasisStart, parse_event
from siaga112.callerid import normalise
from tests.fuzz.strategies import (
    FUZZ,
    HOSTILE_TEXT,
    ID_LIKE,
    JSON_SCALAR,
    JSON_VALUE,
    dumps,
    spoiled,
)

# Events as Asterisk 22 sends them (the fields the daemon reads), then spoiled.
T = "2025-03-01T08:00:00.000+0000"
CITIZEN = {"id": "1764480000.123", "name": "PJSIP/trunk-mobile-00000001", "state": "Up",
           "caller": {"name": "", "number": "081234567890"}, "creationtime": T,
           "dialplan": {"context": "siaga112-citizen", "exten": "s", "priority": 3},
           "channelvars": {"SIAGA112_LINE": "mobile", "SIAGA112_TRUNK": "trunk-mobile",
                           "SIAGA112_ARRIVED": "2025-03-01T08:00:00+00:00",
                           "SIAGA112_PRIORITY": "1", "SIAGA112_FLAGS": "blocked_bypass",
                           "SIAGA112_DISPATCH": ""}}
LEG = {**CITIZEN, "id": "1764480000.123-ag-01-0-1", "name": "PJSIP/agency01-00000002",
       "channelvars": {"SIAGA112_DISPATCH": "1764480000.123-01-1a2b3c4d"}}
BRIDGE = {"id": "siaga112-call-1764480000.123", "technology": "simple_bridge",
          "bridge_type": "mixing", "channels": ["1764480000.123", "1764480000.123-op-op1-1"]}
BASES = [
    {"type": "StasisStart", "application": "siaga112", "timestamp": T, "args": ["citizen"],
     "channel": CITIZEN},
    {"type": "StasisStart", "application": "siaga112", "args": ["opcode", "paused"],
     "channel": {**CITIZEN, "id": "1764480001.5", "name": "PJSIP/op1-00000003"}},
    {"type": "StasisStart", "args": [], "channel": LEG, "replace_channel": CITIZEN},
    {"type": "StasisEnd", "timestamp": T, "channel": CITIZEN},
    {"type": "ChannelDestroyed", "cause": 16, "cause_txt": "Normal Clearing", "channel": LEG},
    {"type": "ChannelHangupRequest", "cause": 16, "soft": True, "channel": CITIZEN},
    {"type": "ChannelStateChange", "channel": CITIZEN},
    {"type": "ChannelDtmfReceived", "digit": "5", "duration_ms": 120, "channel": CITIZEN},
    {"type": "ChannelTalkingStarted", "channel": CITIZEN},
    {"type": "ChannelTalkingFinished", "duration": 1500, "channel": CITIZEN},
    {"type": "PlaybackFinished", "playback": {"id": "pb-1", "media_uri": "sound:x",
                                              "target_uri": "channel:1764480000.123",
                                              "state": "done"}},
    {"type": "Dial", "dialstatus": "ANSWER", "peer": LEG, "caller": CITIZEN},
    {"type": "EndpointStateChange", "endpoint": {"technology": "PJSIP", "resource": "op1",
                                                 "state": "online", "channel_ids": []}},
    {"type": "DeviceStateChanged", "device_state": {"name": "PJSIP/op1",
                                                    "state": "NOT_INUSE"}},
    {"type": "ChannelEnteredBridge", "bridge": BRIDGE, "channel": CITIZEN},
    {"type": "ChannelLeftBridge", "bridge": BRIDGE, "channel": LEG},
    {"type": "ChannelVarset", "variable": "X", "value": "1", "channel": CITIZEN},
]
HOSTILE = st.one_of(HOSTILE_TEXT, JSON_SCALAR, JSON_VALUE,
                    st.sampled_from(sorted(KNOWN_TYPES)), ID_LIKE)
EVENT = spoiled(BASES, HOSTILE, most=3)
RAW = st.one_of(
    st.builds(dumps, EVENT),
    st.builds(dumps, EVENT),
    st.builds(dumps, EVENT),
    st.builds(lambda e, cut: dumps(e)[:cut], EVENT, st.integers(0, 400)),  # torn messages
    st.builds(dumps, JSON_VALUE),
    st.binary(max_size=64),
)


@FUZZ
@given(raw=RAW)
@example(raw=b'{"type": "StasisStart", "args": [], "channel": {"id": "1.1", "channelvars": '
             b'{"SIAGA112_FLAGS": "x\\u0000", "SIAGA112_ARRIVED": "9999-99-99"}}}')
@example(raw=b'{"type": "StasisStart", "channel": {"id": "' + b"7" * 65_000 + b'"}}')
def test_an_ari_event_parses_or_is_refused_and_is_read_safely(raw: bytes) -> None:
    for given_as in (raw, raw.decode("utf-8", "replace")):
        try:
            event = parse_event(given_as)
        except (pydantic.ValidationError, ValueError):
            continue  # the reader logs it and goes on (events.py)
        assert isinstance(event, AriEvent) and isinstance(event.type, str)
        if event.type in KNOWN_TYPES:
            assert type(event) is not AriEvent, event.type
        channel = getattr(event, "channel", None)
        if channel is None:
            continue
        leg = legs.parse(channel.id)  # which call it belongs to: never raises
        assert channel.id.startswith(leg.call_id)
        cid = normalise(channel.caller.number)
        assert cid.raw.isprintable() and len(cid.raw) <= 64
        tags = ids.channel_tags(channel.channelvars)
        for value in (*tags.flags, tags.line, tags.trunk):
            assert value == "" or ids.is_id(value)
        assert tags.arrived is None or tags.arrived.tzinfo is not None
        if isinstance(event, StasisStart):
            assert all(isinstance(a, str) for a in event.args)


def test_a_dict_event_parses_as_the_json_one() -> None:
    raw: dict[str, Any] = {"type": "StasisStart", "args": ["citizen"],
                           "channel": {"id": "1764480000.1", "channelvars": None}}
    assert parse_event(raw) == parse_event(json.dumps(raw))
