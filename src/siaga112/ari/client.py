"""ARI REST calls on aiohttp, with typed errors.

A 404 on a channel that has hung up is an ordinary event in telephony: it raises NotFound,
which callers catch where a vanished channel is expected, instead of a crash.
"""

from __future__ import annotations

import json as jsonlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import structlog

from siaga112.ari.models import Application, Bridge, Channel, Endpoint, Playback, RtpStats
from siaga112.ari.socket_rest import SocketClosed, SocketRest
from siaga112.settings import AriSettings

log = structlog.get_logger(__name__)


class AriError(Exception):
    """ARI answered with an error status, or could not be reached."""

    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        super().__init__(f"ARI {method} {path}: {status} {message}")
        self.method = method
        self.path = path
        self.status = status
        self.message = message


class NotFound(AriError):
    """404: the channel, bridge or playback is gone (usually: the far end hung up)."""


class Conflict(AriError):
    """409/412/422: the resource is not in a state that allows the request."""


class Unreachable(AriError):
    """Asterisk did not answer (connection refused, timeout)."""


def channel_gone(exc: AriError) -> bool:
    """Asterisk's ways of saying "that channel is not there any more": 404, or a 400/409/422
    whose message says the channel was not found or is not in Stasis (the far end hung up
    while we worked on it: normal life at load, not a fault)."""
    if exc.status == 404:
        return True
    message = exc.message.lower()
    return exc.status in (400, 409, 412, 422) and (
        "not found" in message or "not in stasis" in message or "not in a stasis" in message
    )


# (method, seconds, via: "socket" or "http") for the round-trip histogram
Observer = Callable[[str, float, str], None]


class AriClient:
    def __init__(
        self,
        settings: AriSettings,
        session: aiohttp.ClientSession | None = None,
        observe: Observer | None = None,
        socket: SocketRest | None = None,
    ) -> None:
        self._settings = settings
        self._socket = socket  # requests go over the events socket while it is up
        self._base = settings.url.rstrip("/")
        self._own_session = session is None
        self._session = session
        self._observe = observe

    async def __aenter__(self) -> AriClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=auth_headers(self._settings),
                connector=aiohttp.TCPConnector(limit=self._settings.max_connections),
                timeout=aiohttp.ClientTimeout(total=self._settings.request_timeout),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    async def request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        bulky: bool = False,
    ) -> Any:
        """bulky: the answer can be as large as the PBX is busy (a listing of every channel):
        over HTTP always. Asterisk 22.10 crashes sending a RESTResponse of about a megabyte
        on the events socket (socket_rest.py)."""
        clean = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        started = time.perf_counter()
        body: bytes | str
        via = "socket"
        try:
            answer = None
            if self._socket is not None and not bulky:
                answer = await self._socket.request(method, path, clean, json)
            if answer is not None:
                status, body = answer
            else:  # no events socket up to carry it
                via = "http"
                async with self.session.request(
                    method, self._base + path, params=clean, json=json
                ) as resp:
                    body = await resp.read()
                    status = resp.status
        except (aiohttp.ClientError, TimeoutError, SocketClosed) as exc:
            raise Unreachable(method, path, 0, repr(exc)) from exc
        finally:
            if self._observe is not None:
                self._observe(method, time.perf_counter() - started, via)
        if status >= 400:
            message = _error_message(body)
            cls = NotFound if status == 404 else Conflict if status in (409, 412, 422) else AriError
            raise cls(method, path, status, message)
        if not body:
            return None
        return jsonlib.loads(body)

    # -- channels ----------------------------------------------------------------------

    async def answer(self, channel_id: str) -> None:
        await self.request("POST", f"/channels/{channel_id}/answer")

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        await self.request("DELETE", f"/channels/{channel_id}", {"reason": reason})

    async def continue_in_dialplan(
        self, channel_id: str, context: str | None = None, extension: str = "s", priority: int = 1
    ) -> None:
        """Leave Stasis: at the next priority, or at context,extension,priority when given."""
        params: dict[str, Any] = {}
        if context is not None:
            params = {"context": context, "extension": extension, "priority": priority}
        await self.request("POST", f"/channels/{channel_id}/continue", params)

    async def get_channel(self, channel_id: str) -> Channel:
        return Channel.model_validate(await self.request("GET", f"/channels/{channel_id}"))

    async def rtp_statistics(self, channel_id: str) -> RtpStats:
        return RtpStats.model_validate(
            await self.request("GET", f"/channels/{channel_id}/rtp_statistics"))

    async def channels(self) -> list[Channel]:
        return [Channel.model_validate(c)
                for c in await self.request("GET", "/channels", bulky=True)]

    async def set_var(self, channel_id: str, name: str, value: str) -> None:
        await self.request(
            "POST", f"/channels/{channel_id}/variable", {"variable": name, "value": value}
        )

    async def get_var(self, channel_id: str, name: str) -> str:
        res = await self.request("GET", f"/channels/{channel_id}/variable", {"variable": name})
        return str(res.get("value", "")) if res else ""

    async def play(self, channel_id: str, media: str, playback_id: str | None = None) -> Playback:
        res = await self.request(
            "POST", f"/channels/{channel_id}/play", {"media": media, "playbackId": playback_id}
        )
        return Playback.model_validate(res)

    async def snoop(self, channel_id: str, snoop_id: str, app: str, app_args: str = "",
                    spy: str = "none", whisper: str = "none") -> Channel:
        """A snoop channel on channel_id, into Stasis app `app`: spy (none, in, out, both) is
        what of the channel's audio it hears, whisper (none, in, out, both) where what it
        says goes ('out': to the channel's own phone only)."""
        res = await self.request(
            "POST", f"/channels/{channel_id}/snoop/{snoop_id}",
            {"spy": spy, "whisper": whisper, "app": app, "appArgs": app_args or None},
        )
        return Channel.model_validate(res)

    async def stop_playback(self, playback_id: str) -> None:
        await self.request("DELETE", f"/playbacks/{playback_id}")

    async def get_playback(self, playback_id: str) -> Playback:
        return Playback.model_validate(await self.request("GET", f"/playbacks/{playback_id}"))

    async def start_moh(self, channel_id: str, moh_class: str = "default") -> None:
        await self.request("POST", f"/channels/{channel_id}/moh", {"mohClass": moh_class})

    async def stop_moh(self, channel_id: str) -> None:
        await self.request("DELETE", f"/channels/{channel_id}/moh")

    async def ring(self, channel_id: str) -> None:
        await self.request("POST", f"/channels/{channel_id}/ring")

    async def originate(
        self,
        endpoint: str,
        channel_id: str,
        app: str,
        app_args: str,
        caller_id: str | None = None,
        ring_seconds: int = 30,
        variables: dict[str, str] | None = None,
    ) -> Channel:
        res = await self.request(
            "POST",
            "/channels",
            {
                "endpoint": endpoint,
                "channelId": channel_id,
                "app": app,
                "appArgs": app_args,
                "callerId": caller_id,
                "timeout": ring_seconds,
            },
            json={"variables": variables or {}},
        )
        return Channel.model_validate(res)

    # -- bridges -----------------------------------------------------------------------

    async def create_bridge(self, bridge_id: str, kind: str, name: str = "") -> Bridge:
        """Create a bridge with a fixed id; one that exists already (say, after our restart)
        is returned as it is."""
        try:
            res = await self.request(
                "POST", f"/bridges/{bridge_id}", {"type": kind, "name": name or bridge_id}
            )
        except Conflict:
            return await self.get_bridge(bridge_id)
        return Bridge.model_validate(res)

    async def get_bridge(self, bridge_id: str) -> Bridge:
        return Bridge.model_validate(await self.request("GET", f"/bridges/{bridge_id}"))

    async def bridges(self) -> list[Bridge]:
        return [Bridge.model_validate(b)
                for b in await self.request("GET", "/bridges", bulky=True)]

    async def destroy_bridge(self, bridge_id: str) -> None:
        await self.request("DELETE", f"/bridges/{bridge_id}")

    async def add_to_bridge(
        self, bridge_id: str, channel_id: str | Sequence[str], role: str | None = None
    ) -> None:
        """Add one channel, or several in one request. A channel in another of our bridges
        leaves it for this one."""
        channels = channel_id if isinstance(channel_id, str) else ",".join(channel_id)
        await self.request(
            "POST", f"/bridges/{bridge_id}/addChannel", {"channel": channels, "role": role}
        )

    async def remove_from_bridge(self, bridge_id: str, channel_id: str) -> None:
        await self.request("POST", f"/bridges/{bridge_id}/removeChannel", {"channel": channel_id})

    async def bridge_play(self, bridge_id: str, media: str) -> Playback:
        res = await self.request("POST", f"/bridges/{bridge_id}/play", {"media": media})
        return Playback.model_validate(res)

    # -- application, endpoints, globals -------------------------------------------------

    async def application(self, app: str) -> Application:
        return Application.model_validate(
            await self.request("GET", f"/applications/{app}", bulky=True))

    async def subscribe(self, app: str, event_source: str) -> None:
        await self.request(
            "POST", f"/applications/{app}/subscription", {"eventSource": event_source}
        )

    async def filter_events(self, app: str, disallowed: Sequence[str]) -> None:
        """Ask Asterisk not to send the app these event types at all."""
        await self.request(
            "PUT", f"/applications/{app}/eventFilter",
            json={"disallowed": [{"type": t} for t in disallowed]},
        )

    async def endpoints(self, technology: str = "PJSIP") -> list[Endpoint]:
        found = await self.request("GET", f"/endpoints/{technology}", bulky=True)
        return [Endpoint.model_validate(e) for e in found]

    async def get_global(self, variable: str) -> str:
        res = await self.request("GET", "/asterisk/variable", {"variable": variable})
        return str(res.get("value", "")) if res else ""

    async def set_global(self, variable: str, value: str) -> None:
        await self.request("POST", "/asterisk/variable", {"variable": variable, "value": value})


def auth_headers(settings: AriSettings) -> dict[str, str]:
    """HTTP basic authentication for ARI (aiohttp's BasicAuth is deprecated)."""
    import base64

    secret = f"{settings.username}:{settings.password.get_secret_value()}".encode()
    return {"Authorization": "Basic " + base64.b64encode(secret).decode()}


def _param(v: Any) -> Any:
    if isinstance(v, bool):
        return "true" if v else "false"
    return v


def _error_message(body: bytes | str) -> str:
    try:
        data = jsonlib.loads(body)
        if isinstance(data, dict) and "message" in data:
            return str(data["message"])
    except ValueError:
        pass
    return body[:200] if isinstance(body, str) else body[:200].decode("utf-8", "replace")
