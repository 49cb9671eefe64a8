"""git/stepper.py: the loop's observed steps, as a fork of the orchestrator or as a Python of their own.

A forked step must answer like a child Python does, never run on as the orchestrator (whatever the
step raises), hold none of the orchestrator's descriptors (its locks), handle signals by default, and
die with its whole session at its deadline; with other threads running the step is a fresh Python.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.runtime.test_workspaces import commit_all, git, isolated_git, repo  # noqa: F401
from tests.runtime.runtime_import import workspaces as ws
from tests.support.project import RUNTIME, pid_alive
from _orchestrate_kit.git import stepper, steps

WAIT = 60.0  # a deadline for what must happen, never a measured time


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def ended(step_runner: stepper.Stepper, key: str):
    """The answer of step `key`, once its process has exited (polled, as the loop does each turn)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for done_key, result in step_runner.finished():
            if done_key == key:
                return result
        time.sleep(0.01)
    raise AssertionError(f"step {key} did not end within {WAIT} s")


def gone(pid: int) -> bool:
    deadline = time.monotonic() + WAIT
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return not pid_alive(pid)


@pytest.fixture
def own_step(monkeypatch):
    """Add a step by name: only a fork sees it (it shares this process's table of steps)."""
    def add(name, function):
        monkeypatch.setitem(steps.STEPS, name, function)
    return add


@pytest.mark.parametrize("fork", [True, False], ids=["fork", "python"])
def test_a_step_answers_in_json_either_way(repo, fork):  # noqa: F811
    runner = stepper.Stepper(Clock(), fork=fork)
    runner.start("remote", "check_remote", {"project": str(repo), "remote": "origin"}, 60)
    assert runner.running("remote")
    answer = ended(runner, "remote")
    assert "no git remote named 'origin'" in answer["problem"]
    assert runner.keys() == ()


def test_a_forked_step_that_raises_ends_without_an_answer_and_never_runs_on(own_step, tmp_path):
    ran_on = tmp_path / "ran-on"

    def boom(_args):
        raise RuntimeError("a bug in a step")

    own_step("boom", boom)
    runner = stepper.Stepper(Clock(), fork=True)
    runner.start("b", "boom", {}, 60)
    answer = ended(runner, "b")
    with open(ran_on, "a") as out:  # a child that went on as this test would write here a second time
        out.write(f"{os.getpid()}\n")
    assert answer == {"error": "the boom step ended (exit status 1) without an answer"}
    assert ran_on.read_text().split() == [str(os.getpid())]


def test_a_forked_step_holds_no_descriptor_of_ours_has_its_own_session_and_default_signals(own_step, tmp_path):
    lock = open(tmp_path / "project.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # as the orchestrator holds the project's lock

    def look(args):
        try:
            os.fstat(args["fd"])
            inherited = True
        except OSError:
            inherited = False
        return {"inherited": inherited, "session": os.getsid(0) == os.getpid(),
                "term": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
                "chld": signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL}

    own_step("look", look)
    previous = signal.signal(signal.SIGTERM, lambda *_: None)  # the loop's handlers are set
    try:
        runner = stepper.Stepper(Clock(), fork=True)
        runner.start("l", "look", {"fd": lock.fileno()}, 60)
        answer = ended(runner, "l")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert answer == {"inherited": False, "session": True, "term": True, "chld": True}
    os.fstat(lock.fileno())  # ours is still open, and still locked:
    other = open(tmp_path / "project.lock", "w")
    with pytest.raises(BlockingIOError):
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    other.close()
    lock.close()


def held_checkout(repo, tmp_path):  # noqa: F811
    """A smudge filter that writes its pid and, while the file `hold` exists, waits (as a slow Git LFS
    download does), for the next worktree."""
    pid_file = tmp_path / "filter.pid"
    hold = tmp_path / "hold"
    hold.write_text("")
    script = tmp_path / "smudge.sh"
    script.write_text(f'echo $$ > {pid_file}; case "$PWD" in *_integration*) ;; *) n=0; while [ -e {hold} ] '
                      f'&& [ $n -lt {int(WAIT * 20)} ]; do sleep 0.05; n=$((n+1)); done;; esac; exec cat\n')
    (repo / ".gitattributes").write_text("*.dat filter=held\n")
    (repo / "asset.dat").write_text("asset\n")
    git(repo, "config", "filter.held.clean", "cat")
    git(repo, "config", "filter.held.smudge", f"sh {script}")
    commit_all(repo, "held asset")
    return pid_file


@pytest.mark.parametrize("fork", [True, False], ids=["fork", "python"])
def test_a_step_past_its_deadline_is_ended_with_everything_it_started(repo, tmp_path, fork):  # noqa: F811
    pid_file = held_checkout(repo, tmp_path)
    run = ws.start_run(repo)
    pid_file.unlink()  # the integration worktree's checkout passed the filter
    clock = Clock()
    runner = stepper.Stepper(clock, fork=fork)
    runner.start("S1", "prepare_workspace", {"project": str(repo), "run": run.as_dict(), "stream_id": "S1"}, 30)
    deadline = time.monotonic() + WAIT
    while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.01)
    held = int(pid_file.read_text())  # git's smudge filter, the step's grandchild
    assert runner.finished() == [] and runner.next_deadline() == 30
    clock.now = 31.0
    assert runner.finished() == []  # ended now, read at a later turn
    assert ended(runner, "S1") == {"error": "the prepare_workspace step did not finish in time and was ended"}
    assert gone(held)


def test_a_stopped_step_answers_stopped_and_a_spared_one_runs_until_its_deadline(own_step):
    def wait(_args):
        time.sleep(WAIT)
        return {}

    own_step("wait", wait)
    clock = Clock()
    runner = stepper.Stepper(clock, fork=True)
    runner.start("merge:A", "wait", {}, 600)
    runner.start("prep:B", "wait", {}, 600)
    runner.stop(until=5.0, spare=lambda key: key.startswith("merge:"))
    assert ended(runner, "prep:B") == {"error": "the wait step was ended: the run is stopping", "stopped": True}
    assert runner.running("merge:A") and runner.next_deadline() == 5.0
    clock.now = 5.0
    assert ended(runner, "merge:A") == {"error": "the wait step was ended: the run is stopping", "stopped": True}


def test_a_step_forks_only_while_the_process_has_one_thread():
    probe = ("import threading, sys; from _orchestrate_kit.git import stepper; first = stepper.forking(); "
             "stop = threading.Event(); threading.Thread(target=stop.wait).start(); "
             "print(first, stepper.forking()); stop.set()")
    done = subprocess.run([sys.executable, "-c", probe], cwd=RUNTIME, capture_output=True, text=True, timeout=WAIT)
    assert done.stdout.split() == ["True", "False"], done.stderr


def test_an_orphaned_worktree_step_is_ended_by_the_next_start_before_it_can_undo_the_new_worktree(repo, tmp_path):  # noqa: F811
    """An orchestrator SIGKILLed while a step checks out a worktree leaves the step running. The next start
    must end that step, not only its git: a step whose git was ended goes on to undo "its" half-made
    worktree, and would remove the folder the new run has just made again (a worker then runs among
    missing files and its leftover commit deletes them: a soak round lost a merged stream's file so)."""
    pid_file = held_checkout(repo, tmp_path)
    run = ws.start_run(repo)
    pid_file.unlink()
    request = {"step": "prepare_workspace", "args": {"project": str(repo), "run": run.as_dict(), "stream_id": "S"}}
    orphan = subprocess.Popen([sys.executable, "-m", "_orchestrate_kit.git.steps"], cwd=RUNTIME, stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    orphan.stdin.write(json.dumps(request).encode())
    orphan.stdin.close()
    deadline = time.monotonic() + WAIT
    while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ws._marker(ws.worktree_path(repo, "S")).exists()  # it is checking out S's files
    notes = ws.recover(repo, run)  # the next start, its orchestrator gone
    assert "removed half-created worktree .claude/worktrees/S" in notes
    assert orphan.wait(timeout=WAIT) == -signal.SIGKILL  # the step itself, not only its git
    (tmp_path / "hold").unlink()
    again = ws.prepare_workspace(repo, run, "S")
    assert sorted(p.name for p in again.cwd.iterdir() if p.name != ".git") == \
        sorted(p.name for p in repo.iterdir() if p.name != ".git")
    assert ws.recover(repo, run) == []
