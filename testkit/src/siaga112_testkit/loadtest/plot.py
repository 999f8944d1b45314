"""The report as a picture: offered load, answered calls, queue length and answer latency over
the run's seconds, one column per report (a bench puts its two paths side by side)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from siaga112_testkit.loadtest.report import LoadReport


def plot_reports(reports: Sequence[LoadReport], path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display: a file only
    import matplotlib.pyplot as plt

    if not reports:
        raise ValueError("plot_reports needs at least one report")
    fig, axes = plt.subplots(3, len(reports), figsize=(6 * len(reports), 8), squeeze=False,
                             sharex="col")
    for col, r in enumerate(reports):
        t = [p.t for p in r.timeline]
        top, mid, low = axes[0][col], axes[1][col], axes[2][col]
        top.plot(t, [p.offered for p in r.timeline], label="offered /s")
        top.plot(t, [p.answered for p in r.timeline], label="answered /s")
        top.plot(t, [p.failed for p in r.timeline], label="failed /s", color="red")
        top.set_title(f"{r.name} ({r.path})")
        top.set_ylabel("calls per second")
        top.legend(loc="upper right", fontsize="small")
        queue = [(p.t, p.queue) for p in r.timeline if p.queue is not None]
        if queue:
            mid.step([q[0] for q in queue], [q[1] for q in queue], where="post",
                     label="queue (daemon)")
        mid.set_ylabel("callers waiting")
        if not queue:
            mid.text(0.5, 0.5, "no queue samples (app_queue path)", ha="center",
                     transform=mid.transAxes, fontsize="small")
        lat = [(p.t, p.latency_ms) for p in r.timeline if p.latency_ms is not None]
        low.plot([x[0] for x in lat], [x[1] for x in lat], marker=".", linestyle="-")
        low.set_ylabel("INVITE->200 ms (median)")
        low.set_xlabel("seconds from start")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
