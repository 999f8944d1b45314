"""The load's phones, as SIPp processes on the test PBX's loopback topology: the operators' desk
phones and the agencies' duty lines that answer (UAS, any number of calls), and the citizens
calling 112 in groups (UAC, a rate, a number of calls). Built on siaga112_testkit.sipp; every
process is stopped by its pid.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from siaga112_testkit import dtmf_pcap, sipp
from siaga112_testkit.sipp import SippRun
from siaga112_testkit.topology import agency_ip, operator_ip


def national_number(prefix: str, digits: int) -> str:
    """A random national number for one run's callers, so that its records are its own."""
    return prefix + "".join(random.choice("0123456789") for _ in range(digits))


@dataclass(frozen=True)
class CallerGroup:
    """One SIPp citizen process: `calls` calls from `caller` at `rate` calls/s from a trunk.

    hold: seconds from the PBX's answer to the caller's BYE (None: the caller waits until the
    far side hangs up, bounded by the run's time limit)."""

    name: str
    trunk_ip: str
    caller: str
    rate: float
    calls: int
    hold: float | None
    port: int = 5060
    media_port: int = 6000
    audio: bool = True
    call_limit: int | None = None

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"{self.name}: rate must be above 0 calls/s, got {self.rate}")
        if self.calls < 1:
            raise ValueError(f"{self.name}: calls must be at least 1, got {self.calls}")
        if not self.trunk_ip.startswith("127."):
            raise ValueError(f"{self.name}: callers play on loopback only, got {self.trunk_ip}")

    @property
    def offer_seconds(self) -> float:
        """How long SIPp takes to start all its calls at its rate."""
        return self.calls / self.rate


@dataclass
class Caller:
    group: CallerGroup
    run: SippRun
    started_at: float  # epoch


class LoadPcaps:
    """The audio and DTMF pcaps of one run, written once into its directory."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)

    def dtmf(self, code: str) -> Path:
        path = self.dir / dtmf_pcap.dtmf_filename(code)
        return path if path.exists() else dtmf_pcap.write_dtmf_pcap(self.dir, code)

    def speech(self, seconds: int) -> Path:
        path = self.dir / f"speech_{seconds}s.pcap"
        return path if path.exists() else dtmf_pcap.write_speech_pcap(self.dir, seconds)


def citizen_config(group: CallerGroup, pcaps: LoadPcaps, remote: str,
                   audio_seconds: int) -> sipp.SippConfig:
    config = sipp.citizen(
        group.trunk_ip, group.caller, hold=group.hold,
        audio=pcaps.speech(audio_seconds) if group.audio else None,
        calls=group.calls, rate=group.rate,
        call_limit=group.call_limit or max(group.calls, 10),
        local_port=group.port, remote=remote,
    )
    # -trace_rtt: each call's INVITE -> 200 OK time (the scenario's "answer" RTD).
    return replace(config, media_port=group.media_port,
                   extra_args=("-trace_rtt", "-rtt_freq", "1"))


async def start_callers(groups: Sequence[CallerGroup], root: Path, pcaps: LoadPcaps,
                        remote: str, audio_seconds: int) -> list[Caller]:
    out: list[Caller] = []
    try:
        for g in groups:
            run = SippRun(citizen_config(g, pcaps, remote, audio_seconds), root / g.name)
            await run.start()
            out.append(Caller(g, run, time.time()))
    except BaseException:
        for c in out:
            await c.run.stop(grace=1.0)
        raise
    return out


@dataclass(frozen=True)
class DeskPlan:
    """The desk phones: operators 1..operators answer after `ring` s and talk `talk` s, each
    sending its code (`codes[n-1]`, e.g. "*306") `code_at` s after answering; agencies' duty
    lines answer after `ring` s and accept with "1"."""

    operators: int
    ring: float
    talk: float
    codes: Sequence[str | None] = ()
    code_at: float = 0.8
    agencies: Sequence[str] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.operators <= 8:
            raise ValueError(f"operators must be 1..8 (the desk phones op1..op8), "
                             f"got {self.operators}")
        if self.talk <= self.code_at:
            raise ValueError(f"talk ({self.talk} s) must be longer than code_at ({self.code_at} s)")


@dataclass
class Desk:
    operators: dict[str, SippRun]
    agencies: dict[str, SippRun]


@asynccontextmanager
async def desk_phones(plan: DeskPlan, root: Path, pcaps: LoadPcaps,
                      remote: str) -> AsyncIterator[Desk]:
    """The desk phones and duty lines, bound before it yields, stopped by pid after."""
    runs: list[SippRun] = []
    desk = Desk({}, {})
    try:
        for n in range(1, plan.operators + 1):
            code = plan.codes[n - 1] if n - 1 < len(plan.codes) else None
            config = sipp.operator_phone(
                operator_ip(n), ring=plan.ring, talk=plan.talk,
                dtmf=pcaps.dtmf(code) if code else None,
                dtmf_at=plan.code_at if code else None, calls=None, remote=remote,
            )
            run = SippRun(config, root / f"op{n}")
            runs.append(run)
            await run.__aenter__()
            desk.operators[f"op{n}"] = run
        for code in plan.agencies:
            config = sipp.agency_line(agency_ip(code), ring=plan.ring, talk=None,
                                      dtmf=pcaps.dtmf("1"), dtmf_at=0.3, calls=None,
                                      remote=remote)
            run = SippRun(config, root / f"agency{code}")
            runs.append(run)
            await run.__aenter__()
            desk.agencies[code] = run
        yield desk
    finally:
        for run in runs:
            if run.running:
                await run.stop(grace=2.0)
