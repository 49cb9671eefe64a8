"""`orchestrate.py start --executor ray` end to end: the real orchestrator as a process, its workers as
jobs on the session's real 3-node Ray cluster (the fake claude first on the nodes' PATH), a local
bare repository as the project's git remote.

Each test uses stream ids of its own (the nodes' fake claude reads its behaviour per stream id from
the session's plan) and waits on what the orchestrator and the cluster report, never on the clock.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.ray.conftest import processes_mentioning
from tests.ray.helpers import client, unique, wait_for
from tests.support import taskdb
from tests.support.project import Project

pytestmark = pytest.mark.timeout(420)


def ray_project(tmp_path: Path, cluster, streams, **settings) -> Project:
    """A git project whose remote is a local bare repository, its tracker holding `streams`
    [(id, dependencies)], set up to run on the cluster (the executor chosen by `start --executor`)."""
    project = Project.create_git(tmp_path, {"ray_address": cluster.address, "stop_grace": 3,
                                                # the nodes run as root: no permission skipping there
                                                "worker_command": "claude --print -p", **settings})
    remote = tmp_path / "remote.git"
    project.git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    project.git("remote", "add", "origin", str(remote))
    project.git("push", "-q", "origin", "main")
    project.env.update(cluster.environ)
    taskdb.build_from_spec(project.db, {"streams": [{"id": sid, "deps": deps} for sid, deps in streams]})
    return project


def run_start(project: Project, *args: str, limit: float = 100) -> subprocess.CompletedProcess:
    """`orchestrate.py start ARGS` to its end; a run that hangs is failed with every thread's stack
    (faulthandler on SIGABRT), the limit only turning a hang into a failure."""
    env = {**project.env, "PYTHONFAULTHANDLER": "1"}
    process = subprocess.Popen(project.command("start", *args), env=env, cwd=project.root, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, err = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        out, err = process.communicate()
        raise AssertionError(f"start did not end within {limit} s:\n{out}\n{err}") from None
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def files_on(project: Project, ref: str) -> set:
    return set(project.git("ls-tree", "-r", "--name-only", ref).split())


def statuses(project: Project) -> dict:
    import sqlite3

    with sqlite3.connect(project.db) as db:
        rows = db.execute("SELECT json_extract(metadata, '$.streamId'), status FROM tasks").fetchall()
    found: dict = {}
    for sid, status in rows:
        found.setdefault(sid, set()).add(status)
    return found


def our_jobs(cluster, prefix_streams) -> list:
    return [j for j in client(cluster).jobs() if j.metadata.get("orchestrate_stream") in prefix_streams]


def test_a_graph_runs_on_the_cluster_and_merges_in_order(ray_cluster, tmp_path):
    a, b, c = unique("A"), unique("B"), unique("C")
    project = ray_project(tmp_path, ray_cluster, [(a, []), (b, [a]), (c, [a, b])])
    for sid in (a, b):
        ray_cluster.set_behaviour(sid, "write")
    ray_cluster.set_behaviour(c, f"require:{a},{b}")  # fails unless A's and B's work is in its checkout

    result = run_start(project, "--executor", "ray")

    assert result.returncode == 0, result.stdout + result.stderr
    run = project.status()["run"]
    branch = run["integration_branch"]
    assert {f"{a}.txt", f"{b}.txt"} <= files_on(project, branch)
    merges = project.git("log", "--merges", "--format=%s", f"{run['base']}..{branch}").splitlines()
    assert [m.split(" (")[0] for m in merges] == [f"Merge stream {s}" for s in (c, b, a)]  # newest first
    assert statuses(project) == {a: {"completed"}, b: {"completed"}, c: {"completed"}}
    starts = [e for e in ray_cluster.fake_events() if e.get("stream") in (a, b, c) and e["event"] == "start"]
    assert sorted(e["stream"] for e in starts) == sorted((a, b, c))  # each once: none retried, none twice
    assert all(e["cwd"] != str(project.root) and ".claude/worktrees" not in e["cwd"] for e in starts)  # on nodes
    log = (project.home / "logs" / f"{a}.log").read_text()
    assert "=== orchestrate-kit:" in log and '"kind": "result"' in log  # the job's log copied here
    assert not our_jobs(ray_cluster, (a, b, c))  # every job deleted once its work was back
    assert not list((project.root / ".git" / "orchestrate-kit").glob("*/state/ray/jobs/*.json"))
