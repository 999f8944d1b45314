"""The SIPp wrapper and the scenarios, played against each other on loopback (no PBX): a real
SIPp uac on 127.0.9.N calls a real SIPp uas on 127.0.10.N."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from siaga112_testkit.dtmf_pcap import write_dtmf_pcap, write_speech_pcap
from siaga112_testkit.sipp import (
    SCENARIOS_DIR,
    LogEvent,
    SippConfig,
    SippError,
    SippExit,
    SippResult,
    SippRun,
    SippStats,
    agency_line,
    citizen,
    citizen_abandon,
    citizen_clock,
    operator_code,
    operator_hold_phone,
    operator_noanswer,
    operator_phone,
    run_sipp,
    udp_bound,
    udp_bound_by,
)

# One pair of loopback addresses per test process, so that two runs of the suite on one
# machine do not answer each other's calls.
_N = os.getpid() % 250 + 1
UAC_IP = f"127.0.9.{_N}"
UAS_IP = f"127.0.10.{_N}"
UAS = f"{UAS_IP}:5060"
UAC = f"{UAC_IP}:5060"
TIMEOUT = 20.0


@pytest.fixture(scope="module")
def pcaps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pcaps")
    for code in ("*201", "5"):
        write_dtmf_pcap(out, code)
    write_speech_pcap(out, 10)
    return out


async def test_operator_answers_sends_code_and_hangs_up(tmp_path: Path, pcaps: Path) -> None:
    phone = operator_phone(
        UAS_IP, ring=0.2, talk=1.0, dtmf=pcaps / "dtmf_star201.pcap", dtmf_at=0.3, remote=UAC
    )
    caller = citizen(
        UAC_IP,
        "081234567890",
        hold=None,
        audio=pcaps / "speech_10s.pcap",
        dtmf=pcaps / "dtmf_5.pcap",
        dtmf_at=0.2,
        remote=UAS,
    )
    async with SippRun(phone, tmp_path / "op") as op:
        assert udp_bound(UAS_IP, 5060)
        got = await run_sipp(caller, tmp_path / "citizen", TIMEOUT)
        op_result = await op.wait(TIMEOUT)

    assert got.ok, got.explain()
    assert op_result.ok, op_result.explain()
    assert got.stats is not None and op_result.stats is not None
    assert (got.stats.successful, got.stats.failed) == (1, 0)
    assert (op_result.stats.successful, op_result.stats.failed) == (1, 0)
    assert [e.event for e in op_result.logs] == ["invite", "answered", "dtmf_sent", "bye_sent"]
    invite = op_result.events("invite")[0]
    assert invite["caller"] == "081234567890"
    assert invite["from"].startswith(f'"081234567890" <sip:081234567890@{UAC_IP}>')
    assert [e.event for e in got.logs] == ["answered", "dtmf_sent", "bye_received"]
    assert got.logs[0]["call_id"] == invite["call_id"]


async def test_citizen_hangs_up_with_a_withheld_number(tmp_path: Path) -> None:
    phone = operator_phone(UAS_IP, ring=0, talk=None, remote=UAC)
    caller = citizen(UAC_IP, "anonymous", hold=0.3, remote=UAS)
    async with SippRun(phone, tmp_path / "op") as op:
        got = await run_sipp(caller, tmp_path / "citizen", TIMEOUT)
        op_result = await op.wait(TIMEOUT)

    assert got.ok, got.explain()
    assert op_result.ok, op_result.explain()
    assert op_result.events("invite")[0]["caller"] == "anonymous"
    assert "anonymous.invalid" in op_result.events("invite")[0]["from"]
    assert [e.event for e in op_result.logs] == ["invite", "answered", "bye_received"]
    assert [e.event for e in got.logs] == ["answered", "bye_sent"]


def _with(config: SippConfig, name: str, **keys: str) -> SippConfig:
    return replace(config, scenario=SCENARIOS_DIR / name, keys={**config.keys, **keys})


# Every scenario of sipp-scenarios/ as the tests and the load test play it (the keys and
# variables its header asks for).
SCENARIOS: dict[str, Callable[[], SippConfig]] = {
    "citizen.xml": lambda: citizen(UAC_IP, "081234567890", remote=UAS),
    "citizen_abandon.xml": lambda: citizen_abandon(UAC_IP, "0254123456", cancel_after=1,
                                                   remote=UAS),
    "citizen_clock.xml": lambda: citizen_clock(UAC_IP, "081234567890", remote=UAS),
    "citizen_pidf.xml": lambda: _with(
        citizen(UAC_IP, "081234567890", remote=UAS), "citizen_pidf.xml", lat="-6.12",
        lon="106.15", radius="35", method="GPS", timestamp="2026-11-30T07:00:00Z",
        geolocation="<cid:x@y>"),
    "citizen_answer.xml": lambda: _with(operator_phone(UAS_IP, remote=UAC),
                                        "citizen_answer.xml"),
    "operator.xml": lambda: operator_phone(UAS_IP, remote=UAC),
    "agency.xml": lambda: agency_line(UAS_IP, remote=UAC),
    "operator_noanswer.xml": lambda: operator_noanswer(UAS_IP, remote=UAC),
    "operator_hold.xml": lambda: operator_hold_phone(UAS_IP, ring=0.2, talk=1.0, held=1.0,
                                                     after=None, remote=UAC),
    "operator_code.xml": lambda: operator_code(UAC_IP, "*11", remote=UAS),
    "supervisor_code.xml": lambda: SippConfig(
        scenario=SCENARIOS_DIR / "supervisor_code.xml", local_ip=UAC_IP, local_port=5070,
        media_port=6100, remote=UAS, service="*5101", keys={"phone": "sup1"},
        variables={"hold_ms": 1000}, placeholder_files=("audio.pcap",)),
}


def test_every_scenario_is_covered() -> None:
    assert set(SCENARIOS) == {p.name for p in SCENARIOS_DIR.glob("*.xml")}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_scenario_loads_in_sipp(name: str, tmp_path: Path) -> None:
    # SIPp checks a scenario's structure only when it reads it: one it refuses (a recv
    # sequence without a mandatory message, a key not given) exits before binding.
    config = SCENARIOS[name]()
    assert config.scenario.name == name
    async with SippRun(config, tmp_path / "run") as run:
        await asyncio.sleep(0.3)
        assert run.running, (await run.wait(1)).explain()
        # A caller's call in progress (to nobody) keeps a soft exit waiting out its grace.
        await run.stop(grace=0.3)


CROSSING = Path(__file__).parent / "sipp_crossing"


async def test_citizen_whose_bye_crosses_the_far_sides_ends_the_call_cleanly(
    tmp_path: Path,
) -> None:
    # The caller hangs up as the far side does; the far BYE reaches the caller first and the
    # answer to the caller's own BYE after it (a starved SIPp at load sees this order). SIPp
    # had aborted such a call as an "unexpected message" and never answered the far BYE.
    far = SippConfig(scenario=CROSSING / "crossing_uas.xml", local_ip=UAS_IP, remote=UAC)
    caller = citizen(UAC_IP, "081234567890", hold=0.3, remote=UAS)
    async with SippRun(far, tmp_path / "far") as far_run:
        got = await run_sipp(caller, tmp_path / "citizen", TIMEOUT)
        far_result = await far_run.wait(TIMEOUT)

    assert got.ok, got.explain()
    assert far_result.ok, far_result.explain()  # it had the 200 to its own BYE
    assert got.stats is not None
    assert (got.stats.successful, got.stats.failed) == (1, 0)
    assert "unexpected" not in got.errors.lower()
    assert [e.event for e in got.logs] == ["answered", "bye_sent", "bye_received"]


async def _phone_called_by(pbx_scenario: str, phone: SippConfig,
                           tmp_path: Path) -> tuple[SippResult, SippResult]:
    """One call from a SIPp playing the PBX (tests/unit/sipp_crossing/) to a desk phone, which
    must end it as one successful call and nothing unexpected; (the PBX's, the phone's)."""
    pbx = SippConfig(scenario=CROSSING / pbx_scenario, local_ip=UAC_IP, remote=UAS)
    async with SippRun(phone, tmp_path / "op") as op:
        got = await run_sipp(pbx, tmp_path / "pbx", TIMEOUT)
        op_result = await op.wait(TIMEOUT)
    assert op_result.ok, op_result.explain()
    assert op_result.stats is not None
    assert (op_result.stats.successful, op_result.stats.failed) == (1, 0)
    assert "unexpected" not in op_result.errors.lower()
    return got, op_result


async def test_operator_phone_whose_bye_crosses_the_pbxs_ends_the_call_cleanly(
    tmp_path: Path,
) -> None:
    got, op_result = await _phone_called_by(
        "crossing_uac.xml", operator_phone(UAS_IP, ring=0, talk=0.3, remote=UAC), tmp_path)
    assert got.ok, got.explain()  # it had the 200 to its own BYE
    assert [e.event for e in op_result.logs] == ["invite", "answered", "bye_sent", "bye_received"]


async def test_several_calls_at_a_rate(tmp_path: Path) -> None:
    phone = operator_phone(UAS_IP, ring=0, talk=None, calls=3, remote=UAC)
    caller = citizen(UAC_IP, "+6281234567890", hold=0.2, calls=3, rate=10, remote=UAS)
    async with SippRun(phone, tmp_path / "op") as op:
        got = await run_sipp(caller, tmp_path / "citizen", TIMEOUT)
        op_result = await op.wait(TIMEOUT)

    assert got.stats is not None and op_result.stats is not None
    assert (got.stats.created, got.stats.successful, got.stats.failed) == (3, 3, 0)
    assert (op_result.stats.successful, op_result.stats.failed) == (3, 0)
    assert {e["caller"] for e in op_result.events("invite")} == {"+6281234567890"}


async def test_phone_that_never_answers_takes_the_cancel(tmp_path: Path) -> None:
    async with SippRun(operator_noanswer(UAS_IP, remote=UAC), tmp_path / "op") as op:
        got = await run_sipp(
            citizen_abandon(UAC_IP, "0254123456", cancel_after=0.3, remote=UAS),
            tmp_path / "citizen",
            TIMEOUT,
        )
        op_result = await op.wait(TIMEOUT)

    assert got.ok, got.explain()
    assert op_result.ok, op_result.explain()
    assert [e.event for e in op_result.logs] == ["invite", "cancelled"]
    assert [e.event for e in got.logs] == ["cancel_sent", "cancelled"]


async def test_operator_code_reads_the_final_response(tmp_path: Path) -> None:
    phone = operator_phone(UAS_IP, ring=0, talk=0.2, remote=f"{UAC_IP}:5070")
    async with SippRun(phone, tmp_path / "pbx") as pbx:
        got = await run_sipp(
            operator_code(UAC_IP, "*11", phone="op1", remote=UAS), tmp_path / "code", TIMEOUT
        )
        pbx_result = await pbx.wait(TIMEOUT)

    assert got.ok, got.explain()
    assert [(e.event, e.fields.get("status")) for e in got.logs] == [
        ("final", "200"),
        ("bye_received", None),
    ]
    assert pbx_result.events("invite")[0]["caller"] == "op1"


async def test_unanswered_call_is_counted_failed(tmp_path: Path) -> None:
    # Nobody listens on the UAS address: the INVITE times out after 1 s.
    config = citizen(UAC_IP, "081234567890", remote=UAS)
    config = SippConfig(**{**config.__dict__, "recv_timeout_ms": 1000})
    got = await run_sipp(config, tmp_path / "citizen", TIMEOUT)

    assert got.exit is SippExit.SOME_FAILED
    assert got.returncode == 1
    assert got.stats is not None
    assert (got.stats.successful, got.stats.failed, got.stats.failed_timeout_on_recv) == (0, 1, 1)
    assert not got.ok


async def test_second_phone_on_a_taken_address_is_refused(tmp_path: Path) -> None:
    async with SippRun(operator_phone(UAS_IP, remote=UAC), tmp_path / "first") as first:
        assert first.pid is not None and udp_bound_by(first.pid, UAS_IP, 5060)
        second = SippRun(operator_phone(UAS_IP, remote=UAC), tmp_path / "second")
        with pytest.raises(SippError, match="already bound"):
            await second.start()
        assert second.pid is None


async def test_scenario_error_is_reported_before_binding(tmp_path: Path) -> None:
    # operator.xml without its dtmf.pcap: SIPp refuses the scenario and exits.
    config = SippConfig(scenario=operator_phone(UAS_IP).scenario, local_ip=UAS_IP, remote=UAC)
    run = SippRun(config, tmp_path / "op")
    with pytest.raises(SippError, match="exited before binding"):
        await run.__aenter__()
    assert run.result is not None
    assert run.result.exit is SippExit.NOT_STARTED
    assert "dtmf.pcap" in run.result.errors
    assert not udp_bound(UAS_IP, 5060)


async def test_idle_phone_is_stopped_by_its_pid(tmp_path: Path) -> None:
    run = SippRun(operator_phone(UAS_IP, calls=None, remote=UAC), tmp_path / "op")
    async with run:
        assert run.running
    assert not run.running
    assert run.result is not None
    assert run.result.exit is SippExit.ALL_SUCCESSFUL
    assert run.result.stats is not None and run.result.stats.created == 0
    assert not udp_bound(UAS_IP, 5060)


async def test_wait_timeout_stops_and_marks_the_result(tmp_path: Path) -> None:
    run = SippRun(operator_phone(UAS_IP, remote=UAC), tmp_path / "op")
    async with run:
        result = await run.wait(seconds=0.2)
    assert result.timed_out
    assert not result.ok


def test_missing_scenario_file_and_pbx_address_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="PBX's address"):
        SippConfig(scenario=tmp_path / "x.xml", local_ip="127.0.0.1", local_port=5060)
    with pytest.raises(ValueError, match="IPv4"):
        SippConfig(scenario=tmp_path / "x.xml", local_ip="op1")
    config = SippConfig(scenario=tmp_path / "missing.xml", local_ip=UAS_IP)
    with pytest.raises(SippError, match="scenario not found"):
        config.prepare(tmp_path / "run")
    with pytest.raises(ValueError, match="dtmf and dtmf_at"):
        citizen(UAC_IP, "1", dtmf=tmp_path / "d.pcap")


def test_argv_carries_keys_variables_and_traces(tmp_path: Path) -> None:
    config = citizen("127.0.0.2", "081234567890", hold=2.5, dtmf=Path("d"), dtmf_at=1.0, rate=5)
    argv = config.argv(tmp_path)
    joined = " ".join(argv)
    assert argv[0] == "sipp" and argv[-1] == "127.0.0.1:5060"
    assert "-i 127.0.0.2 -p 5060" in joined
    assert "-s 112 -m 1 -r 5" in joined
    assert "-key caller 081234567890 -key from_host 127.0.0.2" in joined
    assert "-set hold_ms 2500 -set audio no -set dtmf_ms 1000" in joined
    assert f"-trace_stat -stf {tmp_path}/stat.csv" in joined
    assert f"-log_file {tmp_path}/logs.log" in joined


@pytest.mark.parametrize(
    ("rc", "exit_"),
    [
        (0, SippExit.ALL_SUCCESSFUL),
        (1, SippExit.SOME_FAILED),
        (97, SippExit.INTERNAL_COMMAND),
        (99, SippExit.NO_CALLS),
        (255, SippExit.FATAL_ERROR),
        (254, SippExit.BIND_ERROR),
        (-9, SippExit.SIGNALLED),
        (42, SippExit.UNKNOWN_CODE),
    ],
)
def test_exit_codes_are_explained(rc: int, exit_: SippExit) -> None:
    assert SippExit.from_returncode(rc) is exit_


def test_log_line_keeps_the_from_header_whole() -> None:
    e = LogEvent.parse('event=invite call_id=1-2@h caller=0812 from="Budi S" <sip:0812@h>;tag=x')
    assert e.event == "invite"
    assert e["caller"] == "0812"
    assert e["from"] == '"Budi S" <sip:0812@h>;tag=x'


def test_stats_without_a_row_is_none(tmp_path: Path) -> None:
    assert SippStats.from_csv(tmp_path / "none.csv") is None
    (tmp_path / "h.csv").write_text("StartTime;SuccessfulCall(C);\n")
    assert SippStats.from_csv(tmp_path / "h.csv") is None


async def test_operator_phone_answered_as_the_queue_cancels_takes_ack_and_bye(
    tmp_path: Path,
) -> None:
    # app_queue rings every free phone; another answered first, and the PBX's CANCEL crosses
    # this phone's 200 OK, the ACK and the BYE right behind it. The phone had aborted such a
    # call on the ACK and never answered the BYE: the PBX kept it busy for 32 s, and in the
    # bench's app_queue burst the desk took a few dozen of 1000 callers.
    got, op_result = await _phone_called_by(
        "late_cancel_uac.xml", operator_phone(UAS_IP, ring=0, talk=5.0, remote=UAC), tmp_path)
    assert got.ok, got.explain()  # the 200 to its BYE, and no 487
    assert [e.event for e in got.logs] == ["cancel_answered"]
    events = [e.event for e in op_result.logs]
    assert events[0] == "invite"
    assert sorted(events[-2:]) == ["bye_received", "cancel_answered"], events
    assert not {"bye_sent", "dtmf_sent", "cancelled"} & set(events), events


async def test_operator_phone_cancelled_while_ringing_answers_200_and_487(tmp_path: Path) -> None:
    # The caller leaves while the desk phone rings: 200 to the CANCEL, 487 to the INVITE (its
    # headers kept from the INVITE), the ACK to that, and the phone never answered.
    phone = operator_phone(UAS_IP, ring=5.0, talk=1.0, remote=UAC)
    async with SippRun(phone, tmp_path / "op") as op:
        got = await run_sipp(citizen_abandon(UAC_IP, "0254123456", cancel_after=0.3, remote=UAS),
                             tmp_path / "citizen", TIMEOUT)
        op_result = await op.wait(TIMEOUT)

    assert got.ok, got.explain()
    assert [e.event for e in got.logs] == ["cancel_sent", "cancelled"]
    assert op_result.ok, op_result.explain()
    assert [e.event for e in op_result.logs] == ["invite", "cancel_answered", "cancelled"]
