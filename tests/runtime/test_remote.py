"""git/remote.py with real git and real local bare remotes: pushes never forced, refusals as reasons, fetch back.

The remotes here are bare repositories on disk, one with a `pre-receive` hook that refuses,
one that a second clone pushed to first, one that never answers (its upload-pack sleeps),
and a local HTTP server that asks for a password nobody can type.
"""

from __future__ import annotations

import http.server
import os
import secrets
import threading
from pathlib import Path

import pytest

from tests.runtime import runtime_import  # noqa: F401  (puts the runtime on sys.path)
from tests.runtime.test_workspaces import USER, commit_all, git, isolated_git, repo  # noqa: F401
from tests.runtime.runtime_import import workspaces as ws
from _orchestrate_kit.git import remote


@pytest.fixture
def bare(repo, tmp_path):
    """A bare remote `origin` that has the project's main branch."""
    path = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(path))
    git(repo, "remote", "add", "origin", str(path))
    git(repo, "push", "-q", "origin", "main")
    return path


def remote_tip(bare_path, branch):
    return git(bare_path, "rev-parse", "--verify", "-q", f"refs/heads/{branch}", check=False)


def someone_else_pushes(bare_path, tmp_path, branch, name, text, new_branch=False):
    """A colleague's clone of the remote commits `name` on `branch` and pushes it (a normal push)."""
    clone = tmp_path / "colleague"
    if not clone.exists():
        git(tmp_path, "clone", "-q", str(bare_path), str(clone))
    git(clone, "switch", "-q", *(("-c",) if new_branch else ()), branch)
    (clone / name).write_text(text, encoding="utf-8")
    commit_all(clone, f"their {name}")
    git(clone, "push", "-q", "origin", branch)
    return remote_tip(bare_path, branch)


def processes_with(marker):
    """Live processes whose command line holds `marker` (Linux)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if marker.encode() in handle.read():
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


# ---------------------------------------------------------------- push


def test_a_branch_is_pushed_then_up_to_date_and_never_forced(repo, bare):
    run = ws.start_run(repo)
    first = remote.push_branch(repo, run.integration_branch)
    assert first.ok and first.status == "pushed" and first.commit == git(repo, "rev-parse", run.integration_branch)
    assert remote_tip(bare, run.integration_branch) == first.commit
    again = remote.push_branch(repo, run.integration_branch)
    assert again.ok and again.status == "up_to_date"
    assert first.as_dict()["ok"] is True and set(first.as_dict()) >= {"branch", "remote", "status", "commit", "reason"}


def test_several_branches_go_in_one_push_each_with_its_own_outcome(repo, bare):
    run = ws.start_run(repo)
    space = ws.prepare_workspace(repo, run, "A")
    (space.cwd / "a.txt").write_text("a\n", encoding="utf-8")
    ws.commit_leftovers(repo, "A")
    results = remote.push_branches(repo, [run.integration_branch, "stream/A", "no-such-branch"])
    assert [r.status for r in results] == ["pushed", "pushed", "failed"]
    assert "no local branch no-such-branch" in results[2].reason
    assert remote_tip(bare, "stream/A") == git(repo, "rev-parse", "stream/A")


def test_when_someone_else_pushed_first_the_push_is_refused_and_nothing_is_overwritten(repo, bare, tmp_path):
    run = ws.start_run(repo)
    assert remote.push_branch(repo, run.integration_branch).ok
    theirs = someone_else_pushes(bare, tmp_path, run.integration_branch, "theirs.txt", "their work\n")
    finish_stream(repo, run, "A", {"a.txt": "ours\n"})  # our integration branch moves on too: the two diverged

    result = remote.push_branch(repo, run.integration_branch)

    assert result.status == "behind" and not result.ok
    assert "someone else pushed to it" in result.reason and "nothing was overwritten" in result.reason
    assert "\n" not in result.reason
    assert remote_tip(bare, run.integration_branch) == theirs  # their commit is still there


def test_a_pre_receive_hook_that_refuses_is_a_reason_with_its_message(repo, bare):
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'branch is protected by policy' >&2\nexit 1\n", encoding="utf-8")
    hook.chmod(0o755)
    run = ws.start_run(repo)
    result = remote.push_branch(repo, run.integration_branch)
    assert result.status == "rejected"
    assert "pre-receive hook declined" in result.reason and "branch is protected by policy" in result.reason
    assert remote_tip(bare, run.integration_branch) == ""


def test_our_pushes_skip_the_users_pre_push_hook_and_land_push_runs_it(repo, bare, tmp_path):
    marker = tmp_path / "pre-push-ran"
    hook = repo / ".git" / "hooks" / "pre-push"
    hook.write_text(f"#!/bin/sh\necho \"$1\" >> '{marker}'\n", encoding="utf-8")
    hook.chmod(0o755)
    run = ws.start_run(repo)
    assert remote.push_branch(repo, run.integration_branch).ok
    assert not marker.exists()
    (repo / "landed.txt").write_text("x\n", encoding="utf-8")
    commit_all(repo, "landed work")
    landed = remote.push_landed(repo)
    assert landed.ok and landed.branch == "main" and remote_tip(bare, "main") == git(repo, "rev-parse", "main")
    assert marker.read_text(encoding="utf-8").strip() == "origin"
    git(repo, "switch", "-q", "--detach")
    assert remote.push_landed(repo).reason == "HEAD is detached: there is no branch to push"


def test_no_such_remote_and_a_remote_name_that_is_an_option_are_reasons(repo, bare, tmp_path):
    run = ws.start_run(repo)
    missing = remote.push_branch(repo, run.integration_branch, remote="nowhere")
    assert missing.status == "failed" and "nowhere" in missing.reason and "\n" not in missing.reason
    sneaky = remote.push_branch(repo, run.integration_branch, remote=f"--receive-pack=touch {tmp_path}/pwned")
    assert sneaky.status == "failed" and "not a plain git remote name" in sneaky.reason
    assert not (tmp_path / "pwned").exists()
    assert "not a valid branch name" in remote.push_branch(repo, "bad..name").reason


# ---------------------------------------------------------------- is the remote there


def test_check_remote_says_what_is_wrong_and_how_to_fix_it(repo, tmp_path):
    assert "there is no git remote named 'origin'; this repository has none" in remote.check_remote(repo)
    git(repo, "remote", "add", "elsewhere", str(tmp_path / "missing.git"))
    missing = remote.check_remote(repo)
    assert "this repository's remotes: elsewhere" in missing and "set push_remote" in missing
    unreachable = remote.check_remote(repo, "elsewhere")
    assert unreachable.startswith(f"elsewhere ({tmp_path / 'missing.git'}) cannot be reached: ")
    assert remote.check_remote(repo, "-x") is not None


def test_check_remote_passes_for_a_reachable_remote_even_an_empty_one(repo, tmp_path):
    empty = tmp_path / "empty.git"
    git(tmp_path, "init", "-q", "--bare", str(empty))
    git(repo, "remote", "add", "origin", str(empty))
    assert remote.check_remote(repo) is None


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="finds leftover processes through /proc")
def test_a_remote_that_never_answers_is_ended_at_the_deadline_with_its_helpers(repo, bare):
    marker = f"1000.{os.getpid()}{secrets.randbelow(10 ** 6)}"  # a sleep only this run of this test starts
    git(repo, "config", "remote.origin.uploadpack", f"sh -c 'sleep {marker}' upload-pack")
    git(repo, "config", "remote.origin.receivepack", f"sh -c 'sleep {marker}' receive-pack")
    reason = remote.check_remote(repo, timeout=0.5)
    assert "did not answer within 0.5 s" in reason
    run = ws.start_run(repo)
    pushed = remote.push_branch(repo, run.integration_branch, timeout=0.5)
    assert pushed.status == "failed" and "did not finish within 0.5 s" in pushed.reason
    assert processes_with(f"sleep {marker}") == []


class AskForPassword(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_remote_that_wants_a_password_fails_at_once_instead_of_prompting(repo):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AskForPassword)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        git(repo, "remote", "add", "origin", f"http://127.0.0.1:{server.server_port}/project.git")
        reason = remote.check_remote(repo, timeout=60)
        run = ws.start_run(repo)
        pushed = remote.push_branch(repo, run.integration_branch, timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    assert "cannot be reached" in reason and ("terminal prompts disabled" in reason or "Authentication" in reason)
    assert pushed.status == "failed" and "could not read Username" in pushed.reason


# ---------------------------------------------------------------- fetch


def finish_stream(root, run, sid, writes):
    space = ws.prepare_workspace(root, run, sid)
    for name, text in writes.items():
        (space.cwd / name).write_text(text, encoding="utf-8")
    assert ws.merge_stream(root, run, sid).outcome is ws.MergeOutcome.MERGED
    ws.remove_workspace(root, sid)


def test_a_branch_merged_on_the_remote_is_fetched_and_fast_forwarded_in_its_worktree(repo, bare, tmp_path):
    run = ws.start_run(repo)
    assert remote.push_branch(repo, run.integration_branch).ok
    someone_else_pushes(bare, tmp_path, run.integration_branch, "merged-on-github.txt", "from the pull request\n")
    before = git(repo, "rev-parse", run.integration_branch)
    users_fetch_head = repo / ".git" / "FETCH_HEAD"

    result = remote.fetch_branch(repo, run.integration_branch)

    assert result.ok and result.moved and result.before == before
    assert result.after == result.remote_tip == remote_tip(bare, run.integration_branch)
    assert (ws.integration_path(repo) / "merged-on-github.txt").is_file()  # the worktree moved with its branch
    assert git(ws.integration_path(repo), "status", "--porcelain") == ""
    assert not users_fetch_head.exists()  # fetched in the integration worktree, not the user's checkout
    assert git(repo, "for-each-ref", "refs/orchestrate-kit/") == ""  # no landing ref left behind
    assert remote.fetch_branch(repo, run.integration_branch).ok  # again: nothing to do
    assert remote.fetch_branch(repo, run.integration_branch).moved is False


def test_a_fetch_never_moves_a_branch_that_diverged_or_is_ahead(repo, bare, tmp_path):
    run = ws.start_run(repo)
    assert remote.push_branch(repo, run.integration_branch).ok
    finish_stream(repo, run, "A", {"a.txt": "ours\n"})
    ahead = git(repo, "rev-parse", run.integration_branch)
    assert remote.fetch_branch(repo, run.integration_branch).after == ahead  # the remote is behind us: unchanged
    someone_else_pushes(bare, tmp_path, run.integration_branch, "theirs.txt", "theirs\n")

    diverged = remote.fetch_branch(repo, run.integration_branch)

    assert not diverged.ok and "diverged" in diverged.reason and diverged.after == ahead
    assert git(repo, "rev-parse", run.integration_branch) == ahead


def test_a_branch_without_a_worktree_is_moved_by_a_compare_and_swap(repo, bare, tmp_path):
    someone_else_pushes(bare, tmp_path, "shared-topic", "topic.txt", "t\n", new_branch=True)
    created = remote.fetch_branch(repo, "shared-topic")
    assert created.ok and created.before == "" and created.after == remote_tip(bare, "shared-topic")
    failed = remote.fetch_branch(repo, "no-such-branch")
    assert not failed.ok and failed.reason.startswith("could not fetch no-such-branch from origin: ")
