"""What an ended worker left (issue 18): ended by a short leftover grace of its own, not the whole stop_grace.

With worktrees a stream is merged only once everything its worker left has ended (a leftover may
still write in the worktree). A TERM-deaf child used to hold the merge, and every stream after it,
for the whole `stop_grace` (61 s at 60). Now leftovers get LEFTOVER_GRACE_SECONDS (2 s) after
their worker has exited, or the stop grace if that is shorter.
"""

from __future__ import annotations

import signal
import subprocess
import sys

from tests.runtime.runtime_import import executor as local
from tests.runtime.runtime_import import processes
from tests.support import taskdb
from tests.support.project import Project, pid_alive


def test_a_term_deaf_leftover_with_worktrees_delays_the_merge_by_the_leftover_grace_only(tmp_path):
    project = Project.create_git(tmp_path)
    project.configure(stop_grace=60, spawn_gap=0)
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 1)
    taskdb.add_stream(project.db, "B", ["A"], 1)
    project.plan({"A": ["ok-with-child-deaf"], "B": ["ok"]})
    proc = subprocess.Popen([sys.executable, str(project.home / "orchestrate.py"), "start", "--no-preflight"],
                            cwd=project.root, env=project.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=45)  # the whole run: with the stop grace it took over 60 s
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            project.orchestrate("stop", "--grace", "1", timeout=30)
    assert proc.returncode == 0, out
    events = project.events()
    child = next(e["child_pid"] for e in events if e["event"] == "grandchild")
    a_end = next(e["time"] for e in events if e["event"] == "end" and e["stream"] == "A")
    b_start = next(e["time"] for e in events if e["event"] == "start" and e["stream"] == "B")
    assert not pid_alive(child)  # KILLed before A was merged and B started
    assert b_start - a_end >= local.LEFTOVER_GRACE_SECONDS  # B waited for the leftover to end: merged after it


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


DEAF_CHILD = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              "print('ready', flush=True); time.sleep(60)")


def test_the_leftover_grace_is_its_own_but_never_longer_than_the_stop_grace(tmp_path):
    """What a worker left (here a TERM-deaf process carrying its token, leading its own group) is TERMed
    at once and KILLed LEFTOVER_GRACE_SECONDS later at stop_grace = 60, or after a shorter stop grace."""
    for grace, expected in ((60.0, local.LEFTOVER_GRACE_SECONDS), (0.5, 0.5)):
        clock = Clock()
        executor = local.LocalExecutor(tmp_path / "pids", lambda sid: tmp_path / f"{sid}.log", grace, clock)
        token = f"leftover-{grace}"
        child = subprocess.Popen([sys.executable, "-c", DEAF_CHILD], stdout=subprocess.PIPE, start_new_session=True,
                                 env={"PATH": "/usr/bin:/bin", processes.TOKEN_VARIABLE: token})
        try:
            assert child.stdout.readline() == b"ready\n"
            record = processes.PidRecord(child.pid, processes.process_start_time(child.pid) or "", "S", 1, 0.0, token)
            executor._end_leftovers(record)  # what `poll` does once a worker has exited
            assert executor.cleaning_up() == {"S"}
            assert executor.tick() == clock.now + expected  # TERM ignored: the KILL is due then
            clock.now += expected - 0.01
            executor.tick()
            assert child.poll() is None
            clock.now += 0.01
            executor.tick()  # due: KILLed
            assert child.wait(timeout=10) == -signal.SIGKILL
            executor.tick()
            assert executor.cleaning_up() == frozenset()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
