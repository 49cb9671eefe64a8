"""The merge check in a real run, through the local executor: recorded like a worker, ended after its
timeout with every process it started, and ended by the next start when an orchestrator died during it."""

import os

import pytest

from tests.runtime.runtime_import import settings as st
from tests.support.project import Project, pid_alive
from tests.support.taskdb import add_stream, make_db


def check_records(proj):
    """The merge checks' pid files (in a git project the state lives under the git directory)."""
    return list((st.layout_for(proj.home).pids / "checks").glob("*.pid"))


@pytest.fixture
def repo(tmp_path):
    proj = Project.create_git(tmp_path)
    make_db(proj.db)
    add_stream(proj.db, "Stream-A", [], 1, "A")
    add_stream(proj.db, "Stream-B", ["Stream-A"], 1, "B")
    proj.plan({"Stream-A": ["write"], "Stream-B": ["write"]})
    yield proj
    proj.stop_leftovers()


def test_a_check_that_runs_past_its_timeout_is_ended_and_fails_its_stream(repo):
    mark = repo.root.parent / "check-child"
    # The check leaves a child in a session of its own; both must end.
    repo.configure(merge_check=f"setsid sleep 300 & echo $! > {mark}; sleep 300", merge_check_timeout=0.02)
    result = repo.orchestrate("start")
    assert result.returncode == 1, result.stdout + result.stderr
    states = repo.states()
    assert states == {"Stream-A": "check_failed", "Stream-B": "waiting"}, states
    reason = next(s for s in repo.status()["streams"] if s["stream_id"] == "Stream-A")["description"]
    assert "timed out after 1.2 s" in reason
    assert "it and every process it started were ended" in repo.orchestrate("logs", "Stream-A").stdout
    assert not pid_alive(int(mark.read_text()))
    assert check_records(repo) == []


def test_a_check_left_by_a_killed_orchestrator_is_ended_by_the_next_start(repo):
    mark, child = repo.root.parent / "check-started", repo.root.parent / "check-child"
    # Its child too, in a session of its own: found by the token it carries.
    repo.configure(merge_check=f"setsid sleep 300 & echo $! > {child}; echo $$ >> {mark}; sleep 300")
    repo.start_and_kill_when(mark.exists, "the merge check of Stream-A")  # merged, its merge not accepted yet
    check = int(repo.wait_for(lambda: mark.read_text().split(), what="the check's pid")[0])
    assert pid_alive(check) and len(check_records(repo)) == 1  # recorded like a worker
    daemon = int(child.read_text())
    repo.wait_for(lambda: os.getsid(daemon) != os.getsid(check), what="the child to leave the check's session")
    repo.configure(merge_check="true")
    result = repo.orchestrate("start")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not pid_alive(check) and check_records(repo) == []  # ended before the worktree was repaired
    assert not pid_alive(daemon)
    assert repo.states() == {"Stream-A": "complete", "Stream-B": "complete"}
