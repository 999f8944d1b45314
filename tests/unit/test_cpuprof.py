"""The bench's CPU-time sampler (siaga112_testkit/cpuprof.py): what it samples, the parts of a
call it splits the samples into, the flame graph, and a process run under it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from siaga112_testkit import cpuprof

DAEMON_EVENTS = ("main (siaga112/cli.py:205);run (asyncio/runners.py:118);"
                 "_keep (siaga112/supervisor.py:50);run (siaga112/ari/events.py:72);"
                 "parse_event (siaga112/ari/models.py:210);"
                 "validate_json (pydantic/type_adapter.py:466)")
DAEMON_LOG = ("main (siaga112/cli.py:205);run (siaga112/call/session.py:158);"
              "arrive (siaga112/call/arrival.py:66);info (structlog/_native.py:10);"
              "dumps (json/__init__.py:234)")
DAEMON_RECORD = ("main (siaga112/cli.py:205);run (siaga112/records/writer.py:239);"
                 "_do_execute (asyncpg/connection.py:2071)")
DAEMON_CALL = "main (siaga112/cli.py:205);run (siaga112/call/session.py:158)"
DAEMON_LOOP = "main (siaga112/cli.py:205);run (asyncio/runners.py:118)"
FLOOR_REQUEST = ("<module> (siaga112_testkit/loadtest/floor.py:293);"
                 "main (siaga112_testkit/loadtest/floor.py:287);"
                 "_answered (siaga112_testkit/loadtest/floor.py:223);"
                 "_request (siaga112_testkit/loadtest/floor.py:185)")
FLOOR_READ = ("<module> (siaga112_testkit/loadtest/floor.py:293);"
              "main (siaga112_testkit/loadtest/floor.py:287);"
              "run (siaga112_testkit/loadtest/floor.py:149);loads (json/__init__.py:299)")


def test_a_sample_belongs_to_the_innermost_part_that_owns_a_frame() -> None:
    folded = {DAEMON_EVENTS: 5, DAEMON_LOG: 3, DAEMON_RECORD: 2, DAEMON_CALL: 4,
              DAEMON_LOOP: 6, FLOOR_REQUEST: 1, FLOOR_READ: 7}
    assert cpuprof.parts(folded) == {
        "logging": 3,  # a log line written in a call handler is the log's
        "MQTT": 0,
        "records": 2,
        "desk": 0,
        "ARI requests": 1,
        "ARI events in": 5 + 7,  # the JSON read inside the reader is the reader's
        "call path": 4,
        "loop and other": 6,  # the program's entry owns nothing
    }


def test_the_parts_line_gives_ms_a_call_from_the_runs_cpu() -> None:
    line = cpuprof.parts_line({DAEMON_EVENTS: 3, DAEMON_CALL: 1}, cpu_ms=8.0)
    assert "ARI events in 6.00 ms (75%)" in line and "call path 2.00 ms (25%)" in line
    assert line.endswith("; 4 samples")
    assert "ARI events in 75%" in cpuprof.parts_line({DAEMON_EVENTS: 3, DAEMON_CALL: 1}, None)
    assert cpuprof.parts_line({}, 8.0) == "no samples"


def test_folded_text_is_read_back_and_a_bad_line_is_named() -> None:
    assert cpuprof.read_folded(f"{DAEMON_CALL} 3\n\n{DAEMON_CALL} 2\n") == {DAEMON_CALL: 5}
    with pytest.raises(ValueError, match="line 2 is not"):
        cpuprof.read_folded(f"{DAEMON_CALL} 3\nnot a count x\n")


def test_the_flame_graph_is_svg_with_a_frame_per_stack_step_coloured_by_part() -> None:
    svg = cpuprof.render_svg({DAEMON_EVENTS: 5, DAEMON_CALL: 5}, "the daemon & <10/s>")
    root = ET.fromstring(svg)  # well-formed, the title escaped
    ns = {"s": "http://www.w3.org/2000/svg"}
    titles = [t.text or "" for t in root.iterfind(".//s:g/s:title", ns)]
    # the shared root (cli main) once, at full width; both branches under it
    assert titles[0] == "main (siaga112/cli.py:205) (10 samples, 100.0%)"
    assert "parse_event (siaga112/ari/models.py:210) (5 samples, 50.0%)" in titles
    assert "run (siaga112/call/session.py:158) (5 samples, 50.0%)" in titles
    fills = {r.get("fill") for r in root.iterfind(".//s:g/s:rect", ns)}
    assert cpuprof.COLOURS["ARI events in"] in fills and cpuprof.COLOURS["call path"] in fills
    assert "the daemon &amp; &lt;10/s&gt;" in svg


def _busy_until(seconds: float) -> int:
    end = time.process_time() + seconds
    n = 0
    while time.process_time() < end:
        n += 1
    return n


def test_the_sampler_counts_cpu_time_in_the_function_that_spends_it() -> None:
    sampler = cpuprof.Sampler(interval=0.002)
    sampler.start()
    try:
        _busy_until(0.3)
        time.sleep(0.3)  # not CPU: never sampled
    finally:
        sampler.stop()
    total = sum(sampler.counts.values())
    in_busy = sum(n for stack, n in sampler.counts.items() if "_busy_until (" in stack)
    assert total >= 50, sampler.counts  # about 150 in 0.3 s of CPU
    assert in_busy / total > 0.8, sampler.counts
    assert not any("sleep" in stack.rsplit(";", 1)[-1] for stack in sampler.counts)


def test_a_process_run_under_it_is_sampled_between_the_two_signals(tmp_path: Path) -> None:
    (tmp_path / "spin_target.py").write_text(
        "import time\n"
        "def spin():\n"
        "    while True:\n"
        "        sum(range(1000))\n"
        "if __name__ == '__main__':\n"
        "    print('up', flush=True)\n"
        "    spin()\n")
    out = tmp_path / "spin.folded"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen(cpuprof.wrapped(out, "spin_target"), env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "up\n"
        time.sleep(0.2)
        assert not out.exists()  # nothing sampled or written before SIGUSR2
        os.kill(proc.pid, signal.SIGUSR2)
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        folded = cpuprof.read_folded(out.read_text())
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert sum(folded.values()) >= 20, folded
    # the module's own frames under the runner's (cut from the flame graph's root)
    assert all("spin_target.py:7);spin (" in stack for stack in folded), folded
    assert all("main (siaga112_testkit/cpuprof.py" in stack for stack in folded), folded


async def test_sampling_a_process_that_is_gone_is_a_problem_noted_not_an_error(
        tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],  # noqa: ASYNC221
                          capture_output=True, text=True, check=True)
    pid = int(gone.stdout)
    async with cpuprof.sampling(pid, tmp_path / "x.folded") as taken:
        pass
    assert taken.problem.startswith(f"could not start sampling pid {pid}")
    assert taken.folded == {}


def test_what_the_floor_borrows_from_the_product_is_the_floors_conversation() -> None:
    borrowed = ("<module> (siaga112_testkit/loadtest/floor.py:293);"
                "main (siaga112_testkit/loadtest/floor.py:287);"
                "_arrived (siaga112_testkit/loadtest/floor.py:197);"
                "holding_bridge (siaga112/legs.py:58)")
    assert cpuprof.part_of(borrowed.split(";")) == "ARI events in"
    assert cpuprof.part_of(FLOOR_REQUEST.split(";")) == "ARI requests"
