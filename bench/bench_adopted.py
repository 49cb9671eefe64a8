"""300 workers, spawned and adopted: the idle orchestrator's CPU and the time `stop` takes.

300 independent streams whose workers only sleep (`exec sleep 1000`: they end on TERM), all
running at once. Figures, for workers the orchestrator spawned and for the same number adopted
after it was SIGKILLed and started again: its own CPU over 10 s of idling (nothing changes, it only
watches), and `orchestrate.py stop` from the command's start to its exit (the orchestrator gone and
every worker with it). The row changes the settings such a run needs and says so: the worker
command, isolation = none (300 worktrees would measure git), no pacing, stop_grace = 5, no agent
events (the workers print nothing). Medians of BENCH_ROUNDS (default 3).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_orchestrator import _self_usage  # noqa: E402
from bench.installed import changes, installed_project  # noqa: E402
from tests.support import taskdb  # noqa: E402

WORKERS = int(os.environ.get("BENCH_ADOPTED_WORKERS", "300"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
IDLE_SECONDS = 10.0
SETTINGS = dict(isolation="none", spawn_gap=0, stop_grace=5, agent_events="false", max_parallel=0)


def _live_workers(pids: Path) -> int:
    return len(list(pids.glob("*.pid"))) if pids.is_dir() else 0


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _idle_cpu(pid: int) -> float:
    """% of one core the process used over IDLE_SECONDS (after a second to settle)."""
    time.sleep(1.0)
    before, _ = _self_usage(pid)
    time.sleep(IDLE_SECONDS)
    after, _ = _self_usage(pid)
    return 100.0 * (after - before) / IDLE_SECONDS


def _stop_seconds(project, proc: subprocess.Popen, pid_dir: Path) -> Tuple[float, bool]:
    """Seconds from `stop` to the orchestrator and every worker gone; whether `stop` itself said so
    (it gives up, exit 1, when the orchestrator outlives the grace by 10 s)."""
    started = time.monotonic()
    result = project.orchestrate("stop", timeout=180)
    proc.wait(timeout=180)
    _wait(lambda: _live_workers(pid_dir) == 0, 60, "the workers to end")
    return time.monotonic() - started, result.returncode == 0


def one_round() -> Dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        worker = Path(tmp) / "sleeper.sh"
        worker.write_text("#!/bin/sh\nexec sleep 1000\n", encoding="utf-8")
        worker.chmod(0o755)
        project = installed_project(Path(tmp), worker_command=str(worker), **SETTINGS)
        taskdb.make_db(project.db)
        for i in range(WORKERS):
            taskdb.add_stream(project.db, f"S{i:03d}", [], 1)
        figures = {}
        said = Path(tmp) / "orchestrator.out"
        # Spawned: the orchestrator started them.
        proc = _start(project, said)
        pid_dir = _pid_dir(project)
        _wait(lambda: _live_workers(pid_dir()) == WORKERS, 120, f"{WORKERS} workers")
        figures["spawned idle"] = _idle_cpu(proc.pid)
        figures["spawned stop"], figures["spawned stop ok"] = _stop_seconds(project, proc, pid_dir())
        # Adopted: started, the orchestrator SIGKILLed, started again: it adopts them.
        proc = _start(project, said)
        # Every worker told to go (a pid file is written just before: a worker whose orchestrator dies
        # in between never runs, by design, and would not be adopted).
        _wait(lambda: said.read_bytes().count(b"started S") >= WORKERS, 120, f"{WORKERS} workers started")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc = _start(project, said)
        _wait(lambda: said.read_bytes().count(b"adopted running worker") >= WORKERS, 120, "the adoption")
        figures["adopted idle"] = _idle_cpu(proc.pid)
        figures["adopted stop"], figures["adopted stop ok"] = _stop_seconds(project, proc, pid_dir())
        return figures


def _pid_dir(project):
    """The pid files' folder: in a git project under the git directory (settings.Layout)."""
    def find() -> Path:
        for candidate in (project.root / ".git" / "orchestrate-kit").glob("*/pids"):
            return candidate
        return project.home / "pids"
    return find


def _start(project, said: Path) -> subprocess.Popen:
    """`start` as a user runs it in a terminal of its own, its lines into `said` (a new file each time)."""
    with open(said, "wb") as out:
        return subprocess.Popen(project.command("start", "--no-preflight"), env=project.env, cwd=project.root,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def run() -> List[Tuple[str, str]]:
    rounds = [one_round() for _ in range(ROUNDS)]
    label = f"{WORKERS} workers{changes(worker_command='sleep', **SETTINGS)}"
    rows = []
    for kind in ("spawned", "adopted"):
        idle = statistics.median(r[f"{kind} idle"] for r in rounds)
        stop = statistics.median(r[f"{kind} stop"] for r in rounds)
        rows.append((f"{label}: {kind}, idle orchestrator CPU (median of {ROUNDS})", f"{idle:.2f} % of a core"))
        refused = sum(1 for r in rounds if not r[f"{kind} stop ok"])
        said = f" (`stop` gave up waiting in {refused} of {ROUNDS})" if refused else ""
        rows.append((f"{label}: {kind}, `stop` until all is gone (median of {ROUNDS})", f"{stop:.2f} s{said}"))
    return rows


if __name__ == "__main__":
    for row_label, figure in run():
        print(f"{row_label:100} {figure}")
