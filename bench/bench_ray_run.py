"""The 3-level x 8-wide layered run through `orchestrate.py start`: local workers, then Ray jobs.

The same graph, the same fake claude (each worker 1 s), the installed defaults (worktree
isolation, pacing, the preflight); the second row set changes `executor = ray` (its name says so):
every attempt a job on a local cluster of a head and two worker nodes of 12 agent slots each
(tests/ray/cluster.py, token auth on, the nodes "inside a sandbox" as the local project is, so the
installed worker command passes the root check on both). Figures: makespan, overhead over the
critical path (the sum over levels of each level's longest worker, counted from the worker's own
start, so Ray's submit, runtime-env set-up and the node's fetch and worktree are overhead) and
per level, the dispatch from a dependency's end to the dependent's worker start, and the
orchestrator's CPU (it tails 8 job logs at a time and applies their task updates). Medians of
BENCH_RAY_ROUNDS (default 2: a Ray round takes about a minute here). Skipped where Ray is not
installed.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_orchestrator import WORKER_SECONDS, _most_at_once, layered, watch_usage  # noqa: E402
from bench.installed import changes, installed_project  # noqa: E402
from tests.ray.conftest import RAY_MISSING, start_cluster, stop_cluster  # noqa: E402
from tests.ray.helpers import client  # noqa: E402
from tests.support import taskdb  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_RAY_ROUNDS", "2"))


def _events(path: Path) -> List[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class _Submits(threading.Thread):
    """Ray's word on when it took each of our jobs' submits (a job listing every 0.2 s while the run lasts)."""

    def __init__(self, cluster, proc, tag: str):
        super().__init__(daemon=True)
        self.api, self.proc, self.tag, self.times = client(cluster), proc, tag, {}

    def run(self) -> None:
        while self.proc.poll() is None:
            try:
                for job in self.api.jobs():
                    stream = job.metadata.get("orchestrate_stream", "")
                    if stream.startswith(self.tag) and job.start_time and stream[len(self.tag):] not in self.times:
                        self.times[stream[len(self.tag):]] = job.start_time
            except Exception:  # the bench measures; a missed listing is only a missed sample
                pass
            time.sleep(0.2)


def _round(events: Path, cluster=None) -> Dict[str, float]:
    levels, deps = layered()
    changed = {"executor": "ray", "ray_address": cluster.address} if cluster else {}
    with tempfile.TemporaryDirectory() as tmp:
        project = installed_project(Path(tmp), **changed)
        project.env["FAKE_CLAUDE_DELAY"] = str(WORKER_SECONDS)
        if cluster:
            project.env.update(cluster.environ)
            remote = Path(tmp) / "remote.git"
            project.git("init", "-q", "--bare", str(remote), cwd=Path(tmp))
            project.git("remote", "add", "origin", str(remote))
            project.git("push", "-q", "origin", "HEAD")
        taskdb.make_db(project.db)
        tag = f"r{time.monotonic_ns() % 10**8}-"  # the nodes' events file is shared by the rounds
        for level in levels:
            for sid in level:
                taskdb.add_stream(project.db, tag + sid, [tag + d for d in deps.get(sid, [])], 1)
        started = time.monotonic()
        proc = project.start_background()
        submitted = _Submits(cluster, proc, tag) if cluster else None
        if submitted is not None:
            submitted.start()
        cpu, _peak = watch_usage(proc)
        if submitted is not None:
            submitted.join()
        makespan = time.monotonic() - started
        if proc.returncode != 0:
            raise RuntimeError(proc.stdout.read() + proc.stderr.read())
        rows = _events(events if cluster else project.events_file)
        starts = {e["stream"][len(tag):]: e.get("proc_start") or e["time"] for e in rows
                  if e["event"] == "start" and e["stream"].startswith(tag)}
        ends = {e["stream"][len(tag):]: e["time"] for e in rows if e["event"] == "end" and e["stream"].startswith(tag)}
    queued: Dict[str, float] = {}
    if submitted is not None:  # Ray's start_time is when it took the submit; the worker's own start after it
        queued = {s: starts[s] - t for s, t in submitted.times.items() if s in starts}
    critical = sum(max(ends[s] - starts[s] for s in level) for level in levels)
    dispatch = [starts[s] - max(ends[d] for d in deps[s]) for level in levels[1:] for s in level]
    return {"makespan": makespan, "overhead": makespan - critical, "cpu": cpu,
            "dispatch": statistics.median(dispatch), "at_once": _most_at_once(starts, ends),
            **({"queued": statistics.median(queued.values())} if queued else {})}


def _rows(label: str, results: List[Dict[str, float]]) -> List[Tuple[str, str]]:
    overhead = statistics.median(r["overhead"] for r in results)
    return [
        (f"{label}: makespan (median of {len(results)})", f"{statistics.median(r['makespan'] for r in results):.2f} s"),
        (f"{label}: overhead over critical path", f"{overhead:.2f} s ({overhead / 3:.2f} s per level)"),
        (f"{label}: dispatch (median)", f"{statistics.median(r['dispatch'] for r in results):.2f} s"),
        (f"{label}: most workers at once", f"{max(r['at_once'] for r in results)}"),
        (f"{label}: orchestrator CPU", f"{statistics.median(r['cpu'] for r in results):.2f} s"),
    ] + ([(f"{label}: Ray took the submit -> worker running (median)",
           f"{statistics.median(r['queued'] for r in results):.2f} s")] if "queued" in results[0] else [])


def run() -> Iterator[Tuple[str, str]]:
    if RAY_MISSING:
        yield "ray run", "skipped: Ray is not installed in this venv (make setup)"
        return
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        events = Path(tmp) / "events.jsonl"
        local = [_round(Path(tmp) / "unused") for _ in range(ROUNDS)]
        yield from _rows("3-level x 8-wide, installed defaults (local)", local)
        cluster = start_cluster(nodes=(12, 12), env={"FAKE_CLAUDE_EVENTS": str(events),
                                                     "FAKE_CLAUDE_DELAY": str(WORKER_SECONDS), "IS_SANDBOX": "1"})
        try:
            ray = [_round(events, cluster) for _ in range(ROUNDS)]
        finally:
            stop_cluster(cluster)
        label = f"3-level x 8-wide{changes(executor='ray')}, 3 nodes"
        yield from _rows(label, ray)
        more = statistics.median(r["overhead"] for r in ray) - statistics.median(r["overhead"] for r in local)
        yield "ray minus local: overhead per level", f"{more / 3:.2f} s (goal < 2 s)"


if __name__ == "__main__":
    for name, figure in run():
        print(f"  {name:58} {figure}")
