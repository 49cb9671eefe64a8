"""merge_gate = review end to end: real `orchestrate.py start` runs with the fake claude in a real git project.

The diamond (A; B and C on A; Z on both): A is parked for review and the run ends saying what
waits; a commit added after the review is refused; the approved commit (exactly it) is merged at
the next start and the dependents run; a rejection reaches the agent's next prompt.
"""

from __future__ import annotations

import pytest

from tests.support.project import Project
from tests.support.taskdb import add_stream, make_db


@pytest.fixture
def project(tmp_path):
    proj = Project.create_git(tmp_path, {"isolation": "worktree", "merge_gate": "review", "spawn_gap": 0})
    make_db(proj.db)
    add_stream(proj.db, "A", [], 1, "Foundation")
    add_stream(proj.db, "B", ["A"], 1, "Left")
    add_stream(proj.db, "C", ["A"], 1, "Right")
    add_stream(proj.db, "Z", ["B", "C"], 1, "Top")
    proj.plan({sid: ["commit"] for sid in "ABCZ"})  # each commits a file of its own and completes
    yield proj
    proj.stop_leftovers()


def start(project):
    done = project.orchestrate("start", "--no-preflight", timeout=120)
    return done.returncode, done.stdout + done.stderr


def run(project, *args):
    done = project.orchestrate(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def rows(project):
    return {s["stream_id"]: s for s in project.status()["streams"]}


def test_the_diamond_through_review(project):
    code, out = start(project)

    assert code == 1, out
    assert "A: awaiting review of" in out and "nothing more can progress until you review" in out
    assert "orchestrate.py approve STREAM` merges exactly that commit" in out
    a = rows(project)["A"]
    assert a["state"] == "awaiting_review" and a["diff_stat"] == "1 file changed, 1 insertion(+)"
    assert a["commit"] == project.git("rev-parse", "stream/A").strip()
    assert [e["stream"] for e in project.events("start")] == ["A"]  # its dependents never started
    assert "awaiting review of" in run(project, "status")

    reviewed = a["commit"]
    assert "+work of A" in run(project, "review", "A")
    worktree = project.root / ".claude" / "worktrees" / "A"
    (worktree / "late.txt").write_text("added after the review\n", encoding="utf-8")
    project.git("add", "late.txt", cwd=worktree)
    project.git("commit", "-q", "-m", "after the review", cwd=worktree)
    refused = project.orchestrate("approve", "A")
    assert refused.returncode == 1 and f"the review showed {reviewed[:12]}" in refused.stderr
    project.git("reset", "-q", "--hard", reviewed, cwd=worktree)  # the late commit taken back out
    run(project, "review", "A", "--stat")
    assert "the next `orchestrate.py start` merges exactly that commit" in run(project, "approve", "A")

    code, out = start(project)

    assert code == 1, out
    states = {sid: r["state"] for sid, r in rows(project).items()}
    assert states == {"A": "complete", "B": "awaiting_review", "C": "awaiting_review", "Z": "waiting"}
    integration = project.status()["run"]["integration_branch"]
    merged = project.git("log", "--format=%H", integration).split()
    assert reviewed in merged

    run(project, "reject", "B", "--reason", "name the file after the stream's purpose")
    run(project, "review", "C")
    run(project, "approve", "C")
    project.plan({"B": ["ok"], "Z": ["commit"]})  # B's agent addresses the reason (its tracker is complete)

    code, out = start(project)

    assert code == 1, out
    prompts = [e["prompt"] for e in project.events("start") if e["stream"] == "B"]
    assert len(prompts) == 2 and "Their reason:\nname the file after the stream's purpose" in prompts[-1]
    states = {sid: r["state"] for sid, r in rows(project).items()}
    assert states == {"A": "complete", "B": "awaiting_review", "C": "complete", "Z": "waiting"}
