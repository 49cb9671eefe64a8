"""Scheduling overhead, dispatch, CPU and memory of the orchestrator, with 1-second fake workers.

Every row runs the installed defaults (bench/installed.py: a git project, so worktrees; pacing; the
preflight); a row that changes a setting or passes a flag says so in its name.

Overhead = makespan - critical path, where the critical path is the sum, level
by level, of the longest worker's own run time (from the fake worker's events).
CPU and peak memory are the orchestrator process's own (children excluded),
sampled from /proc while it runs.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.installed import changes, installed_project  # noqa: E402
from tests.support import taskdb  # noqa: E402

WORKER_SECONDS = 1.0
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def _self_usage(pid: int) -> Tuple[float, int]:
    """(CPU seconds of the process itself, peak resident KiB)."""
    with open(f"/proc/{pid}/stat", "rb") as handle:
        data = handle.read()
    fields = data[data.rindex(b")") + 2:].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime, children excluded
    peak = 0
    with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1])
    return cpu, peak


def watch_usage(proc, interval: float = 0.05) -> Tuple[float, float]:
    """Sample a running process's own CPU and peak memory until it exits; the last sample."""
    cpu = peak = 0.0
    while proc.poll() is None:
        try:
            cpu, peak = _self_usage(proc.pid)
        except (OSError, ValueError):
            pass
        time.sleep(interval)
    return cpu, peak


def _run(levels: List[List[str]], deps: Dict[str, List[str]], *start_args: str, **changed: object) -> Dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        project = installed_project(Path(tmp), **changed)
        project.env["FAKE_CLAUDE_DELAY"] = str(WORKER_SECONDS)
        taskdb.make_db(project.db)
        for level in levels:
            for sid in level:
                taskdb.add_stream(project.db, sid, deps.get(sid, []), 1)
        started = time.monotonic()
        proc = project.start_background(*start_args)
        cpu, peak = watch_usage(proc)
        makespan = time.monotonic() - started
        if proc.returncode != 0:
            raise RuntimeError(proc.stdout.read() + proc.stderr.read())
        # A worker's run time counts from its process creation, so its start-up is not "overhead".
        starts = {e["stream"]: e.get("proc_start") or e["time"] for e in project.events("start")}
        ends = {e["stream"]: e["time"] for e in project.events("end")}
        critical = sum(max(ends[s] - starts[s] for s in level) for level in levels)
        # Dispatch: from the last of a stream's dependencies ending to its own worker's process creation
        # (with worktrees: committing, merging and a worktree for it, plus any pacing).
        dispatch = [starts[s] - max(ends[d] for d in deps[s]) for level in levels[1:] for s in level]
        return {"makespan": makespan, "overhead": makespan - critical, "cpu": cpu, "peak_kib": peak,
                "dispatch": statistics.median(dispatch), "at_once": _most_at_once(starts, ends)}


def _most_at_once(starts: Dict[str, float], ends: Dict[str, float]) -> int:
    moments = sorted([(t, 1) for t in starts.values()] + [(t, -1) for t in ends.values()])
    running = most = 0
    for _, step in moments:
        running += step
        most = max(most, running)
    return most


def chain() -> Tuple[List[List[str]], Dict[str, List[str]]]:
    names = [f"chain-{i}" for i in range(4)]
    return [[n] for n in names], {names[i]: [names[i - 1]] for i in range(1, 4)}


def layered(width: int = 8, depth: int = 3) -> Tuple[List[List[str]], Dict[str, List[str]]]:
    levels = [[f"L{d}-{w}" for w in range(width)] for d in range(depth)]
    deps = {sid: levels[d - 1] for d in range(1, depth) for sid in levels[d]}
    return levels, deps


def _idle_cpu_percent(waiting_streams: int = 0, seconds: float = 10.0) -> float:
    """CPU share of an orchestrator that only watches one long-running worker (and streams waiting on it)."""
    with tempfile.TemporaryDirectory() as tmp:
        project = installed_project(Path(tmp))
        taskdb.make_db(project.db)
        taskdb.add_stream(project.db, "idle", [], 1)
        for i in range(waiting_streams):
            taskdb.add_stream(project.db, f"waiting-{i}", ["idle"], 1)
        project.plan({"idle": ["hang"]})
        proc = project.start_background()
        project.wait_for(lambda: project.events("start"), what="worker start")
        time.sleep(1.0)
        before, _ = _self_usage(proc.pid)
        time.sleep(seconds)
        after, _ = _self_usage(proc.pid)
        project.orchestrate("stop", "--grace", "1")
        proc.wait(timeout=30)
        return 100.0 * (after - before) / seconds


# The system we rebuild (a 30 s database poll), measured the same way: overhead over the critical path.
ORIGINAL = {"4-stream chain": "87 s", "3-level x 8-wide": "58.6 s"}
# The settings the benchmarks before issue 17 ran with, for comparison (each row says what it changes).
OLD_BENCH_SETTINGS = {"isolation": "none", "spawn_gap": 0}


def _rows(label: str, results: List[Dict[str, float]], levels: int) -> List[Tuple[str, str]]:
    overhead = statistics.median(r["overhead"] for r in results)
    return [
        (f"{label}: makespan (median of {len(results)})", f"{statistics.median(r['makespan'] for r in results):.2f} s"),
        (f"{label}: overhead over critical path",
         f"{overhead:.2f} s ({overhead / levels:.2f} s per level)"),
        (f"{label}: dispatch (median)", f"{statistics.median(r['dispatch'] for r in results):.3f} s"),
        (f"{label}: most workers at once", f"{max(r['at_once'] for r in results)}"),
        (f"{label}: orchestrator CPU", f"{statistics.median(r['cpu'] for r in results):.2f} s"),
        (f"{label}: orchestrator peak RSS", f"{max(r['peak_kib'] for r in results) / 1024:.1f} MB (target < 30)"),
    ]


def run() -> List[Tuple[str, str]]:
    rows = []
    for label, (levels, deps) in (("4-stream chain", chain()), ("3-level x 8-wide", layered())):
        rows += _rows(f"{label}, installed defaults", [_run(levels, deps) for _ in range(ROUNDS)], len(levels))
        rows.append((f"{label}: the system we rebuild, overhead", ORIGINAL[label]))
    # The start-up check of the worker command (`claude --version`, `claude auth status`) is paid once
    # per run, not per level: the chain again without it.
    levels, deps = chain()
    rows += _rows("4-stream chain, start --no-preflight", [_run(levels, deps, "--no-preflight") for _ in range(ROUNDS)],
                  len(levels))[:3]
    for label, (levels, deps) in (("4-stream chain", chain()), ("3-level x 8-wide", layered())):
        results = [_run(levels, deps, **OLD_BENCH_SETTINGS) for _ in range(ROUNDS)]
        rows += _rows(f"{label}{changes(**OLD_BENCH_SETTINGS)}", results, len(levels))[:4]
    rows.append(("idle orchestrator CPU (one hung worker, 10 s)", f"{_idle_cpu_percent():.2f} % of a core"))
    rows.append(("idle CPU, 1000 streams waiting on a hung one (10 s)",
                 f"{_idle_cpu_percent(waiting_streams=999):.2f} % of a core"))
    return rows


if __name__ == "__main__":
    for label, figure in run():
        print(f"{label:62} {figure}")
