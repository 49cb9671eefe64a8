"""The real orchestrator on a git project whose state an agent or the user disturbed (issue 18): a lost
state/run.json, a moved project folder, an agent that pops the user's stash, a user's post-checkout hook."""

from __future__ import annotations

import shutil

from tests.support.project import Project
from tests.support.taskdb import add_stream, diamond, make_db


def state_folder(proj: Project):
    return next((proj.root / ".git" / "orchestrate-kit").glob("*/state"))


def test_a_lost_run_json_after_a_worktree_run_still_lands(repo):
    """Before: `land` said "nothing to land" and `start` refused ("the earlier run's integration worktree
    is still there")."""
    diamond(repo.db)
    repo.plan({sid: ["write"] for sid in ("Stream-A", "Stream-B", "Stream-C", "Stream-Z")})
    assert repo.orchestrate("start").returncode == 0
    (state_folder(repo) / "run.json").unlink()
    again = repo.orchestrate("start")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "continuing the unlanded run found in git" in again.stdout
    (state_folder(repo) / "run.json").unlink()
    landed = repo.orchestrate("land")
    assert landed.returncode == 0, landed.stdout + landed.stderr
    assert "landing the run found in git" in landed.stdout
    assert {f"{sid}.txt" for sid in ("Stream-A", "Stream-B", "Stream-C", "Stream-Z")} <= set(
        repo.git("ls-tree", "--name-only", "HEAD").split())


def test_a_moved_project_folder_runs_on(repo, tmp_path):
    make_db(repo.db)
    add_stream(repo.db, "A", [], 1)
    add_stream(repo.db, "B", ["A"], 1)
    repo.plan({"A": ["write"], "B": ["fail"]})
    assert repo.orchestrate("start", "--max-restarts", "0").returncode == 1  # B failed: its worktree stays
    moved = Project(tmp_path / "moved", repo.base, dict(repo.env))
    shutil.move(str(repo.root), str(moved.root))
    try:
        moved.plan({"A": ["write"], "B": ["write"]})
        result = moved.orchestrate("start", "--retry-failed")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "git worktree repair" in result.stdout and "continuing the unlanded run found in git" in result.stdout
        branch = moved.status()["run"]["integration_branch"]
        assert {"A.txt", "B.txt"} <= set(moved.git("ls-tree", "--name-only", branch).split())
        assert moved.orchestrate("land").returncode == 0
    finally:
        shutil.move(str(moved.root), str(repo.root))


def test_a_failing_post_checkout_hook_and_a_stash_popping_agent_change_nothing_of_the_users(repo):
    hook = repo.root / ".git" / "hooks" / "post-checkout"
    hook.write_text("#!/bin/sh\necho 'hook refuses' >&2\nexit 1\n", encoding="utf-8")
    hook.chmod(0o755)
    (repo.root / "README.md").write_text("the user's stashed edit\n", encoding="utf-8")
    repo.git("stash", "push", "-q", "-m", "user's wip")
    stash = repo.git("rev-parse", "refs/stash").strip()
    make_db(repo.db)
    add_stream(repo.db, "A", [], 1)
    repo.plan({"A": ["stash-pop"]})
    result = repo.orchestrate("start", "--max-restarts", "0")
    said = result.stdout + result.stderr
    assert "your git hooks (post-checkout)" in result.stdout, said
    assert "started A" in result.stdout  # the hook blocked no worktree
    assert repo.git("rev-parse", "refs/stash").strip() == stash  # put back
    assert "holds the changes of your stash entry" in result.stdout
    branch = repo.status()["run"]["integration_branch"]
    assert "stashed edit" not in repo.git("show", f"{branch}:README.md")
