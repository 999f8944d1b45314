"""A small asyncio wrapper around the ``sipp`` binary (Debian's sip-tester, SIPp 3.6) that plays
the test phones: citizens calling 112, operators' desk phones, agencies' duty lines.

One `SippRun` is one SIPp process with its own run directory: the scenario and its pcaps are
copied there (SIPp reads pcaps next to the scenario), and SIPp writes its statistics CSV, its
``<log>`` lines, its unexpected messages and its final screen there. The process is started in
its own session, waited for with a timeout and stopped by its pid: SIGUSR1 (SIPp's soft exit,
calls in progress finish), then SIGTERM, then SIGKILL. A UAS phone is used as an async context
manager that returns once SIPp has bound its SIP port.

The builders at the bottom (`citizen`, `operator_phone`, ...) give each scenario of
sipp-scenarios/ typed parameters; their header comments document the keys and variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import re
import shutil
import signal
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog

from siaga112_testkit.checkout import repo_root
from siaga112_testkit.dtmf_pcap import G711, audio_packets, silence_samples, write_pcap

log = structlog.get_logger(__name__)

SCENARIOS_DIR = repo_root() / "sipp-scenarios"
SIPP_BINARY = "sipp"
PBX_SIP = "127.0.0.1:5060"
_MIN_AGE_FOR_USR1 = 0.3


class SippExit(StrEnum):
    """What SIPp's exit code says (SIPp 3.6 screen.hpp), and our own outcomes."""

    ALL_SUCCESSFUL = "all_successful"  # 0
    SOME_FAILED = "some_failed"  # 1: at least one call failed
    MANUALLY_STOPPED = "manually_stopped"  # 95
    KILLED = "killed"  # 96
    INTERNAL_COMMAND = "internal_command"  # 97: exit on internal command (or SIGUSR1 soft exit)
    UNKNOWN_RESULT = "unknown_result"  # 98
    NO_CALLS = "no_calls"  # 99: normal exit without calls processed
    FATAL_ERROR = "fatal_error"  # 255 (-1): bad scenario, missing file or key, ...
    BIND_ERROR = "bind_error"  # 254 (-2): the local address or port could not be bound
    SYSTEM_ERROR = "system_error"  # 253
    ARGUMENT_ERROR = "argument_error"  # 252
    SIGNALLED = "signalled"  # ended by a signal we sent after the soft exit did not end it
    # Exit 1 before any statistics: SIPp refused the scenario or its arguments (a missing
    # -set variable or -key, a pcap not found); SippResult.errors holds its message.
    NOT_STARTED = "not_started"
    UNKNOWN_CODE = "unknown_code"

    @classmethod
    def from_returncode(cls, rc: int) -> SippExit:
        if rc < 0:
            return cls.SIGNALLED
        return _EXIT_CODES.get(rc, cls.UNKNOWN_CODE)


_EXIT_CODES = {
    0: SippExit.ALL_SUCCESSFUL,
    1: SippExit.SOME_FAILED,
    95: SippExit.MANUALLY_STOPPED,
    96: SippExit.KILLED,
    97: SippExit.INTERNAL_COMMAND,
    98: SippExit.UNKNOWN_RESULT,
    99: SippExit.NO_CALLS,
    255: SippExit.FATAL_ERROR,
    254: SippExit.BIND_ERROR,
    253: SippExit.SYSTEM_ERROR,
    252: SippExit.ARGUMENT_ERROR,
}


class SippError(RuntimeError):
    """SIPp did not start or did not come up as asked; the message says why."""


@dataclass(frozen=True)
class SippStats:
    """The last row of SIPp's statistics CSV (-trace_stat): the cumulative (C) counters."""

    created: int
    successful: int
    failed: int
    current: int
    failed_unexpected_message: int
    failed_max_udp_retrans: int
    failed_call_rejected: int
    failed_timeout_on_recv: int
    failed_regexp_doesnt_match: int
    retransmissions: int
    out_of_call_msgs: int
    dead_call_msgs: int
    raw: Mapping[str, str] = field(repr=False)

    @classmethod
    def from_csv(cls, path: Path) -> SippStats | None:
        """None when SIPp wrote no statistics row (it died before its first dump)."""
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            return None
        rows = list(csv.DictReader(text.splitlines(), delimiter=";"))
        if not rows:
            return None
        row = {k: v for k, v in rows[-1].items() if k}

        def count(name: str) -> int:
            value = row.get(name, "") or "0"
            try:
                return int(float(value))
            except ValueError:
                raise ValueError(f"{path}: column {name!r} is not a number: {value!r}") from None

        return cls(
            created=count("TotalCallCreated"),
            successful=count("SuccessfulCall(C)"),
            failed=count("FailedCall(C)"),
            current=count("CurrentCall"),
            failed_unexpected_message=count("FailedUnexpectedMessage(C)"),
            failed_max_udp_retrans=count("FailedMaxUDPRetrans(C)"),
            failed_call_rejected=count("FailedCallRejected(C)"),
            failed_timeout_on_recv=count("FailedTimeoutOnRecv(C)"),
            failed_regexp_doesnt_match=count("FailedRegexpDoesntMatch(C)"),
            retransmissions=count("Retransmissions(C)"),
            out_of_call_msgs=count("OutOfCallMsgs(C)"),
            dead_call_msgs=count("DeadCallMsgs(C)"),
            raw=row,
        )


_LOG_FIELD = re.compile(r"(\w+)=(\S*)")


@dataclass(frozen=True)
class LogEvent:
    """One ``<log>`` line of our scenarios: ``event=NAME key=value ... [from=rest of line]``."""

    event: str
    fields: Mapping[str, str]
    line: str

    @classmethod
    def parse(cls, line: str) -> LogEvent:
        head, sep, from_value = line.partition(" from=")
        fields = dict(_LOG_FIELD.findall(head))
        if sep:
            fields["from"] = from_value
        return cls(event=fields.pop("event", ""), fields=fields, line=line)

    def __getitem__(self, key: str) -> str:
        return self.fields[key]


def read_log_events(path: Path) -> list[LogEvent]:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    return [LogEvent.parse(line) for line in text.splitlines() if line.strip()]


@dataclass(frozen=True)
class SippResult:
    returncode: int
    exit: SippExit
    stats: SippStats | None
    logs: list[LogEvent]
    run_dir: Path
    timed_out: bool = False
    errors: str = field(default="", repr=False)  # SIPp's error file: unexpected messages etc.

    @property
    def ok(self) -> bool:
        return self.exit is SippExit.ALL_SUCCESSFUL and not self.timed_out

    def events(self, name: str) -> list[LogEvent]:
        return [e for e in self.logs if e.event == name]

    def explain(self) -> str:
        """A short account for an assertion message."""
        stats = self.stats
        counts = (
            f"created={stats.created} successful={stats.successful} failed={stats.failed} "
            f"unexpected={stats.failed_unexpected_message} "
            f"udp_retrans={stats.failed_max_udp_retrans}"
            if stats
            else "no statistics"
        )
        return (
            f"sipp in {self.run_dir}: exit {self.returncode} ({self.exit}), "
            f"timed_out={self.timed_out}, {counts}; errors: {self.errors[-1500:] or 'none'}"
        )


@dataclass(frozen=True)
class SippConfig:
    """The typed command line of one SIPp process.

    files maps names in the run directory (as the scenario refers to them, e.g. "dtmf.pcap")
    to source files; a name the scenario needs but that is not given is filled with a 20 ms
    silence pcap (SIPp loads every pcap when it reads the scenario).
    """

    scenario: Path
    local_ip: str
    local_port: int = 5060
    remote: str | None = PBX_SIP  # host:port; None for a UAS that only answers
    service: str | None = None  # -s: user part of the request URI
    max_calls: int | None = 1  # -m: exit after this many calls
    rate: float | None = None  # -r: calls per second (uac)
    rate_period_ms: int | None = None  # -rp
    call_limit: int | None = None  # -l: simultaneous calls
    keys: Mapping[str, str] = field(default_factory=dict)  # -key NAME VALUE -> [NAME]
    variables: Mapping[str, str | int | float] = field(default_factory=dict)  # -set -> $NAME
    files: Mapping[str, Path] = field(default_factory=dict)
    placeholder_files: Sequence[str] = ()
    media_port: int | None = None  # -mp (default 6000 on local_ip)
    recv_timeout_ms: int | None = None  # -recv_timeout: a call waiting longer fails
    global_timeout_s: float | None = None  # -timeout: SIPp quits by itself after this
    stats_interval_s: int = 1  # -fd
    extra_args: Sequence[str] = ()

    def __post_init__(self) -> None:
        try:
            socket.inet_aton(self.local_ip)
        except OSError:
            raise ValueError(f"local_ip must be an IPv4 address, got {self.local_ip!r}") from None
        if not 0 < self.local_port < 65536:
            raise ValueError(f"local_port out of range: {self.local_port}")
        if (self.local_ip, self.local_port) == ("127.0.0.1", 5060):
            raise ValueError("127.0.0.1:5060 is the PBX's address; a test phone may not bind it")
        for name in self.files:
            if "/" in name:
                raise ValueError(f"file names in the run directory have no '/': {name!r}")

    def argv(self, run_dir: Path, binary: str = SIPP_BINARY) -> list[str]:
        scenario = run_dir / self.scenario.name
        args = [binary, "-sf", str(scenario), "-i", self.local_ip, "-p", str(self.local_port)]
        args += ["-nostdin", "-aa", "-fd", str(self.stats_interval_s), "-f", "1"]
        args += ["-trace_stat", "-stf", str(run_dir / "stat.csv")]
        args += ["-trace_logs", "-log_file", str(run_dir / "logs.log")]
        args += ["-trace_err", "-error_file", str(run_dir / "errors.log")]
        args += ["-trace_screen", "-screen_file", str(run_dir / "screen.log")]
        if self.service is not None:
            args += ["-s", self.service]
        if self.max_calls is not None:
            args += ["-m", str(self.max_calls)]
        if self.rate is not None:
            args += ["-r", f"{self.rate:g}"]
        if self.rate_period_ms is not None:
            args += ["-rp", str(self.rate_period_ms)]
        if self.call_limit is not None:
            args += ["-l", str(self.call_limit)]
        if self.media_port is not None:
            args += ["-mp", str(self.media_port)]
        if self.recv_timeout_ms is not None:
            args += ["-recv_timeout", str(self.recv_timeout_ms)]
        if self.global_timeout_s is not None:
            args += ["-timeout", f"{self.global_timeout_s:g}s", "-timeout_error"]
        for name, value in self.keys.items():
            args += ["-key", name, str(value)]
        for var, setting in self.variables.items():
            args += ["-set", var, str(setting)]
        args += list(self.extra_args)
        if self.remote is not None:
            args.append(self.remote)
        return args

    def prepare(self, run_dir: Path) -> None:
        """Lay out the run directory: the scenario and its files."""
        if not self.scenario.is_file():
            raise SippError(f"scenario not found: {self.scenario}")
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.scenario, run_dir / self.scenario.name)
        for name, source in self.files.items():
            if not source.is_file():
                raise SippError(f"{self.scenario.name}: file for {name} not found: {source}")
            shutil.copyfile(source, run_dir / name)
        for name in self.placeholder_files:
            if name not in self.files:
                write_pcap(run_dir / name, audio_packets(silence_samples(0.02), G711.PCMA))


def _udp_inodes(ip: str, port: int) -> set[str]:
    """Inodes of the UDP sockets bound to ip:port (or the wildcard), from /proc/net/udp."""
    want = {f"{socket.inet_aton(addr)[::-1].hex().upper()}:{port:04X}" for addr in (ip, "0.0.0.0")}
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return set()
    rows = [line.split() for line in lines]
    return {row[9] for row in rows if len(row) > 9 and row[1] in want}


def udp_bound(ip: str, port: int) -> bool:
    """Whether some socket is bound to ip:port (or the wildcard) for UDP."""
    return bool(_udp_inodes(ip, port))


def udp_bound_by(pid: int, ip: str, port: int) -> bool:
    """Whether process pid holds a UDP socket bound to ip:port."""
    inodes = _udp_inodes(ip, port)
    if not inodes:
        return False
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return True
    return False


class SippRun:
    """One SIPp process: start it, wait for it, stop it, read what it wrote."""

    def __init__(self, config: SippConfig, run_dir: Path, binary: str = SIPP_BINARY) -> None:
        self.config = config
        self.run_dir = run_dir
        self.binary = binary
        self._proc: asyncio.subprocess.Process | None = None
        self._result: SippResult | None = None
        self._timed_out = False
        self._started = 0.0

    def __repr__(self) -> str:
        c = self.config
        return f"SippRun({c.scenario.name} {c.local_ip}:{c.local_port} pid={self.pid})"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        if self._proc is not None:
            raise SippError(f"{self!r} was already started")
        c = self.config
        # SIPp binds with SO_REUSEADDR: a second one on a taken address would share it.
        if udp_bound(c.local_ip, c.local_port):
            raise SippError(f"{c.local_ip}:{c.local_port} is already bound by another process")
        self.config.prepare(self.run_dir)
        argv = self.config.argv(self.run_dir, self.binary)
        (self.run_dir / "argv.txt").write_text(" ".join(argv) + "\n")
        self._started = time.monotonic()
        out = os.open(self.run_dir / "sipp.out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                cwd=self.run_dir,
                start_new_session=True,
            )
        finally:
            os.close(out)
        log.info(
            "sipp_started",
            pid=self._proc.pid,
            scenario=self.config.scenario.name,
            local=f"{self.config.local_ip}:{self.config.local_port}",
            run_dir=str(self.run_dir),
        )

    async def wait_bound(self, seconds: float = 5.0) -> None:
        """Return once SIPp has bound its SIP port; raise SippError if it exits or takes longer."""
        deadline = time.monotonic() + seconds
        proc = self._require_proc()
        while not udp_bound_by(proc.pid, self.config.local_ip, self.config.local_port):
            if not self.running:
                result = await self.wait(seconds=1.0)
                raise SippError(f"sipp exited before binding its port: {result.explain()}")
            if time.monotonic() > deadline:
                await self.stop()
                raise SippError(
                    f"sipp did not bind {self.config.local_ip}:{self.config.local_port} "
                    f"in {seconds}s (run dir {self.run_dir})"
                )
            await asyncio.sleep(0.02)

    async def wait(self, seconds: float) -> SippResult:
        """Wait for SIPp to exit by itself; after `seconds` stop it and mark the result timed
        out."""
        proc = self._require_proc()
        try:
            await asyncio.wait_for(proc.wait(), seconds)
        except TimeoutError:
            log.warning("sipp_wait_timeout", pid=proc.pid, seconds=seconds)
            self._timed_out = True
            return await self.stop()
        return self._collect()

    async def stop(self, grace: float = 3.0) -> SippResult:
        """Soft exit (SIGUSR1: no new calls, calls in progress end), then SIGTERM, then
        SIGKILL, each after `grace` seconds; signals go to SIPp's own process group."""
        proc = self._require_proc()
        # SIPp installs its SIGUSR1 handler a moment after binding its port; before that the
        # signal would kill it without its final statistics.
        await asyncio.sleep(max(0.0, self._started + _MIN_AGE_FOR_USR1 - time.monotonic()))
        for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGKILL):
            if proc.returncode is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                log.warning("sipp_stop_escalates", pid=proc.pid, after=sig.name)
        await proc.wait()
        return self._collect()

    def logs(self) -> list[LogEvent]:
        """The <log> lines written so far (SIPp flushes each line)."""
        return read_log_events(self.run_dir / "logs.log")

    async def __aenter__(self) -> SippRun:
        await self.start()
        try:
            await self.wait_bound()
        except BaseException:
            if self.running:
                await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.running:
            await self.stop()

    @property
    def result(self) -> SippResult | None:
        """The result once SIPp has exited and been waited for."""
        return self._result

    def _require_proc(self) -> asyncio.subprocess.Process:
        if self._proc is None:
            raise SippError(f"{self!r} was not started")
        return self._proc

    def _collect(self) -> SippResult:
        proc = self._require_proc()
        rc = proc.returncode
        assert rc is not None  # called after wait()
        errors = ""
        with contextlib.suppress(FileNotFoundError):
            errors = (self.run_dir / "errors.log").read_text(errors="replace")
        with contextlib.suppress(FileNotFoundError):
            out = (self.run_dir / "sipp.out").read_text(errors="replace")
            if rc != 0 and not errors:
                errors = out[-3000:]
        stats = SippStats.from_csv(self.run_dir / "stat.csv")
        exit_ = SippExit.from_returncode(rc)
        if exit_ is SippExit.SOME_FAILED and stats is None:
            exit_ = SippExit.NOT_STARTED
        self._result = SippResult(
            returncode=rc,
            exit=exit_,
            stats=stats,
            logs=self.logs(),
            run_dir=self.run_dir,
            timed_out=self._timed_out,
            errors=errors,
        )
        log.info(
            "sipp_exited",
            pid=proc.pid,
            returncode=rc,
            exit=str(self._result.exit),
            timed_out=self._timed_out,
            successful=self._result.stats.successful if self._result.stats else None,
            failed=self._result.stats.failed if self._result.stats else None,
        )
        return self._result


async def run_sipp(config: SippConfig, run_dir: Path, seconds: float) -> SippResult:
    """Start SIPp, wait for it to exit (stopping it after `seconds`), return its result."""
    run = SippRun(config, run_dir)
    await run.start()
    return await run.wait(seconds)


# --- the scenarios of sipp-scenarios/, with typed parameters ---------------------------------


def _ms(value: float | None) -> int:
    """Seconds to the scenarios' milliseconds; None is -1 (never / not at all)."""
    return -1 if value is None else round(value * 1000)


def _caller_keys(caller: str, local_ip: str) -> dict[str, str]:
    """The From keys of the citizen scenarios; "anonymous" or "" withholds the number."""
    if caller.lower() in ("", "anonymous"):
        return {"caller": "anonymous", "from_host": "anonymous.invalid", "display": "Anonymous"}
    return {"caller": caller, "from_host": local_ip, "display": caller}


def citizen(
    local_ip: str,
    caller: str,
    *,
    hold: float | None = 5.0,
    audio: Path | None = None,
    dtmf: Path | None = None,
    dtmf_at: float | None = None,
    calls: int = 1,
    rate: float | None = None,
    call_limit: int | None = None,
    local_port: int = 5060,
    remote: str = PBX_SIP,
    service: str = "112",
    scenarios: Path = SCENARIOS_DIR,
) -> SippConfig:
    """A citizen calling 112 from a trunk (local_ip 127.0.0.2 mobile, 127.0.0.3 landline).

    caller "anonymous" (or "") sends a withheld number. hold: seconds from the answer to our BYE
    (None: wait for the far side). audio: a G.711 A-law pcap played from the answer (speech or
    silence). dtmf: a pcap played dtmf_at seconds after the answer (stops the audio)."""
    if (dtmf is None) != (dtmf_at is None):
        raise ValueError("give dtmf and dtmf_at together")
    return SippConfig(
        scenario=scenarios / "citizen.xml",
        local_ip=local_ip,
        local_port=local_port,
        remote=remote,
        service=service,
        max_calls=calls,
        rate=rate,
        call_limit=call_limit,
        keys=_caller_keys(caller, local_ip),
        variables={
            "hold_ms": _ms(hold),
            "audio": "yes" if audio else "no",
            "dtmf_ms": _ms(dtmf_at),
        },
        files={
            **({"audio.pcap": audio} if audio else {}),
            **({"dtmf.pcap": dtmf} if dtmf else {}),
        },
        placeholder_files=("audio.pcap", "dtmf.pcap"),
    )


def citizen_abandon(
    local_ip: str,
    caller: str,
    *,
    cancel_after: float,
    calls: int = 1,
    local_port: int = 5060,
    remote: str = PBX_SIP,
    service: str = "112",
    scenarios: Path = SCENARIOS_DIR,
) -> SippConfig:
    """A citizen who hangs up (CANCEL) cancel_after seconds after dialling, before an answer."""
    return SippConfig(
        scenario=scenarios / "citizen_abandon.xml",
        local_ip=local_ip,
        local_port=local_port,
        remote=remote,
        service=service,
        max_calls=calls,
        keys=_caller_keys(caller, local_ip),
        variables={"cancel_ms": _ms(cancel_after)},
    )


def operator_phone(
    local_ip: str,
    *,
    ring: float = 0.5,
    talk: float | None = None,
    dtmf: Path | None = None,
    dtmf_at: float | None = None,
    calls: int | None = 1,
    remote: str = PBX_SIP,
    scenarios: Path = SCENARIOS_DIR,
) -> SippConfig:
    """An operator's desk phone (local_ip 127.0.1.N, port 5060) that answers after `ring`
    seconds, plays `dtmf` (a code such as *201) dtmf_at seconds after the answer and hangs up
    `talk` seconds after the answer (None: waits for the far side). calls: -m, None for no
    limit (stop it with SippRun.stop)."""
    if (dtmf is None) != (dtmf_at is None):
        raise ValueError("give dtmf and dtmf_at together")
    return SippConfig(
        scenario=scenarios / "operator.xml",
        local_ip=local_ip,
        local_port=5060,
        remote=remote,
        max_calls=calls,
        variables={"ring_ms": _ms(ring), "talk_ms": _ms(talk), "dtmf_ms": _ms(dtmf_at)},
        files={"dtmf.pcap": dtmf} if dtmf else {},
        placeholder_files=("dtmf.pcap",),
    )


def operator_hold_phone(
    local_ip: str,
    *,
    ring: float,
    talk: float,
    held: float,
    after: float | None,
    before_audio: Path | None = None,
    after_audio: Path | None = None,
    remote: str = PBX_SIP,
    scenarios: Path = SCENARIOS_DIR,
) -> SippConfig:
    """A desk phone (operator_hold.xml) that answers after `ring` s, says `before_audio`, holds
    the call `talk` s after the answer (re-INVITE sendonly) for `held` s sending nothing, takes
    it back (sendrecv), says `after_audio` and hangs up `after` s later (None: never)."""
    return SippConfig(
        scenario=scenarios / "operator_hold.xml",
        local_ip=local_ip,
        local_port=5060,
        remote=remote,
        max_calls=1,
        variables={"ring_ms": _ms(ring), "talk_ms": _ms(talk), "held_ms": _ms(held),
                   "after_ms": _ms(after)},
        files={name: path for name, path in (("before.pcap", before_audio),
                                             ("after.pcap", after_audio)) if path},
        placeholder_files=("before.pcap", "after.pcap"),
    )


def agency_line(local_ip: str, **options: Any) -> SippConfig:
    """An agency's duty line (127.0.2.NN primary, 127.0.3.NN fallback), with the options of
    operator_phone; dtmf is typically the "1" pcap that accepts the call."""
    config = operator_phone(local_ip, **options)
    return replace(config, scenario=config.scenario.with_name("agency.xml"))


def operator_noanswer(
    local_ip: str,
    *,
    calls: int | None = 1,
    remote: str = PBX_SIP,
    scenarios: Path = SCENARIOS_DIR,
) -> SippConfig:
    """A desk phone that rings until CANCEL and is never picked up."""
    return SippConfig(
        scenario=scenarios / "operator_noanswer.xml",
        local_ip=local_ip,
        local_port=5060,
        remote=remote,
        max_calls=calls,
    )


def operator_code(
    local_ip: str,
    code: str,
    *,
    phone: str = "op",
    hold: float | None = None,
    local_port: int = 5070,
    media_port: int = 6100,
    remote: str = PBX_SIP,
    scenarios: Path = SCENARIOS_DIR,
) -> SippConfig:
    """An operator dialling a desk-phone code (*11 log in, *12 log out, *13 pause, *14 resume)
    from the desk phone at local_ip. It binds local_port and media_port (not 5060 and 6000,
    which an operator_phone on the same address may hold). Any final response ends it as a
    success: read the event=final log line's status."""
    if not re.fullmatch(r"[0-9*#]+", code):
        raise ValueError(f"not a dialable code: {code!r}")
    return SippConfig(
        scenario=scenarios / "operator_code.xml",
        local_ip=local_ip,
        local_port=local_port,
        remote=remote,
        service=code,
        max_calls=1,
        media_port=media_port,
        keys={"phone": phone},
        variables={"hold_ms": _ms(hold)},
    )


def citizen_clock(local_ip: str, caller: str, **options: Any) -> SippConfig:
    """A citizen on their own clock (citizen_clock.xml): plays what `citizen` plays, with the
    same options, and logs every step with SIPp's clock (ms=, milliseconds), so that a test can
    tell from the phone's side how long the citizen heard, waited or was left alone."""
    config = citizen(local_ip, caller, **options)
    return replace(config, scenario=config.scenario.with_name("citizen_clock.xml"))
