"""The pieces of the Ray executor driven by hand on the real cluster, before the executor class.

A gen-1 project pushed to a local bare remote (the project's git remote), the runtime package
uploaded as `py_modules`, a job whose entrypoint is the remote worker running the fake claude on a
worker node; its log tailed into a local file while the applier writes its task updates to the
real database as they arrive; its refs fetched, the live attempt's accepted. Then a hanging job is
stopped and no process of ours is left on any node.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.ray.helpers import client, unique, wait_for, wait_status
from tests.ray.remote_support import RemoteProject, carriers, git, result_of
from _orchestrate_kit.executor.ray import job as ray_job
from _orchestrate_kit.executor.ray import jobs, package, tail
from _orchestrate_kit.remote import refs

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def runtime_uri(ray_cluster):
    api = client(ray_cluster)
    built = package.build()
    uri = package.ensure_uploaded(api, built)
    assert api.package_exists(built[0])
    assert package.ensure_uploaded(api, built) == uri  # content-addressed: nothing uploaded twice
    return uri


def follow(api, sid, log, applier, limit=180.0):
    """Tail the job, its task updates applied in the tail's thread as lines arrive; the outcomes."""
    outcomes = []
    reader = tail.LogTail(api, sid, log, on_line=lambda line: outcomes.append(applier.feed(line))).start()
    assert reader.done.wait(limit), f"job {sid} did not end: {reader.error}"
    return [o for o in outcomes if o is not None]


def test_a_stream_runs_on_a_node_and_comes_back(ray_cluster, runtime_uri, tmp_path):
    project = RemoteProject.create(tmp_path, "mcp")
    ray_cluster.set_behaviour("Stream-A", "write")
    api = client(ray_cluster)
    run = unique("e2e")
    description = project.describe("Stream-A", run=run)
    body = ray_job.submission(description, runtime_uri, stop_grace=5)
    assert "working_dir" not in body["runtime_env"] and body["entrypoint_resources"] == {"agent_slot": 1.0}
    assert "never-sent" not in json.dumps(body)
    sid = api.submit(body).submission_id
    assert api.submit(body).already  # a retried submit starts nothing
    log = tmp_path / "Stream-A.log"
    applier = project.applier(description, tmp_path / "applied.json")
    outcomes = follow(api, sid, log, applier)

    job = api.info(sid)
    assert (job.status, job.exit_code) == ("SUCCEEDED", 0), log.read_text()[-3000:]
    node = ray_cluster.node_of(job.node_id)
    assert node is not None, "the job ran on the head"
    assert [o.status for o in outcomes] == ["applied"] * 4
    from tests.ray.test_remote_worker import statuses

    assert statuses(project, "Stream-A") == ["completed", "completed"]
    result = result_of(log.read_text())
    assert result["pushed"] and result["branch_pushed"] and result["exit_code"] == 0
    # The node's cache holds the mirror: the project was cloned there, never uploaded.
    assert list(Path(node["cache"]).glob("mirrors/*.git")), "no clone in the node's cache"

    # Fetch and fence: only the live attempt's ref is taken; the stream's files are on stream/Stream-A.
    found = refs.list_attempt_refs(str(project.remote), run, "Stream-A")
    live = refs.live_ref(found, 1, description["token"])
    assert live and live.commit == result["commit"]
    git(project.root, "fetch", "-q", "origin", f"{live.ref}:refs/orchestrate-fetched/Stream-A")
    assert "Stream-A.txt" in git(project.root, "ls-tree", "--name-only", "refs/orchestrate-fetched/Stream-A")
    assert "Stream-A.txt" in project.files_at("refs/heads/stream/Stream-A")
    # The progress ref replayed after the fetch: every update already applied.
    progress = subprocess.run(["git", "show", f"{description['progress_ref']}:{refs.PROGRESS_FILE}"],
                              cwd=project.remote, capture_output=True, text=True, check=True).stdout
    assert {o.status for o in applier.feed_text(progress)} == {"duplicate"}
    assert api.delete(sid)


def test_a_worker_that_leaves_a_daemon_leaves_nothing_after_a_normal_exit(ray_cluster, runtime_uri, tmp_path):
    # Ray ends what a finished job left running only some of the time (test_node_processes.py):
    # the remote worker ends it itself, before the job reads SUCCEEDED.
    project = RemoteProject.create(tmp_path, "mcp")
    ray_cluster.set_behaviour("Stream-Z", "ok-with-daemon")
    api = client(ray_cluster)
    description = project.describe("Stream-Z", run=unique("left"))
    sid = api.submit(ray_job.submission(description, runtime_uri, stop_grace=2)).submission_id
    assert wait_status(api, sid, jobs.TERMINAL).status == "SUCCEEDED"
    assert any(e["event"] == "daemon" and e["token"] == description["token"] for e in ray_cluster.fake_events())
    assert carriers(description["token"]) == []
    reader = tail.LogTail(api, sid, tmp_path / "Stream-Z.log")
    reader._poll_once()
    assert "ended 1 process(es) the worker left running" in (tmp_path / "Stream-Z.log").read_text()
    assert api.delete(sid)


def test_a_hanging_job_is_stopped_and_leaves_nothing_on_any_node(ray_cluster, runtime_uri, tmp_path):
    project = RemoteProject.create(tmp_path, "mcp")
    ray_cluster.set_behaviour("Stream-B", "spawn-daemon")  # hangs, with a daemon outside its group
    api = client(ray_cluster)
    run = unique("hang")
    description = project.describe("Stream-B", run=run, grace=2)
    sid = api.submit(ray_job.submission(description, runtime_uri, stop_grace=2)).submission_id
    token = description["token"]
    wait_status(api, sid, ["RUNNING"])
    wait_for(lambda: any(e["event"] == "daemon" and e["token"] == token for e in ray_cluster.fake_events())
             and len(carriers(token)) >= 2, "the worker and its daemon on the node")
    assert api.stop(sid)
    assert wait_status(api, sid, jobs.TERMINAL).status == "STOPPED"
    # Every node is a set of processes on this host: none may still carry the attempt's token.
    wait_for(lambda: carriers(token) == [], "the node to have nothing of the attempt left", limit=60)
    reader = tail.LogTail(api, sid, tmp_path / "Stream-B.log")
    reader._poll_once()
    result = result_of((tmp_path / "Stream-B.log").read_text())
    assert result["exit_code"] == 143 and result["pushed"]  # what it had is on its attempt ref


def test_the_preflight_runs_as_a_probe_job_on_a_node(ray_cluster, runtime_uri, tmp_path):
    from _orchestrate_kit.remote import preflight

    api = client(ray_cluster)
    run = unique("pre")
    plain = ["claude", "--print", "-p"]
    sid = api.submit(ray_job.preflight_submission(run, "0" * 16, plain, runtime_uri)).submission_id
    assert sid == f"{run}-preflight~1"
    job = wait_status(api, sid, jobs.TERMINAL)
    answer = preflight.parse(api.logs(sid))
    assert job.status == "SUCCEEDED" and ray_cluster.node_of(job.node_id)
    assert answer and answer["preflight"].ok and answer["preflight"].version  # the node's fake claude
    assert answer["preflight"].logged_in is True
    # As root (the nodes here run as root), Claude Code refuses to skip permissions: found on the node.
    skipping = plain[:1] + ["--dangerously-skip-permissions"] + plain[1:]
    sid = api.submit(ray_job.preflight_submission(run, "0" * 16, skipping, runtime_uri, number=2)).submission_id
    job = wait_status(api, sid, jobs.TERMINAL)
    answer = preflight.parse(api.logs(sid))
    if os.geteuid() == 0:
        assert job.status == "FAILED" and [p.check for p in answer["preflight"].problems] == ["root"]
    else:
        assert job.status == "SUCCEEDED" and answer["preflight"].ok
