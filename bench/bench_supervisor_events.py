"""The supervisor's CPU while it reads and parses the stream-json output of 20 chatty workers.

20 fake Claude workers each print 10 events a second (assistant messages and tool calls with
their results, as the real CLI prints them) for CHATTER_SECONDS: 200 events/s in total. The
orchestrator follows every log as it grows and parses every line. Its own CPU time (children
excluded) over the run, as a share of one core, is the figure; the goal is under 2 %.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_orchestrator import _self_usage  # noqa: E402
from bench.installed import changes, installed_project  # noqa: E402
from tests.support import taskdb  # noqa: E402

WORKERS = 20
RATE = 10.0  # events a second per worker
CHATTER_SECONDS = float(os.environ.get("BENCH_CHATTER_SECONDS", "20"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
# All 20 at once, so the steady part has them all talking: the installed spawn gap would stagger
# their starts over 38 s. The one setting changed, as the row's name says.
CHANGED = {"spawn_gap": 0}


def _one_run() -> Tuple[float, float, int]:
    """(orchestrator CPU seconds, wall seconds, lines written meanwhile) over the steady part of the
    chatter: from 4 s after the start (every worker running) to 2 s before it ends, so the start-up
    (imports, spawning 20 workers) and the end are not counted."""
    with tempfile.TemporaryDirectory() as tmp:
        project = installed_project(Path(tmp), **CHANGED)
        project.env["FAKE_CLAUDE_CHATTER"] = f"{RATE},{CHATTER_SECONDS}"
        taskdb.make_db(project.db)
        for i in range(WORKERS):
            taskdb.add_stream(project.db, f"S{i:02d}", [], 1)
        proc = project.start_background()
        started = time.monotonic()
        samples = []
        while proc.poll() is None:
            try:
                cpu, _ = _self_usage(proc.pid)
                lines = sum(p.read_bytes().count(b"\n") for p in (project.home / "logs").glob("S*.log"))
                samples.append((time.monotonic() - started, cpu, lines))
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        steady = [s for s in samples if 4.0 <= s[0] <= CHATTER_SECONDS - 2.0]
        (t0, cpu0, lines0), (t1, cpu1, lines1) = steady[0], steady[-1]
        return cpu1 - cpu0, t1 - t0, lines1 - lines0


def run() -> List[Tuple[str, str]]:
    samples = [_one_run() for _ in range(ROUNDS)]
    share = statistics.median(cpu / wall * 100 for cpu, wall, _ in samples)
    rate = statistics.median(lines / wall for _, wall, lines in samples)
    return [(f"{WORKERS} chatty workers{changes(**CHANGED)}: CPU, % of a core",
             f"{share:.2f} % at {rate:.0f} lines/s (median of {ROUNDS})")]


if __name__ == "__main__":
    for label, figure in run():
        print(f"{label:58} {figure}")
