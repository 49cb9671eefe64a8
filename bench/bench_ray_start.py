"""What a Ray job costs to start, by its runtime_env: eight trivial jobs submitted at once, per variant.

A head and two worker nodes of 12 agent slots each on loopback (tests/ray/cluster.py, token auth on).
Each round submits eight jobs whose entrypoint is `python3 -c pass` (one `agent_slot` each, as an
attempt's job asks) with one runtime_env variant, waits for all to end, and records per job the
submit -> RUNNING (as a listing every 0.1 s sees it) and submit -> SUCCEEDED, and the CPU seconds
the cluster's processes used in the round (every process under the cluster, sampled every 0.05 s,
the workers Ray starts for the jobs included). Variants, alternated round by round so the machine's
load falls on each alike:

    bare         no runtime_env (Ray still gives the job supervisor env_vars of its own)
    env_vars     RAY_JOB_STOP_WAIT_TIME_S only
    attempt      what an attempt sends: env_vars with RAY_JOB_STOP_WAIT_TIME_S and a 6 KB
                 ORCHESTRATE_JOB, and the runtime package in py_modules

Medians over BENCH_ROUNDS rounds (default 3) of each variant. Skipped where Ray is not installed.
"""

from __future__ import annotations

import os
import secrets
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.ray.conftest import RAY_MISSING, start_cluster, stop_cluster  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
JOBS = 8
TICKS = os.sysconf("SC_CLK_TCK")


def _children() -> Dict[int, List[int]]:
    tree: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    fields = handle.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def _cpu_of(pid: int) -> Tuple[int, float]:
    """(start time in ticks, CPU seconds) of one process."""
    with open(f"/proc/{pid}/stat", "rb") as handle:
        fields = handle.read().rsplit(b")", 1)[1].split()
    return int(fields[19]), (int(fields[11]) + int(fields[12])) / TICKS


class _ClusterCpu(threading.Thread):
    """CPU seconds of every process under `root` while it runs (a process's last sample counts)."""

    def __init__(self, root: int):
        super().__init__(daemon=True)
        self.root, self.first, self.last, self.stop = root, {}, {}, threading.Event()
        self.standing: set = set()  # the processes there at the first look (Ray's own, long-lived)
        self.names: Dict[Tuple[int, int], str] = {}  # each process's command line, as last seen
        self.looked = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            tree, todo = _children(), [self.root]
            while todo:
                pid = todo.pop()
                todo.extend(tree.get(pid, []))
                try:
                    key_start, cpu = _cpu_of(pid)
                except (OSError, ValueError, IndexError):
                    continue
                key = (pid, key_start)
                self.first.setdefault(key, cpu)
                self.last[key] = cpu
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as handle:
                        name = handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
                except OSError:
                    name = ""
                if name:  # an exited process not yet reaped reads empty: keep what it was
                    self.names[key] = name
            if not self.looked.is_set():
                self.standing = set(self.last)
                self.looked.set()
            time.sleep(0.05)

    def used(self) -> Tuple[float, float]:
        """(CPU seconds of the processes started since the first look, of the standing ones)."""
        new = sum(self.last[k] for k in self.last if k not in self.standing)
        standing = sum(self.last[k] - self.first[k] for k in self.standing)
        return new, standing

    def by_kind(self) -> Dict[str, float]:
        """CPU seconds of the new processes by what they were last: Ray's worker that ran the job
        supervisor (it began as setup_worker.py, which applies the runtime env, then became it), the
        entrypoint's shell, the entrypoint, anything else."""
        kinds: Dict[str, float] = {}
        for key, used in self.last.items():
            if key in self.standing:
                continue
            name = self.names.get(key, "")
            kind = ("job supervisor (setup_worker, then Ray's worker)" if "JobSupervisor" in name or "setup_worker" in name
                    or "default_worker" in name else "entrypoint's shell" if name.startswith("/bin/sh")
                    else "entrypoint (python3 -c pass)" if "-c pass" in name else "other (the nodes' python3 shims, ...)")
            kinds[kind] = kinds.get(kind, 0.0) + used
        return kinds


def _body(variant: str, run: str, n: int, package: str) -> dict:
    from _orchestrate_kit.executor.ray import jobs
    body = jobs.job_request(run, f"s{n}", 1, "t", "python3 -c pass", {}, 5)
    if variant == "bare":
        body.pop("runtime_env")
    elif variant == "attempt":
        body["runtime_env"]["env_vars"]["ORCHESTRATE_JOB"] = secrets.token_urlsafe(4500)
        body["runtime_env"]["py_modules"] = [package]
    return body


def _round(api, cluster_pid: int, variant: str, package: str) -> Dict[str, float]:
    run = f"start{secrets.token_hex(3)}"
    cpu = _ClusterCpu(cluster_pid)
    cpu.start()
    cpu.looked.wait()
    began = time.monotonic()
    sids = [api.submit(_body(variant, run, n, package)).submission_id for n in range(JOBS)]
    running: Dict[str, float] = {}
    ended: Dict[str, float] = {}
    deadline = began + 600
    while len(ended) < JOBS and time.monotonic() < deadline:
        now = time.monotonic() - began
        for job in api.jobs(run):
            if job.status != "PENDING":
                running.setdefault(job.submission_id, now)
            if job.ended:
                ended.setdefault(job.submission_id, now)
        time.sleep(0.1)
    cpu.stop.set()
    cpu.join()
    took = time.monotonic() - began
    for sid in sids:
        api.delete(sid)
    new, standing = cpu.used()
    return {"running": statistics.median(running.values()), "ended": statistics.median(ended.values()),
            "last_ended": max(ended.values()), "new_cpu": new, "standing_cpu": standing, "seconds": took,
            "kinds": cpu.by_kind()}


def _idle_rate(cluster_pid: int, seconds: float = 10.0) -> float:
    """CPU seconds a second the cluster's standing processes use with no job (its heartbeats, polls)."""
    cpu = _ClusterCpu(cluster_pid)
    cpu.start()
    cpu.looked.wait()
    time.sleep(seconds)
    cpu.stop.set()
    cpu.join()
    return cpu.used()[1] / seconds


def run() -> Iterator[Tuple[str, str]]:
    if RAY_MISSING:
        yield "ray start", "skipped: Ray is not installed in this venv (make setup)"
        return
    from tests.ray.helpers import client
    from _orchestrate_kit.executor.ray import package

    cluster = start_cluster(nodes=(12, 12))
    try:
        api = client(cluster)
        uri = package.ensure_uploaded(api)
        _round(api, cluster.process.pid, "attempt", uri)  # warm: the package unpacked on both nodes
        variants = ("bare", "env_vars", "attempt")
        results: Dict[str, List[Dict[str, float]]] = {v: [] for v in variants}
        for _ in range(ROUNDS):
            for variant in variants:
                results[variant].append(_round(api, cluster.process.pid, variant, uri))
        idle = _idle_rate(cluster.process.pid)
        yield "the idle cluster's own CPU", f"{100 * idle:.0f} % of a core"
        for variant in variants:
            rows = results[variant]
            yield (f"{JOBS} jobs at once, {variant}: submit -> RUNNING / SUCCEEDED (median job)",
                   f"{statistics.median(r['running'] for r in rows):.2f} s / "
                   f"{statistics.median(r['ended'] for r in rows):.2f} s")
            yield (f"{JOBS} jobs at once, {variant}: last job ended", f"{statistics.median(r['last_ended'] for r in rows):.2f} s")
            yield (f"{JOBS} jobs at once, {variant}: CPU per job: its new processes / Ray's standing ones, less idle",
                   f"{statistics.median(r['new_cpu'] for r in rows) / JOBS:.2f} s / "
                   f"{statistics.median(r['standing_cpu'] - idle * r['seconds'] for r in rows) / JOBS:.2f} s")
        rows = [r for v in variants for r in results[v]]
        for kind in sorted({k for r in rows for k in r["kinds"]}):
            yield (f"  CPU per job, every variant: {kind}",
                   f"{statistics.median(r['kinds'].get(kind, 0.0) for r in rows) / JOBS:.2f} s")
    finally:
        stop_cluster(cluster)


if __name__ == "__main__":
    print(f"load average {os.getloadavg()[0]:.1f}")
    for label, figure in run():
        print(f"  {label:70} {figure}")
    print(f"load average {os.getloadavg()[0]:.1f}")
