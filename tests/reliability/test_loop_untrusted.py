"""Issue 18's cases that belong to the supervisor loop: observed git steps, and the merge check as a
supervised child (one a killed orchestrator left is adopted with its verdict, never run twice).
Real processes through `orchestrate.py start`; what must happen waits on a condition."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.runtime.runtime_import import settings as st
from tests.support.project import Project, pid_alive
from tests.support.waiting import wait_until
from tests.support.taskdb import add_stream, make_db

from .checks import WAIT, wait_for


def held_checkouts(proj: Project) -> Path:
    """A smudge filter (as Git LFS installs one) that holds every checkout of a stream's worktree until
    the test creates the returned release file (the integration worktree's passes; its own deadline
    keeps a filter from waiting forever)."""
    release = proj.root.parent / "release-checkouts"
    script = proj.root.parent / "smudge.sh"
    script.write_text("case \"$PWD\" in *_integration*) ;; *)\n"
                      f"  n=0; while [ ! -e {release} ] && [ $n -lt {int(WAIT * 20)} ]; do sleep 0.05; n=$((n+1)); done;;\n"
                      "esac\nexec cat\n", encoding="utf-8")
    (proj.root / ".gitattributes").write_text("*.dat filter=held\n", encoding="utf-8")
    (proj.root / "asset.dat").write_text("asset\n", encoding="utf-8")
    proj.git("config", "filter.held.clean", "cat")
    proj.git("config", "filter.held.smudge", f"sh {script}")
    proj.git("add", "-A")
    proj.git("commit", "-q", "-m", "held assets")
    return release


def test_a_stop_while_worktrees_are_created_starts_nothing_after_it(repo):
    release = held_checkouts(repo)  # every stream's worktree is being created when the stop arrives
    make_db(repo.db)
    for n in range(1, 6):
        add_stream(repo.db, f"S{n}", [], 1)
    repo.plan({f"S{n}": ["hang"] for n in range(1, 6)})
    orchestrator = repo.start_background()
    try:
        wait_for(repo, lambda: len(list((repo.root / ".claude" / "worktrees").glob(".S*.creating"))) == 5,
                 "every stream's worktree being created")
        stop = repo.orchestrate("stop", "--grace", "1", timeout=WAIT)
        orchestrator.communicate(timeout=WAIT)
    finally:
        release.write_text("go\n", encoding="utf-8")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert repo.events("start") == [], "a worker started after the stop request"


def check_script(proj: Project, code: int) -> str:
    """A merge check that says when it starts and ends (pid, time) in a file of its own, and ends with
    `code` once the test creates its release file (its own deadline keeps it from running forever)."""
    record = proj.root.parent / "checks.jsonl"
    release = proj.root.parent / "release-check"
    script = proj.root.parent / "check.py"
    script.write_text(
        "import json, os, sys, time\n"
        f"out = open({str(record)!r}, 'a')\n"
        "out.write(json.dumps({'pid': os.getpid(), 'at': time.time(), 'what': 'start'}) + '\\n'); out.flush()\n"
        f"deadline = time.monotonic() + {WAIT}\n"
        f"while not os.path.exists({str(release)!r}) and time.monotonic() < deadline:\n"
        "    time.sleep(0.02)\n"
        "out.write(json.dumps({'pid': os.getpid(), 'at': time.time(), 'what': 'end'}) + '\\n')\n"
        f"sys.exit({code})\n", encoding="utf-8")
    return f"python3 {script}"


def check_events(proj: Project):
    path = proj.root.parent / "checks.jsonl"
    complete = path.read_text()[:path.read_text().rfind("\n") + 1] if path.exists() else ""
    return [json.loads(line) for line in complete.splitlines()]


def release_check(proj: Project) -> None:
    (proj.root.parent / "release-check").write_text("go\n", encoding="utf-8")


def journal_kinds(proj: Project, stream: str):
    """The merge and check events of `stream` in every journal of the project, in order."""
    kinds = []
    for path in sorted((st.layout_for(proj.home).state / "journal").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            event = json.loads(line)
            if event.get("stream") == stream and event["kind"].startswith(("merge", "check")):
                kinds.append(event["kind"])
    return kinds


class Lines:
    """A background orchestrator's output (stdout and stderr), collected by threads as it is printed."""

    def __init__(self, process):
        self.lines: list = []
        self.threads = [threading.Thread(target=self.lines.extend, args=(stream,), daemon=True)
                        for stream in (process.stdout, process.stderr)]
        for thread in self.threads:
            thread.start()

    def saying(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def all(self) -> str:
        for thread in self.threads:
            thread.join(timeout=WAIT)
        return "".join(self.lines)


def orphan_a_merge_check(proj: Project, code: int) -> None:
    """Run stream A to its merge check, then SIGKILL the orchestrator: the check runs on, orphaned."""
    proj.configure(merge_check=check_script(proj, code))
    make_db(proj.db)
    add_stream(proj.db, "A", [], 1)
    proj.plan({"A": ["write"]})
    proj.start_and_kill_when(lambda: check_events(proj), "the first merge check", timeout=WAIT)


def restart_and_take_the_verdict(proj: Project, when: str):
    """`start` again with the orphaned check still running (adopted), or once it has ended (settled
    from its status): its output and exit code."""
    if when == "ended":
        release_check(proj)
        wait_for(proj, lambda: any(e["what"] == "end" for e in check_events(proj)), "the orphaned check's end")
    again = proj.start_background()
    said = Lines(again)
    if when == "running":
        wait_for(proj, lambda: said.saying("still runs; watching it"), "the restart adopting the check")
        release_check(proj)
    again.wait(timeout=WAIT)
    return again.returncode, said.all()


def kill_checks_left(proj: Project) -> None:
    for e in check_events(proj):
        if pid_alive(e["pid"]):
            os.kill(e["pid"], signal.SIGKILL)


@pytest.mark.parametrize("when", ["running", "ended"])
def test_a_killed_orchestrators_passing_merge_check_is_adopted_and_never_run_again(repo, when):
    orphan_a_merge_check(repo, 0)
    before = repo.git("rev-parse", repo.status()["run"]["integration_branch"] + "^1").strip()
    try:
        code, said = restart_and_take_the_verdict(repo, when)
        assert code == 0, said
        started = [e for e in check_events(repo) if e["what"] == "start"]
        assert len(started) == 1, f"the merge check ran again: {started}\n{said}"
        assert repo.states() == {"A": "complete"}, said
        branch = repo.status()["run"]["integration_branch"]
        assert "A.txt" in repo.git("ls-tree", "--name-only", branch).split()
        assert repo.git("rev-parse", branch + "^1").strip() == before  # the merge the first check checked
        assert journal_kinds(repo, "A")[-3:] == ["check_started", "check_passed", "merged"], said
        assert "merged and checked again" not in said
        assert not (st.layout_for(repo.home).state / "merge_check.json").exists()
    finally:
        kill_checks_left(repo)


@pytest.mark.parametrize("when", ["running", "ended"])
def test_a_killed_orchestrators_failing_merge_check_fails_its_stream_once_and_undoes_the_merge(repo, when):
    orphan_a_merge_check(repo, 3)
    branch = repo.status()["run"]["integration_branch"]
    before = repo.git("rev-parse", branch + "^1").strip()
    try:
        code, said = restart_and_take_the_verdict(repo, when)
        assert code != 0, said
        started = [e for e in check_events(repo) if e["what"] == "start"]
        assert len(started) == 1, f"the merge check ran again: {started}\n{said}"
        assert repo.states() == {"A": "check_failed"}, said
        reason = repo.status()["streams"][0]["description"]
        assert "failed (code 3" in reason and "its merge was undone" in reason, reason
        assert repo.git("rev-parse", branch).strip() == before  # back where it was before A's merge
        assert "A.txt" not in repo.git("ls-tree", "--name-only", branch).split()
        assert journal_kinds(repo, "A")[-2:] == ["check_started", "check_failed"], said
    finally:
        kill_checks_left(repo)


def test_an_orphaned_check_is_not_trusted_once_the_integration_branch_moved(repo):
    orphan_a_merge_check(repo, 0)
    integration = repo.root / ".claude" / "worktrees" / "_integration"
    repo.git("commit", "-q", "--allow-empty", "-m", "an agent's stray commit", cwd=integration)
    release_check(repo)  # the orphan may pass now: its verdict is about a tip the branch has left
    try:
        again = repo.orchestrate("start", timeout=WAIT)
        said = again.stdout + again.stderr
        assert again.returncode == 0, said
        assert "is no longer at the merge" in said and "merged and checked again" in said, said
        assert len([e for e in check_events(repo) if e["what"] == "start"]) == 2, said  # checked again
        assert repo.states() == {"A": "complete"}, said
    finally:
        kill_checks_left(repo)


def test_an_adopted_checks_timeout_counts_from_its_real_start(repo):
    orphan_a_merge_check(repo, 0)  # it waits for a release that never comes
    repo.configure(merge_check=check_script(repo, 0), merge_check_timeout=0.05)  # the same check, 3 s now
    try:
        again = repo.orchestrate("start", timeout=WAIT)
        said = again.stdout + again.stderr
        assert again.returncode != 0, said
        assert "still runs; watching it" in said, said
        assert len([e for e in check_events(repo) if e["what"] == "start"]) == 1, said
        assert repo.states() == {"A": "check_failed"}, said
        assert "timed out after 3 s" in repo.status()["streams"][0]["description"]
        assert all(not pid_alive(e["pid"]) for e in check_events(repo))  # ended with its whole tree
    finally:
        kill_checks_left(repo)


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
        # Ended with the check's tree (a KILL) before the run ended; the kernel finishes it on its own time.
        wait_until(lambda: not pid_alive(child), "the merge check's `nohup sleep &` to end with the run", timeout=10)
    finally:
        if pid_alive(child):
            os.kill(child, signal.SIGKILL)
