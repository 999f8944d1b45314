"""SIPp phones for integration tests, on the test PBX's loopback topology, each stopped by its
pid when the test ends. Built on siaga112_testkit.sipp (the same wrapper the load test uses)."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from siaga112_testkit import dtmf_pcap, sipp
from siaga112_testkit.sipp import LogEvent, SippConfig, SippResult, SippRun
from siaga112_testkit.topology import (
    LANDLINE_TRUNK,
    MOBILE_TRUNK,
    agency_ip,
    operator_ip,
    supervisor_ip,
)

MOBILE = MOBILE_TRUNK  # the tests' short name
LANDLINE = LANDLINE_TRUNK  # the tests' short name


def mobile_number() -> str:
    """A fresh, valid mobile caller ID, so that tests never share a caller's history."""
    return "0812" + "".join(random.choice("0123456789") for _ in range(8))


def e164(national: str) -> str:
    return "+62" + national.lstrip("0")


class Pcaps:
    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def dtmf(self, code: str) -> Path:
        path = self.dir / dtmf_pcap.dtmf_filename(code)
        return path if path.exists() else dtmf_pcap.write_dtmf_pcap(self.dir, code)

    def speech(self, seconds: int = 10) -> Path:
        path = self.dir / f"speech_{seconds}s.pcap"
        return path if path.exists() else dtmf_pcap.write_speech_pcap(self.dir, seconds)

    def silence(self, seconds: int = 10) -> Path:
        path = self.dir / f"silence_{seconds}s.pcap"
        return path if path.exists() else dtmf_pcap.write_silence_pcap(self.dir, seconds)


class Phones:
    """Starts SIPp processes for one test and stops every one of them at the end."""

    _ports = itertools.count(5100)

    def __init__(self, root: Path, pcaps: Pcaps) -> None:
        self.root = root
        self.pcaps = pcaps
        self._runs: list[SippRun] = []
        self._n = itertools.count(1)
        self.pbx_urls: list[str] | None = None  # ARI of the PBXs called through; None: test PBX

    def _dir(self, name: str) -> Path:
        return self.root / f"{next(self._n):02d}-{name}"

    async def operator(self, n: int, **options: Any) -> SippRun:
        """Desk phone opN, answering (see sipp.operator_phone); bound before it returns."""
        run = SippRun(sipp.operator_phone(operator_ip(n), **options), self._dir(f"op{n}"))
        return await self._up(run)

    async def operator_hold(self, n: int, **options: Any) -> SippRun:
        """Desk phone opN that holds the call and takes it back (see sipp.operator_hold_phone)."""
        run = SippRun(sipp.operator_hold_phone(operator_ip(n), **options), self._dir(f"op{n}-hold"))
        return await self._up(run)

    async def operator_noanswer(self, n: int, calls: int | None = 1) -> SippRun:
        run = SippRun(sipp.operator_noanswer(operator_ip(n), calls=calls), self._dir(f"op{n}-na"))
        return await self._up(run)

    async def agency(self, code: str, fallback: bool = False, **options: Any) -> SippRun:
        ip = agency_ip(code, fallback)
        run = SippRun(sipp.agency_line(ip, **options), self._dir(f"agency{code}"))
        return await self._up(run)

    async def agency_noanswer(self, code: str, fallback: bool = False) -> SippRun:
        ip = agency_ip(code, fallback)
        run = SippRun(sipp.operator_noanswer(ip), self._dir(f"agency{code}-na"))
        return await self._up(run)

    async def citizen(self, caller: str, line: str = MOBILE, **options: Any) -> SippRun:
        """A citizen dialling 112 (see sipp.citizen); returns once SIPp runs."""
        return await self._caller(sipp.citizen, "citizen", caller, line, options)

    async def citizen_clock(self, caller: str, line: str = MOBILE, **options: Any) -> SippRun:
        """A citizen whose every step is logged with SIPp's clock (see sipp.citizen_clock)."""
        return await self._caller(sipp.citizen_clock, "clock", caller, line, options)

    async def _caller(self, build: Callable[..., SippConfig], name: str, caller: str, line: str,
                      options: dict[str, Any]) -> SippRun:
        config = build(line, caller, local_port=next(self._ports), **options)
        run = SippRun(config, self._dir(f"{name}-{caller}"))
        await run.start()
        self._runs.append(run)
        return run

    async def code(self, n: int, code: str) -> SippResult:
        """Operator n dials a desk-phone code such as *11; waits for the result."""
        port = next(self._ports)
        config = sipp.operator_code(operator_ip(n), code, local_port=port, media_port=port + 1000)
        run = SippRun(config, self._dir(f"op{n}-code"))
        await run.start()
        self._runs.append(run)
        return await run.wait(15)

    async def supervisor_code(self, n: int, code: str, hold: float,
                              audio: Path | None = None) -> SippRun:
        """Supervisor n (supN, 127.0.4.N) dials a supervisor code such as *5101, says `audio`
        (a pcap) from the answer and hangs up `hold` seconds after it (supervisor_code.xml)."""
        port = next(self._ports)
        config = SippConfig(
            scenario=sipp.SCENARIOS_DIR / "supervisor_code.xml", local_ip=supervisor_ip(n),
            local_port=port, media_port=port + 1000, service=code, keys={"phone": f"sup{n}"},
            variables={"hold_ms": round(hold * 1000)},
            files={"audio.pcap": audio} if audio else {}, placeholder_files=("audio.pcap",))
        run = SippRun(config, self._dir(f"sup{n}-{code.replace('*', 'star')}"))
        await run.start()
        self._runs.append(run)
        return run

    async def supervisor_phone(self, n: int, **options: Any) -> SippRun:
        """Supervisor n's desk phone as the PBX rings it (the API's requests): answers like an
        operator's (see sipp.operator_phone); `dtmf` may be any pcap, say speech."""
        run = SippRun(sipp.operator_phone(supervisor_ip(n), **options), self._dir(f"sup{n}"))
        return await self._up(run)

    async def _up(self, run: SippRun) -> SippRun:
        await run.__aenter__()
        self._runs.append(run)
        return run

    @property
    def started(self) -> bool:
        return bool(self._runs)

    async def stop_all(self) -> None:
        for run in self._runs:
            if run.running:
                await run.stop(grace=1.0)


# -- the caller's clock: what a phone logged, and when ----------------------------------------


def stamp(logs: list[LogEvent], event: str) -> int | None:
    """SIPp's clock (ms) of the first `event` in a citizen_clock log, None if it never came."""
    for e in logs:
        if e.event == event:
            return int(e["ms"])
    return None


def invites(phone: SippRun) -> list[str]:
    """The callers (From user part) of every INVITE this desk phone or duty line got so far."""
    return [e.fields.get("caller", "") for e in phone.logs() if e.event == "invite"]


async def logged(run: SippRun, event: str, seconds: float, n: int = 1) -> float:
    """Wait until the phone has logged `event` n times; the monotonic time it was seen (polled
    every 10 ms: the instant is at most that late). AssertionError after `seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while sum(1 for e in run.logs() if e.event == event) < n:
        if loop.time() > deadline:
            raise AssertionError(f"{run!r} did not log {event} x{n} in {seconds}s: {run.logs()}")
        await asyncio.sleep(0.01)
    return loop.time()
