"""Where a process's CPU goes, by part of the call: a CPU-time sampler, its folded stacks, the
parts they add up to, and a flame graph.

py-spy samples a thread that is running *or waiting to run*: on this 2-core VM under load a
process waits for a core a good part of the time, and the wait shows up at whatever it last
did (a write that woke Asterisk: measured as a tenth of the daemon's samples). This sampler
counts CPU time only: `ITIMER_PROF` sends SIGPROF every `interval` seconds of the process's
CPU (user and system) as the kernel counts it, and the handler folds the main thread's Python
stack. (On a kernel with tick accounting, this VM's, HZ=250, that is a sample at each 4 ms
tick that finds the process running: the same statistics /proc's CPU times are made of.)
What the loop does in C (uvloop, the kernel's side of its reads and writes) is counted at the
next Python frame it runs, so the parts below are a fair split of a call's CPU, the frames
within a part less so.

Run a module under it (the bench does, for the daemon and the ARI floor):

    python -m siaga112_testkit.cpuprof OUT.folded siaga112.cli run

SIGUSR2 starts sampling (what came before, such as start-up, is left out), SIGUSR1 stops it
and writes OUT.folded ("frame;frame;frame count" lines, as flamegraph.pl reads them). Neither
signal is used by the daemon or the floor. Sampling costs the signal handler's walk of the
stack, some 20 us a sample (under 1%), and nothing before SIGUSR2.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import html
import os
import runpy
import signal
import sys
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

INTERVAL = 0.002  # seconds of the process's CPU between samples
MAX_DEPTH = 64  # frames kept from the innermost: enough for the daemon's deepest stacks

# The parts of a call, each by the modules it owns; a sample belongs to the innermost frame
# that some part owns (a log line written in a call handler is logging, a JSON parse inside
# the events reader is the events). Samples no part owns are the loop, asyncio and the rest.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("logging", ("structlog/", "siaga112/logs.py")),
    ("MQTT", ("siaga112/notifier.py", "siaga112/mqtt_buffer.py", "siaga112/mqtt_wire.py",
              "siaga112/coalesce.py")),
    ("records", ("siaga112/records/", "asyncpg/", "sqlalchemy/")),
    ("desk", ("siaga112/operators.py", "siaga112/operator_store.py", "siaga112/queue.py",
              "siaga112/holding.py")),
    ("ARI requests", ("siaga112/ari/client.py", "siaga112/ari/socket_rest.py",
                      "aiohttp/_websocket/writer.py", "_request (siaga112_testkit/")),
    ("ARI events in", ("siaga112/ari/events.py", "siaga112/ari/models.py",
                       "aiohttp/client_ws.py", "aiohttp/_websocket/reader",
                       "aiohttp/client_proto.py", "siaga112_testkit/loadtest/floor.py")),
    ("call path", ("siaga112/",)),  # the session, screening, the API's live feed, metrics...
)
# Frames every task runs under (the program's entry, the task keeper): owned by no part.
ROOTS = ("siaga112/cli.py", "siaga112/app.py", "siaga112/supervisor.py",
         "main (siaga112_testkit/", "<module> (", "siaga112_testkit/cpuprof.py")
OTHER = "loop and other"
PART_NAMES = tuple(name for name, _ in PARTS) + (OTHER,)
COLOURS = {"logging": "#b0b0b0", "MQTT": "#e6a23c", "records": "#d9534f", "desk": "#9b59b6",
           "ARI requests": "#3c8dbc", "ARI events in": "#5bc0de", "call path": "#5cb85c",
           OTHER: "#e0e0a0"}


def _label(frame: FrameType) -> str:
    code = frame.f_code
    name = code.co_filename
    for cut in ("site-packages/", "/src/", "/lib/python3"):
        if cut in name:
            name = name.split(cut, 1)[1]
            if cut == "/lib/python3":
                name = name.split("/", 1)[-1]  # "11/asyncio/x.py" -> "asyncio/x.py"
            break
    return f"{code.co_name} ({name}:{frame.f_lineno})".replace(";", ",")


class Sampler:
    """Folds the main thread's stack every `interval` seconds of the process's CPU."""

    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self.counts: collections.Counter[str] = collections.Counter()
        self.running = False

    def _tick(self, signum: int, frame: FrameType | None) -> None:
        names: list[str] = []
        while frame is not None and len(names) < MAX_DEPTH:
            names.append(_label(frame))
            frame = frame.f_back
        names.reverse()
        self.counts[";".join(names)] += 1

    def start(self) -> None:
        self.counts.clear()
        signal.signal(signal.SIGPROF, self._tick)
        signal.setitimer(signal.ITIMER_PROF, self.interval, self.interval)
        self.running = True

    def stop(self) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        self.running = False

    def write(self, path: Path) -> None:
        """The folded stacks, written whole or not at all (a reader never sees half a file)."""
        tmp = path.with_name(path.name + ".part")
        tmp.write_text("".join(f"{stack} {n}\n" for stack, n in self.counts.items()))
        os.replace(tmp, path)


def install(out: Path, sampler: Sampler | None = None) -> Sampler:
    """SIGUSR2 starts `sampler`, SIGUSR1 stops it and writes `out`."""
    sampler = sampler or Sampler()

    def start(signum: int, frame: FrameType | None) -> None:
        out.unlink(missing_ok=True)
        sampler.start()

    def stop(signum: int, frame: FrameType | None) -> None:
        sampler.stop()
        sampler.write(out)

    signal.signal(signal.SIGUSR2, start)
    signal.signal(signal.SIGUSR1, stop)
    return sampler


def read_folded(text: str) -> dict[str, int]:
    """Folded stacks from text; a line that is not "stack count" is an error naming it."""
    counts: dict[str, int] = collections.Counter()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        stack, _, n = line.rstrip().rpartition(" ")
        if not stack or not n.isdigit():
            raise ValueError(f"line {number} is not 'frame;frame count': {line[:80]!r}")
        counts[stack] += int(n)
    return dict(counts)


FLOOR = "siaga112_testkit/loadtest/floor.py"


def part_of(frames: Iterable[str]) -> str:
    stack = list(frames)
    if any(FLOOR in f for f in stack):  # the floor's helpers from the product (bridge names)
        stack = [f for f in stack if FLOOR in f]  # are its conversation, not a call path
    for frame in reversed(stack):
        if any(root in frame for root in ROOTS):
            continue
        for name, owned in PARTS:
            if any(key in frame for key in owned):
                return name
    return OTHER


def parts(folded: Mapping[str, int]) -> dict[str, int]:
    """Samples by part of the call, every part named (0 where none)."""
    out = dict.fromkeys(PART_NAMES, 0)
    for stack, n in folded.items():
        out[part_of(stack.split(";"))] += n
    return out


def parts_line(folded: Mapping[str, int], cpu_ms: float | None) -> str:
    """'ARI events in 2.36 ms (24%), ...': each part's share, in ms a call when cpu_ms (the
    process's CPU a call over the same run) is known."""
    by_part = parts(folded)
    total = sum(by_part.values())
    if not total:
        return "no samples"
    items = []
    for name in PART_NAMES:
        share = by_part[name] / total
        if cpu_ms:
            items.append(f"{name} {cpu_ms * share:.2f} ms ({share:.0%})")
        else:
            items.append(f"{name} {share:.0%}")
    return ", ".join(items) + f"; {total} samples"


def render_svg(folded: Mapping[str, int], title: str, width: int = 1200) -> str:
    """A flame graph (the root at the bottom, a frame as wide as its share of the samples),
    each frame coloured by the part it belongs to; its name and share on hover. Frames
    outside the product (the runner that started it) are cut from the root."""
    root: dict[str, object] = {}
    counts: dict[int, int] = {}
    total = 0

    def child(node: dict[str, object], name: str) -> dict[str, object]:
        got = node.get(name)
        if got is None:
            got = node[name] = {}
        assert isinstance(got, dict)
        return got

    for stack, n in folded.items():
        frames = stack.split(";")
        first = next((i for i, f in enumerate(frames)
                      if "siaga112" in f and "siaga112_testkit/cpuprof.py" not in f), 0)
        node = root
        total += n
        for f in frames[first:]:
            node = child(node, f)
            counts[id(node)] = counts.get(id(node), 0) + n
    bar, pad = 16, 44
    depth = _depth(root)
    height = depth * bar + pad + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="monospace" font-size="11">',
           '<rect width="100%" height="100%" fill="#fff"/>',
           f'<text x="10" y="16" font-size="14">{html.escape(title)}</text>']
    x = 10.0
    for name in PART_NAMES:
        out.append(f'<rect x="{x:.0f}" y="26" width="10" height="10" fill="{COLOURS[name]}"/>'
                   f'<text x="{x + 13:.0f}" y="35">{html.escape(name)}</text>')
        x += 13 + 6.7 * len(name) + 10
    span = width - 20

    def draw(node: dict[str, object], path: list[str], x0: float) -> None:
        for name in sorted(node):
            kid = node[name]
            assert isinstance(kid, dict)
            n = counts[id(kid)]
            w = span * n / total
            if w >= 0.3:
                level = len(path)
                y = height - 30 - (level + 1) * bar
                label = html.escape(name)
                colour = COLOURS[part_of([*path, name])]
                out.append(f'<g><title>{label} ({n} samples, {100 * n / total:.1f}%)</title>'
                           f'<rect x="{x0:.1f}" y="{y}" width="{w:.1f}" height="{bar - 1}" '
                           f'fill="{colour}"/>')
                fits = int(w / 6.7)
                if fits > 3:
                    text = name if len(name) < fits else name[: fits - 1] + "\u2026"
                    out.append(f'<text x="{x0 + 2:.1f}" y="{y + 11}">{html.escape(text)}</text>')
                out.append("</g>")
                draw(kid, [*path, name], x0)
            x0 += w

    if total:
        draw(root, [], 10.0)
    out.append(f'<text x="10" y="{height - 10}">{total} samples of the process\'s CPU time '
               f'(SIGPROF); width: share of its CPU; a frame\'s name and share on hover</text>')
    out.append("</svg>")
    return "\n".join(out)


def _depth(node: dict[str, object]) -> int:
    kids = [k for k in node.values() if isinstance(k, dict)]
    return 1 + max((_depth(k) for k in kids), default=0) if kids else 0


def wrapped(out: Path, module: str, *args: str) -> list[str]:
    """The argv that runs `module` under the sampler, its folded stacks going to `out`."""
    return [sys.executable, "-m", "siaga112_testkit.cpuprof", str(out), module, *args]


@dataclass
class Profile:
    """What sampling() took: the folded stacks, empty when the process wrote none."""

    out: Path
    folded: dict[str, int] = field(default_factory=dict)
    problem: str = ""  # why there is no profile (the process had gone, wrote nothing...)


@contextlib.asynccontextmanager
async def sampling(pid: int, out: Path, wait: float = 5.0) -> AsyncIterator[Profile]:
    """Samples the process `pid` (started with wrapped()) for the block; its folded stacks are
    in the Profile once the block is left. A profile that cannot be taken is a problem noted
    in the Profile, never an error of the run it watches."""
    profile = Profile(out)
    await asyncio.to_thread(out.unlink, missing_ok=True)
    try:
        os.kill(pid, signal.SIGUSR2)
    except OSError as exc:
        profile.problem = f"could not start sampling pid {pid}: {exc}"
    try:
        yield profile
    finally:
        if not profile.problem:
            await _collect(pid, profile, wait)


async def _collect(pid: int, profile: Profile, wait: float) -> None:
    try:
        os.kill(pid, signal.SIGUSR1)
    except OSError as exc:
        profile.problem = f"could not stop sampling pid {pid}: {exc}"
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while not profile.out.exists():
        if loop.time() > deadline:
            profile.problem = f"pid {pid} wrote no profile to {profile.out} within {wait:g} s"
            return
        await asyncio.sleep(0.05)
    try:
        profile.folded = read_folded(profile.out.read_text())
    except (OSError, ValueError) as exc:
        profile.problem = f"{profile.out}: {exc}"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        raise SystemExit("usage: python -m siaga112_testkit.cpuprof OUT.folded MODULE [ARG...]")
    install(Path(args[0]))
    sys.argv = [args[1], *args[2:]]
    runpy.run_module(args[1], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
