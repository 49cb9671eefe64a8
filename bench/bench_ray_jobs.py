"""The Ray executor's parts on a local cluster: start-up, submit latency, the remote worker, tailing.

A head and two worker nodes of 12 agent slots each on loopback (tests/ray/cluster.py, token auth
on). Figures: the cluster's start and memory; the runtime package's size and upload; a plain job's
submit -> RUNNING and submit -> SUCCEEDED; the remote worker with the fake claude (one gen-1
stream, one task) from submit to its first task update in the local log and to the job's end; and
the orchestrator side's CPU while 24 log tails (one thread each) copy 24 jobs printing 10 lines a
second. Medians of BENCH_ROUNDS (default 3). Skipped where Ray is not installed.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.ray.conftest import RAY_MISSING, start_cluster, stop_cluster  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
TAILS = 24


def _wait(condition, limit: float = 300.0, step: float = 0.02):
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(step)


def run() -> Iterator[Tuple[str, str]]:
    if RAY_MISSING:
        yield "ray", "skipped: Ray is not installed in this venv (make setup)"
        return
    from tests.ray.helpers import client
    from tests.ray.remote_support import RemoteProject
    from _orchestrate_kit.executor.ray import job as ray_job
    from _orchestrate_kit.executor.ray import jobs, package, tail
    from _orchestrate_kit.remote import protocol

    started = time.monotonic()
    cluster = start_cluster(nodes=(12, 12))
    yield "cluster start (head + 2 nodes), wall", f"{time.monotonic() - started:.1f} s"
    yield "cluster resident memory (shared pages per process)", f"{cluster.started['memory_mb']:.0f} MB"
    try:
        api = client(cluster)
        built = package.build()
        began = time.monotonic()
        uri = package.ensure_uploaded(api, built)
        yield "runtime package (py_modules) size / upload", f"{len(built[1]) / 1024:.0f} KiB / {time.monotonic() - began:.2f} s"

        running, finished = [], []
        for n in range(ROUNDS):
            body = jobs.job_request(f"bench{n}{int(time.time())}", "plain", 1, "t", "echo hi", {}, 5)
            began = time.monotonic()
            sid = api.submit(body).submission_id
            _wait(lambda: api.info(sid).status != "PENDING")
            running.append(time.monotonic() - began)
            _wait(lambda: api.info(sid).ended)
            finished.append(time.monotonic() - began)
        yield "plain job: submit -> RUNNING (median)", f"{statistics.median(running):.2f} s"
        yield "plain job: submit -> SUCCEEDED (median)", f"{statistics.median(finished):.2f} s"

        first_update, ended = [], []
        for n in range(ROUNDS):
            with tempfile.TemporaryDirectory() as tmp:
                project = RemoteProject.create(Path(tmp), "mcp")
                description = project.describe("Stream-A", run=f"benchw{n}{int(time.time())}")
                log = Path(tmp) / "a.log"
                began = time.monotonic()
                sid = api.submit(ray_job.submission(description, uri, stop_grace=5)).submission_id
                reader = tail.LogTail(api, sid, log).start()
                _wait(lambda: log.exists() and protocol.PREFIX.encode() in log.read_bytes())
                first_update.append(time.monotonic() - began)
                reader.done.wait(300)
                ended.append(time.monotonic() - began)
        yield "remote worker: submit -> first task update in the local log", f"{statistics.median(first_update):.2f} s"
        yield "remote worker: submit -> job ended, log complete", f"{statistics.median(ended):.2f} s"

        with tempfile.TemporaryDirectory() as tmp:
            run_id = f"tails{int(time.time())}"
            sids: List[str] = []
            for n in range(TAILS):
                body = jobs.job_request(run_id, f"s{n}", 1, "t",
                                        "for i in $(seq 1 150); do echo \"line $i of a busy agent\"; sleep 0.1; done",
                                        {}, 5)
                sids.append(api.submit(body).submission_id)
            _wait(lambda: all(api.info(s).status != "PENDING" for s in sids), step=0.5)
            readers = [tail.LogTail(api, s, Path(tmp) / f"{s}.log").start() for s in sids]
            cpu, wall = time.process_time(), time.monotonic()
            time.sleep(10)
            cpu, wall = time.process_time() - cpu, time.monotonic() - wall
            yield f"{TAILS} log tails, 10 lines/s each: CPU of the tailing process", f"{100 * cpu / wall:.1f} % of a core"
            for reader in readers:
                reader.stop()
            for s in sids:
                api.stop(s)
    finally:
        stop_cluster(cluster)


if __name__ == "__main__":
    for label, figure in run():
        print(f"{label:64} {figure}")
