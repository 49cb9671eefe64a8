"""Scheduling overhead, CPU and memory of the orchestrator, with 1-second fake workers.

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

from tests.support import taskdb  # noqa: E402
from tests.support.project import Project  # noqa: E402

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


def _run(levels: List[List[str]], deps: Dict[str, List[str]], *start_args: str) -> Dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        project = Project.create(Path(tmp))
        project.env["FAKE_CLAUDE_DELAY"] = str(WORKER_SECONDS)
        project.configure(poll_interval=1)
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
        return {"makespan": makespan, "overhead": makespan - critical, "cpu": cpu, "peak_kib": peak}


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
        project = Project.create(Path(tmp))
        project.configure(poll_interval=1)
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


def run() -> List[Tuple[str, str]]:
    rows = []
    for label, (levels, deps) in (("4-stream chain", chain()), ("3-level x 8-wide", layered())):
        results = [_run(levels, deps) for _ in range(ROUNDS)]
        overhead = statistics.median(r["overhead"] for r in results)
        rows.append((f"{label}: makespan (median of {ROUNDS})",
                     f"{statistics.median(r['makespan'] for r in results):.2f} s"))
        rows.append((f"{label}: overhead over critical path",
                     f"{overhead:.2f} s ({overhead / len(levels):.2f} s per level; target < 0.5)"))
        rows.append((f"{label}: orchestrator CPU", f"{statistics.median(r['cpu'] for r in results):.2f} s"))
        rows.append((f"{label}: orchestrator peak RSS",
                     f"{max(r['peak_kib'] for r in results) / 1024:.1f} MB (target < 30)"))
    # The start-up check of the worker command (`claude --version`, `claude auth status`) is paid once
    # per run, not per level: the chain again without it shows the scheduling overhead alone.
    levels, deps = chain()
    results = [_run(levels, deps, "--no-preflight") for _ in range(ROUNDS)]
    overhead = statistics.median(r["overhead"] for r in results)
    rows.append(("4-stream chain, --no-preflight: overhead over critical path",
                 f"{overhead:.2f} s ({overhead / len(levels):.2f} s per level)"))
    rows.append(("idle orchestrator CPU (one hung worker, 10 s)", f"{_idle_cpu_percent():.2f} % of a core"))
    rows.append(("idle CPU, 1000 streams waiting on a hung one (10 s)",
                 f"{_idle_cpu_percent(waiting_streams=999):.2f} % of a core"))
    return rows


if __name__ == "__main__":
    for label, figure in run():
        print(f"{label:55} {figure}")
