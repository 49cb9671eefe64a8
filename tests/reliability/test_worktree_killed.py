"""The orchestrator SIGKILLed at random moments of a worktree run: while it creates worktrees, commits
leftovers, merges and runs the merge check (issue 18).

Each round runs the eight-stream graph of `checks.LAYERED` in a git project with worktree isolation,
every worker writing its own file, a merge check on every merge, and kills the orchestrator one to
three times at random; then one last `start` must finish the run. Over all rounds the goal is 0
duplicate workers, 0 lost files (every stream's file on the integration branch), 0 stale locks (no
creation marker, no locked worktree, no git lock file, no half-done merge) and every round complete.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.support.project import Project

from .checks import LAYERED, killed_at_random, layered_db, unfinished_streams
from .conftest import ROUNDS, soak_timeout


def stale_locks(project: Project) -> list:
    """What a killed git or orchestrator can leave that would wedge the next one."""
    worktrees = project.root / ".claude" / "worktrees"
    found = [str(p) for p in worktrees.glob(".*.creating")]
    listing = project.git("worktree", "list", "--porcelain")
    found += [line for line in listing.splitlines() if line.startswith("locked")]
    git_dir = project.root / ".git"
    found += [str(p) for p in git_dir.rglob("*.lock") if "orchestrate-kit" not in p.parts]
    integration = worktrees / "_integration"
    if integration.is_dir() and project.git("status", "--porcelain", "--untracked-files=no", cwd=integration):
        found.append("the integration worktree has changes")
    return found


def lost_files(project: Project) -> list:
    branch = project.status()["run"]["integration_branch"]
    on_branch = set(project.git("ls-tree", "--name-only", branch).split()) if branch else set()
    return sorted(f"{sid}.txt" for sid in LAYERED if f"{sid}.txt" not in on_branch)


def one_round(project: Project, rng, totals: Counter) -> None:
    layered_db(project.db, tasks=1)
    project.plan({sid: ["write"] for sid in LAYERED})
    project.env["FAKE_CLAUDE_DELAY"] = "0.05"
    for killed in killed_at_random(project, rng, rng.randint(1, 3), (0.2, 2.5), timeout=60):
        totals["kills"] += killed
    final = project.orchestrate("start", timeout=180)
    said = final.stdout + final.stderr
    assert "Traceback" not in said and "internal error" not in said, said
    totals["final run failed"] += final.returncode != 0
    totals["duplicates"] += len(project.events("duplicate"))
    totals["unfinished"] += len(unfinished_streams(project))
    totals["lost files"] += len(lost_files(project))
    totals["stale locks"] += len(stale_locks(project))
    totals["recovered"] += said.count("recovered:")


@pytest.mark.soak
@pytest.mark.timeout(soak_timeout(90))
def test_killed_during_worktrees_and_merges_loses_nothing_and_leaves_no_lock(tmp_path, rng, capsys):
    totals: Counter = Counter()
    for number in range(ROUNDS):
        project = Project.create_git(tmp_path / f"round-{number}", {"merge_check": "sleep 0.3"})
        try:
            one_round(project, rng, totals)
        finally:
            project.stop_leftovers()
    with capsys.disabled():
        print(f"\n[soak] orchestrator killed in worktree runs: {ROUNDS} rounds, {totals['kills']} kills; "
              f"duplicates {totals['duplicates']}, lost files {totals['lost files']}, stale locks "
              f"{totals['stale locks']}, unfinished {totals['unfinished']}, failed final runs "
              f"{totals['final run failed']}; {totals['recovered']} repairs said")
    bad = {k: totals[k] for k in ("duplicates", "lost files", "stale locks", "unfinished", "final run failed")}
    assert bad == dict.fromkeys(bad, 0), dict(totals)

