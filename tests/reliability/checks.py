"""What the reliability tests count (live, lost and duplicate workers, unfinished streams), their waits and the
soak's random kills."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

from tests.support import taskdb
from tests.support.project import Project, pid_alive

# Four levels, eight streams: two roots, a fan-out, a fan-in and one last integration stream.
LAYERED = {
    "A1": [], "A2": [],
    "B1": ["A1"], "B2": ["A1", "A2"], "B3": ["A2"],
    "C1": ["B1", "B2"], "C2": ["B3"],
    "Z": ["C1", "C2"],
}


WAIT = 120.0  # a deadline for what must happen, never a measured time


def wait_for(proj: Project, predicate, what: str):
    return proj.wait_for(predicate, timeout=WAIT, interval=0.05, what=what)


def killed_at_random(project: Project, rng: random.Random, starts: int, within: Tuple[float, float],
                     timeout: float) -> Iterator[bool]:
    """`start` the run `starts` times, each SIGKILLed at a random moment `within` seconds of its start
    unless it ended first (the soak's kills: a moment, never a wait); after each, whether it was."""
    for _ in range(starts):
        orchestrator = project.start_background()
        time.sleep(rng.uniform(*within))
        killed = orchestrator.poll() is None
        if killed:
            os.kill(orchestrator.pid, signal.SIGKILL)
        orchestrator.communicate(timeout=timeout)
        yield killed


def layered_db(path: Path, tasks: int = 2) -> Path:
    taskdb.make_db(path)
    for sid, deps in LAYERED.items():
        taskdb.add_stream(path, sid, deps, tasks, name=f"stream {sid}")
    return path


def live_fake_workers(project: Project) -> Dict[int, str]:
    """pid -> stream of every fake worker process that is alive now."""
    ended = {e["pid"] for e in project.events("end")}
    return {e["pid"]: e["stream"] for e in project.events("start") if e["pid"] not in ended and pid_alive(e["pid"])}


def lost_workers(project: Project) -> List[str]:
    """Live workers that `status` does not show as their stream's running worker."""
    before = live_fake_workers(project)
    if not before:
        return []
    known = {(s["stream_id"], s["pid"]) for s in project.status()["streams"] if s["pid"]}
    return sorted(f"{sid} (pid {pid})" for pid, sid in before.items()
                  if pid_alive(pid) and (sid, pid) not in known)


def starts_per_stream(project: Project) -> Counter:
    return Counter(e["stream"] for e in project.events("start"))


def unfinished_streams(project: Project) -> List[str]:
    return sorted(sid for sid, state in project.states().items() if state != "complete")
