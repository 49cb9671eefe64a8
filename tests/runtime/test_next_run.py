"""A run after a run, end to end: the real orchestrator as a process, real git, the fake claude on PATH.

A finished run's counts belong to that run: the next `start` begins with a fresh restart budget
for every stream, while a killed orchestrator's run is continued with its counts (see
tests/reliability/test_faults.py). Holds and the merges a worktree run still owes are carried into
the next run. `start STREAM` ends by saying what of the plan is still to run, and `land` brings in
only a complete run unless told `--partial`.
"""

from __future__ import annotations

import pytest

from tests.support.project import Project
from tests.support.taskdb import add_stream, diamond, make_db, set_stream_status

DIAMOND = ("Stream-A", "Stream-B", "Stream-C", "Stream-Z")


@pytest.fixture
def repo(tmp_path):
    proj = Project.create_git(tmp_path)
    yield proj
    proj.orchestrate("stop", "--grace", "1", timeout=30)


def starts(proj: Project) -> list:
    return [(e["stream"], e["attempt"]) for e in proj.events("start")]


def reopen(proj: Project, *stream_ids: str) -> None:
    for sid in stream_ids:
        set_stream_status(proj.db, sid, "pending")


def test_a_new_run_after_a_landed_one_has_a_fresh_restart_budget(repo):
    diamond(repo.db)
    first = repo.orchestrate("start")
    assert first.returncode == 0, first.stdout + first.stderr
    landed = repo.orchestrate("land")
    assert landed.returncode == 0, landed.stdout + landed.stderr
    reopen(repo, *DIAMOND)  # the same plan, all over again

    before = len(starts(repo))
    second = repo.orchestrate("start", "--max-restarts", "1")

    assert second.returncode == 0, second.stdout + second.stderr
    assert "reopened after it completed" not in second.stdout and "failed" not in second.stdout
    assert sorted(starts(repo)[before:]) == [(sid, 1) for sid in DIAMOND]  # every stream's first attempt
    assert {s["stream_id"]: s["attempts"] for s in repo.status()["streams"]} == {sid: 1 for sid in DIAMOND}


def test_between_runs_status_shows_reopened_work_as_waiting_not_as_a_retry(project):
    diamond(project.db)
    assert project.orchestrate("start").returncode == 0
    reopen(project, *DIAMOND)
    states = project.states()
    assert states == {"Stream-A": "ready", "Stream-B": "waiting", "Stream-C": "waiting", "Stream-Z": "waiting"}
    assert "attempt 2" not in project.orchestrate("status").stdout
    dry = project.orchestrate("start", "--dry-run")
    assert "Would start now: Stream-A" in dry.stdout and "attempt 2" not in dry.stdout


def test_without_worktrees_too_a_finished_run_leaves_no_counts_behind(project):
    make_db(project.db)
    add_stream(project.db, "A", [], 1)
    project.plan({"A": ["fail"]})
    failed = project.orchestrate("start", "--max-restarts", "1")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert starts(project) == [("A", 1), ("A", 2)]
    # The run ended (failed); the user fixed the cause and starts again: a new run, a fresh budget.
    project.plan({"A": ["ok"]})
    again = project.orchestrate("start", "--max-restarts", "1")
    assert again.returncode == 0, again.stdout + again.stderr
    assert starts(project)[2:] == [("A", 1)]
