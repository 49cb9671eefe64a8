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
BENCH_RAY_ROUNDS (default 2: a Ray round takes about a minute here; BENCH_RAY_LOCAL=0 skips the
local rounds). Each Ray round also splits an attempt's way into steps (STEPS: the executor's trace
in $ORCHESTRATE_RAY_TRACE, the remote worker's timings in its result line, Ray's listing, the
journal), medians over its 24 attempts. Skipped where Ray is not installed.
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

from bench.bench_orchestrator import WORKER_SECONDS, _most_at_once, _self_usage, layered, watch_usage  # noqa: E402
from bench.installed import changes, installed_project  # noqa: E402
from tests.ray.conftest import RAY_MISSING, start_cluster, stop_cluster  # noqa: E402
from tests.ray.helpers import client  # noqa: E402
from tests.support import taskdb  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_RAY_ROUNDS", "2"))
WITH_LOCAL = os.environ.get("BENCH_RAY_LOCAL", "1") != "0"  # 0: the Ray rounds only


def _events(path: Path) -> List[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class _Submits(threading.Thread):
    """Ray's word on each of our jobs (a job listing every 0.2 s while the run lasts): when it took the
    submit (`times`), when a listing first showed it past PENDING (`running`), when Ray says it ended."""

    def __init__(self, cluster, proc, tag: str):
        super().__init__(daemon=True)
        self.api, self.proc, self.tag = client(cluster), proc, tag
        self.times: Dict[str, float] = {}
        self.running: Dict[str, float] = {}
        self.ended: Dict[str, float] = {}

    def run(self) -> None:
        while self.proc.poll() is None:
            try:
                listing = self.api.jobs()
                now = time.time()
                for job in listing:
                    stream = job.metadata.get("orchestrate_stream", "")
                    if not stream.startswith(self.tag):
                        continue
                    name = stream[len(self.tag):]
                    if job.start_time:
                        self.times.setdefault(name, job.start_time)
                    if job.status != "PENDING":
                        self.running.setdefault(name, now)
                    if job.end_time:
                        self.ended.setdefault(name, job.end_time)
            except Exception:  # the bench measures; a missed listing is only a missed sample
                pass
            time.sleep(0.2)


# One attempt's way, step by step: (label, from, to), each a point in _points. Ray's "running" is what a
# listing every 0.2 s saw (up to 0.2 s late); the node's points are the remote worker's own clock (the
# same machine here).
STEPS = (
    ("submit sent -> Ray took it", "submit", "accepted"),
    ("Ray took it -> RUNNING (job supervisor actor, runtime env)", "accepted", "running"),
    ("RUNNING -> the remote worker's python entered", "running", "entered"),
    ("node: fetch + worktree", "entered", "checked_out"),
    ("node: the worker (fake claude)", "worker_started", "worker_ended"),
    ("node: reap, commit, push", "worker_ended", "published"),
    ("pushed -> Ray's end (worktree removed, exit, status)", "published", "ray_ended"),
    ("Ray's end -> the watcher saw it", "ray_ended", "ended"),
    ("the watcher saw it -> the last log lines copied", "ended", "log_copied"),
    ("log copied -> the work fetched (ls-remote, fetch, fast-forward)", "log_copied", "fetched"),
    ("fetched -> reported to the loop (job deleted)", "fetched", "reported"),
    ("reported -> merged", "reported", "merged"),
    ("a level's last merge -> a dependent's attempt started", "deps_merged", "attempt_started"),
    ("attempt started -> submit sent (integration branch pushed)", "attempt_started", "submit"),
    ("submit sent -> worker running (all of Ray's and the node's start)", "submit", "worker_started"),
)


def _points(tmp: Path, project, trace: Path, submitted: "_Submits", tag: str, deps: Dict[str, List[str]]
            ) -> Dict[str, Dict[str, float]]:
    """Each stream's points in time (wall clock): the executor's trace, the remote worker's timings,
    Ray's listing, the journal's attempt start and merge."""
    points: Dict[str, Dict[str, float]] = {}
    for row in _events(trace):
        mine = points.setdefault(row["stream"][len(tag):], {})
        mine.setdefault(row["step"], row["t"])
        mine.update({k: v for k, v in (row.get("times") or {}).items()})
    for name, when in submitted.times.items():
        points.setdefault(name, {})["accepted"] = when
    for name, when in submitted.running.items():
        points.setdefault(name, {})["running"] = when
    for name, when in submitted.ended.items():
        points.setdefault(name, {})["ray_ended"] = when
    for journal in Path(project.root).glob(".git/**/journal/*.jsonl"):
        for row in _events(journal):
            stream = str(row.get("stream", ""))[len(tag):]
            if row.get("kind") == "attempt_started":
                points.setdefault(stream, {}).setdefault("attempt_started", row["t"])
            elif row.get("kind") == "merged":
                points.setdefault(stream, {}).setdefault("merged", row["t"])
    for stream, before in deps.items():
        merged = [points.get(d, {}).get("merged") for d in before]
        if stream in points and all(merged):
            points[stream]["deps_merged"] = max(merged)
    return points


def _steps(points: Dict[str, Dict[str, float]]) -> Dict[str, float]:
    """The median of each step over the streams that have both of its points."""
    found = {}
    for label, start, end in STEPS:
        spans = [p[end] - p[start] for p in points.values() if start in p and end in p]
        if spans:
            found[label] = statistics.median(spans)
    return found


def _round(events: Path, cluster=None) -> Dict[str, float]:
    levels, deps = layered()
    changed = {"executor": "ray", "ray_address": cluster.address} if cluster else {}
    with tempfile.TemporaryDirectory() as tmp:
        project = installed_project(Path(tmp), **changed)
        project.env["FAKE_CLAUDE_DELAY"] = str(WORKER_SECONDS)
        trace = Path(tmp) / "ray-trace.jsonl"
        if cluster:
            project.env.update(cluster.environ)
            project.env["ORCHESTRATE_RAY_TRACE"] = str(trace)
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
        steps = _steps(_points(Path(tmp), project, trace, submitted, tag, deps)) if submitted is not None else {}
    queued: Dict[str, float] = {}
    if submitted is not None:  # Ray's start_time is when it took the submit; the worker's own start after it
        queued = {s: starts[s] - t for s, t in submitted.times.items() if s in starts}
    critical = sum(max(ends[s] - starts[s] for s in level) for level in levels)
    dispatch = [starts[s] - max(ends[d] for d in deps[s]) for level in levels[1:] for s in level]
    return {"makespan": makespan, "overhead": makespan - critical, "cpu": cpu,
            "dispatch": statistics.median(dispatch), "at_once": _most_at_once(starts, ends),
            **({"queued": statistics.median(queued.values())} if queued else {}), "steps": steps}


def _rows(label: str, results: List[Dict[str, float]]) -> List[Tuple[str, str]]:
    overhead = statistics.median(r["overhead"] for r in results)
    return [
        (f"{label}: makespan (median of {len(results)})", f"{statistics.median(r['makespan'] for r in results):.2f} s"),
        (f"{label}: overhead over critical path", f"{overhead:.2f} s ({overhead / 3:.2f} s per level)"),
        (f"{label}: dispatch (median)", f"{statistics.median(r['dispatch'] for r in results):.2f} s"),
        (f"{label}: most workers at once", f"{max(r['at_once'] for r in results)}"),
        (f"{label}: orchestrator CPU", f"{statistics.median(r['cpu'] for r in results):.2f} s"),
    ] + ([(f"{label}: Ray took the submit -> worker running (median)",
           f"{statistics.median(r['queued'] for r in results):.2f} s")] if "queued" in results[0] else []) + [
        (f"  step: {step} (median)", f"{statistics.median(r['steps'][step] for r in results if step in r['steps']):.2f} s")
        for step, _a, _b in STEPS if any(step in r["steps"] for r in results)]


TAILED_JOBS, TAIL_WINDOW = 24, 10.0


def _tailing_cpu_percent(cluster, plan: Path, events: Path) -> float:
    """The orchestrator's CPU share while it only watches: 24 streams, each a hung worker in a Ray job
    of its own, all running (so 24 log tails open and Ray's job listing once a second), over 10 s."""
    with tempfile.TemporaryDirectory() as tmp:
        project = installed_project(Path(tmp), executor="ray", ray_address=cluster.address)
        project.env.update(cluster.environ)
        remote = Path(tmp) / "remote.git"
        project.git("init", "-q", "--bare", str(remote), cwd=Path(tmp))
        project.git("remote", "add", "origin", str(remote))
        project.git("push", "-q", "origin", "HEAD")
        taskdb.make_db(project.db)
        tag = f"t{time.monotonic_ns() % 10**8}-"
        names = [f"{tag}hung-{n}" for n in range(TAILED_JOBS)]
        plan.write_text(json.dumps({name: ["hang"] for name in names}))
        for name in names:
            taskdb.add_stream(project.db, name, [], 1)
        proc = project.start_background()
        try:
            deadline = time.monotonic() + 600
            while len({e["stream"] for e in _events(events) if e["event"] == "start" and e["stream"] in names}) < len(names):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the {TAILED_JOBS} hung workers did not all start")
                time.sleep(0.5)
            time.sleep(2.0)  # the last tails connected
            before, _ = _self_usage(proc.pid)
            time.sleep(TAIL_WINDOW)
            after, _ = _self_usage(proc.pid)
        finally:
            project.orchestrate("stop", "--grace", "1")
            proc.wait(timeout=300)
        return 100.0 * (after - before) / TAIL_WINDOW


def run() -> Iterator[Tuple[str, str]]:
    if RAY_MISSING:
        yield "ray run", "skipped: Ray is not installed in this venv (make setup)"
        return
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        events = Path(tmp) / "events.jsonl"
        local = [_round(Path(tmp) / "unused") for _ in range(ROUNDS if WITH_LOCAL else 0)]
        if local:
            yield from _rows("3-level x 8-wide, installed defaults (local)", local)
        plan = Path(tmp) / "plan.json"
        plan.write_text("{}")
        cluster = start_cluster(nodes=(12, 12), env={"FAKE_CLAUDE_EVENTS": str(events), "FAKE_CLAUDE_PLAN": str(plan),
                                                     "FAKE_CLAUDE_DELAY": str(WORKER_SECONDS), "IS_SANDBOX": "1"})
        try:
            ray = [_round(events, cluster) for _ in range(ROUNDS)]
            tailing = _tailing_cpu_percent(cluster, plan, events)
        finally:
            stop_cluster(cluster)
        label = f"3-level x 8-wide{changes(executor='ray')}, 3 nodes"
        yield from _rows(label, ray)
        if local:
            more = statistics.median(r["overhead"] for r in ray) - statistics.median(r["overhead"] for r in local)
            yield "ray minus local: overhead per level", f"{more / 3:.2f} s (goal < 2 s)"
        yield (f"orchestrator CPU while {TAILED_JOBS} Ray jobs run and are tailed ({TAIL_WINDOW:g} s)",
               f"{tailing:.2f} % of a core (goal < 2 %)")


if __name__ == "__main__":
    print(f"load average {os.getloadavg()[0]:.1f}, process CPU so far {time.process_time():.1f} s")
    for name, figure in run():
        print(f"  {name:58} {figure}", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f}")
