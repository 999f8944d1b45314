"""The agency leg: the operator sends *2NN and the agency's duty line is dialled and added to
the call, so that citizen, operator and agency talk together. A duty line that does not answer
in time, or is busy, is given up for the next fallback line; the operator hears a short prompt
for each outcome. The agency accepts the case by pressing 1.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from siaga112 import legs
from siaga112.agencies import Directory
from siaga112.ari.client import AriError, Unreachable
from siaga112.ari.models import (
    GONE_WHILE_AWAY,
    AriEvent,
    ChannelDestroyed,
    ChannelDtmfReceived,
    StasisStart,
)
from siaga112.ari.protocol import Ari
from siaga112.call.errors import UnknownAgency
from siaga112.call.items import CommandResult
from siaga112.model import CallEventType
from siaga112.settings import AgencySettings

if TYPE_CHECKING:
    from siaga112.call.session import CallSession

log = structlog.get_logger(__name__)

LINE_UNCONFIRMED = "agency_unconfirmed:"  # + the leg: the timer of a dial without an answer


@dataclass
class Dispatch:
    dispatch_id: str
    code: str
    line: int = 0
    attempt: int = 0
    channel: str | None = None
    joined: bool = False
    accepted: bool = False
    failed_lines: list[str] = field(default_factory=list)


class AgencyLegs:
    def __init__(
        self,
        session: CallSession,
        ari: Ari,
        directory: Directory,
        settings: AgencySettings,
        app: str,
        request_timeout: float,
    ) -> None:
        self._session = session
        self._ari = ari
        self._directory = directory
        self._settings = settings
        self._app = app
        self._request_timeout = request_timeout  # ARI's: how late a dial may still be made
        self._by_code: dict[str, Dispatch] = {}
        self._announcement: str | None = None  # the call bridge's current prompt (playback id)

    def dispatch(self, code: str) -> Dispatch | None:
        """This call's dispatch of agency `code`, while it is dialled or on the call."""
        return self._by_code.get(code)

    def joined(self) -> list[str]:
        return [d.code for d in self._by_code.values() if d.joined]

    def dialling(self) -> list[str]:
        """Agencies whose duty line rings now (asked for, not on the call yet)."""
        return [d.code for d in self._by_code.values() if d.channel and not d.joined]

    def channels(self) -> list[str]:
        return [d.channel for d in self._by_code.values() if d.channel]

    def ringing(self) -> list[str]:
        """The legs of duty lines being rung (dialled, not joined yet)."""
        return [d.channel for d in self._by_code.values() if d.channel and not d.joined]

    def adopt(self, channel_id: str, dispatch_id: str, joined: bool) -> None:
        """A resync found this agency leg in the call's bridge (joined), or its duty line still
        ringing (not joined: it is bridged when it answers). Its dispatch id is its tag."""
        leg = legs.parse(channel_id)
        d = Dispatch(dispatch_id=dispatch_id or f"{self._session.call_id}-{leg.party}",
                     code=leg.party, line=leg.line, attempt=leg.attempt, channel=channel_id,
                     joined=joined)
        self._by_code[leg.party] = d

    async def request(self, code: str, by: str) -> CommandResult:
        """Dial agency `code` onto the call; UnknownAgency (the operator hears why)."""
        agency = self._directory.get(code)
        if agency is None:
            log.warning("agency_unknown", agency=code)
            await self._tell_operator("unknown-code")
            raise UnknownAgency(code)
        existing = self._by_code.get(code)
        if existing is not None and (existing.joined or existing.channel):
            log.info("agency_already_on_call", agency=code)
            return CommandResult.ALREADY_ON_CALL
        d = Dispatch(dispatch_id=f"{self._session.call_id}-{code}-{uuid.uuid4().hex[:8]}",
                     code=code)
        self._by_code[code] = d
        self._session.emit(CallEventType.AGENCY_REQUESTED, agency=code, dispatch_id=d.dispatch_id,
                           by=by, name=agency.name)
        log.info("agency_requested", agency=code, name=agency.name)
        await self._announce("connecting-agency")
        await self._dial(d)
        return CommandResult.DIALLING

    async def _dial(self, d: Dispatch) -> None:
        agency = self._directory.get(d.code)
        assert agency is not None
        d.attempt += 1
        d.channel = legs.agency_leg(self._session.call_id, d.code, d.line, d.attempt)
        endpoint = agency.lines[d.line]
        caller = self._session.caller.e164 or "anonymous"
        try:
            await self._ari.originate(
                endpoint=endpoint, channel_id=d.channel, app=self._app,
                app_args=f"agency,{self._session.call_id},{d.code}",
                caller_id=f'"112 {caller}" <{caller}>',
                ring_seconds=max(1, round(self._settings.answer_timeout)),
                variables={"SIAGA112_CALL": self._session.call_id, "SIAGA112_AGENCY": d.code,
                           "SIAGA112_DISPATCH": d.dispatch_id},
            )
        except Unreachable as exc:
            # The PBX did not answer in time: the dial may still be carried out late (it
            # waits in Asterisk's queue). The ring stays the dispatch's and its answer is
            # taken; only if nothing of it has come once it would have rung out is the line
            # given up. (Given up at once, the duty officer answered the late ring and was
            # hung up on, as "a line that answered after we gave it up".)
            log.warning("agency_dial_timeout", agency=d.code, error=str(exc))
            self._session.timer(f"{LINE_UNCONFIRMED}{d.channel}",
                                self._settings.answer_timeout + self._request_timeout)
        except AriError as exc:
            await self._line_failed(d, f"dial failed: {exc.message}")

    async def line_unconfirmed(self, channel_id: str) -> None:
        """Nothing of a dial without an answer came for as long as the line would ring: hang
        its leg up (should the dial be carried out later still) and try the next line."""
        d = next((d for d in self._by_code.values() if d.channel == channel_id), None)
        if d is None or d.joined:
            return
        log.warning("agency_ring_unconfirmed", agency=d.code, channel=channel_id)
        await self._hangup(channel_id)
        await self._line_failed(d, "the PBX did not dial it")

    async def _line_failed(self, d: Dispatch, reason: str) -> None:
        agency = self._directory.get(d.code)
        assert agency is not None
        line = agency.lines[d.line]
        d.failed_lines.append(line)
        d.channel = None
        self._session.emit(CallEventType.AGENCY_LINE_FAILED, agency=d.code, line=line,
                           reason=reason, dispatch_id=d.dispatch_id)
        log.info("agency_line_failed", agency=d.code, line=line, reason=reason)
        if d.line + 1 < len(agency.lines):
            d.line += 1
            await self._dial(d)
            return
        log.warning("agency_unreachable", agency=d.code, tried=d.failed_lines)
        del self._by_code[d.code]
        await self._stop_announcement()
        await self._tell_operator("agency-failed")
        await self._session.ending.agency_left()  # the operator may have gone meanwhile

    async def on_event(self, ev: AriEvent, leg: legs.Leg) -> None:
        d = self._by_code.get(leg.party)
        channel_id = ev.channel.id  # type: ignore[attr-defined]
        if d is None or d.channel != channel_id:
            if isinstance(ev, StasisStart):
                await self._hangup(channel_id)  # a line that answered after we gave it up
            return
        self._session.cancel_timer(f"{LINE_UNCONFIRMED}{channel_id}")  # the ring is there
        if isinstance(ev, StasisStart):
            if d.joined:
                return  # told twice: by a resync (answered while we were away) and the socket
            await self._ari.add_to_bridge(self._session.bridge_id, channel_id)
            d.joined = True
            agency = self._directory.get(d.code)
            line = agency.lines[d.line] if agency else ""
            self._session.emit(CallEventType.AGENCY_JOINED, agency=d.code, line=line,
                               dispatch_id=d.dispatch_id)
            log.info("agency_joined", agency=d.code, line=line)
            await self._announce("agency-joined")
            try:
                await self._ari.play(channel_id, "sound:siaga112/accept-case",
                                     _accept_prompt(channel_id))
            except AriError as exc:
                log.info("agency_prompt_failed", prompt="accept-case", error=str(exc))
        elif isinstance(ev, ChannelDtmfReceived):
            if ev.digit == "1" and d.joined and not d.accepted:
                d.accepted = True
                self._session.emit(CallEventType.AGENCY_ACCEPTED, agency=d.code,
                                   dispatch_id=d.dispatch_id)
                log.info("agency_accepted", agency=d.code)
                try:
                    await self._ari.stop_playback(_accept_prompt(channel_id))
                except AriError:
                    pass  # the prompt had ended
        elif isinstance(ev, ChannelDestroyed):
            if not d.joined:
                cause = ev.cause_txt or str(ev.cause)
                reason = ("busy" if ev.cause == 17 else GONE_WHILE_AWAY
                          if ev.cause_txt == GONE_WHILE_AWAY else f"no answer ({cause})")
                await self._line_failed(d, reason)
                return
            d.channel = None
            d.joined = False
            log.info("agency_left", agency=d.code)
            await self._session.ending.agency_left(while_away=ev.cause_txt == GONE_WHILE_AWAY)

    async def _tell_operator(self, prompt: str) -> None:
        """A prompt for the operator's ear only (played on the operator's leg in the bridge)."""
        channel = self._session.operator_channel
        if channel is None:
            return
        try:
            await self._ari.play(channel, f"sound:siaga112/{prompt}")
        except AriError as exc:
            log.info("agency_prompt_failed", prompt=prompt, error=str(exc))

    async def _announce(self, prompt: str) -> None:
        """A prompt to everyone on the call (citizen, operator, agencies already there). It
        cuts the one before: "agency joined" is heard when it happens, not after "connecting"."""
        await self._stop_announcement()
        try:
            playback = await self._ari.bridge_play(self._session.bridge_id,
                                                   f"sound:siaga112/{prompt}")
            self._announcement = playback.id
        except AriError as exc:
            log.info("agency_prompt_failed", prompt=prompt, error=str(exc))

    async def _stop_announcement(self) -> None:
        playback, self._announcement = self._announcement, None
        if playback is None:
            return
        try:
            await self._ari.stop_playback(playback)
        except AriError:
            pass  # it had ended

    async def _hangup(self, channel_id: str) -> None:
        try:
            await self._ari.hangup(channel_id)
        except AriError:
            pass


def _accept_prompt(channel_id: str) -> str:
    """The playback id of the "press 1 to accept" prompt on an agency's leg."""
    return f"{channel_id}-accept"
