"""Time of one dashboard frame (`check-streams`) on 10 x 5 to 10,000 x 10 databases, and of `status`.

Streams x tasks per stream, with a realistic mix: a chain of levels (each
stream depends on one of the level before), some streams complete, some half
done, the rest pending. Each figure is the median wall time of several runs of
the real script, as a user runs it (its output captured, so no colours); the
data helper alone (`check_streams_data.py`: Python start-up, one query, the
states) is timed too, so the remainder is bash drawing the frame.
Targets: 0.2 s at 1000 streams, 0.5 s at 10,000, `status` 0.3 s at 10,000, in an installed
project (bench/installed.py: git, the installed settings). The original, with one query per stream,
took 0.20 s, 1.15 s and 17.5 s on these sizes on this machine.
"""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.installed import installed_project  # noqa: E402
from tests.support import taskdb  # noqa: E402

SIZES = ((10, 5), (100, 10), (1000, 10), (10_000, 10))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))
TARGETS = {1000: 0.2, 10_000: 0.5}  # seconds a frame may take (issue 17)
STATUS_AT, STATUS_TARGET = 10_000, 0.3
CREATED = "2026-11-23T00:00:00Z"


def build_database(path: Path, streams: int, tasks: int) -> None:
    """One connection and one executemany: taskdb's one-insert helpers are too slow for 10,000 tasks."""
    taskdb.make_db(path)
    width = max(streams // 10, 1)  # ten levels
    rows = []
    for s in range(streams):
        sid = f"Stream-{s:04d}"
        deps = [f"Stream-{s - width:04d}"] if s >= width else []
        meta = json.dumps({"streamId": sid, "streamName": f"Bench stream {s}", "dependencies": deps})
        done = tasks if s < streams // 4 else (tasks // 2 if s < streams // 2 else 0)
        for t in range(tasks):
            status = "completed" if t < done else "pending"
            rows.append((f"T-{s:04d}-{t:03d}", f"{sid} task {t}", status, meta, CREATED, CREATED))
    with sqlite3.connect(path) as conn:
        conn.executemany("INSERT INTO tasks (id, title, status, metadata, created_at, updated_at) "
                         "VALUES (?, ?, ?, ?, ?, ?)", rows)


def _median_seconds(argv: List[str], env: Dict[str, str], cwd: Path) -> Tuple[float, float]:
    """Median wall time and median CPU time (user + system, the command and its children)."""
    walls, cpus = [], []
    for _ in range(ROUNDS):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, stdin=subprocess.DEVNULL)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stderr.decode(errors='replace')}")
    return statistics.median(walls), statistics.median(cpus)


def measure(streams: int, tasks: int) -> Dict[str, Tuple[float, float]]:
    """(wall, CPU) medians of one check-streams frame, of its data helper alone, and of `status`."""
    with tempfile.TemporaryDirectory() as tmp:
        project = installed_project(Path(tmp))
        build_database(project.db, streams, tasks)
        # python3 is the interpreter, not a version manager's shim: bench/installed.py puts it first on PATH.
        env = {**project.env, "COLUMNS": "100", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # as on a user's machine: `status` runs from cached bytecode
        home, root = project.home, project.root
        figures = {
            "frame": _median_seconds([str(home / "check-streams")], env, root),
            "data": _median_seconds([sys.executable, "-I", "-S", str(home / "check_streams_data.py")], env, root),
        }
        if streams >= STATUS_AT:
            figures["status"] = _median_seconds([sys.executable, str(home / "orchestrate.py"), "status"], env, root)
        return figures


def run() -> List[Tuple[str, str]]:
    # How fast the machine is right now: every frame starts one bash and one Python.
    wall, cpu = _median_seconds([sys.executable, "-I", "-S", "-c", "pass"], dict(os.environ), Path.cwd())
    rows = [("baseline: an empty python3 -I -S start", f"{wall:.3f} s ({cpu:.3f} s CPU)")]
    for streams, tasks in SIZES:
        figures = measure(streams, tasks)
        target = f"; target < {TARGETS[streams]} s" if streams in TARGETS else ""
        frame, frame_cpu = figures["frame"]
        data, data_cpu = figures["data"]
        rows.append((f"dashboard frame, {streams} x {tasks} (median of {ROUNDS})",
                     f"{frame:.3f} s ({frame_cpu:.3f} s CPU{target})"))
        rows.append((f"  of which check_streams_data.py, {streams} x {tasks}", f"{data:.3f} s ({data_cpu:.3f} s CPU)"))
        if "status" in figures:
            status, status_cpu = figures["status"]
            rows.append((f"orchestrate.py status, {streams} x {tasks}",
                         f"{status:.3f} s ({status_cpu:.3f} s CPU; target < {STATUS_TARGET} s)"))
    return rows


if __name__ == "__main__":
    for label, figure in run():
        print(f"{label:55} {figure}")
