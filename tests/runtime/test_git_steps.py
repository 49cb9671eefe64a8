"""git/steps.py: a gate, push or pull request step run as the loop will run it, a child process with JSON in and out."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.runtime.test_workspaces import bare, git, isolated_git, repo  # noqa: F401
from tests.runtime.runtime_import import workspaces as ws
from tests.support.fake_github import FakeGitHub
from tests.support.project import RUNTIME
from _orchestrate_kit.git import steps


def child_step(request, timeout=120):
    """The step as a child process of its own, the runtime folder as its cwd (as users have it)."""
    done = subprocess.run([sys.executable, "-m", "_orchestrate_kit.git.steps"], cwd=RUNTIME, input=json.dumps(request),
                          capture_output=True, text=True, timeout=timeout)
    return done.returncode, json.loads(done.stdout)


def test_a_push_step_in_a_child_process_pushes_and_answers_in_json(repo, bare):
    run = ws.start_run(repo)
    code, answer = child_step({"step": "push", "args": {"project": str(repo), "branches": [run.integration_branch]}})
    assert code == 0 and answer["pushes"][0]["status"] == "pushed" and answer["pushes"][0]["ok"] is True
    assert git(bare, "rev-parse", run.integration_branch) == answer["pushes"][0]["commit"]
    code, answer = child_step({"step": "check_remote", "args": {"project": str(repo), "remote": "nowhere"}})
    assert code == 0 and "no git remote named 'nowhere'" in answer["problem"]


def test_pull_request_steps_run_in_process_like_in_a_child(repo, bare, tmp_path, monkeypatch):
    hub = FakeGitHub(tmp_path, bare)
    for key, value in hub.environment().items():
        monkeypatch.setenv(key, value)
    run = ws.start_run(repo)
    assert steps.run_step("gh_problem", {"project": str(repo)}) == {"problem": None}
    opened = steps.run_step("open_pull_request", {"project": str(repo), "state": str(tmp_path / "state"),
                                                  "stream_id": "A", "branch": run.integration_branch,
                                                  "base": "main"})
    assert opened["ok"] is False and "No commits between main and" in opened["reason"]  # gh's own reason
    assert [p["status"] for p in opened["pushes"]] == ["pushed", "pushed"]
    seen = steps.run_step("pull_request_state", {"project": str(repo), "url": "https://github.com/x/y/pull/9"})
    assert seen["state"] == "unknown"
    fetched = steps.run_step("fetch", {"project": str(repo), "branch": "main"})
    assert fetched["ok"] is True and fetched["moved"] is False and fetched["after"] == run.base


def test_a_request_that_does_not_fit_is_an_error_line_not_a_traceback():
    assert child_step({"step": "rebase", "args": {}})[1]["error"].startswith("unknown step 'rebase'; the steps: ")
    code, answer = child_step({"step": "push", "args": {"project": "/x"}})
    assert code == 1 and "arguments do not fit: KeyError" in answer["error"]
    done = subprocess.run([sys.executable, "-m", "_orchestrate_kit.git.steps"], cwd=RUNTIME, input="not json",
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "is not" in json.loads(done.stdout)["error"] and done.stderr == ""


def test_a_merge_step_hands_a_conflict_back_says_it_is_pending_then_merges_and_undoes(repo):
    """The merge step's whole sequence in a child (workspaces.merge_finished), as the loop reads it."""
    run = ws.start_run(repo)
    for sid, text in (("B", "line one by B\n"), ("C", "line one by C\n")):
        space = ws.prepare_workspace(repo, run, sid)
        (space.cwd / "shared.txt").write_text(text + "line two\n", encoding="utf-8")  # left uncommitted

    def merge(sid, handed_back=()):
        code, answer = child_step({"step": "merge_streams", "args": {"project": str(repo), "run": run.as_dict(),
                                                                     "streams": [{"stream_id": sid, "commit": None,
                                                                                  "handed_back": list(handed_back)}]}})
        assert code == 0, answer
        [result] = answer["results"]
        return ws.MergeResult.from_dict(result)

    merged = merge("B")
    assert merged.outcome is ws.MergeOutcome.MERGED and merged.committed_leftovers and merged.tip != merged.before
    conflict = merge("C")  # its leftovers committed, the conflict handed back into its worktree
    assert conflict.outcome is ws.MergeOutcome.CONFLICT and conflict.conflicts == ("shared.txt",)
    assert "<<<<<<<" in (ws.worktree_path(repo, "C") / "shared.txt").read_text(encoding="utf-8")
    pending = merge("C", conflict.conflicts)
    assert pending.outcome is ws.MergeOutcome.PENDING and "conflicts not resolved in: shared.txt" in pending.pending
    git(ws.worktree_path(repo, "C"), "checkout", "--theirs", "shared.txt")
    git(ws.worktree_path(repo, "C"), "add", "shared.txt")
    git(ws.worktree_path(repo, "C"), "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-q", "--no-edit")
    resolved = merge("C", conflict.conflicts)
    assert resolved.outcome is ws.MergeOutcome.MERGED and resolved.before == merged.tip

    code, answer = child_step({"step": "undo_merge", "args": {"project": str(repo), "run": run.as_dict(),
                                                              "before": resolved.before}})
    assert (code, answer) == (0, {})
    assert git(repo, "rev-parse", run.integration_branch) == merged.tip
    code, answer = child_step({"step": "undo_merge", "args": {"project": str(repo), "run": run.as_dict(),
                                                              "before": resolved.tip}})
    assert code == 1 and "moved on since that merge" in answer["error"]  # not the tip's parent: refused


def test_a_gate_step_commits_the_leftovers_and_answers_the_commit_and_its_diff_stat(repo):
    run = ws.start_run(repo)
    space = ws.prepare_workspace(repo, run, "R")
    (space.cwd / "R.txt").write_text("work of R\n", encoding="utf-8")  # left uncommitted
    args = {"project": str(repo), "run": run.as_dict(), "stream_id": "R", "stat": True}
    code, answer = child_step({"step": "gate_stream", "args": args})
    assert code == 0 and answer["committed"] is True
    assert answer["commit"] == git(repo, "rev-parse", "stream/R") and answer["stat"].startswith("1 file changed")
    assert git(space.cwd, "status", "--porcelain") == ""
    code, answer = child_step({"step": "gate_stream", "args": {**args, "stream_id": "never-ran", "stat": False}})
    assert (code, answer) == (0, {"committed": False, "commit": "", "stat": ""})  # no branch: nothing to gate
