"""The waves' arithmetic and guards (loadtest/waves.py); the waves through the real PBX are in
tests/integration/test_loadtest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from siaga112_testkit.loadtest.waves import (
    Wave,
    WavePlan,
    WavesReport,
    per_call_ms,
    render,
    thread_cpu_ns,
)


def test_a_wave_is_never_larger_than_the_desk_phones() -> None:
    with pytest.raises(ValueError, match="size must be 1..8"):
        WavePlan(size=9)
    with pytest.raises(ValueError, match="waves must be at least 1"):
        WavePlan(waves=0)
    with pytest.raises(ValueError, match="rate must be above 0"):
        WavePlan(rate=0)


def test_the_path_to_an_operator_is_read_before_anybody_hangs_up() -> None:
    # 8 callers at 10/s: the last arrives at 0.7 s, rings 0.3 s, settles 1.2 s: 2.2 s.
    assert WavePlan().to_operator_window == pytest.approx(2.2)
    with pytest.raises(ValueError, match="hold"):
        WavePlan(hold=2.2)
    WavePlan(hold=2.3)


def test_the_cpu_of_every_thread_is_summed_and_a_vanished_one_left_out(tmp_path: Path) -> None:
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "stat").write_text("4242 (python3 (x)) S 1 4242 4242 0 -1\n")
    task = tmp_path / "4242" / "task"
    for tid, line in (("4242", "1500000 20 3\n"), ("4243", "250000 1 1\n"), ("4244", "")):
        (task / tid).mkdir(parents=True)
        (task / tid / "schedstat").write_text(line)
    (task / "4245").mkdir()  # a thread that ended before its read: no schedstat
    assert thread_cpu_ns(4242, proc=tmp_path) == 1_750_000
    assert thread_cpu_ns(4343, proc=tmp_path) is None  # the process is gone
    # Killed and not yet reaped: its threads still read, but it is gone all the same.
    (tmp_path / "4242" / "stat").write_text("4242 (python3 (x)) Z 1 4242 4242 0 -1\n")
    assert thread_cpu_ns(4242, proc=tmp_path) is None


def test_the_idle_daemons_share_of_a_window_is_taken_off() -> None:
    # 40 ms in a 2 s window, the idle daemon 1 ms a second, 8 calls: (40 - 2) / 8.
    assert per_call_ms(40_000_000, 2.0, 1.0, 8) == pytest.approx(4.75)


def _report(*waves: Wave) -> WavesReport:
    return WavesReport(waves=list(waves), size=8, rate=10, hold=3, ring=0.3, idle_ms_per_s=0.3,
                       daemon_pid=1, started_at="2026-12-04T00:00:00+00:00")


def test_a_wave_whose_callers_did_not_all_reach_an_operator_is_no_measure() -> None:
    good = Wave(to_operator_ms=6.0, rest_ms=4.0, callers=8, reached=8)
    other = Wave(to_operator_ms=2.0, rest_ms=1.0, callers=8, reached=5)
    report = _report(good, other, Wave(to_operator_ms=7.0, rest_ms=5.0, callers=8, reached=8))
    assert not report.clean
    assert report.measured == [good, report.waves[2]]
    text = render(report)
    assert "arrival to an operator: mean 6.50, median 6.50 (6.00-7.00)" in text
    assert "the whole call: mean 11.00" in text
    assert "5/8 reached an operator" in text
    assert "NOT CLEAN: 1 waves" in text
    assert _report(good).clean
    assert WavesReport.model_validate_json(report.model_dump_json()) == report


def test_a_profiled_run_gives_the_path_to_an_operator_by_part() -> None:
    # Samples of the windows to an operator only: 3 in the records, 1 in the events reader;
    # their shares of the waves' mean (6 ms) by part.
    report = _report(Wave(to_operator_ms=6.0, rest_ms=4.0, callers=8, reached=8))
    report.profile = {
        "run (siaga112/cli.py:1);store (siaga112/records/apply.py:288)": 3,
        "run (siaga112/cli.py:1);_read (siaga112/ari/events.py:127)": 1,
    }
    text = render(report)
    assert "by part: " in text
    assert "records 4.50 ms (75%)" in text
    assert "ARI events in 1.50 ms (25%)" in text
    assert "4 samples" in text
    assert WavesReport.model_validate_json(report.model_dump_json()) == report
    assert "by part" not in render(_report(report.waves[0]))  # not profiled: no line


def test_what_was_measured_is_reported_with_who_reached_an_operator() -> None:
    from datetime import UTC, datetime

    from siaga112_testkit.loadtest.waves import _Measured

    plan = WavePlan(waves=2, size=4)
    # Wave 0: 44 ms in 2 s to an operator, 20 ms in 4 s the rest; the idle 2 ms a second.
    run = _Measured(pid=7, since=datetime(2026, 12, 4, tzinfo=UTC), idle_ms_per_s=2.0,
                    numbers=["0811", "0812"],
                    windows=[(44_000_000, 2.0, 20_000_000, 4.0),
                             (24_000_000, 2.0, 8_000_000, 4.0)],
                    notes=["n"], profile={"a;b": 1})
    report = run.report(plan, [4, 3])
    assert [(w.to_operator_ms, w.rest_ms) for w in report.waves] == [(10.0, 3.0), (5.0, 0.0)]
    assert [w.reached for w in report.waves] == [4, 3]
    assert report.measured == [report.waves[0]] and not report.clean
    assert (report.daemon_pid, report.size, report.notes, report.profile) == (
        7, 4, ["n"], {"a;b": 1})
    with pytest.raises(ValueError):  # a wave without its count of who reached an operator
        run.report(plan, [4])
