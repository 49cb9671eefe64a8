"""A node lost mid-stream: what Ray reports, what the remote worker does, and how attempts are fenced.

The node's Ray processes are killed (as when its machine or raylet dies). Ray marks the job ended
while the worker is still running; the remote worker notices its job is gone, ends its own tree
and pushes its work to its attempt's ref only. The next attempt, on another node, pushes its own;
the orchestrator's side (`refs.live_ref`) takes only that one.
"""

from __future__ import annotations


import pytest

from tests.ray.helpers import client, unique, wait_for, wait_status
from tests.ray.remote_support import RemoteProject, carriers, result_of
from tests.ray.test_end_to_end import runtime_uri  # noqa: F401  (the module fixture)
from _orchestrate_kit.executor.ray import job as ray_job
from _orchestrate_kit.executor.ray import jobs, tail
from _orchestrate_kit.remote import refs

pytestmark = pytest.mark.timeout(300)


def test_a_lost_node_fences_its_attempt(ray_cluster, runtime_uri, tmp_path):  # noqa: F811
    project = RemoteProject.create(tmp_path, "mcp")
    ray_cluster.set_behaviour("Stream-C", "hang", "write")  # attempt 1 hangs, attempt 2 works
    api = client(ray_cluster)
    run = unique("lost")
    first = project.describe("Stream-C", attempt=1, run=run, grace=2)
    sid = api.submit(ray_job.submission(first, runtime_uri, stop_grace=2)).submission_id
    job = wait_status(api, sid, ["RUNNING"])
    wait_for(lambda: any(e["event"] == "start" and e["token"] == first["token"] for e in ray_cluster.fake_events()),
             "attempt 1's worker to start")
    assert carriers(first["token"])
    lost = job.node_id
    ray_cluster.replace_node(lost)

    ended = wait_status(api, sid, jobs.TERMINAL, limit=180)
    print(f"Ray's word on the lost node's job: {ended.status} ({ended.message[:200]})")
    assert ended.status == "FAILED"
    # The remote worker outlived its job, ended its tree, and kept the work on its own ref only.
    wait_for(lambda: carriers(first["token"]) == [], "nothing of attempt 1 left", limit=60)
    wait_for(lambda: refs.live_ref(refs.list_attempt_refs(str(project.remote), run, "Stream-C"), 1, first["token"]),
             "attempt 1's late push", limit=60)
    assert "refs/heads/stream/Stream-C" not in project.remote_refs()

    second = project.describe("Stream-C", attempt=2, run=run, grace=2)
    sid2 = api.submit(ray_job.submission(second, runtime_uri, stop_grace=2)).submission_id
    done = wait_status(api, sid2, jobs.TERMINAL, limit=180)
    log = tmp_path / "Stream-C.log"
    tail.LogTail(api, sid2, log)._poll_once()
    assert (done.status, done.exit_code) == ("SUCCEEDED", 0), log.read_text()[-2000:]
    assert done.node_id != lost
    result = result_of(log.read_text())
    assert result["pushed"] and result["branch_pushed"]

    found = refs.list_attempt_refs(str(project.remote), run, "Stream-C")
    assert [r.attempt for r in found] == [1, 2]
    live = refs.live_ref(found, 2, second["token"])
    assert live and live.commit == result["commit"] == project.remote_refs()["refs/heads/stream/Stream-C"]
    assert [r.attempt for r in refs.fenced(found, 2, second["token"])] == [1]
    assert "Stream-C.txt" in project.files_at(live.ref)
