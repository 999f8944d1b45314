"""A tiny load through the real path (SIPp citizens on both trunks, SIPp desk phones, the test
PBX, an in-process daemon, PostgreSQL): the report's counts agree with what was sent."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest

from siaga112_testkit.loadtest import waves
from siaga112_testkit.loadtest.daemon import DaemonApi
from siaga112_testkit.loadtest.phones import CallerGroup, DeskPlan, national_number
from siaga112_testkit.loadtest.plot import plot_reports
from siaga112_testkit.loadtest.report import LoadReport, render
from siaga112_testkit.loadtest.runner import CallPath, LoadPlan, RunContext, run_load
from siaga112_testkit.topology import LANDLINE_TRUNK, MOBILE_TRUNK

pytestmark = pytest.mark.integration


async def test_tiny_load_is_counted_from_sipp_records_and_metrics(
    daemon_factory, tmp_path: Path
) -> None:
    daemon = await daemon_factory(logged_in=["op1", "op2"])
    plan = LoadPlan(
        "tiny",
        CallPath.DAEMON,
        [
            CallerGroup("mobile", MOBILE_TRUNK, national_number("0811", 8), rate=1, calls=3,
                        hold=2.0),
            CallerGroup("landline", LANDLINE_TRUNK, national_number("0254", 6), rate=1, calls=2,
                        hold=2.0),
        ],
        DeskPlan(operators=2, ring=0.3, talk=1.0, code_at=0.5, codes=["*306", "*301"]),
        max_seconds=60,
    )
    lines: list[str] = []
    async with aiohttp.ClientSession() as session:
        api = DaemonApi(f"http://127.0.0.1:{daemon.settings.api.port}", "admin-token", session)
        ctx = RunContext(daemon.settings, "127.0.0.1:5060", tmp_path, lines.append, api=api,
                         progress_every=1.0)
        report = await run_load(plan, ctx)

    explain = render(report)
    assert (report.offered, report.answered, report.failed) == (5, 5, 0), explain
    assert [(g.name, g.offered, g.answered) for g in report.groups] == [
        ("mobile", 3, 3), ("landline", 2, 2)]
    assert report.clean, explain
    assert report.records == 5, explain
    assert report.answer_latency_ms.n == 5
    # The answer goal from the records: the dialplan answered each before Stasis().
    assert report.answered_by == {"dialplan": 5}, explain
    assert (report.stasis_to_answer_ms.n, report.stasis_to_answer_ms.p99) == (5, 0.0)
    assert "answered by the dialplan (before Stasis()) 5" in explain
    assert report.sip_answer_ms.n == 5
    assert sum(report.dispositions.values()) == 5
    assert report.metrics is not None and report.metrics.answered == 5
    assert sum(report.metrics.calls_by_outcome.values()) == 5
    assert sum(p.offered for p in report.timeline) == 5
    assert sum(p.answered for p in report.timeline) == 5
    assert set(report.occupancy) == {"op1", "op2", "all"}
    assert any("offered" in line for line in lines), "a progress line was printed"
    assert LoadReport.model_validate_json(report.model_dump_json()) == report
    png = plot_reports([report], tmp_path / "report.png")
    assert png.stat().st_size > 1000


async def test_the_ari_floor_holds_the_daemons_conversation_with_asterisk(
    stack, tmp_path: Path
) -> None:
    """The bench's floor (loadtest/floor.py) through the real PBX: every caller reaches a desk
    phone, and per call it asks Asterisk exactly what the daemon asks (holding bridge, dial,
    call bridge, both in it; at the end the other side's hang-up and the bridge's end), every
    request answered 2xx; its CPU is measured by its own pid and sampled by CPU time."""
    from siaga112_testkit import cpuprof
    from siaga112_testkit.loadtest.floor import floor_running
    from siaga112_testkit.loadtest.report import FLOOR_SERVICE
    from tests.conftest import daemon_settings

    settings = daemon_settings(stack, tmp_path)
    plan = LoadPlan(
        "floor",
        CallPath.FLOOR,
        [
            CallerGroup("mobile", MOBILE_TRUNK, national_number("0811", 8), rate=1, calls=2,
                        hold=3.0),
            CallerGroup("landline", LANDLINE_TRUNK, national_number("0254", 6), rate=1,
                        calls=2, hold=3.0),
        ],
        DeskPlan(operators=2, ring=0.3, talk=1.0),
        max_seconds=60,
    )
    lines: list[str] = []
    async with floor_running(settings, plan.desk.operators, lines.append, sampled=True) as floor:
        ctx = RunContext(settings, "127.0.0.1:5060", tmp_path, lines.append,
                         service_pids={FLOOR_SERVICE: floor.pid})
        assert floor.folded is not None
        async with cpuprof.sampling(floor.pid, floor.folded) as taken:
            report = await run_load(plan, ctx)
    report.floor_counts = floor.counts

    explain = render(report) + f"\n{floor.counts}"
    assert (report.offered, report.answered, report.failed) == (4, 4, 0), explain
    assert floor.counts.get("event StasisStart") == 8, explain  # 4 callers, 4 desk phones
    assert floor.counts.get("POST channels 200") == 4, explain  # each desk phone dialled once
    assert floor.counts.get("POST bridges 200") == 4, explain  # each call's bridge made
    assert floor.counts.get("POST bridges 204") == 8, explain  # holding, then both in the call's
    assert floor.counts.get("DELETE channels 204") == 4, explain  # the caller, at the phone's end
    assert floor.counts.get("DELETE bridges 204") == 4, explain
    assert report.floor_not_2xx() == {} and "faults" not in floor.counts, explain
    per_call = report.per_call()
    assert per_call["ari_requests"] == 6, explain
    # Measured by its pid (None when not). Not asserted > 0: the kernel counts CPU by the
    # 250 Hz tick that finds a process running, and four calls' 12 ms or so of the floor's
    # CPU were found by none in one run of the suite in twenty.
    assert per_call["floor_cpu_ms"] is not None, explain
    assert "the ARI floor" in render(report)
    assert any("stopped the ARI floor" in line for line in lines)
    # Sampled by CPU time while the calls ran (the bench's profile of the floor): the floor
    # wrote its samples when told (as few as the ticks above found), and every one is the
    # conversation, none the product's.
    assert taken.problem == "", taken
    by_part = cpuprof.parts(taken.folded)
    product = ("records", "MQTT", "logging", "desk", "call path")
    assert [by_part[part] for part in product] == [0] * len(product), by_part


async def test_waves_measure_the_path_to_an_operator_apart_from_the_calls_end(
    daemon_factory, tmp_path: Path
) -> None:
    """`siaga112-testkit waves` through the real PBX: two waves of two callers, each caller to
    a free desk phone, told apart in the records by the wave's own number; both waves clean.
    A wave is refused at once when one of its desk phones is not free."""
    daemon = await daemon_factory(logged_in=["op1", "op2"])
    lines: list[str] = []
    # The daemon runs in this process, so its pid is the test's own: the CPU figures hold the
    # test's work too and are not asserted; what the waves are checked on is who was measured.
    async with aiohttp.ClientSession() as session:
        api = DaemonApi(f"http://127.0.0.1:{daemon.settings.api.port}", "admin-token", session)
        ctx = RunContext(daemon.settings, "127.0.0.1:5060", tmp_path, lines.append, api=api,
                         daemon_pid=os.getpid())
        with pytest.raises(RuntimeError, match="op3"):
            await waves.run_waves(waves.WavePlan(waves=1, size=3, rate=2, hold=3.0), ctx,
                                  os.getpid())
        plan = waves.WavePlan(waves=2, size=2, rate=2, hold=2.0, ring=0.3, settle=0.6, gap=0.3,
                              idle=1.0)
        report = await waves.run_waves(plan, ctx, os.getpid())

    explain = waves.render(report) + "\n" + "\n".join(lines)
    assert [(w.callers, w.reached) for w in report.waves] == [(2, 2), (2, 2)], explain
    assert report.clean, explain
    assert "arrival to an operator: mean" in explain
    assert sum(1 for line in lines if line.startswith("  wave ")) == 2, explain
    assert waves.WavesReport.model_validate_json(report.model_dump_json()) == report
