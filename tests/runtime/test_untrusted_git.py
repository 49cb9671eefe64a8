"""Git that the agent and the user share (issue 18), with real git: the user's hooks never run on our
operations, half-removed conflict markers and nested repositories are refused, `land` never overwrites
the user's untracked or ignored files, the user's stash and branches are watched and restored, the
integration branch is ours and restored from our record, and a run survives a lost run.json, a moved
project folder and a `git worktree add` cut short by SIGKILL."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.runtime.runtime_import import workspaces as ws
from tests.runtime.test_workspaces import USER, commit_all, conflicting_pair, finish, git, isolated_git, repo  # noqa: F401
from tests.support.project import pid_alive


def hook(repo, name, body):
    path = repo / ".git" / "hooks" / name
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(0o755)
    return path


# ---------------------------------------------------------------- the user's hooks


def test_a_failing_post_checkout_hook_blocks_no_start_and_no_worktree(repo):
    """Before: `git worktree add` ran the user's post-checkout hook; its failure failed every start."""
    hook(repo, "post-checkout", "echo 'hook says no' >&2; exit 1")
    run = ws.start_run(repo)
    for sid in ("A", "B"):
        space = ws.prepare_workspace(repo, run, sid)
        (space.cwd / f"{sid}.txt").write_text(sid, encoding="utf-8")
        assert ws.merge_stream(repo, run, sid).outcome is ws.MergeOutcome.MERGED
        ws.remove_workspace(repo, sid)
    assert ws.prepare_workspace(repo, run, "C").path.is_dir()  # a spare taken over: a checkout, no hook


def test_a_hook_that_writes_a_file_never_dirties_our_worktrees(repo):
    """Before: a post-merge/post-commit hook writing a file left the integration worktree dirty, so every
    later merge failed ("has a half-done merge or changes")."""
    for name in ("post-merge", "post-commit", "post-checkout", "reference-transaction"):
        hook(repo, name, 'echo "$0 ran" >> hook-was-here.txt')
    run = ws.start_run(repo)
    for sid in ("A", "B", "C"):
        finish(repo, run, sid, {f"{sid}.txt": sid})
    assert not (ws.integration_path(repo) / "hook-was-here.txt").exists()
    assert git(ws.integration_path(repo), "status", "--porcelain") == ""


def test_the_users_hooks_still_run_on_land_in_their_own_checkout(repo):
    hook(repo, "post-merge", 'echo landed >> "$(git rev-parse --git-dir)/post-merge-ran"')
    run = ws.start_run(repo)
    finish(repo, run, "A", {"a.txt": "a"})
    ws.land(repo, run, ["A"])
    assert (repo / ".git" / "post-merge-ran").read_text() == "landed\n"


def test_the_notice_names_the_users_hooks_once(repo):
    assert ws.hooks_notice(repo) is None  # only samples
    hook(repo, "pre-commit", "exit 0")
    hook(repo, "post-checkout", "exit 0")
    notice = ws.hooks_notice(repo)
    assert "post-checkout, pre-commit" in notice and "land" in notice


# ---------------------------------------------------------------- conflict markers


def test_a_resolution_that_only_deleted_the_closing_marker_is_refused(repo):
    """Before: only files holding both <<<<<<< and >>>>>>> counted, so this reached the integration branch."""
    run = conflicting_pair(repo)
    assert ws.merge_stream(repo, run, "C").outcome is ws.MergeOutcome.CONFLICT
    files = ws.hand_back_conflict(repo, run, "C")
    space = ws.workspace_of(repo, "C")
    text = (space.cwd / "shared.txt").read_text(encoding="utf-8")
    (space.cwd / "shared.txt").write_text("".join(ln for ln in text.splitlines(True) if not ln.startswith(">>>>>>>")))
    git(space.cwd, "add", "shared.txt")
    with pytest.raises(ws.WorkspaceError, match="conflict markers in: shared.txt"):
        ws.merge_stream(repo, run, "C")  # uncommitted: the leftover commit refuses it
    git(space.cwd, *USER, "commit", "-q", "--no-edit")
    assert ws.hand_back_pending(repo, run, "C", files) == "conflict markers left in: shared.txt"


def test_a_separator_line_the_file_already_had_is_not_a_marker(repo):
    (repo / "notes.rst").write_text("Title\n=======\n\nbody\n", encoding="utf-8")  # an RST heading
    commit_all(repo, "docs")
    run = ws.start_run(repo)
    for sid, text in (("B", "by B"), ("C", "by C")):
        space = ws.prepare_workspace(repo, run, sid)
        (space.cwd / "notes.rst").write_text(f"Title\n=======\n\n{text}\n", encoding="utf-8")
    ws.merge_stream(repo, run, "B")
    ws.merge_stream(repo, run, "C")
    files = ws.hand_back_conflict(repo, run, "C")
    space = ws.workspace_of(repo, "C")
    (space.cwd / "notes.rst").write_text("Title\n=======\n\nby B and by C\n", encoding="utf-8")
    commit_all(space.cwd, "resolved")
    assert ws.hand_back_pending(repo, run, "C", files) is None
    assert ws.merge_stream(repo, run, "C").outcome is ws.MergeOutcome.MERGED


# ---------------------------------------------------------------- nested repositories


@pytest.mark.parametrize("committed_by_the_agent", [False, True])
def test_a_nested_repository_is_never_merged_as_a_bare_gitlink(repo, committed_by_the_agent):
    """Before: `git init` in a worktree landed a gitlink (no content) and the worktree could not be removed."""
    run = ws.start_run(repo)
    space = ws.prepare_workspace(repo, run, "S")
    nested = space.cwd / "vendor" / "lib"
    nested.mkdir(parents=True)
    git(nested, "init", "-q")
    (nested / "code.py").write_text("x = 1\n", encoding="utf-8")
    commit_all(nested, "the nested repository's own commit")
    (space.cwd / "s.txt").write_text("s\n", encoding="utf-8")
    if committed_by_the_agent:
        git(space.cwd, "add", "-A")
        git(space.cwd, *USER, "commit", "-q", "-m", "agent commits a gitlink")
    tip = git(repo, "rev-parse", run.integration_branch)
    with pytest.raises(ws.WorkspaceError) as caught:
        ws.merge_stream(repo, run, "S")
    assert "vendor/lib" in str(caught.value) and "a git repository of its own" in str(caught.value)
    assert git(repo, "rev-parse", run.integration_branch) == tip
    assert (nested / "code.py").exists()  # nothing of the agent's is lost


def test_a_gitlink_the_project_already_had_still_merges(repo, tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    git(sub, "init", "-q")
    (sub / "f").write_text("f", encoding="utf-8")
    commit_all(sub, "sub")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "sub")
    commit_all(repo, "a submodule on purpose")
    run = ws.start_run(repo)
    finish(repo, run, "S", {"s.txt": "s\n"})


# ---------------------------------------------------------------- land and the user's untracked and ignored files


def test_land_refuses_to_overwrite_the_users_ignored_and_untracked_files(repo):
    """Before: a stream that `git add -f .env` replaced the user's ignored .env on land without a word."""
    (repo / ".gitignore").write_text(".env\n", encoding="utf-8")
    commit_all(repo, "ignore .env")
    run = ws.start_run(repo)
    space = ws.prepare_workspace(repo, run, "S")
    (space.cwd / ".env").write_text("AGENT=1\n", encoding="utf-8")
    (space.cwd / "notes.txt").write_text("agent's notes\n", encoding="utf-8")
    git(space.cwd, "add", "-f", ".env", "notes.txt")
    git(space.cwd, *USER, "commit", "-q", "-m", "agent commits .env")
    assert ws.merge_stream(repo, run, "S").outcome is ws.MergeOutcome.MERGED
    (repo / ".env").write_text("SECRET=the user's\n", encoding="utf-8")
    (repo / "notes.txt").write_text("the user's own notes\n", encoding="utf-8")
    head = git(repo, "rev-parse", "HEAD")
    with pytest.raises(ws.LandRefused) as caught:
        ws.land(repo, run, ["S"])
    assert ".env" in str(caught.value) and "notes.txt" in str(caught.value)
    assert (repo / ".env").read_text() == "SECRET=the user's\n"
    assert (repo / "notes.txt").read_text() == "the user's own notes\n"
    assert git(repo, "rev-parse", "HEAD") == head
    (repo / ".env").unlink()
    (repo / "notes.txt").unlink()
    assert ws.land(repo, run, ["S"]).fast_forward


# ---------------------------------------------------------------- the stash and the refs the agents share


def user_stash(repo, text="the user's half-done edit\n"):
    (repo / "README.md").write_text(text, encoding="utf-8")
    git(repo, *USER, "stash", "push", "-q", "-m", "user's wip")
    return git(repo, "rev-parse", "refs/stash")


def test_an_agent_popping_the_users_stash_gets_it_put_back_and_not_merged(repo):
    """Before: `git stash; git stash pop` in a worktree with nothing of the agent's own took the user's
    stash entry, and its changes were committed as leftovers and merged."""
    entry = user_stash(repo)
    run = ws.start_run(repo)
    space = ws.prepare_workspace(repo, run, "S")
    git(space.cwd, "stash", "-q")  # nothing to save
    git(space.cwd, "stash", "pop", "-q")  # ... takes the user's entry
    assert git(repo, "stash", "list") == ""
    with pytest.raises(ws.WorkspaceError) as caught:
        ws.merge_stream(repo, run, "S")
    message = str(caught.value)
    assert "holds the changes of your stash entry" in message and "put them back" in message
    assert git(repo, "rev-parse", "refs/stash") == entry and "user's wip" in git(repo, "stash", "list")
    assert "half-done" not in git(repo, "show", f"{run.integration_branch}:README.md")
    git(space.cwd, "checkout", "-q", "--", "README.md")  # the stream takes the user's changes out
    (space.cwd / "s.txt").write_text("s\n", encoding="utf-8")
    assert ws.merge_stream(repo, run, "S").outcome is ws.MergeOutcome.MERGED


def test_an_agent_clearing_the_stash_gets_every_entry_back_in_order(repo):
    first = user_stash(repo, "one\n")
    second = user_stash(repo, "two\n")
    run = ws.start_run(repo)
    space = ws.prepare_workspace(repo, run, "S")
    git(space.cwd, "stash", "clear")
    git(repo, "gc", "-q", "--prune=now")  # the entries are unreachable to git now, but kept by our refs
    (space.cwd / "s.txt").write_text("s\n", encoding="utf-8")
    result = ws.merge_stream(repo, run, "S")
    assert result.outcome is ws.MergeOutcome.MERGED
    assert any("2 of your stash entries were taken" in note for note in result.notes)
    assert git(repo, "log", "-g", "--format=%H", "refs/stash").split() == [second, first]
    ws.land(repo, run, ["S"])
    assert not git(repo, "for-each-ref", ws.KEEP_REFS)  # the run's keep-refs go with it


def test_an_agent_committing_on_the_users_branch_is_reported_never_reset(repo):
    """Before: `git switch --ignore-other-worktrees main` and a commit moved the user's main unnoticed."""
    run = ws.start_run(repo)
    space = ws.prepare_workspace(repo, run, "S")
    before = git(repo, "rev-parse", "main")
    git(space.cwd, "switch", "-q", "--ignore-other-worktrees", "main")
    (space.cwd / "oops.txt").write_text("agent on main\n", encoding="utf-8")
    commit_all(space.cwd, "agent commits on the user's main")
    moved = git(repo, "rev-parse", "main")
    with pytest.raises(ws.WorkspaceError) as caught:
        ws.merge_stream(repo, run, "S")  # its worktree is off its branch: parked, with the report
    message = str(caught.value)
    assert f"your branch main moved while the run went on, from {before[:12]} to {moved[:12]}" in message
    assert ".claude/worktrees/S" in message and f"git log --stat {before[:12]}..{moved[:12]}" in message
    assert git(repo, "rev-parse", "main") == moved  # reported, never reset: it is the user's


def test_an_agent_committing_on_the_integration_worktree_is_undone_and_kept(repo):
    """Before: a commit made in the integration worktree was merged silently."""
    run = ws.start_run(repo)
    finish(repo, run, "A", {"a.txt": "a\n"})
    tip = git(repo, "rev-parse", run.integration_branch)
    integ = ws.integration_path(repo)
    (integ / "sneaky.txt").write_text("not from a stream\n", encoding="utf-8")
    commit_all(integ, "agent commits on the integration branch")
    (integ / "README.md").write_text("and leaves a change\n", encoding="utf-8")
    stray = git(repo, "rev-parse", run.integration_branch)
    space = ws.prepare_workspace(repo, run, "B")  # checked before B branches from the tip
    (space.cwd / "b.txt").write_text("b\n", encoding="utf-8")
    result = ws.merge_stream(repo, run, "B")
    assert result.outcome is ws.MergeOutcome.MERGED
    note = next(n for n in space.notes if "integration branch" in n)
    assert f"moved from {tip[:12]} to {stray[:12]}" in note and f"restored it to {tip[:12]}" in note
    kept = [ref for ref in git(repo, "for-each-ref", "--format=%(refname)", ws.KEEP_REFS + "stray/").split()]
    assert len(kept) == 2 and git(repo, "rev-parse", kept[0]) == stray  # the commit and the uncommitted change
    assert git(repo, "rev-parse", f"{run.integration_branch}^1") == tip  # B merged onto our tip
    assert "sneaky.txt" not in git(repo, "ls-tree", "--name-only", run.integration_branch)


def test_a_deleted_integration_branch_is_restored_before_land(repo):
    """Before: `start` and `land` wedged on "ambiguous argument 'HEAD'"."""
    run = ws.start_run(repo)
    finish(repo, run, "A", {"a.txt": "a\n"})
    tip = git(repo, "rev-parse", run.integration_branch)
    git(repo, "update-ref", "-d", "refs/heads/" + run.integration_branch)
    landed = ws.land(repo, run, ["A"])
    assert any("was deleted without the orchestrator" in n for n in landed.notes)
    assert git(repo, "rev-parse", "HEAD") == tip and (repo / "a.txt").exists()


# ---------------------------------------------------------------- a lost record, a moved project, a killed creation


def test_a_moved_project_folder_is_repaired_and_its_run_continued(repo, tmp_path):
    """Before: after moving the project, every worktree was broken until `git worktree repair`."""
    run = ws.start_run(repo)
    finish(repo, run, "A", {"a.txt": "a\n"})
    space = ws.prepare_workspace(repo, run, "B")
    (space.cwd / "b.txt").write_text("B's uncommitted work\n", encoding="utf-8")
    moved = tmp_path / "moved" / "project"
    moved.parent.mkdir()
    shutil.move(str(repo), str(moved))
    notes = ws.recover(moved)  # no saved run: the state folder is keyed by the old path
    assert any("repaired 3 worktree(s)" in n or "repaired 2 worktree(s)" in n for n in notes), notes
    again = ws.start_run(moved)
    assert again.integration_branch == run.integration_branch and again.continued
    assert (ws.worktree_path(moved, "B") / "b.txt").read_text() == "B's uncommitted work\n"
    assert ws.merge_stream(moved, again, "B").outcome is ws.MergeOutcome.MERGED
    assert "b.txt" in git(moved, "ls-tree", "--name-only", run.integration_branch)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="an orphaned git is found by its token on Linux only")
def test_recovery_ends_a_git_orphaned_mid_creation_before_removing_its_folder(repo):
    """Before: a restart right after SIGKILL during `git worktree add` crashed with OSError(39, 'Directory
    not empty') while the orphaned git still wrote."""
    run = ws.start_run(repo)
    half = ws.worktree_path(repo, "half")
    creating = ws._begin_creating(half)
    half.mkdir()
    writer = ("import itertools, os, sys\n"
              "for n in itertools.count():\n"
              "    d = os.path.join(sys.argv[1], 'd%d' % (n % 50)); os.makedirs(d, exist_ok=True)\n"
              "    open(os.path.join(d, 'f%d' % n), 'w').close()\n")
    orphan = subprocess.Popen([sys.executable, "-c", writer, str(half)], env={**os.environ, **creating},
                              start_new_session=True)  # what `git worktree add` does: it keeps writing files
    try:
        deadline = time.monotonic() + 60
        while len(list(half.iterdir())) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        notes = ws.recover(repo, run)
        assert "removed half-created worktree .claude/worktrees/half" in notes
        assert orphan.wait(timeout=60) == -signal.SIGTERM
        assert not half.exists()
    finally:
        if pid_alive(orphan.pid):
            orphan.kill()
    assert ws.prepare_workspace(repo, run, "half").path.is_dir()


def test_our_own_merge_or_undo_cut_short_by_a_kill_is_not_taken_for_an_agents(repo):
    """A kill between our git command and saving the record leaves the record one step behind."""
    run = ws.start_run(repo)
    finish(repo, run, "A", {"a.txt": "a\n"})
    record = ws._load_record(repo, run.integration_branch)
    merged = git(repo, "rev-parse", run.integration_branch)
    record.tip = git(repo, "rev-parse", f"{run.integration_branch}^1")  # as if killed before _moved_by_us
    ws._save_record(repo, record)
    assert ws.watch_shared_refs(repo, run) == []
    assert git(repo, "rev-parse", run.integration_branch) == merged
    git(ws.integration_path(repo), "reset", "-q", "--hard", "HEAD^1")  # undo_merge, killed before its record
    assert ws.watch_shared_refs(repo, run) == []
    assert git(repo, "rev-parse", run.integration_branch) == record.tip
