"""Worktree isolation end to end: the real orchestrator as a process, real git, the fake claude on PATH.

Each stream works in .claude/worktrees/<name> on stream/<name>; finished streams are merged into
the run's integration branch in dependency order; `land` brings the result into the user's branch.
"""

import os
import signal
import subprocess
import sys

from tests.support.project import Project, pid_alive
from tests.support.taskdb import add_stream, add_task, diamond, make_db

DIAMOND = ("Stream-A", "Stream-B", "Stream-C", "Stream-Z")


def user_view(proj: Project) -> tuple:
    """What the user's checkout shows: branch, HEAD, and `git status`."""
    return (proj.git("symbolic-ref", "HEAD").strip(), proj.git("rev-parse", "HEAD").strip(),
            proj.git("status", "--porcelain", "--untracked-files=all"))


def files_on(proj: Project, ref: str) -> set:
    return set(proj.git("ls-tree", "-r", "--name-only", ref).split())


def worktrees(proj: Project) -> list:
    return [line[len("worktree "):] for line in proj.git("worktree", "list", "--porcelain").splitlines()
            if line.startswith("worktree ")]


def run_info(proj: Project) -> dict:
    return proj.status()["run"]


def stream_json(proj: Project, sid: str) -> dict:
    return next(s for s in proj.status()["streams"] if s["stream_id"] == sid)


def test_the_diamond_merges_in_dependency_order_and_lands(repo):
    diamond(repo.db)
    # Z's worker fails unless B's and C's work is in its folder: it must start from their merge.
    repo.plan({"Stream-A": ["write"], "Stream-B": ["write"], "Stream-C": ["commit"],
               "Stream-Z": ["require:Stream-B,Stream-C"]})
    before = user_view(repo)

    result = repo.orchestrate("start")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "orchestrate.py land" in result.stdout
    assert user_view(repo) == before  # branch, HEAD and status untouched until land
    starts = repo.events("start")
    assert sorted(e["stream"] for e in starts) == sorted(DIAMOND)  # Z never failed for want of B's or C's work
    for event in starts:  # each worker ran in its own worktree and was told so
        assert event["cwd"] == str(repo.root / ".claude" / "worktrees" / event["stream"])
        assert f"on branch stream/{event['stream']}" in event["prompt"] and "Never switch branches" in event["prompt"]
    run = run_info(repo)
    branch = run["integration_branch"]
    assert run["isolation"] == "worktree" and run["base"] == before[1]
    assert {f"{sid}.txt" for sid in DIAMOND} <= files_on(repo, branch)
    merges = repo.git("log", "--merges", "--format=%s", f"{run['base']}..{branch}").splitlines()
    assert sorted(m.split(" (")[0] for m in merges) == sorted(f"Merge stream {sid}" for sid in DIAMOND)
    assert merges[0].startswith("Merge stream Stream-Z")  # Z last: merged after both of its dependencies
    z = stream_json(repo, "Stream-Z")
    assert z["state"] == "complete" and z["branch"] == "stream/Stream-Z" and z["worktree"] is None

    tip = repo.git("rev-parse", branch).strip()
    landed = repo.orchestrate("land")

    assert landed.returncode == 0, landed.stderr
    assert "fast-forwarded" in landed.stdout and repo.git("rev-parse", "HEAD").strip() == tip
    assert {f"{sid}.txt" for sid in DIAMOND} <= files_on(repo, "HEAD")
    assert repo.git("status", "--porcelain") == ""
    assert worktrees(repo) == [str(repo.root)]  # no stale entries
    assert repo.git("branch", "--list", "stream/*", "orchestrate/*") == ""
    assert run_info(repo)["integration_branch"] is None


def test_a_conflict_is_handed_back_once_then_parked_until_resolved_by_hand(repo):
    diamond(repo.db)
    # B and C write the same line; the hand-back attempt ("ok") does not resolve anything.
    # A changes nothing at all: an empty merge.
    repo.plan({"Stream-A": ["ok"], "Stream-B": ["edit-shared", "ok"], "Stream-C": ["edit-shared", "ok"],
               "Stream-Z": ["write"]})

    result = repo.orchestrate("start")

    assert result.returncode == 1, result.stdout + result.stderr
    states = repo.states()
    parked = [sid for sid, state in states.items() if state == "merge_conflict"]
    assert len(parked) == 1 and states["Stream-Z"] == "waiting", states
    sid = parked[0]
    other = ({"Stream-B", "Stream-C"} - {sid}).pop()
    handed = [e for e in repo.events("start") if e["stream"] == sid]
    assert len(handed) == 2 and "shared.txt" in handed[1]["prompt"] and "conflicted" in handed[1]["prompt"]
    assert not [e for e in repo.events("start") if e["stream"] == "Stream-Z"]
    view = stream_json(repo, sid)
    assert "shared.txt" in view["description"] and f"orchestrate.py start {sid}" in view["description"]
    assert view["worktree"] == str(repo.root / ".claude" / "worktrees" / sid)
    text = repo.orchestrate("status").stdout
    frame = subprocess.run([sys.executable, str(repo.home / "check_streams_data.py")], env=repo.env, cwd=repo.root,
                           capture_output=True, text=True, timeout=60).stdout
    assert "D\tmerge_conflict: merge conflict still open (conflicts not resolved in: shared.txt)" in frame
    assert f"{sid}: merge conflict still open" in result.stdout  # the orchestrator's log says it too
    assert f"{sid}: merge_conflict: merge conflict still open (conflicts not resolved in: shared.txt)" in text
    # Both versions are recoverable from their branches.
    assert sid in repo.git("show", f"stream/{sid}:shared.txt") or "<<<<<<<" in (
        repo.root / ".claude" / "worktrees" / sid / "shared.txt").read_text()
    assert other in repo.git("show", f"stream/{other}:shared.txt")

    folder = repo.root / ".claude" / "worktrees" / sid
    (folder / "shared.txt").write_text("both B and C, resolved by hand\n", encoding="utf-8")
    repo.git("add", "shared.txt", cwd=folder)
    repo.git("commit", "-q", "--no-edit", cwd=folder)
    again = repo.orchestrate("start", sid)
    assert again.returncode == 0, again.stdout + again.stderr
    assert repo.states()[sid] == "complete"
    rest = repo.orchestrate("start")
    assert rest.returncode == 0, rest.stdout + rest.stderr
    branch = run_info(repo)["integration_branch"]
    assert repo.git("show", f"{branch}:shared.txt") == "both B and C, resolved by hand\n"
    assert "Stream-Z.txt" in files_on(repo, branch)


def test_an_agent_resolves_the_handed_back_conflict(repo):
    make_db(repo.db)
    add_stream(repo.db, "Stream-B", [], 1, "B")
    add_stream(repo.db, "Stream-C", [], 1, "C")
    repo.plan({"Stream-B": ["edit-shared", "resolve"], "Stream-C": ["edit-shared", "resolve"]})

    result = repo.orchestrate("start")

    assert result.returncode == 0, result.stdout + result.stderr
    assert len(repo.events("resolved")) == 1
    shared = repo.git("show", f"{run_info(repo)['integration_branch']}:shared.txt")
    assert "Stream-B" in shared and "Stream-C" in shared and "<<<<" not in shared


def test_a_failing_merge_check_undoes_the_merge_and_holds_dependents(repo):
    diamond(repo.db)
    repo.configure(merge_check="echo checking the merged tree; test ! -f Stream-B.txt")
    repo.plan({"Stream-A": ["write"], "Stream-B": ["write"], "Stream-C": ["write"],
               "Stream-Z": ["require:Stream-B,Stream-C"]})

    result = repo.orchestrate("start")

    assert result.returncode == 1, result.stdout + result.stderr
    states = repo.states()
    assert states["Stream-B"] == "check_failed" and states["Stream-C"] == "complete", states
    assert states["Stream-Z"] == "waiting" and not [e for e in repo.events("start") if e["stream"] == "Stream-Z"]
    branch = run_info(repo)["integration_branch"]
    on_branch = files_on(repo, branch)
    assert "Stream-B.txt" not in on_branch and {"Stream-A.txt", "Stream-C.txt"} <= on_branch
    assert "Merge stream Stream-B" not in repo.git("log", "--format=%s", branch)
    assert "checking the merged tree" in repo.orchestrate("logs", "Stream-B").stdout
    assert "Stream-B.txt" in repo.git("ls-tree", "--name-only", "stream/Stream-B")  # the work is kept
    assert "orchestrate.py start Stream-B" in stream_json(repo, "Stream-B")["description"]


def test_sigkill_during_a_merge_and_a_half_created_worktree_recover_on_start(repo):
    make_db(repo.db)
    add_stream(repo.db, "Stream-A", [], 1, "A")
    add_stream(repo.db, "Stream-B", ["Stream-A"], 1, "B")
    mark = repo.root.parent / "check-started"
    repo.configure(merge_check=f"echo $$ > {mark}; sleep 60")
    repo.plan({"Stream-A": ["write"], "Stream-B": ["write"]})
    repo.start_and_kill_when(mark.exists, "the merge check of Stream-A")  # merged, its merge not accepted yet
    check_pid = int(repo.wait_for(lambda: mark.read_text().strip(), what="the check's pid"))
    os.killpg(os.getpgid(check_pid), signal.SIGKILL)  # the check ran in a session of its own (its wrapper's)
    repo.wait_for(lambda: not pid_alive(check_pid), what="the check to end")
    assert repo.states()["Stream-A"] == "merging"
    branch = run_info(repo)["integration_branch"]
    # And the leftovers of a kill inside `git worktree add` for B: our marker, a locked half checkout.
    half = repo.root / ".claude" / "worktrees" / "Stream-B"
    (half.parent / ".Stream-B.creating").write_text("1\n", encoding="utf-8")
    repo.git("worktree", "add", "-q", "-b", "stream/Stream-B", str(half), branch)
    repo.git("worktree", "lock", "--reason", "initializing", str(half))
    (half / "README.md").unlink()
    repo.configure(merge_check="true")
    refused = repo.orchestrate("start", "--isolation", "none")  # A's merge must not be skipped
    assert refused.returncode == 1 and "Stream-A still wait(s) to be merged" in refused.stderr

    result = repo.orchestrate("start")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "recovered: removed half-created worktree" in result.stdout
    log = repo.git("log", "--format=%s", branch)
    assert log.count("Merge stream Stream-A") == 1 and log.count("Merge stream Stream-B") == 1
    assert {"Stream-A.txt", "Stream-B.txt", "README.md"} <= files_on(repo, branch)
    assert repo.git("status", "--porcelain", cwd=repo.root / ".claude" / "worktrees" / "_integration") == ""
    assert sorted(worktrees(repo)) == sorted([str(repo.root), str(repo.root / ".claude" / "worktrees" / "_integration"),
                                              str(repo.root / ".claude" / "worktrees" / "_spare-1")])


def test_isolation_none_keeps_workers_in_the_project_root(repo):
    diamond(repo.db, tasks=1)
    result = repo.orchestrate("start", "--isolation", "none")
    assert result.returncode == 0, result.stdout + result.stderr
    assert {e["cwd"] for e in repo.events("start")} == {str(repo.root)}
    assert run_info(repo)["isolation"] == "none" and run_info(repo)["integration_branch"] is None
    assert worktrees(repo) == [str(repo.root)]
    assert all(s["branch"] is None and s["worktree"] is None for s in repo.status()["streams"])


def test_plan_and_start_warn_about_shared_file_claims_and_refuse_case_clashes(repo):
    make_db(repo.db)
    for sid, deps in (("Stream-A", []), ("Stream-B", ["Stream-A"]), ("Stream-C", ["Stream-A"])):
        metadata = {"streamId": sid, "dependencies": deps, "files": ["src/app.py", f"./{sid}.py"]}
        add_task(repo.db, metadata, "pending")
    plan = repo.orchestrate("plan")
    assert "Stream-B and Stream-C may run at the same time and both claim src/app.py" in plan.stderr
    assert "Stream-A and Stream-B" not in plan.stderr  # B depends on A: never at the same time
    dry = repo.orchestrate("start", "--dry-run")
    assert dry.returncode == 0 and "both claim src/app.py" in dry.stderr

    add_stream(repo.db, "stream-a", [], 1, "a clash")
    refused = repo.orchestrate("start")
    assert refused.returncode == 2 and "differ only in case" in refused.stderr
    assert repo.orchestrate("plan").returncode == 2
    assert worktrees(repo) == [str(repo.root)] and not repo.events("start")
