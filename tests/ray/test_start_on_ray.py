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

from tests.ray.helpers import client, unique, wait_for, wait_status
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
    return finish(process, limit)


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



def assert_merged_complete_and_gone(project, cluster, sid):
    """The stream's file is on the integration branch, its tasks complete, its jobs gone from Ray."""
    assert f"{sid}.txt" in files_on(project, project.status()["run"]["integration_branch"])
    assert statuses(project) == {sid: {"completed"}}
    assert not our_jobs(cluster, (sid,))

def test_a_graph_runs_on_the_cluster_and_merges_in_order(ray_cluster, tmp_path):
    a, b, c = unique("A"), unique("B"), unique("C")
    project = ray_project(tmp_path, ray_cluster, [(a, []), (b, [a]), (c, [a, b])])
    for sid in (a, b):
        ray_cluster.set_behaviour(sid, "write")
    ray_cluster.set_behaviour(c, f"require:{a},{b}")  # fails unless A's and B's work is in its checkout
    trace = tmp_path / "ray-trace.jsonl"
    project.env["ORCHESTRATE_RAY_TRACE"] = str(trace)

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
    assert [stream_row(project, s)["cost_usd"] for s in (a, b, c)] == [pytest.approx(0.05)] * 3  # as local: from its output
    log = (project.home / "logs" / f"{a}.log").read_text()
    assert "=== orchestrate-kit:" in log and '"kind": "result"' in log  # the job's log copied here
    assert not our_jobs(ray_cluster, (a, b, c))  # every job deleted once its work was back
    assert not list((project.root / ".git" / "orchestrate-kit").glob("*/state/ray/jobs/*.json"))
    # Each attempt's way, as the executor traced it: its worker's result line seen (the node's timings
    # in it), Ray's end, the rest of the log copied, its work fetched (by name), reported to the loop.
    steps = [json.loads(line) for line in trace.read_text().splitlines()]
    for sid in (a, b, c):
        mine = [s["step"] for s in steps if s["stream"] == sid]
        assert mine[0] == "submit" and mine[-3:] == ["log_copied", "fetched", "reported"], mine
        assert {"result", "ended"} <= set(mine)
        (result_step,) = [s for s in steps if s["stream"] == sid and s["step"] == "result"]
        assert set(result_step["times"]) == {"entered", "checked_out", "worker_started", "worker_ended", "published"}


def start_process(project: Project, *args: str) -> subprocess.Popen:
    env = {**project.env, "PYTHONFAULTHANDLER": "1"}
    return subprocess.Popen(project.command("start", *args), env=env, cwd=project.root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL, start_new_session=True)


def finish(process: subprocess.Popen, limit: float = 150) -> subprocess.CompletedProcess:
    """The run's end; a hang fails with every thread's stack (the limit only turns a hang into a failure)."""
    try:
        out, err = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        out, err = process.communicate()
        raise AssertionError(f"start did not end within {limit} s:\n{out}\n{err}") from None
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def stream_row(project: Project, sid: str) -> dict:
    return next(s for s in project.status()["streams"] if s["stream_id"] == sid)


def started(cluster, sid: str, attempt: int):
    """The fake claude's start event for that attempt, once it has started on a node."""
    return next((e for e in cluster.fake_events()
                 if e["event"] == "start" and e.get("stream") == sid and e.get("attempt") == attempt), None)


def workers_of(sid: str) -> list:
    """Live processes on this host (every node here) whose environment says they work for stream `sid`."""
    wanted = f"STREAM_ID={sid}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as handle:
                    if wanted in handle.read().split(b"\0"):
                        found.append(int(entry))
            except OSError:
                pass
    return found


def test_adopted_after_a_kill_and_a_worker_killed_on_its_node_is_retried(ray_cluster, tmp_path):
    x = unique("X")
    project = ray_project(tmp_path, ray_cluster, [(x, [])])
    ray_cluster.set_behaviour(x, "hang", "write")  # attempt 1 hangs until killed, attempt 2 works
    first = start_process(project, "--executor", "ray")
    worker = wait_for(lambda: started(ray_cluster, x, 1), "attempt 1 to start on a node")
    node = wait_for(lambda: (stream_row(project, x)["where"] or "").startswith("node ")
                    and stream_row(project, x)["where"], "status to show the node")
    assert "127.0.0.1" in node  # `status` names the node the stream runs on

    os.killpg(first.pid, signal.SIGKILL)  # the orchestrator dies; its job runs on
    first.communicate()
    second = start_process(project, "--executor", "ray")
    wait_for(lambda: stream_row(project, x)["state"] == "running" and project.status()["orchestrator"]["running"],
             "the restarted orchestrator to adopt the job")
    os.kill(worker["pid"], signal.SIGKILL)  # the agent dies on its node: a failed attempt, retried
    result = finish(second)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "adopted" in result.stdout.lower() or "adopt" in result.stdout.lower(), result.stdout
    starts = [e["attempt"] for e in ray_cluster.fake_events() if e["event"] == "start" and e.get("stream") == x]
    assert starts == [1, 2]  # adopted, never submitted twice; retried once
    assert_merged_complete_and_gone(project, ray_cluster, x)


def test_a_lost_node_gives_a_reason_and_the_stream_runs_again_elsewhere(ray_cluster, tmp_path):
    lost = unique("L")
    project = ray_project(tmp_path, ray_cluster, [(lost, [])])
    ray_cluster.set_behaviour(lost, "hang", "write")
    run = start_process(project, "--executor", "ray")
    wait_for(lambda: started(ray_cluster, lost, 1), "attempt 1 to start on a node")
    (job,) = [j for j in our_jobs(ray_cluster, (lost,)) if j.status == "RUNNING"]
    ray_cluster.replace_node(job.node_id)  # its machine is gone (a fresh node takes its place)
    result = finish(run, limit=240)

    assert result.returncode == 0, result.stdout + result.stderr
    log = (project.home / "logs" / f"{lost}.log").read_text()
    assert f"its Ray job {job.submission_id} failed on node" in log, log[-2000:]
    branch = project.status()["run"]["integration_branch"]
    merges = project.git("log", "--merges", "--format=%s", f"main..{branch}").splitlines()
    assert [m.split(" (")[0] for m in merges] == [f"Merge stream {lost}"]  # once: the fenced attempt never
    assert f"{lost}.txt" in files_on(project, branch)
    assert statuses(project) == {lost: {"completed"}}
    wait_for(lambda: not workers_of(lost), "the lost node's worker to end itself")


def test_stop_with_no_orchestrator_ends_its_jobs_and_the_next_start_goes_on(ray_cluster, tmp_path):
    s = unique("S")
    project = ray_project(tmp_path, ray_cluster, [(s, [])])
    ray_cluster.set_behaviour(s, "hang", "write")
    first = start_process(project, "--executor", "ray")
    wait_for(lambda: started(ray_cluster, s, 1), "attempt 1 to start on a node")
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate()

    stopped = project.orchestrate("stop", timeout=120)  # no orchestrator: the Ray records show the job
    assert stopped.returncode == 0 and "Stopped 1 worker group(s)" in stopped.stdout, stopped.stdout + stopped.stderr
    wait_for(lambda: not workers_of(s), "the stopped job's processes to end")
    result = finish(start_process(project, "--executor", "ray"))  # its ended job collected, then attempt 2

    assert result.returncode == 0, result.stdout + result.stderr
    assert [e["attempt"] for e in ray_cluster.fake_events() if e["event"] == "start" and e.get("stream") == s] == [1, 2]
    assert f"{s}.txt" in files_on(project, project.status()["run"]["integration_branch"])
    assert not our_jobs(ray_cluster, (s,))


def test_stop_during_a_run_ends_every_job(ray_cluster, tmp_path):
    p, q = unique("P"), unique("Q")
    project = ray_project(tmp_path, ray_cluster, [(p, []), (q, [])])
    for sid in (p, q):
        ray_cluster.set_behaviour(sid, "spawn-child")  # hangs, and leaves a grandchild of its own
    run = start_process(project, "--executor", "ray")
    wait_for(lambda: started(ray_cluster, p, 1) and started(ray_cluster, q, 1), "both workers to start")

    stopped = project.orchestrate("stop", timeout=120)
    result = finish(run)

    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert result.returncode == 1 and "stopped by request" in result.stdout, result.stdout + result.stderr
    wait_for(lambda: not workers_of(p) and not workers_of(q), "every process of the stopped jobs to end")
    assert not our_jobs(ray_cluster, (p, q))  # each ended, its work fetched, then deleted from Ray
    assert {s["stream_id"]: s["where"] for s in project.status()["streams"]} == {p: None, q: None}
    assert not list((project.root / ".git" / "orchestrate-kit").glob("*/state/ray/jobs/*.json"))


def test_a_cluster_that_refuses_or_a_node_that_is_not_ready_starts_nothing(ray_cluster, tmp_path):
    n = unique("N")
    project = ray_project(tmp_path, ray_cluster, [(n, [])])
    project.configure(ray_address=ray_cluster.address, executor="ray", worker_command="claude --print -p")
    checked = project.orchestrate("preflight", "--json")  # what `orchestrate-kit doctor` asks
    report = json.loads(checked.stdout)
    assert checked.returncode == 0 and report["executor"] == "ray" and report["problems"] == [], checked.stdout
    assert any("advertise agent_slot" in c["message"] for c in report["cluster"]), report
    wrong = project.orchestrate("start", "--executor", "ray", env={**project.env, "RAY_AUTH_TOKEN": "0" * 32})
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr, wrong.stderr
    assert "token" in wrong.stderr.lower() and "nothing was started" in wrong.stderr, wrong.stderr

    if os.geteuid() == 0:  # as root Claude Code refuses to skip permissions: the probe job finds it on the node
        project.configure(ray_address=ray_cluster.address, worker_command="claude --print --dangerously-skip-permissions -p")
        refused = project.orchestrate("start", "--executor", "ray", timeout=240)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
        assert "the worker command is not ready on the cluster's node 127.0.0.1" in refused.stderr, refused.stderr
    assert not ray_cluster.fake_events() or not started(ray_cluster, n, 1)
    assert project.git("branch", "--list", "orchestrate/*") == ""  # nothing of a run was made
    assert not our_jobs(ray_cluster, (n,))


def journal(project: Project, sid: str) -> list:
    """The run's journal events for stream `sid` (every run of this project: one here)."""
    found = []
    for path in (project.root / ".git" / "orchestrate-kit").glob("*/state/journal/*.jsonl"):
        found += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in found if e.get("stream") == sid]


def starts_of(cluster, sid: str) -> list:
    return [e for e in cluster.fake_events() if e["event"] == "start" and e.get("stream") == sid]


def node_cache_of(cluster, event: dict, caches) -> str:
    """The node cache (one per node) the fake claude ran under: which node it ran on."""
    (cache,) = [c for c in caches if event["cwd"].startswith(c + os.sep)]
    return cache


def option(argv: list, name: str):
    return next((a.split("=", 1)[1] for a in argv if a.startswith(name + "=")), None)


def test_a_usage_limit_pauses_the_run_and_the_session_resumes_on_its_node(ray_cluster, tmp_path):
    u = unique("U")
    project = ray_project(tmp_path, ray_cluster, [(u, [])])
    ray_cluster.set_behaviour(u, "limit-unix", "write")  # resets a few seconds ahead; the resumed session works
    caches = [n["cache"] for n in ray_cluster.nodes]

    result = run_start(project, "--executor", "ray", "--max-restarts", "0")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "usage limit hit by" in result.stdout, result.stdout
    first, resumed = starts_of(ray_cluster, u)
    session = option(first["argv"], "--session-id")
    assert session and option(resumed["argv"], "--resume") == session  # its own session carried on
    assert node_cache_of(ray_cluster, resumed, caches) == node_cache_of(ray_cluster, first, caches)  # on its node
    assert resumed["cwd"] == first["cwd"]  # in the folder it began in: Claude Code finds a session by its folder
    events = journal(project, u)
    # Seen in its output as it came and again at its exit (even when its end came after the reset): said once.
    assert len([e["until"] for e in events if e["kind"] == "usage_limit"]) == 1
    assert result.stdout.count("usage limit hit by") == 1
    assert [(e["attempt"], e["resume"]) for e in events if e["kind"] == "attempt_started"] == [(1, False), (1, True)]
    assert [e["ending"] for e in events if e["kind"] == "attempt_ended"] == ["usage_limit", "exit"]
    assert stream_row(project, u)["attempts"] == 1  # the limit spent no attempt
    assert_merged_complete_and_gone(project, ray_cluster, u)


def test_a_paused_session_whose_node_is_gone_starts_afresh_on_another_node(ray_cluster, tmp_path):
    g = unique("G")
    project = ray_project(tmp_path, ray_cluster, [(g, [])])
    # Attempt 1 hits the limit and hangs (its node is lost while the run is paused); started again
    # afresh at the same step, it writes its file and completes.
    ray_cluster.set_behaviour(g, "limit-hang|write")
    caches = [n["cache"] for n in ray_cluster.nodes]
    run = start_process(project, "--executor", "ray", "--max-restarts", "0")
    log = project.home / "logs" / f"{g}.log"
    wait_for(lambda: any(e["kind"] == "usage_limit" for e in journal(project, g))
             and log.exists() and '"type":"result"' in log.read_text(), "the run to pause on the worker's limit")
    (job,) = [j for j in our_jobs(ray_cluster, (g,)) if j.status == "RUNNING"]
    lost = ray_cluster.node_of(job.node_id)["cache"]
    ray_cluster.replace_node(job.node_id)  # the node holding the session is gone while the run is paused
    result = finish(run, limit=240)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "is gone; starting a new session elsewhere" in result.stderr + result.stdout
    first, again = starts_of(ray_cluster, g)
    assert node_cache_of(ray_cluster, first, caches) == lost
    assert option(again["argv"], "--resume") is None and option(again["argv"], "--session-id") not in (
        None, option(first["argv"], "--session-id"))  # a new session, not the lost one
    assert not again["cwd"].startswith(lost + os.sep)  # on another node
    assert [e["ending"] for e in journal(project, g) if e["kind"] == "attempt_ended"] == ["usage_limit", "exit"]
    assert_merged_complete_and_gone(project, ray_cluster, g)
    wait_for(lambda: not workers_of(g), "the lost node's worker to end itself")


def test_a_job_no_node_takes_shows_pending_then_is_a_failed_attempt_with_its_reason(ray_cluster, tmp_path):
    w = unique("W")
    api = client(ray_cluster)
    holders = []  # every agent slot taken by a job of the test's own: ours can be placed nowhere
    project = ray_project(tmp_path, ray_cluster, [(w, [])], ray_pending_timeout=0.05)  # 3 s
    try:
        for node in [n for n in api.nodes() if n.alive and n.slots > 0]:
            holders.append(unique("hold"))
            api.submit({"submission_id": holders[-1], "entrypoint": "sleep 600",
                        "entrypoint_resources": {"agent_slot": node.slots}, "entrypoint_label_selector":
                        {"ray.io/node-id": node.node_id}})
        for sid in holders:
            wait_status(api, sid, ["RUNNING"])
        run = start_process(project, "--executor", "ray", "--no-preflight", "--max-restarts", "0")
        wait_for(lambda: stream_row(project, w)["where"] == "Ray job, waiting for a node", "status to show it pending")
        result = finish(run)
    finally:
        for sid in holders:
            api.stop(sid)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "no node took its Ray job within 0.05 min (ray_pending_timeout): waiting for a free agent slot" \
        in result.stdout, result.stdout
    (ended,) = [e for e in journal(project, w) if e["kind"] == "attempt_ended"]
    assert ended["attempt"] == 1 and not ended["complete"]
    assert not starts_of(ray_cluster, w)  # it never ran anywhere
    for job in our_jobs(ray_cluster, (w,)):  # stopped; Ray keeps a stopped job that never started pending a while
        assert job.status in ("STOPPED", "PENDING"), job
    for sid in holders:
        wait_status(api, sid, ["STOPPED"])
        api.delete(sid)
