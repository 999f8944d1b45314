"""Pydantic models of the ARI resources and events the daemon uses.

Field names follow Asterisk's own /ari/api-docs/*.json. Unknown fields are ignored, unknown
event types parse as a plain AriEvent, so that a newer Asterisk never breaks the reader.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError


class _Ari(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class CallerID(_Ari):
    name: str = ""
    number: str = ""


class DialplanCEP(_Ari):
    context: str = ""
    exten: str = ""
    priority: int = 0
    app_name: str = ""
    app_data: str = ""


class Channel(_Ari):
    id: str
    name: str = ""
    state: str = ""
    caller: CallerID = CallerID()
    connected: CallerID = CallerID()
    dialplan: DialplanCEP | None = None
    creationtime: datetime | None = None
    channelvars: dict[str, str] | None = None


class Bridge(_Ari):
    id: str
    technology: str = ""
    bridge_type: str = ""
    bridge_class: str = ""
    name: str = ""
    channels: list[str] = []


class Endpoint(_Ari):
    technology: str
    resource: str
    state: str | None = None
    channel_ids: list[str] = []


class Application(_Ari):
    name: str
    channel_ids: list[str] = []
    bridge_ids: list[str] = []
    endpoint_ids: list[str] = []


class Playback(_Ari):
    id: str
    media_uri: str = ""
    target_uri: str = ""
    state: str = ""


class AriEvent(_Ari):
    type: str
    application: str = ""
    timestamp: datetime | None = None


class StasisStart(AriEvent):
    type: Literal["StasisStart"]
    args: list[str] = []
    channel: Channel
    replace_channel: Channel | None = None


class StasisEnd(AriEvent):
    type: Literal["StasisEnd"]
    channel: Channel


class ChannelDestroyed(AriEvent):
    type: Literal["ChannelDestroyed"]
    cause: int = 0
    cause_txt: str = ""
    channel: Channel


GONE_WHILE_AWAY = "gone while we were away"  # the cause text of a resync's ChannelDestroyed


def gone_while_away(channel_id: str) -> ChannelDestroyed:
    """The resync's word for a leg that ended while the events socket was down: how and why
    (rang out, hung up, refused by Asterisk for the application being away) is not known."""
    return ChannelDestroyed(type="ChannelDestroyed", cause=0, cause_txt=GONE_WHILE_AWAY,
                            channel=Channel(id=channel_id))


class ChannelHangupRequest(AriEvent):
    type: Literal["ChannelHangupRequest"]
    cause: int | None = None
    soft: bool | None = None
    channel: Channel


class ChannelStateChange(AriEvent):
    type: Literal["ChannelStateChange"]
    channel: Channel


class ChannelDtmfReceived(AriEvent):
    type: Literal["ChannelDtmfReceived"]
    digit: str
    duration_ms: int = 0
    channel: Channel


class ChannelTalkingStarted(AriEvent):
    type: Literal["ChannelTalkingStarted"]
    channel: Channel


class ChannelTalkingFinished(AriEvent):
    type: Literal["ChannelTalkingFinished"]
    duration: int = 0
    channel: Channel


class PlaybackFinished(AriEvent):
    type: Literal["PlaybackFinished"]
    playback: Playback


class Dial(AriEvent):
    type: Literal["Dial"]
    dialstatus: str = ""
    peer: Channel
    caller: Channel | None = None


class EndpointStateChange(AriEvent):
    type: Literal["EndpointStateChange"]
    endpoint: Endpoint


class DeviceState(_Ari):
    name: str
    state: str


class DeviceStateChanged(AriEvent):
    type: Literal["DeviceStateChanged"]
    device_state: DeviceState


class ChannelLeftBridge(AriEvent):
    type: Literal["ChannelLeftBridge"]
    bridge: Bridge
    channel: Channel


class ChannelEnteredBridge(AriEvent):
    type: Literal["ChannelEnteredBridge"]
    bridge: Bridge
    channel: Channel


class ChannelHold(AriEvent):
    """The phone put the call on hold (a re-INVITE sendonly or inactive): it may send no media
    until ChannelUnhold. Asterisk plays music on hold to the others in the bridge itself."""

    type: Literal["ChannelHold"]
    channel: Channel


class ChannelUnhold(AriEvent):
    type: Literal["ChannelUnhold"]
    channel: Channel


class RtpStats(_Ari):
    """GET /channels/{id}/rtp_statistics, the part we read: packets received from the phone
    since the leg began (Asterisk counts them as they arrive; a phone that is gone adds none)."""

    rxcount: int = Field(ge=0)


KnownEvent = Annotated[
    StasisStart
    | StasisEnd
    | ChannelDestroyed
    | ChannelHangupRequest
    | ChannelStateChange
    | ChannelDtmfReceived
    | ChannelTalkingStarted
    | ChannelTalkingFinished
    | PlaybackFinished
    | Dial
    | EndpointStateChange
    | DeviceStateChanged
    | ChannelLeftBridge
    | ChannelEnteredBridge
    | ChannelHold
    | ChannelUnhold,
    Field(discriminator="type"),
]
KNOWN_TYPES = frozenset(
    {
        "StasisStart",
        "StasisEnd",
        "ChannelDestroyed",
        "ChannelHangupRequest",
        "ChannelStateChange",
        "ChannelDtmfReceived",
        "ChannelTalkingStarted",
        "ChannelTalkingFinished",
        "PlaybackFinished",
        "Dial",
        "EndpointStateChange",
        "DeviceStateChanged",
        "ChannelLeftBridge",
        "ChannelEnteredBridge",
        "ChannelHold",
        "ChannelUnhold",
    }
)
_known = TypeAdapter(KnownEvent)


def _unknown_type(exc: ValidationError) -> bool:
    """The message failed only for its type being none of ours (not for what it carries)."""
    return all(e["type"] == "union_tag_invalid" for e in exc.errors(include_url=False))


def parse_event(raw: str | bytes | dict[str, Any]) -> AriEvent:
    """Parse one websocket message. Raises pydantic.ValidationError (or ValueError) when the
    message is not an ARI event at all; unknown event types come back as plain AriEvent.
    A message is read once: the application asks only for events it knows (events.py's
    filter), so reading the base first and then the event was one read too many."""
    try:
        if isinstance(raw, (str, bytes)):
            return _known.validate_json(raw)
        return _known.validate_python(raw)
    except ValidationError as exc:
        if not _unknown_type(exc):
            raise
    if isinstance(raw, (str, bytes)):
        return AriEvent.model_validate_json(raw)
    return AriEvent.model_validate(raw)
