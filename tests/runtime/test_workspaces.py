"""git/workspaces.py with real git: repositories, worktrees, merges and their undoing, recovery and land
(the merge check, as the loop runs it: test_merge_check_limits.py).

Every test gets its own HOME and git configuration with no identity at all
(`user.useConfigOnly`), so a commit of ours that forgot its fallback identity
fails. The "user" commits with an explicit identity; a "worker" is the test
writing files in its workspace, as an agent would.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runtime.runtime_import import workspaces as ws
from tests.support.project import RUNTIME
from tests.support.waiting import wait_until

TEMPLATE_IGNORE = Path(__file__).resolve().parents[2] / "template" / ".claude" / "worktrees" / ".gitignore"
USER = ("-c", "user.name=User", "-c", "user.email=user@example.com")
HOSTILE = ["../x", "$(touch pwned)", "a\nb", "a.lock", "a..b", "@{", "ünï-çødé", "x" * 300, "a.", "-x",
           "_integration", "orchestrator", "a b", "a~1", "a^b:c", "a*?[", "a\\b", "a/b", "a//b", "HEAD", "@"]


def git(cwd, *args, check=True):
    done = subprocess.run(["git", *args], cwd=str(cwd), capture_output=True, text=True)
    if check and done.returncode != 0:
        raise AssertionError(f"git {args} failed: {done.stderr}")
    return done.stdout.strip()


def commit_all(cwd, message):
    git(cwd, "add", "-A")
    git(cwd, *USER, "commit", "-q", "-m", message)


@pytest.fixture(autouse=True)
def isolated_git(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    config = home / "gitconfig"
    config.write_text("[user]\n\tuseConfigOnly = true\n[init]\n\tdefaultBranch = main\n"
                      "[advice]\n\tdetachedHead = false\n", encoding="utf-8")
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL",
                 "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("SHELL", "/bin/sh")
    ws._identity_options.cache_clear()
    ws._prefix.cache_clear()


@pytest.fixture
def repo(tmp_path):
    """A user's project as the install leaves it: committed, with .claude/worktrees/.gitignore."""
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q")
    (root / "README.md").write_text("hello\n", encoding="utf-8")
    (root / "shared.txt").write_text("line one\nline two\n", encoding="utf-8")
    (root / ".claude" / "worktrees").mkdir(parents=True)
    shutil.copy(TEMPLATE_IGNORE, root / ".claude" / "worktrees" / ".gitignore")
    commit_all(root, "initial")
    return root


@pytest.fixture
def bare(repo, tmp_path):
    """A bare remote `origin` of `repo`, with nothing pushed to it yet."""
    path = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(path))
    git(repo, "remote", "add", "origin", str(path))
    return path


def user_view(root):
    """What the user owns: branch, HEAD, index bytes, status."""
    return (git(root, "symbolic-ref", "HEAD"), git(root, "rev-parse", "HEAD"),
            (root / ".git" / "index").read_bytes(), git(root, "status", "--porcelain"))


def worktree_list(root):
    return [line.split()[0] for line in git(root, "worktree", "list").splitlines()]


def working_trees(root):
    """Worktrees other than parked spares."""
    return [p for p in worktree_list(root) if not Path(p).name.startswith(ws.SPARE_PREFIX)]


def spares(root):
    return sorted(Path(p).name for p in worktree_list(root) if Path(p).name.startswith(ws.SPARE_PREFIX))


def finish(root, run, sid, writes=None):
    """A stream's worker writes files in its workspace; then the stream is merged."""
    space = ws.prepare_workspace(root, run, sid)
    for name, text in (writes or {}).items():
        (space.cwd / name).write_text(text, encoding="utf-8")
    result = ws.merge_stream(root, run, sid)
    assert result.outcome is ws.MergeOutcome.MERGED, result
    ws.remove_workspace(root, sid)
    return result


# ---------------------------------------------------------------- names


def test_safe_names_are_valid_refs_distinct_and_readable(tmp_path):
    ids = HOSTILE + [f"s{i}" for i in range(50)] + [f"s {i}" for i in range(50)] + ["Stream-A", "stream-a"]
    names = [ws.safe_name(i) for i in ids]
    assert len(set(names)) == len(ids)
    for sid, name in zip(ids, names):
        done = subprocess.run(["git", "check-ref-format", "refs/heads/" + ws.stream_branch(sid)])
        assert done.returncode == 0, (sid, name)
        assert "/" not in name and not name.startswith((".", "-", "_")) and name != ws.INTEGRATION_FOLDER
    assert ws.stream_branch("Stream-A") == "stream/Stream-A"
    assert ws.worktree_path(tmp_path, "Stream-A") == tmp_path / ".claude" / "worktrees" / "Stream-A"
    assert ws.safe_name("a.lock") != ws.safe_name("a_lock")


def test_ids_that_differ_only_in_case_are_reported():
    assert ws.name_clashes(["Stream-A", "stream-a", "STREAM-A", "Stream-B", "b"]) == [
        ("STREAM-A", "Stream-A", "stream-a")]
    assert ws.name_clashes(HOSTILE) == []


def test_hostile_ids_get_worktrees_inside_the_worktrees_folder(repo):
    run = ws.start_run(repo)
    for sid in ["../x", "$(touch pwned)", "a\nb", "a.lock", "@{", "x" * 300]:
        space = ws.prepare_workspace(repo, run, sid)
        assert space.path.parent == repo / ".claude" / "worktrees"
        assert git(space.path, "symbolic-ref", "--short", "HEAD") == space.branch
    assert not (repo / "pwned").exists() and not (repo / ".claude" / "x").exists()


# ---------------------------------------------------------------- isolation and the run


def test_default_isolation(repo, tmp_path):
    assert ws.default_isolation(repo) == "worktree"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert ws.default_isolation(empty) == "none"
    git(empty, "init", "-q")
    assert ws.default_isolation(empty) == "none"  # a repository without a commit


def test_start_run_never_touches_the_users_checkout_and_continues(repo):
    (repo / "README.md").write_text("staged edit\n", encoding="utf-8")
    git(repo, "add", "README.md")
    (repo / "notes.txt").write_text("untracked\n", encoding="utf-8")
    before = user_view(repo)
    run = ws.start_run(repo)
    assert run.isolation == "worktree" and run.base == before[1]
    assert run.integration_branch.startswith("orchestrate/integration-")
    assert git(ws.integration_path(repo), "symbolic-ref", "--short", "HEAD") == run.integration_branch
    assert user_view(repo) == before  # .claude/worktrees/ is ignored: status unchanged too
    again = ws.start_run(repo, ws.RunInfo.from_dict(run.as_dict()))
    assert again == run
    shutil.rmtree(ws.integration_path(repo))  # even a deleted integration worktree comes back
    assert ws.start_run(repo, run) == run and ws.integration_path(repo).is_dir()
    assert len(worktree_list(repo)) == 2


def test_worktrees_are_ignored_even_without_the_installed_gitignore(repo):
    git(repo, "rm", "-q", ".claude/worktrees/.gitignore")
    commit_all(repo, "no ignore file")
    ws.start_run(repo)
    assert git(repo, "status", "--porcelain") == ""
    assert ".claude/worktrees/" in (repo / ".git" / "info" / "exclude").read_text(encoding="utf-8")


def test_a_lost_integration_branch_is_restored_from_the_record_else_a_clear_error(repo):
    run = ws.start_run(repo)
    tip = git(repo, "rev-parse", run.integration_branch)
    git(ws.integration_path(repo), "switch", "-q", "--detach")
    git(repo, "branch", "-q", "-D", run.integration_branch)
    again = ws.start_run(repo, run)
    assert git(repo, "rev-parse", run.integration_branch) == tip
    assert any("was deleted without the orchestrator" in note for note in again.notes)
    git(ws.integration_path(repo), "switch", "-q", "--detach")
    git(repo, "branch", "-q", "-D", run.integration_branch)
    shutil.rmtree(repo / ".git" / "orchestrate-kit")  # our record of it gone too
    with pytest.raises(ws.WorkspaceError, match="no longer exists"):
        ws.start_run(repo, run)


def test_a_new_start_over_an_unlanded_run_continues_it(repo):
    """run.json lost (or the project folder moved): the run is found in git and continued."""
    run = ws.start_run(repo)
    again = ws.start_run(repo)
    assert again == run
    assert any("continuing the unlanded run found in git" in note for note in again.notes)


def test_a_stream_that_never_had_a_workspace_merges_as_nothing(repo):
    run = ws.start_run(repo)
    result = ws.merge_stream(repo, run, "done-before-the-run")
    assert result.outcome is ws.MergeOutcome.MERGED and result.before == result.tip == run.base


# ---------------------------------------------------------------- the diamond


def test_diamond_dependents_see_their_dependencies_work_and_nothing_is_lost(repo):
    before = user_view(repo)
    run = ws.start_run(repo)
    finish(repo, run, "Stream-A", {"a.txt": "A\n"})
    b = ws.prepare_workspace(repo, run, "Stream-B")
    c = ws.prepare_workspace(repo, run, "Stream-C")
    assert (b.cwd / "a.txt").exists() and (c.cwd / "a.txt").exists()
    (b.cwd / "b.txt").write_text("B\n", encoding="utf-8")
    (c.cwd / "c.txt").write_text("C\n", encoding="utf-8")
    assert not (c.cwd / "b.txt").exists()  # parallel streams do not see each other's work in progress
    for sid in ("Stream-B", "Stream-C"):
        assert ws.merge_stream(repo, run, sid).outcome is ws.MergeOutcome.MERGED
        ws.remove_workspace(repo, sid)
    z = ws.prepare_workspace(repo, run, "Stream-Z")
    assert all((z.cwd / f).exists() for f in ("a.txt", "b.txt", "c.txt"))
    (z.cwd / "z.txt").write_text("Z\n", encoding="utf-8")
    ws.merge_stream(repo, run, "Stream-Z")
    ws.remove_workspace(repo, "Stream-Z")

    merges = git(repo, "log", "--merges", "--format=%s", run.integration_branch).splitlines()
    assert sorted(merges) == [f"Merge stream Stream-{s} (stream/Stream-{s})" for s in "ABCZ"]
    files = git(repo, "ls-tree", "--name-only", run.integration_branch).split()
    assert {"a.txt", "b.txt", "c.txt", "z.txt"} <= set(files)
    assert user_view(repo) == before
    assert working_trees(repo) == [str(repo), str(ws.integration_path(repo))]
    assert spares(repo) == ["_spare-1", "_spare-2"]  # finished worktrees parked for the next streams

    landed = ws.land(repo, run, ["Stream-A", "Stream-B", "Stream-C", "Stream-Z"])
    assert landed.fast_forward and landed.branch == "main" and landed.kept == ()
    assert all((repo / f).exists() for f in ("a.txt", "b.txt", "c.txt", "z.txt"))
    assert git(repo, "branch", "--list", "stream/*", "orchestrate/*") == ""
    assert worktree_list(repo) == [str(repo)]
    assert git(repo, "status", "--porcelain") == ""


# ---------------------------------------------------------------- what workers leave


def test_leftovers_self_commits_and_empty_streams_all_merge(repo):
    run = ws.start_run(repo)
    messy = ws.prepare_workspace(repo, run, "messy")
    (messy.cwd / "README.md").write_text("changed, not staged\n", encoding="utf-8")
    (messy.cwd / "new").mkdir()
    (messy.cwd / "new" / "untracked.txt").write_text("untracked\n", encoding="utf-8")
    result = ws.merge_stream(repo, run, "messy")
    assert result.outcome is ws.MergeOutcome.MERGED and result.committed_leftovers
    author = git(repo, "log", "-1", "--format=%an <%ae>|%s", "stream/messy")
    assert author == "orchestrate-kit <orchestrate-kit@localhost>|Work left uncommitted by stream messy"
    assert git(repo, "show", f"{run.integration_branch}:new/untracked.txt") == "untracked"

    tidy = ws.prepare_workspace(repo, run, "tidy")
    (tidy.cwd / "tidy.txt").write_text("committed by the agent\n", encoding="utf-8")
    commit_all(tidy.cwd, "agent's own commit")
    result = ws.merge_stream(repo, run, "tidy")
    assert result.outcome is ws.MergeOutcome.MERGED and not result.committed_leftovers
    assert git(repo, "log", "-1", "--format=%s", "stream/tidy") == "agent's own commit"

    ws.prepare_workspace(repo, run, "idle")
    tip = git(repo, "rev-parse", run.integration_branch)
    result = ws.merge_stream(repo, run, "idle")
    assert result.outcome is ws.MergeOutcome.MERGED and result.tip == result.before == tip
    for sid in ("messy", "tidy", "idle"):
        ws.remove_workspace(repo, sid)
    assert ws.remove_spares(repo) == []
    assert worktree_list(repo) == [str(repo), str(ws.integration_path(repo))]


def test_our_commits_use_the_users_identity_when_there_is_one_and_skip_hooks(repo):
    git(repo, "config", "user.name", "Real User")
    git(repo, "config", "user.email", "real@example.com")
    hooks = repo / ".git" / "hooks"
    for hook in ("pre-commit", "commit-msg", "pre-merge-commit"):
        (hooks / hook).write_text("#!/bin/sh\necho refused by hook >&2\nexit 1\n", encoding="utf-8")
        (hooks / hook).chmod(0o755)
    run = ws.start_run(repo)
    space = ws.prepare_workspace(repo, run, "S")
    (space.cwd / "s.txt").write_text("s\n", encoding="utf-8")
    assert ws.merge_stream(repo, run, "S").outcome is ws.MergeOutcome.MERGED
    assert git(repo, "log", "-1", "--format=%an", "stream/S") == "Real User"


# ---------------------------------------------------------------- conflicts


def conflicting_pair(repo):
    run = ws.start_run(repo)
    for sid, text in (("B", "line one by B\n"), ("C", "line one by C\n")):
        space = ws.prepare_workspace(repo, run, sid)
        (space.cwd / "shared.txt").write_text(text + "line two\n", encoding="utf-8")
    assert ws.merge_stream(repo, run, "B").outcome is ws.MergeOutcome.MERGED
    return run


def test_a_conflict_leaves_the_integration_worktree_clean_and_both_versions_on_branches(repo):
    run = conflicting_pair(repo)
    tip = git(repo, "rev-parse", run.integration_branch)
    result = ws.merge_stream(repo, run, "C")
    assert result.outcome is ws.MergeOutcome.CONFLICT and result.conflicts == ("shared.txt",)
    assert result.tip == tip == git(repo, "rev-parse", run.integration_branch)
    integ = ws.integration_path(repo)
    assert git(integ, "status", "--porcelain") == ""
    assert git(integ, "rev-parse", "-q", "--verify", "MERGE_HEAD", check=False) == ""
    assert git(repo, "show", "stream/B:shared.txt").startswith("line one by B")
    assert git(repo, "show", "stream/C:shared.txt").startswith("line one by C")
    assert git(ws.worktree_path(repo, "C"), "status", "--porcelain") == ""  # C's work is committed on stream/C


def test_hand_back_then_resolution_then_merge(repo):
    run = conflicting_pair(repo)
    assert ws.merge_stream(repo, run, "C").outcome is ws.MergeOutcome.CONFLICT
    files = ws.hand_back_conflict(repo, run, "C")
    assert files == ("shared.txt",)
    space = ws.workspace_of(repo, "C")
    assert "<<<<<<<" in (space.cwd / "shared.txt").read_text(encoding="utf-8")
    assert "conflicts not resolved in: shared.txt" in ws.hand_back_pending(repo, run, "C", files)
    assert ws.merge_stream(repo, run, "C").outcome is ws.MergeOutcome.UNRESOLVED

    (space.cwd / "shared.txt").write_text("line one by B and C\nline two\n", encoding="utf-8")
    git(space.cwd, "add", "shared.txt")
    assert "not committed" in ws.hand_back_pending(repo, run, "C", files)
    git(space.cwd, *USER, "commit", "-q", "--no-edit")
    assert ws.hand_back_pending(repo, run, "C", files) is None
    result = ws.merge_stream(repo, run, "C")
    assert result.outcome is ws.MergeOutcome.MERGED
    assert git(repo, "show", f"{run.integration_branch}:shared.txt").startswith("line one by B and C")


def test_hand_back_notices_markers_left_in_and_an_aborted_merge(repo):
    run = conflicting_pair(repo)
    ws.merge_stream(repo, run, "C")
    files = ws.hand_back_conflict(repo, run, "C")
    space = ws.workspace_of(repo, "C")
    git(space.cwd, "merge", "--abort")
    assert "not merged into stream/C" in ws.hand_back_pending(repo, run, "C", files)
    ws.hand_back_conflict(repo, run, "C")
    commit_all(space.cwd, "resolved (not really)")
    assert ws.hand_back_pending(repo, run, "C", files) == "conflict markers left in: shared.txt"


def test_a_resolution_left_uncommitted_is_committed_by_the_merge_unless_markers_remain(repo):
    run = conflicting_pair(repo)
    ws.merge_stream(repo, run, "C")
    ws.hand_back_conflict(repo, run, "C")
    space = ws.workspace_of(repo, "C")
    git(space.cwd, "add", "shared.txt")  # "resolved" with the markers still in
    with pytest.raises(ws.WorkspaceError, match="conflict markers in: shared.txt"):
        ws.merge_stream(repo, run, "C")
    (space.cwd / "shared.txt").write_text("settled\n", encoding="utf-8")
    result = ws.merge_stream(repo, run, "C")
    assert result.outcome is ws.MergeOutcome.MERGED and result.committed_leftovers
    assert git(repo, "show", f"{run.integration_branch}:shared.txt") == "settled"


def held_hand_back(repo, tmp_path):
    """C's merge conflicts on shared.txt, and B also brought asset.dat, whose checkout a smudge filter
    (as Git LFS installs one) holds in C's worktree until the test releases it: the hand-back's git
    merge writes shared.txt with its markers, then waits there. Returns (run, release file)."""
    release, script = tmp_path / "release", tmp_path / "smudge.sh"
    script.write_text('case "$PWD" in *_integration*) ;; *)\n'
                      f'  while [ ! -e {release} ]; do sleep 0.05; done;;\nesac\nexec cat\n', encoding="utf-8")
    (repo / ".gitattributes").write_text("*.dat filter=held\n", encoding="utf-8")
    git(repo, "config", "filter.held.clean", "cat")
    git(repo, "config", "filter.held.smudge", f"sh {script}")
    commit_all(repo, "held assets")
    run = ws.start_run(repo)
    for sid, text in (("B", "line one by B\n"), ("C", "line one by C\n")):
        space = ws.prepare_workspace(repo, run, sid)
        (space.cwd / "shared.txt").write_text(text + "line two\n", encoding="utf-8")
    (ws.workspace_of(repo, "B").cwd / "zz-asset.dat").write_text("asset\n", encoding="utf-8")
    assert ws.merge_stream(repo, run, "B").outcome is ws.MergeOutcome.MERGED
    return run, release


def test_a_hand_back_cut_short_is_put_aside_and_made_again_never_committed_as_leftovers(repo, tmp_path):
    """A merge step killed while its hand-back merge checks files out (a stop's deadline, or the
    orchestrator SIGKILLed and its orphaned step ended) leaves C's worktree half-merged: shared.txt
    with markers, no MERGE_HEAD, nothing in the index. The next merge must not commit that as C's
    leftovers (the markers would travel on towards the integration branch): it is kept under a ref
    and the hand-back made again."""
    run, release = held_hand_back(repo, tmp_path)
    assert ws.merge_stream(repo, run, "C").outcome is ws.MergeOutcome.CONFLICT
    code = ("import sys; from _orchestrate_kit.git import workspaces as ws; "
            "ws.hand_back_conflict(sys.argv[1], ws.find_run(sys.argv[1]), 'C')")
    step = subprocess.Popen([sys.executable, "-c", code, str(repo)], env=dict(os.environ, PYTHONPATH=str(RUNTIME)),
                            start_new_session=True)
    space = ws.workspace_of(repo, "C")
    try:
        wait_until(lambda: "<<<<<<<" in (space.cwd / "shared.txt").read_text(encoding="utf-8"), "the markers")
        os.killpg(step.pid, signal.SIGKILL)
        step.wait()
    finally:
        release.write_text("go\n", encoding="utf-8")
    assert git(space.cwd, "rev-parse", "-q", "--verify", "MERGE_HEAD", check=False) == ""
    tip = git(repo, "rev-parse", "stream/C")

    result = ws.merge_finished(repo, run, "C")
    assert result.outcome is ws.MergeOutcome.CONFLICT and result.conflicts == ("shared.txt",)
    assert not result.committed_leftovers and git(repo, "rev-parse", "stream/C") == tip
    assert git(space.cwd, "rev-parse", "MERGE_HEAD") == git(repo, "rev-parse", run.integration_branch)
    assert (space.cwd / "zz-asset.dat").read_text(encoding="utf-8") == "asset\n"  # the hand-back made whole
    kept = git(repo, "for-each-ref", "--format=%(refname)", "refs/orchestrate-kit/interrupted/").splitlines()
    assert len(kept) == 1 and "<<<<<<<" in git(repo, "show", f"{kept[0]}:shared.txt")
    assert any(kept[0] in note for note in result.notes), result.notes
    assert any("stale index.lock" in note for note in result.notes), result.notes  # the killed git's
    assert "<<<<<<<" not in git(repo, "show", f"{run.integration_branch}:shared.txt")


def test_a_hand_back_cut_short_is_put_aside_before_an_agent_works_there_again(repo, tmp_path):
    """The stream parked after its merge step was killed, then started again by the user: its agent
    gets the worktree back on its own commit, not the half merge."""
    run, release = held_hand_back(repo, tmp_path)
    ws.merge_stream(repo, run, "C")
    release.write_text("go\n", encoding="utf-8")
    space = ws.workspace_of(repo, "C")
    marker = ws._hand_back_marker(repo, "C")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text('{"tip": "%s"}\n' % git(repo, "rev-parse", "stream/C"), encoding="utf-8")
    (space.cwd / "shared.txt").write_text("<<<<<<< HEAD\nhalf\n", encoding="utf-8")  # as the killed merge left it
    (space.cwd / "zz-asset.dat").write_text("asset\n", encoding="utf-8")
    again = ws.prepare_workspace(repo, run, "C")
    assert git(space.cwd, "status", "--porcelain") == "" and not marker.exists()
    assert (space.cwd / "shared.txt").read_text(encoding="utf-8") == "line one by C\nline two\n"
    assert any("refs/orchestrate-kit/interrupted/" in note for note in again.notes), again.notes


def test_the_agents_work_after_a_hand_back_that_ended_is_merged_never_put_aside(repo):
    run = conflicting_pair(repo)
    ws.merge_stream(repo, run, "C")
    ws.hand_back_conflict(repo, run, "C")
    space = ws.workspace_of(repo, "C").cwd
    (space / "shared.txt").write_text("settled\n", encoding="utf-8")
    commit_all(space, "resolved")
    (space / "extra.txt").write_text("left uncommitted by the agent\n", encoding="utf-8")
    result = ws.merge_finished(repo, run, "C", handed_back=("shared.txt",))
    assert result.outcome is ws.MergeOutcome.MERGED and result.committed_leftovers and result.notes == ()
    assert git(repo, "show", f"{run.integration_branch}:extra.txt") == "left uncommitted by the agent"
    assert git(repo, "for-each-ref", "refs/orchestrate-kit/interrupted/") == ""


# ---------------------------------------------------------------- a failed merge check's merge undone
# (the check itself, as the loop runs it: test_merge_check_limits.py and test_merge_check_run.py)


def test_undoing_a_merge_moves_the_integration_branch_and_its_files_back_and_keeps_the_work(repo):
    run = ws.start_run(repo)
    finish(repo, run, "good", {"good.txt": "ok\n"})
    result = finish(repo, run, "bad", {"bad.txt": "breaks the build\n"})
    assert git(repo, "rev-parse", run.integration_branch) == result.tip != result.before
    ws.undo_merge(repo, run, result.before)
    assert git(repo, "rev-parse", run.integration_branch) == result.before
    assert not (ws.integration_path(repo) / "bad.txt").exists()
    assert (ws.integration_path(repo) / "good.txt").exists()
    assert git(repo, "show", "stream/bad:bad.txt") == "breaks the build"  # the work itself stays


# ---------------------------------------------------------------- recovery


def test_recovery_undoes_a_half_done_merge(repo):
    run = conflicting_pair(repo)
    integ = ws.integration_path(repo)
    tip = git(repo, "rev-parse", run.integration_branch)
    assert ws.commit_leftovers(repo, "C")
    git(integ, *USER, "merge", "--no-ff", "stream/C", check=False)  # killed here: MERGE_HEAD, markers
    assert git(integ, "rev-parse", "-q", "--verify", "MERGE_HEAD")
    with pytest.raises(ws.WorkspaceError, match="half-done merge"):
        ws.merge_stream(repo, run, "C")
    notes = ws.recover(repo, run)
    assert any("aborted a half-done merge" in n for n in notes)
    assert git(integ, "status", "--porcelain") == "" and git(repo, "rev-parse", run.integration_branch) == tip
    assert ws.merge_stream(repo, run, "C").outcome is ws.MergeOutcome.CONFLICT


def test_recovery_after_a_kill_between_merge_and_check_undoes_the_right_merge(repo):
    run = ws.start_run(repo)
    finish(repo, run, "first", {"1.txt": "1\n"})
    space = ws.prepare_workspace(repo, run, "second")
    (space.cwd / "2.txt").write_text("2\n", encoding="utf-8")
    merged = ws.merge_stream(repo, run, "second")
    (ws.integration_path(repo) / "README.md").write_text("check was rewriting this\n", encoding="utf-8")
    for name in ("index.lock", f"refs/heads/{run.integration_branch}.lock"):
        Path(git(ws.integration_path(repo), "rev-parse", "--git-path", name)).write_text("", encoding="utf-8")
    notes = ws.recover(repo, run)
    assert "removed a stale index.lock of the integration worktree" in notes
    assert f"removed a stale {run.integration_branch.split('/')[-1]}.lock of the integration worktree" in notes
    assert "restored the integration worktree to its last commit" in notes
    again = ws.merge_stream(repo, run, "second")  # the supervisor redoes the merge and the check
    assert (again.before, again.tip) == (merged.before, merged.tip)
    ws.undo_merge(repo, run, again.before)
    assert git(repo, "rev-parse", run.integration_branch) == merged.before


def test_recovery_removes_a_half_created_worktree_and_keeps_real_work(repo):
    run = ws.start_run(repo)
    busy = ws.prepare_workspace(repo, run, "busy")
    (busy.cwd / "precious.txt").write_text("uncommitted work\n", encoding="utf-8")
    # Killed inside `git worktree add`: registered, locked, checkout half written, our marker present.
    half = ws.worktree_path(repo, "half")
    ws._marker(half).write_text("123\n", encoding="utf-8")
    git(repo, "worktree", "add", "-q", "-b", "stream/half", str(half), run.integration_branch)
    git(repo, "worktree", "lock", "--reason", "initializing", str(half))
    (half / "README.md").unlink()
    # Killed after `git branch` but before the folder existed.
    early = ws.worktree_path(repo, "early")
    ws._marker(early).write_text("123\n", encoding="utf-8")
    git(repo, "branch", "stream/early", run.integration_branch)
    # A worktree folder someone deleted.
    gone = ws.prepare_workspace(repo, run, "gone")
    shutil.rmtree(gone.path)

    notes = ws.recover(repo, run)
    assert "removed half-created worktree .claude/worktrees/half" in notes
    assert "dropped the record of missing worktree .claude/worktrees/gone" in notes
    assert not half.exists() and not list((repo / ".claude" / "worktrees").glob(".*.creating"))
    assert (busy.cwd / "precious.txt").read_text(encoding="utf-8") == "uncommitted work\n"
    assert sorted(worktree_list(repo)) == sorted([str(repo), str(busy.path), str(ws.integration_path(repo))])
    for sid in ("half", "early", "gone"):
        space = ws.prepare_workspace(repo, run, sid)
        assert (space.cwd / "README.md").exists()
    assert ws.recover(repo, run) == []


def test_a_failed_worktree_add_leaves_nothing_behind(repo):
    run = ws.start_run(repo)
    git(repo, "branch", "stream")  # "stream/x" cannot exist next to a branch named "stream"
    with pytest.raises(ws.WorkspaceError) as caught:
        ws.prepare_workspace(repo, run, "x")
    assert "\n" not in str(caught.value) and "git worktree failed" in str(caught.value)
    assert not ws.worktree_path(repo, "x").exists()
    assert not list((repo / ".claude" / "worktrees").glob(".*.creating"))


def test_a_foreign_folder_in_the_way_is_refused_not_removed(repo):
    run = ws.start_run(repo)
    stranger = ws.worktree_path(repo, "S")
    stranger.mkdir()
    (stranger / "mine.txt").write_text("not yours\n", encoding="utf-8")
    with pytest.raises(ws.WorkspaceError, match="exists but is not a worktree"):
        ws.prepare_workspace(repo, run, "S")
    assert (stranger / "mine.txt").exists()


# ---------------------------------------------------------------- spare worktrees


def test_a_parked_worktree_becomes_the_next_streams_on_the_integration_tip(repo):
    run = ws.start_run(repo)
    first = ws.prepare_workspace(repo, run, "first")
    (first.cwd / "first.txt").write_text("1\n", encoding="utf-8")
    (first.cwd / "build.log").write_text("ignored output\n", encoding="utf-8")
    (repo / ".git" / "info" / "exclude").write_text("build.log\n", encoding="utf-8")
    ws.merge_stream(repo, run, "first")
    ws.remove_workspace(repo, "first")
    assert spares(repo) == ["_spare-1"] and not first.path.exists()
    assert git(repo, "branch", "--list", "stream/first", "--format=%(worktreepath)") == ""  # branch is free
    second = ws.prepare_workspace(repo, run, "second")
    assert spares(repo) == []
    assert git(second.path, "symbolic-ref", "--short", "HEAD") == "stream/second"
    assert git(second.path, "rev-parse", "HEAD") == git(repo, "rev-parse", run.integration_branch)
    assert git(second.path, "status", "--porcelain") == "" and (second.cwd / "first.txt").exists()
    assert (second.cwd / "build.log").exists()  # ignored files come along (warm build caches)
    (second.cwd / "second.txt").write_text("2\n", encoding="utf-8")
    assert ws.merge_stream(repo, run, "second").outcome is ws.MergeOutcome.MERGED
    assert git(repo, "show", f"{run.integration_branch}:second.txt") == "2"


def test_spares_are_capped_and_a_touched_spare_is_never_reused_or_removed(repo):
    run = ws.start_run(repo)
    for sid in ("s1", "s2", "s3"):
        ws.prepare_workspace(repo, run, sid)
    for sid in ("s1", "s2", "s3"):
        ws.merge_stream(repo, run, sid)
        ws.remove_workspace(repo, sid)
    assert spares(repo) == ["_spare-1", "_spare-2"]  # the third was removed
    touched = repo / ".claude" / "worktrees" / "_spare-1"
    (touched / "someone.txt").write_text("wrote here\n", encoding="utf-8")
    ws.prepare_workspace(repo, run, "next")
    assert spares(repo) == ["_spare-1"] and (touched / "someone.txt").exists()
    kept = ws.remove_spares(repo)
    assert len(kept) == 1 and "_spare-1" in kept[0] and (touched / "someone.txt").exists()


def test_recovery_after_a_kill_while_parking_or_taking_a_spare(repo):
    run = ws.start_run(repo)
    for sid in ("p", "q"):
        ws.prepare_workspace(repo, run, sid)
        ws.merge_stream(repo, run, sid)
    # Killed while parking p: moved, not yet detached from stream/p.
    git(repo, "worktree", "move", str(ws.worktree_path(repo, "p")), str(repo / ".claude/worktrees/_spare-1"))
    # Killed while q's spare was being taken by r: moved to r's folder, marker still there.
    ws.remove_workspace(repo, "q")
    spare = repo / ".claude" / "worktrees" / "_spare-2"
    ws._marker(ws.worktree_path(repo, "r")).write_text("1\n", encoding="utf-8")
    git(repo, "worktree", "move", str(spare), str(ws.worktree_path(repo, "r")))
    notes = ws.recover(repo, run)
    assert "detached spare worktree .claude/worktrees/_spare-1 from its branch" in notes
    assert "removed half-created worktree .claude/worktrees/r" in notes
    for sid in ("p", "r"):
        assert git(ws.prepare_workspace(repo, run, sid).path, "symbolic-ref", "--short", "HEAD") == f"stream/{sid}"


# ---------------------------------------------------------------- removal and land


def test_a_worktree_with_uncommitted_changes_is_never_removed(repo):
    run = ws.start_run(repo)
    space = ws.prepare_workspace(repo, run, "S")
    (space.cwd / "draft.txt").write_text("draft\n", encoding="utf-8")
    with pytest.raises(ws.WorkspaceError, match=r"not removing .claude/worktrees/S: it has uncommitted changes"):
        ws.remove_workspace(repo, "S")
    assert (space.cwd / "draft.txt").exists()
    ws.merge_stream(repo, run, "S")
    ws.remove_workspace(repo, "S")
    assert not space.path.exists() and git(repo, "rev-parse", "stream/S")


def test_land_refuses_a_dirty_tree_and_a_detached_head_then_lands(repo):
    run = ws.start_run(repo)
    finish(repo, run, "S", {"s.txt": "s\n"})
    (repo / "README.md").write_text("user's edit in progress\n", encoding="utf-8")
    with pytest.raises(ws.LandRefused, match="uncommitted changes .README.md."):
        ws.land(repo, run, ["S"])
    commit_all(repo, "user's own commit meanwhile")
    git(repo, "switch", "-q", "--detach")
    with pytest.raises(ws.LandRefused, match="HEAD is detached"):
        ws.land(repo, run, ["S"])
    git(repo, "switch", "-q", "main")
    landed = ws.land(repo, run, ["S", "never-started"])
    assert not landed.fast_forward and landed.deleted == ("stream/S", run.integration_branch)
    assert (repo / "s.txt").exists() and "user's edit" in (repo / "README.md").read_text(encoding="utf-8")
    assert git(repo, "log", "-1", "--format=%s") == f"Land {run.integration_branch}"
    assert worktree_list(repo) == [str(repo)]


def test_land_keeps_unmerged_stream_branches_and_undoes_a_conflicting_land(repo):
    run = conflicting_pair(repo)
    assert ws.merge_stream(repo, run, "C").outcome is ws.MergeOutcome.CONFLICT
    (repo / "shared.txt").write_text("line one by the user\nline two\n", encoding="utf-8")
    commit_all(repo, "user edits the same line")
    head = git(repo, "rev-parse", "HEAD")
    with pytest.raises(ws.LandRefused, match="conflicts with main in: shared.txt"):
        ws.land(repo, run, ["B", "C"])
    assert git(repo, "rev-parse", "HEAD") == head and git(repo, "status", "--porcelain") == ""
    git(repo, "reset", "-q", "--hard", "HEAD~1")  # the test's own repository: drop the user's edit
    landed = ws.land(repo, run, ["B", "C"])
    assert landed.fast_forward and [b for b, _ in landed.kept] == ["stream/C"]
    assert git(repo, "show", "stream/C:shared.txt").startswith("line one by C")
    assert ws.worktree_path(repo, "C").is_dir()  # its worktree stays with its branch


# ---------------------------------------------------------------- a project inside a larger repository


def test_a_project_in_a_subfolder_works_in_the_same_subfolder_of_its_worktrees(tmp_path):
    top = tmp_path / "mono"
    project = top / "apps" / "web"
    (project / ".claude" / "worktrees").mkdir(parents=True)
    shutil.copy(TEMPLATE_IGNORE, project / ".claude" / "worktrees" / ".gitignore")
    (top / "root.txt").write_text("root\n", encoding="utf-8")
    (project / "app.txt").write_text("app\n", encoding="utf-8")
    git(top, "init", "-q")
    commit_all(top, "monorepo")
    run = ws.start_run(project)
    space = ws.prepare_workspace(project, run, "S")
    assert space.cwd == space.path / "apps" / "web" and (space.cwd / "app.txt").exists()
    (space.cwd / "s.txt").write_text("s\n", encoding="utf-8")
    ws.merge_stream(project, run, "S")
    check = ws.merge_check_launch(project, "make test")  # the merge check runs in the merge's same subfolder
    assert check.cwd == ws.integration_path(project.resolve()) / "apps" / "web"
    assert (check.cwd / "s.txt").exists() and (check.cwd / "app.txt").exists()
    assert git(top, "status", "--porcelain") == ""


def test_isolation_none_refuses_git_operations_clearly(repo):
    with pytest.raises(ws.WorkspaceError, match="isolation is 'none'"):
        ws.prepare_workspace(repo, ws.RunInfo("none"), "S")


# ---------------------------------------------------------------- file claims (pure)


def test_overlapping_claims_only_for_streams_that_can_run_together():
    deps = {"A": [], "B": ["A"], "C": ["A"], "Z": ["B", "C"]}
    pairs = ws.concurrent_pairs(deps)
    assert pairs == [("B", "C")]
    claims = {"A": ["src/app.py"], "B": ["./src/app.py", "src/api.py", "docs/x.md"],
              "C": ["src/api.py", "src//app.py", "web.js"], "Z": ["src/api.py"]}
    assert ws.overlapping_claims(claims, pairs) == [("B", "C", ("src/api.py", "src/app.py"))]
    assert ws.overlapping_claims(claims, [("A", "Z"), ("C", "B")]) == [("B", "C", ("src/api.py", "src/app.py"))]
    assert ws.overlapping_claims({"B": ["x"], "C": ["y", ""]}, pairs) == []
    wide = {f"s{i}": [] for i in range(4)}
    assert len(ws.concurrent_pairs(wide)) == 6
