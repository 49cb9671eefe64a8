"""Merges run as observed steps (issue 18, "the loop blocks inside git"): the real orchestrator, the fake
claude, real git, with a clean filter (as Git LFS installs one) that blocks git while it commits a
worker's leftover file until the test releases it. While it blocks, the loop goes on: another stream's
completion is recorded and a stop ends the run; the next start merges the stream with nothing lost.
Order is asserted through the run's journal, never a measured time."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys

import pytest

import tests.runtime.runtime_import  # noqa: F401  (puts the runtime on sys.path)
from _orchestrate_kit.journal import journal_path, read_journal, run_ids  # noqa: E402
from _orchestrate_kit.settings import layout_for  # noqa: E402
from tests.support.project import Project, pid_alive
from tests.support.taskdb import add_stream, make_db

from .checks import WAIT, wait_for


@pytest.fixture
def repo(tmp_path):
    proj = Project.create_git(tmp_path)
    yield proj
    (tmp_path / "release").touch()  # never leave a git blocked in the filter
    proj.stop_leftovers()


def blocking_filter(proj: Project, pattern: str):
    """Every `git add` of a file matching `pattern` (in any worktree) blocks in the clean filter until the
    file `release` exists; the filter writes its pid to `started` first. Returns (started, release)."""
    started, release = proj.root.parent / "filter-started", proj.root.parent / "release"
    script = proj.root.parent / "filter.sh"
    script.write_text(f"#!/bin/sh\necho $$ > '{started}'\nwhile [ ! -e '{release}' ]; do sleep 0.05; done\n"
                      "exec cat\n", encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    common = proj.root / proj.git("rev-parse", "--git-common-dir").strip()
    (common / "info").mkdir(exist_ok=True)
    (common / "info" / "attributes").write_text(f"{pattern} filter=block\n", encoding="utf-8")
    proj.git("config", "filter.block.clean", str(script))
    return started, release


def journal(proj: Project):
    folder = layout_for(proj.home).journals
    ids = run_ids(folder) if folder.is_dir() else []
    return [e for run in ids for e in read_journal(journal_path(folder, run))]


def index_of(events, kind, stream):
    found = [n for n, e in enumerate(events) if e["kind"] == kind and e.get("stream") == stream]
    return found[0] if found else None


def integration_file(proj: Project, name: str) -> str:
    branch = proj.status()["run"]["integration_branch"]
    return proj.git("show", f"{branch}:{name}")


def test_a_stream_completes_and_is_recorded_while_another_streams_merge_blocks_in_git(repo, tmp_path):
    started, release = blocking_filter(repo, "A.txt")
    gate = tmp_path / "gate"
    repo.env["FAKE_CLAUDE_GATE"] = str(gate)
    make_db(repo.db)
    add_stream(repo.db, "A", [], 1)
    add_stream(repo.db, "B", [], 1)
    repo.plan({"A": ["write"], "B": ["gated"]})  # A leaves A.txt uncommitted; B waits for the gate
    orchestrator = repo.start_background()
    wait_for(repo, started.exists, "A's leftover commit to block in the clean filter")
    gate.touch()  # B completes its tasks and exits while A's merge is still inside git
    wait_for(repo, lambda: index_of(journal(repo), "attempt_ended", "B") is not None,
             "B's completion recorded while A's merge blocks")
    assert not release.exists() and index_of(journal(repo), "merged", "A") is None
    release.touch()
    out, err = orchestrator.communicate(timeout=WAIT)
    assert orchestrator.returncode == 0, out + err
    events = journal(repo)
    assert index_of(events, "merge_started", "A") < index_of(events, "attempt_ended", "B") \
        < index_of(events, "merged", "A") < index_of(events, "merged", "B")
    assert integration_file(repo, "A.txt") == "work of A\n"
    assert "A: committed what its worker left uncommitted" in out


def test_a_stop_during_a_blocked_merge_ends_the_run_and_the_next_start_merges_it(repo):
    started, release = blocking_filter(repo, "A.txt")
    make_db(repo.db)
    add_stream(repo.db, "A", [], 1)
    repo.plan({"A": ["write"]})
    orchestrator = repo.start_background()
    wait_for(repo, started.exists, "A's leftover commit to block in the clean filter")
    filter_pid = int(wait_for(repo, lambda: started.read_text().strip(), "the filter's pid"))
    stop = repo.orchestrate("stop", "--grace", "1", timeout=WAIT)
    out, err = orchestrator.communicate(timeout=WAIT)  # the run ends with git still blocked: never released
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert not release.exists()
    assert "A: its merge was ended as the run stopped; the next start merges it again" in out, out + err
    wait_for(repo, lambda: not pid_alive(filter_pid), "the filter to end with the merge step's process group")
    assert repo.states()["A"] == "merging"
    worktree = repo.root / ".claude" / "worktrees" / "A"
    assert (worktree / "A.txt").read_text() == "work of A\n"  # the leftover is still there, uncommitted

    release.touch()
    again = repo.orchestrate("start", timeout=WAIT)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "recovered: removed a stale index.lock of .claude/worktrees/A" in again.stdout
    assert "A: committed what its worker left uncommitted" in again.stdout
    assert integration_file(repo, "A.txt") == "work of A\n"
    assert repo.states()["A"] == "complete"


HOLD_LOCK = """
import sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from _orchestrate_kit.git import workspaces
with workspaces._merge_lock(Path(sys.argv[2])):
    print("held", flush=True)
    time.sleep(10_000)
"""


def test_start_ends_a_merge_an_orchestrator_killed_mid_merge_left_running(repo):
    """A SIGKILLed orchestrator's merge step runs on in its own session holding the merge lock: recovery
    waits for it and ends its process group, before it repairs the worktrees that merge writes in."""
    from tests.support.project import RUNTIME
    from tests.runtime.runtime_import import workspaces as ws

    ws.start_run(repo.root)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(RUNTIME), str(repo.root)], stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        assert holder.stdout.readline() == "held\n"
        notes = ws.recover(repo.root)
        assert holder.wait(timeout=WAIT) == -signal.SIGKILL
        assert notes[0] == f"ended a merge an earlier orchestrator left running (pid {holder.pid})"
        assert ws.recover(repo.root) == []  # the lock is free: nothing to wait for
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait()


MERGE_FAULT = """
import runpy, sys
home = sys.argv[1]
sys.path.insert(0, home)
from _orchestrate_kit.git import merging

real = merging.Merger._merged

def _merged(self, sid, *rest):
    if sid == "A":
        raise LookupError("an injected fault after A's merge step")
    return real(self, sid, *rest)

merging.Merger._merged = _merged
sys.argv = [home + "/orchestrate.py"] + sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_a_bug_met_with_a_merge_steps_answer_parks_that_stream_and_the_others_merge(repo, tmp_path):
    make_db(repo.db)
    add_stream(repo.db, "A", [], 1)
    add_stream(repo.db, "B", [], 1)
    repo.plan({"A": ["write"], "B": ["write"]})
    launcher = tmp_path / "inject.py"
    launcher.write_text(MERGE_FAULT, encoding="utf-8")
    done = subprocess.run([sys.executable, str(launcher), str(repo.home), "start", "--no-preflight"], env=repo.env,
                          cwd=repo.root, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=WAIT)
    assert done.returncode == 1, done.stdout + done.stderr  # a run with a parked stream, never 70
    assert "internal error while merging it: LookupError: an injected fault after A's merge step" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert repo.states() == {"A": "merge_conflict", "B": "complete"}
    assert integration_file(repo, "B.txt") == "work of B\n"
