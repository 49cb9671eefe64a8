"""The Ray executor's own decisions, without a cluster: how an ended job's status becomes the numbers
the supervisor judges (as a local exit), the pending timeout, and `start --executor ray` refusing with
a clear message where the cluster cannot be used (tests/ray/ runs it on a real cluster)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.runtime import runtime_import  # noqa: F401  (the runtime on sys.path)
from tests.support import taskdb
from _orchestrate_kit.executor import Output
from _orchestrate_kit.executor.ray import executor as ray_executor
from _orchestrate_kit.executor.ray.jobs import JobInfo, NodeInfo
from _orchestrate_kit.executor.ray.records import LEFTOVER, SUBMITTED, JobRecord
from _orchestrate_kit.settings import Layout, Settings


def test_an_ended_job_reads_as_a_local_exit_does():
    ended_of = ray_executor.ended_of
    assert ended_of(JobInfo("j", "SUCCEEDED", exit_code=0)).exit_code == 0
    assert ended_of(JobInfo("j", "FAILED", exit_code=3)).exit_code == 3
    assert ended_of(JobInfo("j", "STOPPED")).signal == signal.SIGTERM
    lost = ended_of(JobInfo("j", "FAILED", message="Job supervisor actor died"))
    assert not lost.known and "node lost" in lost.why and "supervisor actor died" in lost.why


class ScriptedCluster:
    """A JobsClient's surface as the executor uses it, answering from a script; records what it was asked."""

    address = "http://head:8265"

    def __init__(self, listing):
        self.listing = listing
        self.stopped, self.deleted = [], []

    def jobs(self):
        return list(self.listing)

    def nodes(self):
        return [NodeInfo("n1", True, False, {"agent_slot": 1.0}, "10.0.0.7")]

    def stop(self, sid):
        self.stopped.append(sid)
        return True

    def delete(self, sid):
        self.deleted.append(sid)
        return True


def test_a_job_no_node_takes_in_time_is_stopped_and_ends_its_attempt_with_the_reason(tmp_path):
    layout = Layout(tmp_path / "home", tmp_path / "state-root")
    log = tmp_path / "A.log"
    log.write_text("")
    record = JobRecord("run1-A-1", "run1", "A", "A", 1, "t" * 16, time.time() - 120, str(log), "mcp", ("T1",),
                       SUBMITTED)
    pending = JobInfo("run1-A-1", "PENDING", message="waiting for resources", metadata={}, entrypoint="x")
    api = ScriptedCluster([pending])
    run = ray_executor.RayExecutor(layout, Settings(ray_pending_timeout=1.0), time.monotonic, api=api,
                                   warn=lambda _m: None)
    job = ray_executor._Job(record, Output(log, 0), lambda _m: None)
    run.jobs["A"] = job
    handle = run.live()["A"]

    run._watch_once()  # waited 2 min, allowed 1: stopped, the attempt ended with why
    ended = run.poll(handle)

    assert api.stopped == ["run1-A-1"]
    assert ended is not None and not ended.known
    assert "no node took its Ray job within 1 min (ray_pending_timeout)" in ended.why
    assert "no node took its Ray job" in log.read_text()  # said in the stream's log, which `status` quotes
    assert run.records.jobs()[0][0].phase == LEFTOVER  # Ray keeps a stopped job pending: deleted later
    assert "A" not in run.live()

    api.listing = [JobInfo("run1-A-1", "STOPPED")]
    run._watch_once()  # once Ray lets it go, the leftover is deleted and forgotten
    assert api.deleted == ["run1-A-1"] and not run.records.jobs()[0]


def test_a_job_within_its_pending_time_keeps_waiting(tmp_path):
    layout = Layout(tmp_path / "home", tmp_path / "state-root")
    log = tmp_path / "A.log"
    record = JobRecord("run1-A-1", "run1", "A", "A", 1, "t" * 16, time.time(), str(log), "mcp", ("T1",), SUBMITTED)
    api = ScriptedCluster([JobInfo("run1-A-1", "PENDING")])
    run = ray_executor.RayExecutor(layout, Settings(ray_pending_timeout=10.0), time.monotonic, api=api,
                                   warn=lambda _m: None)
    run.jobs["A"] = ray_executor._Job(record, Output(log, 0), lambda _m: None)
    run._watch_once()
    assert api.stopped == [] and run.poll(run.live()["A"]) is None


# ---------------------------------------------------------------- start refuses, clearly


def ray_refusal(project, *extra: str):
    result = project.orchestrate("start", "--executor", "ray", *extra)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "nothing was started" in result.stderr, result.stderr
    return result.stderr


def test_start_on_ray_without_an_address_says_how_to_set_it(repo):
    taskdb.diamond(repo.db)
    assert "needs ray_address" in ray_refusal(repo)


def test_start_on_ray_with_an_unreachable_cluster_says_so(repo):
    taskdb.diamond(repo.db)
    repo.configure(ray_address="http://127.0.0.1:9")
    message = ray_refusal(repo)
    assert "127.0.0.1:9" in message
    assert repo.git("branch", "--list", "orchestrate/*") == ""


def test_start_on_ray_needs_worktree_isolation(project):
    taskdb.diamond(project.db)
    project.configure(ray_address="http://127.0.0.1:9")
    assert "needs worktree isolation" in ray_refusal(project)


def test_a_bad_ray_setting_is_named_with_its_rule(repo):
    taskdb.diamond(repo.db)
    repo.configure(ray_pending_timeout="soon")
    result = repo.orchestrate("start", "--dry-run")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "ray_pending_timeout" in result.stderr and "minutes" in result.stderr, result.stderr
    unknown = repo.orchestrate("start", "--executor", "cloud")
    assert unknown.returncode == 2 and "invalid choice: 'cloud'" in unknown.stderr, unknown.stderr


def test_the_executor_setting_reaches_start(tmp_path):
    from _orchestrate_kit.settings import load_settings

    conf = tmp_path / "orchestrator.conf"
    conf.write_text("executor = ray\nray_address = http://head:8265\nray_pending_timeout = 0.5\n")
    settings = load_settings([conf])
    assert (settings.executor, settings.ray_address, settings.ray_pending_timeout) == ("ray", "http://head:8265", 0.5)
