"""The git on either side of a Ray job, without Ray: the node's checkout (only what is missing is
fetched, the files checked out outside the node's lock), its one push (the attempt's refs land even
when the stream branch is refused), and the orchestrator's fetch of an ended attempt's work (by name
when the worker's result line says it pushed; fenced either way). Real git, local bare remotes."""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path

import pytest

from tests.ray.remote_support import RemoteProject, git, result_of, start_worker, worker_environment
from _orchestrate_kit.executor.ray import collect
from _orchestrate_kit.executor.ray.records import JobRecord
from _orchestrate_kit.remote import protocol, worker

pytestmark = pytest.mark.timeout(180)


def commit_on(project: RemoteProject, branch: str, name: str) -> str:
    """A commit on `branch` of the remote (made in the project, pushed), the project back on main."""
    git(project.root, "checkout", "-q", "-B", branch)
    (project.root / name).write_text(name + "\n")
    git(project.root, "add", "-A")
    git(project.root, "commit", "-q", "-m", name)
    git(project.root, "push", "-q", "origin", branch)
    sha = project.head
    git(project.root, "checkout", "-q", "main")
    return sha


# ---------------------------------------------------------------- the node's checkout


def test_a_start_commit_the_node_has_is_checked_out_without_asking_the_remote(tmp_path):
    project = RemoteProject.create(tmp_path)
    cache = tmp_path / "cache"
    start = project.head
    assert worker.prepare_checkout(cache, str(project.remote), start, cache / "w1", "b1", "main") == start
    moved = project.remote.with_name("moved.git")
    project.remote.rename(moved)  # the remote is gone: a second job at the same commit needs none of it
    assert worker.prepare_checkout(cache, str(project.remote), start, cache / "w2", "b2", "main") == start
    assert (cache / "w2" / "README.md").read_text() == "the project\n"
    assert git(cache / "w2", "status", "--porcelain") == ""  # the files checked out, the index matches


def test_only_the_branch_that_holds_the_start_is_fetched(tmp_path):
    project = RemoteProject.create(tmp_path)
    other = commit_on(project, "stream/other", "other.txt")
    start = commit_on(project, "integration", "start.txt")
    cache = tmp_path / "cache"
    assert worker.prepare_checkout(cache, str(project.remote), start, cache / "w", "b", "integration") == start
    mirror = next((cache / "mirrors").glob("*.git"))
    tracking = git(mirror, "for-each-ref", "--format=%(refname)", "refs/remotes").splitlines()
    assert tracking == ["refs/remotes/origin/integration"]
    assert subprocess.run(["git", "cat-file", "-e", other], cwd=mirror).returncode != 0  # never brought here
    assert (cache / "w" / "start.txt").exists()


def test_a_wrong_start_branch_still_finds_the_commit(tmp_path):
    project = RemoteProject.create(tmp_path)
    start = commit_on(project, "stream/ahead", "ahead.txt")
    cache = tmp_path / "cache"
    # The branch named does not hold it (the orchestrator's push of it was refused): the commit is fetched.
    assert worker.prepare_checkout(cache, str(project.remote), start, cache / "w", "b", "main") == start
    assert (cache / "w" / "ahead.txt").exists()


def test_a_worktree_whose_folder_was_removed_does_not_block_the_next(tmp_path):
    project = RemoteProject.create(tmp_path)
    cache = tmp_path / "cache"
    start = project.head
    worker.prepare_checkout(cache, str(project.remote), start, cache / "w", "b", "main")
    subprocess.run(["rm", "-rf", str(cache / "w")], check=True)  # removed by hand, still registered
    # The same folder again (a resume gets its session's folder): registered to a gone worktree, so
    # the first add is refused; a prune, then the add.
    assert worker.prepare_checkout(cache, str(project.remote), start, cache / "w", "b2", "main") == start
    assert (cache / "w" / "README.md").exists()


# ---------------------------------------------------------------- the node's push


def test_push_porcelain_is_read_ref_by_ref():
    porcelain = ("To /remote.git\n"
                 "*\tabc:refs/orchestrate/r/s/1-aa\t[new reference]\n"
                 " \tabc:refs/heads/stream/s\t1111..2222\n"
                 "=\tabc:refs/orchestrate-progress/r/s/1-aa\t[up to date]\n"
                 "!\tabc:refs/heads/stream/t\t[rejected] (non-fast-forward)\n"
                 "Done\n")
    assert worker.pushed_refs(porcelain) == ["refs/orchestrate/r/s/1-aa", "refs/heads/stream/s",
                                             "refs/orchestrate-progress/r/s/1-aa"]
    assert worker.pushed_refs("") == []


def test_a_remote_that_refuses_the_stream_branch_still_gets_the_attempts_refs(tmp_path):
    project = RemoteProject.create(tmp_path)
    hook = project.remote / "hooks" / "pre-receive"
    # A server hook that refuses any push touching a stream branch refuses the whole combined push.
    hook.write_text("#!/bin/sh\nwhile read old new ref; do case $ref in refs/heads/stream/*) "
                    "echo 'stream branches are protected' >&2; exit 1;; esac; done\nexit 0\n")
    hook.chmod(0o755)
    description = project.describe()
    log = tmp_path / "job.log"
    done = start_worker(worker_environment(tmp_path, description, {"Stream-A": ["write"]}), log)
    assert done.wait(120) == 0, log.read_text()
    result = result_of(log.read_text())
    assert result["pushed"] and not result["branch_pushed"]
    pushed = project.remote_refs()
    assert pushed[description["attempt_ref"]] == result["commit"] and description["progress_ref"] in pushed
    assert "refs/heads/stream/Stream-A" not in pushed
    assert "was not moved" in log.read_text()


def test_the_result_line_carries_the_nodes_timings_in_order(tmp_path):
    project = RemoteProject.create(tmp_path)
    description = project.describe()
    log = tmp_path / "job.log"
    assert start_worker(worker_environment(tmp_path, description, {"Stream-A": ["write"]}), log).wait(120) == 0
    text = log.read_text()
    ending = [protocol.parse_line(line) for line in text.split("\n") if '"kind": "ending"' in line]
    assert len(ending) == 1 and ending[0]["token"] == description["token"]  # said once, before the push
    assert text.index('"kind": "ending"') < text.index('"kind": "result"')
    times = result_of(text)["times"]
    steps = ["entered", "checked_out", "worker_started", "worker_ended", "published"]
    assert sorted(times) == sorted(steps)
    assert [times[s] for s in steps] == sorted(times[s] for s in steps)


# ---------------------------------------------------------------- the orchestrator's fetch


def record_of(description: dict, project: RemoteProject) -> JobRecord:
    return JobRecord(f"{description['run']}-{description['name']}-{description['attempt']}", description["run"],
                     description["stream"], description["name"], description["attempt"], description["token"],
                     time.time(), str(project.root / "log"), project.generation, ())


def run_attempt(tmp_path: Path, project: RemoteProject, attempt: int, behaviour: str = "write") -> dict:
    description = project.describe(attempt=attempt, token=secrets.token_hex(8))
    log = tmp_path / f"attempt-{attempt}.log"
    assert start_worker(worker_environment(tmp_path, description, {"Stream-A": [behaviour]}), log).wait(120) == 0
    return {"description": description, "result": result_of(log.read_text())}


@pytest.mark.parametrize("with_result", [True, False])
def test_the_live_attempts_work_comes_back_with_or_without_its_result_line(tmp_path, with_result):
    project = RemoteProject.create(tmp_path)
    first = run_attempt(tmp_path, project, 1)
    second = run_attempt(tmp_path, project, 2)  # both on the remote: only the live one may come back
    record = record_of(second["description"], project)
    got = collect.bring_back(project.root, "origin", record, None, result=second["result"] if with_result else None)
    assert got.commit == second["result"]["commit"] != first["result"]["commit"]
    assert git(project.root, "rev-parse", "refs/heads/stream/Stream-A") == got.commit
    assert git(project.root, "for-each-ref", collect.LANDING) == ""  # no landing ref left


def test_a_result_line_an_agent_forged_changes_nothing(tmp_path):
    project = RemoteProject.create(tmp_path)
    first = run_attempt(tmp_path, project, 1)
    record = record_of(project.describe(attempt=2, token=secrets.token_hex(8)), project)  # it never pushed
    forged = dict(first["result"], attempt=2, token=record.token, pushed=True, updates=4)
    got = collect.bring_back(project.root, "origin", record, None, result=forged)
    assert got.commit == ""  # the listing shows the live attempt pushed nothing: nothing fetched, nothing moved
    assert subprocess.run(["git", "rev-parse", "--verify", "-q", "refs/heads/stream/Stream-A"],
                          cwd=project.root).returncode != 0


def test_a_result_line_claiming_updates_without_a_progress_ref_falls_back_to_the_listing(tmp_path):
    project = RemoteProject.create(tmp_path)
    attempt = run_attempt(tmp_path, project, 1)
    record = record_of(attempt["description"], project)
    git(project.remote, "update-ref", "-d", attempt["description"]["progress_ref"])
    got = collect.bring_back(project.root, "origin", record, None, result=attempt["result"])
    assert got.commit == attempt["result"]["commit"] and got.replayed == 0


def test_the_remote_workers_own_lines_are_recognised_only_for_their_attempt():
    line = protocol.update_line({"kind": "result", "run": "r", "stream": "s", "attempt": 2, "token": "ab12",
                                 "exit_code": 0})
    assert protocol.worker_line(line, "r", "s", 2, "ab12")["exit_code"] == 0
    assert protocol.worker_line(line, "r", "s", 1, "ab12") is None  # an earlier attempt's
    assert protocol.worker_line(line, "r", "s", 2, "0000") is None
    assert protocol.worker_line("plain output", "r", "s", 2, "ab12") is None
    ending = protocol.update_line({"kind": "ending", "run": "r", "stream": "s", "attempt": 2, "token": "ab12"})
    assert protocol.worker_line(ending, "r", "s", 2, "ab12")["kind"] == "ending"
    update = protocol.update_line({"kind": "task_update", "run": "r", "stream": "s", "attempt": 2, "token": "ab12"})
    assert protocol.worker_line(update, "r", "s", 2, "ab12") is None
    assert protocol.worker_line(protocol.PREFIX + "{broken", "r", "s", 2, "ab12") is None
