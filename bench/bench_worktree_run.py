"""The hand-off with the real orchestrator: a dependency's worker ends -> its dependent's worker runs.

A 4-stream chain of fake workers (each writes a file in its folder), in a small git repository,
with the installed defaults (worktree isolation: commit, merge, worktree for the next stream; the
spawn gap and the preflight), then with `spawn_gap = 0`, then also `isolation = none` (each row
says what it changes).
Each hand-off is the dependent worker's process creation minus the dependency worker's last
event; the median over the chain's 3 hand-offs and the rounds.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.installed import changes, installed_project  # noqa: E402
from tests.support import taskdb  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CHAIN = [f"chain-{i}" for i in range(4)]


def _handoffs(**changed: object) -> List[float]:
    with tempfile.TemporaryDirectory() as tmp:
        project = installed_project(Path(tmp), **changed)
        taskdb.make_db(project.db)
        for i, sid in enumerate(CHAIN):
            taskdb.add_stream(project.db, sid, CHAIN[i - 1:i], 1)
        project.plan({sid: ["write"] for sid in CHAIN})
        result = project.orchestrate("start", timeout=300)
        if result.returncode != 0:
            raise RuntimeError(result.stdout + result.stderr)
        starts = {e["stream"]: e.get("proc_start") or e["time"] for e in project.events("start")}
        ends = {e["stream"]: e["time"] for e in project.events("end")}
        return [starts[CHAIN[i + 1]] - ends[CHAIN[i]] for i in range(len(CHAIN) - 1)]


# The installed defaults, then without the pacing (the worktree steps alone), then without worktrees.
ROWS = ({}, {"spawn_gap": 0}, {"spawn_gap": 0, "isolation": "none"})


def run() -> List[Tuple[str, str]]:
    rows = []
    for changed in ROWS:
        values = [v for _ in range(ROUNDS) for v in _handoffs(**changed)]
        name = "installed defaults (worktrees)" if not changed else changes(**changed)[2:]
        rows.append((f"hand-off, {name} (median of {len(values)})",
                     f"{statistics.median(values) * 1000:.0f} ms (max {max(values) * 1000:.0f} ms)"))
    return rows


if __name__ == "__main__":
    for label, figure in run():
        print(f"{label:55} {figure}")
