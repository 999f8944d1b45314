"""The location the network sends with a 112 call (RFC 6442), read when the call arrives.

Asterisk's res_pjsip_geolocation takes the INVITE's ``Geolocation`` header and PIDF-LO body on
the trunks (pjsip.conf ``geoloc_incoming_call_profile``, asterisk-conf/geolocation.conf) and
keeps them on the channel; ``GEOLOC_PROFILE(field)`` reads them. ``NetworkLocator`` is an
EventSink beside the records writer and the notifier: on a call's ``arrived`` event it reads the
profile through ARI, off the call path (its own task; the call is answered and queued
meanwhile), and emits one ``location`` event for the call:

- by value (format GML): latitude, longitude, radius, method from Asterisk's parse;
- by reference (format URI): the daemon fetches the URI (http or https only) with a timeout of
  ``FETCH_TIMEOUT`` seconds and at most ``pidf.MAX_DOCUMENT`` bytes, and reads the PIDF-LO
  itself (pidf.parse_pidf); a fetch that fails is a ``location`` event with ``error``;
- a civic address (format civicAddress) is kept as Asterisk gives it, as text.

A call without a location costs one ARI request (the format). Nothing here raises into the
caller of ``call_event``; at most ``MAX_PENDING`` reads run at once (past that a call's
location is skipped and logged).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import structlog

from siaga112.ari.client import AriError
from siaga112.location.pidf import (
    MAX_DOCUMENT,
    MAX_INFO,
    LocationError,
    from_gml_info,
    parse_info,
    parse_pidf,
)
from siaga112.model import CallEvent, CallEventType, OperatorEvent

log = structlog.get_logger(__name__)

FETCH_TIMEOUT = 3.0  # seconds for a by-reference location, connection to last byte
MAX_PENDING = 200  # location reads in flight at once
NETWORK = "network"  # a location event's source: by value, in the INVITE
NETWORK_REF = "network_ref"  # by reference: fetched from the URI the INVITE named


class ChannelVars(Protocol):
    """What the locator needs of ARI (ari.client.AriClient): a channel variable or function."""

    async def get_var(self, channel_id: str, name: str) -> str: ...


class NetworkLocator:
    def __init__(
        self,
        ari: ChannelVars,
        emit: Callable[[CallEvent], None],
        fetch_timeout: float = FETCH_TIMEOUT,
    ) -> None:
        self._ari = ari
        self._emit = emit
        self._fetch_timeout = fetch_timeout
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self.skipped = 0  # calls whose location was not read: too many reads in flight

    # -- EventSink ------------------------------------------------------------------------

    def call_event(self, event: CallEvent) -> None:
        if event.type is not CallEventType.ARRIVED or event.data.get("direction") == "outbound":
            return
        if not event.data.get("geo_format"):
            return  # the carrier sent no location (dialplan SIAGA112_GEO): nothing to read
        channel_id = str(event.data.get("channel_id") or event.call_id)
        if len(self._tasks) >= MAX_PENDING:
            self.skipped += 1
            log.warning("location_read_skipped", call_id=event.call_id, pending=len(self._tasks))
            return
        task = asyncio.get_running_loop().create_task(
            self.locate(event.call_id, channel_id), name=f"locate-{event.call_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def operator_event(self, event: OperatorEvent) -> None:
        pass

    # -- reading ----------------------------------------------------------------------------

    async def locate(self, call_id: str, channel_id: str) -> None:
        """Read the call's location and emit it; never raises."""
        try:
            data = await self._read(channel_id)
        except Exception:  # a fault of ours must not touch the call
            log.exception("location_read_failed", call_id=call_id)
            return
        if data is None:
            return
        self._emit(CallEvent(call_id=call_id, seq=0, type=CallEventType.LOCATION, data=data))
        log.info("call_located", call_id=call_id, source=data.get("source"),
                 error=data.get("error"))

    async def _read(self, channel_id: str) -> dict[str, Any] | None:
        fmt = await self._var(channel_id, "format")
        if not fmt:
            return None
        info_text = (await self._var(channel_id, "location_info"))[:MAX_INFO]
        method = (await self._var(channel_id, "method"))[:200] or None
        try:
            info = parse_info(info_text)
        except LocationError as exc:
            return {"source": NETWORK, "format": fmt, "error": str(exc)}
        if fmt.lower() == "uri":
            return await self._by_reference(info.get("URI") or info.get("uri") or "")
        if fmt.lower() == "gml":
            try:
                return {"source": NETWORK, **from_gml_info(info, method).data()}
            except LocationError as exc:
                return {"source": NETWORK, "format": fmt, "error": str(exc)}
        return {"source": NETWORK, "format": fmt[:40], "civic": info_text, "method": method}

    async def _var(self, channel_id: str, field: str) -> str:
        try:
            return (await self._ari.get_var(channel_id, f"GEOLOC_PROFILE({field})")).strip()
        except AriError as exc:
            log.debug("location_var_unread", field=field, error=str(exc))
            return ""

    async def _by_reference(self, uri: str) -> dict[str, Any]:
        out: dict[str, Any] = {"source": NETWORK_REF, "uri": uri[:500]}
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return {**out, "error": "the location reference is not an http(s) URI"}
        try:
            document = await self.fetch(uri)
            return {**out, **parse_pidf(document).data()}
        except LocationError as exc:
            return {**out, "error": str(exc)}
        except TimeoutError:
            return {**out, "error": f"no answer within {self._fetch_timeout:g} s"}
        except aiohttp.ClientError as exc:
            return {**out, "error": f"fetch failed: {type(exc).__name__}: {str(exc)[:200]}"}

    async def fetch(self, uri: str) -> bytes:
        """GET the document, bounded in time and size."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._fetch_timeout))
        async with asyncio.timeout(self._fetch_timeout):
            async with self._session.get(uri, allow_redirects=False,
                                         headers={"Accept": "application/pidf+xml"}) as resp:
                if resp.status != 200:
                    raise LocationError(f"the location server answered {resp.status}")
                body = await resp.content.read(MAX_DOCUMENT + 1)
        if len(body) > MAX_DOCUMENT:
            raise LocationError(f"document larger than {MAX_DOCUMENT} bytes")
        return body

    async def stop_when_idle(self) -> None:
        """Wait for the reads in flight (tests; a graceful stop cancels them instead)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1)
        if self._session is not None:
            await self._session.close()
            self._session = None
