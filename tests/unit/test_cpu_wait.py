"""The take-in's figures: the loop thread's wait for a CPU (schedstat) and the StasisStart's age."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from siaga112.call.cpu_wait import CpuWait, Routed


def test_the_wait_is_the_second_field_of_schedstat(tmp_path: Path) -> None:
    stat = tmp_path / "schedstat"
    stat.write_text("5000 1200 7\n")
    cpu = CpuWait(str(stat))
    assert cpu.waited() == 1200
    stat.write_text("9000 4200 9\n")  # read afresh each time, as the kernel's file is
    assert cpu.waited() == 4200


@pytest.mark.parametrize("content", ["", "5000\n", "5000 abc 1\n"])
def test_a_file_out_of_shape_gives_no_figure_and_is_not_read_again(
        tmp_path: Path, content: str) -> None:
    stat = tmp_path / "schedstat"
    stat.write_text(content)
    cpu = CpuWait(str(stat))
    assert cpu.waited() is None
    stat.write_text("1 2 3\n")
    assert cpu.waited() is None


def test_no_file_no_figure(tmp_path: Path) -> None:
    assert CpuWait(str(tmp_path / "missing")).waited() is None


def test_the_kernel_file_is_read_on_this_machine() -> None:
    cpu = CpuWait()
    first = cpu.waited()
    assert first is not None, "/proc/thread-self/schedstat is not readable here"
    again = cpu.waited()
    assert again is not None and again >= first  # a counter


def test_the_event_age_is_bounded() -> None:
    cpu = CpuWait("/nonexistent")
    now = datetime.now(UTC)
    assert Routed.now(cpu, None).event_age_ms is None
    age = Routed.now(cpu, now - timedelta(seconds=2)).event_age_ms
    assert age is not None and 2000 <= age < 3000
    # A stamp from another day, from the future, or without a zone says nothing about delay.
    assert Routed.now(cpu, now - timedelta(days=2)).event_age_ms is None
    assert Routed.now(cpu, now + timedelta(minutes=5)).event_age_ms is None
    assert Routed.now(cpu, datetime.now()).event_age_ms is None  # noqa: DTZ005
    assert Routed.now(cpu, now).cpu_waited is None
