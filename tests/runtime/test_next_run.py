"""A run after a run, end to end: the real orchestrator as a process, real git, the fake claude on PATH.

A finished run's counts belong to that run: the next `start` begins with a fresh restart budget
for every stream, while a killed orchestrator's run is continued with its counts (see
tests/reliability/test_faults.py). Holds and the merges a worktree run still owes are carried into
the next run. `start STREAM` ends by saying what of the plan is still to run, and `land` brings in
only a complete run unless told `--partial`.
"""

from __future__ import annotations

from tests.support.project import Project
from tests.support.taskdb import add_stream, diamond, make_db, set_stream_status

DIAMOND = ("Stream-A", "Stream-B", "Stream-C", "Stream-Z")


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


def test_a_run_of_some_streams_says_what_is_still_to_run_and_land_asks_for_partial(repo):
    diamond(repo.db)
    repo.plan({"Stream-A": ["write"], "Stream-B": ["fail"]})
    before = repo.git("rev-parse", "HEAD").strip()

    run = repo.orchestrate("start", "Stream-A", "Stream-B", "--max-restarts", "0")
    assert run.returncode == 1, run.stdout + run.stderr  # Stream-B failed: nothing more can progress
    assert "Stream-B: failed after 1 attempt" in run.stdout
    assert "not part of this run: Stream-C, Stream-Z; `python3 .claude/orchestrator/orchestrate.py start`" in run.stdout

    refused = repo.orchestrate("land")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "the run is not complete, so nothing was landed: 3 stream(s)" in refused.stderr
    assert "Stream-B (failed after 1 attempt)" in refused.stderr and "Stream-Z (waiting on" in refused.stderr
    assert "land --partial" in refused.stderr
    assert repo.git("rev-parse", "HEAD").strip() == before  # nothing landed

    partial = repo.orchestrate("land", "--partial")
    assert partial.returncode == 0, partial.stdout + partial.stderr
    out = partial.stdout
    assert "Landed orchestrate/integration-" in out
    assert ("Not landed: Stream-B (failed after 1 attempt); kept for the next run: its branch stream/Stream-B and "
            "its worktree .claude/worktrees/Stream-B") in out
    assert "Not landed: Stream-C (ready)\n" in out and "Not landed: Stream-Z (waiting on Stream-B, Stream-C)" in out
    deleted = next(line for line in out.splitlines() if line.startswith("Deleted"))
    assert "stream/Stream-A" in deleted and "stream/Stream-B" not in deleted  # never a branch both deleted and kept
    assert "Stream-A.txt" in repo.git("ls-tree", "--name-only", "HEAD")  # the merged work is on the user's branch
    assert "stream/Stream-B" in repo.git("branch", "--list", "stream/*")

    # The rest in a new run: a fresh budget for Stream-B (its cause fixed), then the whole plan lands.
    repo.plan({"Stream-B": ["ok"]})
    rest = repo.orchestrate("start")
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert "all 4 stream(s) complete" in rest.stdout and "Bring it in with:" in rest.stdout
    landed = repo.orchestrate("land")
    assert landed.returncode == 0, landed.stdout + landed.stderr
    assert "Not landed" not in landed.stdout


def test_a_complete_run_of_named_streams_says_the_plan_is_not_complete(project):
    diamond(project.db)
    run = project.orchestrate("start", "Stream-A")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "the 1 stream(s) you named complete in" in run.stdout and "all 1 stream(s) complete" not in run.stdout
    assert ("not complete in the plan: 3 of 4 stream(s): Stream-B, Stream-C, Stream-Z; run them with "
            "`python3 .claude/orchestrator/orchestrate.py start` (every stream), or name them: "
            "`python3 .claude/orchestrator/orchestrate.py start Stream-B Stream-C Stream-Z`") in run.stdout


def test_a_stream_stopped_with_the_run_comes_back_as_a_first_attempt(project):
    """`stop` (or Ctrl-C) ends the run; the next start is a new run, not "attempt 2" of the stopped worker."""
    make_db(project.db)
    add_stream(project.db, "A", [], 1)
    project.plan({"A": ["hang"]})
    orchestrator = project.start_background()
    project.wait_for(lambda: starts(project), what="A to start")
    assert project.orchestrate("stop", "--grace", "1").returncode == 0
    orchestrator.wait(timeout=30)
    project.plan({"A": ["ok"]})
    again = project.orchestrate("start")
    assert again.returncode == 0, again.stdout + again.stderr
    assert starts(project) == [("A", 1), ("A", 1)]
    assert "started A (attempt 1," in again.stdout


def test_a_hold_is_carried_into_the_next_run(project):
    make_db(project.db)
    add_stream(project.db, "A", [], 1)
    add_stream(project.db, "B", [], 1)
    project.plan({"A": ["hang"]})
    orchestrator = project.start_background()
    # Its worker's own start, not the state: "running" is set before the worker's command has run.
    project.wait_for(lambda: ("A", 1) in starts(project), what="A's worker to start")
    assert project.orchestrate("stop", "A", "--grace", "1").returncode == 0  # held until `start A`
    project.wait_for(lambda: project.states().get("B") == "complete", what="B to complete")
    assert orchestrator.wait(timeout=30) == 1  # nothing more can progress: A is held
    again = project.orchestrate("start")
    assert again.returncode == 1 and "A: stopped by you" in again.stdout  # still held in the new run
    assert sorted(starts(project)) == [("A", 1), ("B", 1)]  # nothing started again
