"""Issue 18's cases that belong to the supervisor loop (being rebuilt: observed git steps, the merge
check as a supervised child). Each is a real-process test that fails today and is marked
`xfail` with the reason, so it shows as XPASS (and must be unmarked) when the loop does it."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.support.project import Project, pid_alive
from tests.support.taskdb import add_stream, make_db

WAIT = 120.0  # a deadline for what must happen, never a measured time


@pytest.fixture
def repo(tmp_path):
    proj = Project.create_git(tmp_path)
    yield proj
    proj.orchestrate("stop", "--grace", "1", timeout=30)


def wait_for(predicate, what):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if predicate():
            return predicate()
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def slow_checkouts(proj: Project, seconds_per_file: float, files: int) -> None:
    """A smudge filter (as Git LFS installs one) that makes every checkout of the project slow."""
    (proj.root / ".gitattributes").write_text("*.dat filter=slow\n", encoding="utf-8")
    for n in range(files):
        (proj.root / f"asset{n}.dat").write_text(f"asset {n}\n", encoding="utf-8")
    proj.git("config", "filter.slow.clean", "cat")
    proj.git("config", "filter.slow.smudge", f"sleep {seconds_per_file}; cat")
    proj.git("add", "-A")
    proj.git("commit", "-q", "-m", "slow assets")


def test_a_stop_while_worktrees_are_created_starts_nothing_after_it(repo):
    slow_checkouts(repo, 2.0, 1)  # about 2 s per worktree
    make_db(repo.db)
    for n in range(1, 6):
        add_stream(repo.db, f"S{n}", [], 1)
    repo.plan({f"S{n}": ["hang"] for n in range(1, 6)})
    orchestrator = repo.start_background()
    wait_for(lambda: list((repo.root / ".claude" / "worktrees").glob(".S*.creating")), "a stream worktree being created")
    asked = time.time()
    stop = repo.orchestrate("stop", "--grace", "1", timeout=WAIT)
    orchestrator.communicate(timeout=WAIT)
    late = [e["stream"] for e in repo.events("start") if e["time"] > asked]
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert late == [], f"started after the stop request: {late}"


def check_script(proj: Project, seconds: float) -> str:
    """A merge check that says when it starts and ends (pid, time) in a file of its own."""
    record = proj.root.parent / "checks.jsonl"
    script = proj.root.parent / "check.py"
    script.write_text(
        "import json, os, sys, time\n"
        f"out = open({str(record)!r}, 'a')\n"
        "out.write(json.dumps({'pid': os.getpid(), 'at': time.time(), 'what': 'start'}) + '\\n'); out.flush()\n"
        f"time.sleep({seconds})\n"
        "out.write(json.dumps({'pid': os.getpid(), 'at': time.time(), 'what': 'end'}) + '\\n')\n", encoding="utf-8")
    return f"python3 {script}"


def check_events(proj: Project):
    path = proj.root.parent / "checks.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# Not strict: under load the orphaned check can end on its own before the restart reaches it, and then
# the test passes by luck. Open until a restarted orchestrator adopts the orphan's verdict (it needs the
# check's merge base and log offset saved) instead of KILLing it and running a second check.
@pytest.mark.xfail(strict=False, reason="open (issue 18): a restarted orchestrator KILLs the orphaned merge check "
                                        "and runs a second one; adopting its verdict is not built yet")
def test_a_killed_orchestrators_merge_check_never_runs_twice_at_once(repo):
    command = check_script(repo, 4)
    repo.configure(merge_check=command)
    make_db(repo.db)
    add_stream(repo.db, "A", [], 1)
    repo.plan({"A": ["write"]})
    first = repo.start_background()
    wait_for(lambda: check_events(repo), "the first merge check")
    os.kill(first.pid, signal.SIGKILL)
    first.communicate(timeout=WAIT)
    again = repo.orchestrate("start", timeout=WAIT)
    assert again.returncode == 0, again.stdout + again.stderr
    events = check_events(repo)
    started = [e for e in events if e["what"] == "start"]
    try:
        for later in started[1:]:
            ended = [e["at"] for e in events if e["what"] == "end" and e["pid"] == started[0]["pid"]]
            assert ended and ended[0] <= later["at"], "two merge checks ran at once in one worktree"
    finally:
        for e in started:
            if pid_alive(e["pid"]):
                os.kill(e["pid"], signal.SIGKILL)


def test_a_merge_checks_background_child_does_not_outlive_the_run(repo):
    pid_file = repo.root.parent / "check-child.pid"
    repo.configure(merge_check=f"nohup sleep 300 >/dev/null 2>&1 & echo $! > {pid_file}")
    make_db(repo.db)
    add_stream(repo.db, "A", [], 1)
    repo.plan({"A": ["write"]})
    result = repo.orchestrate("start", timeout=WAIT)
    assert result.returncode == 0, result.stdout + result.stderr
    child = int(pid_file.read_text())
    try:
        assert not pid_alive(child), "the merge check's `nohup sleep &` outlived the run"
    finally:
        if pid_alive(child):
            os.kill(child, signal.SIGKILL)
