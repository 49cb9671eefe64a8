"""Workers that die or misbehave: each is handled as the design says, within the restart budget.

Already covered in tests/runtime/test_supervision.py and not repeated here: a worker that
fails (exit 1) and is restarted, the budget and back-off for failing workers, a worker that
lingers after its stream completes (answering TERM), children left by a worker that exited.
This file adds SIGKILLed workers, exit 0 with the stream unfinished, workers and children that
ignore TERM, and a soak round of workers killed at random.
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.support import taskdb
from tests.support.project import Project, pid_alive

from .checks import LAYERED, layered_db, live_fake_workers, starts_per_stream, unfinished_streams
from .conftest import ROUNDS, soak_timeout


def one_stream(project: Project, sid: str = "A", tasks: int = 2, dependent: bool = True) -> None:
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, sid, [], tasks)
    if dependent:
        taskdb.add_stream(project.db, "After", [sid], 1)


def starts_of(project: Project, sid: str) -> list:
    return [e for e in project.events("start") if e["stream"] == sid]


def test_sigkilled_worker_is_restarted_and_the_stream_finishes(project):
    one_stream(project)
    project.plan({"A": ["hang", "ok"]})
    orchestrator = project.start_background()
    first = project.wait_for(lambda: starts_of(project, "A"), what="A to start")[0]
    os.kill(first["pid"], signal.SIGKILL)
    out, err = orchestrator.communicate(timeout=60)
    assert orchestrator.returncode == 0, out + err
    assert "A worker exited with signal 9 with 0/2 tasks done; restart 1 of 10" in out
    assert [e["attempt"] for e in starts_of(project, "A")] == [1, 2]
    assert [e["stream"] for e in project.events("start")] == ["A", "A", "After"]
    assert project.states() == {"A": "complete", "After": "complete"}
    assert project.events("duplicate") == []


def test_worker_killed_on_every_attempt_fails_after_the_budget_with_growing_back_off(project):
    one_stream(project)
    project.configure(restart_delay=0.2)  # then 0.4 s
    project.plan({"A": ["hang"]})
    orchestrator = project.start_background("--max-restarts", "2")
    for attempt in (1, 2, 3):
        worker = project.wait_for(lambda: len(starts_of(project, "A")) >= attempt, timeout=60,
                                  what=f"attempt {attempt}") and starts_of(project, "A")[-1]
        assert worker["attempt"] == attempt
        os.kill(worker["pid"], signal.SIGKILL)
    out, err = orchestrator.communicate(timeout=60)
    assert orchestrator.returncode == 1, out + err
    assert len(starts_of(project, "A")) == 3  # one attempt and two restarts, not one more
    assert "A failed after 3 attempt(s): worker exited with signal 9 with 0/2 tasks done" in out
    assert "After: waiting on A" in out and starts_of(project, "After") == []
    assert project.states() == {"A": "failed", "After": "waiting"}
    # Back-off: the delay doubles (exactly so on a fake clock in test_lifecycle.py), and no restart comes
    # before its delay is over; a loaded machine can only make the gaps longer, never shorter.
    assert "restart 1 of 2 in 0.2s" in out and "restart 2 of 2 in 0.4s" in out
    times = [e["proc_start"] for e in starts_of(project, "A")]
    assert times[1] - times[0] >= 0.2 and times[2] - times[1] >= 0.4


def test_exit_0_with_the_stream_unfinished_is_a_failed_attempt(project):
    one_stream(project)
    project.plan({"A": ["exit0-unfinished", "exit0-unfinished", "ok"]})
    result = project.orchestrate("start")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "A worker exited with code 0 with 0/2 tasks done; restart 1 of 10" in result.stdout
    assert "restart 2 of 10" in result.stdout
    assert [e["attempt"] for e in starts_of(project, "A")] == [1, 2, 3]
    assert starts_of(project, "After")[0]["time"] > starts_of(project, "A")[-1]["time"]
    status = {s["stream_id"]: s for s in project.status()["streams"]}
    assert status["A"]["state"] == "complete" and status["A"]["attempts"] == 3


def test_exit_0_unfinished_every_time_fails_the_stream(project):
    one_stream(project)
    project.plan({"A": ["exit0-unfinished"]})
    result = project.orchestrate("start", "--max-restarts", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "A failed after 2 attempt(s): worker exited with code 0 with 0/2 tasks done" in result.stdout
    assert starts_of(project, "After") == []


def test_worker_hanging_after_done_and_deaf_to_term_is_killed_not_restarted(project):
    one_stream(project)
    project.plan({"A": ["hang-after-done-deaf"]})
    result = project.orchestrate("start")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "A is complete but its worker is still running; stopping it" in result.stdout
    worker = starts_of(project, "A")[0]
    assert not pid_alive(worker["pid"])
    assert len(starts_of(project, "A")) == 1  # done is done: no restart for a stream that is complete
    assert "restart" not in result.stdout
    status = {s["stream_id"]: s for s in project.status()["streams"]}
    assert status["A"]["attempts"] == 1 and status["After"]["state"] == "complete"


def test_children_of_a_killed_worker_are_stopped_before_the_restart(project):
    one_stream(project)
    project.plan({"A": ["spawn-child-deaf", "ok"]})
    orchestrator = project.start_background()
    child = project.wait_for(lambda: project.events("grandchild"), what="the grandchild")[0]
    os.kill(child["pid"], signal.SIGKILL)  # the worker dies; its child ignores TERM and keeps running
    project.wait_for(lambda: len(starts_of(project, "A")) == 2, timeout=60, what="the restart")
    # The old generation is gone before the new one starts: never two working on one stream.
    assert not pid_alive(child["child_pid"])
    out, err = orchestrator.communicate(timeout=60)
    assert orchestrator.returncode == 0, out + err
    assert project.events("duplicate") == []


def test_deaf_children_left_by_a_finished_worker_are_killed(project):
    one_stream(project, dependent=False)
    project.plan({"A": ["ok-with-child-deaf"]})
    result = project.orchestrate("start")
    assert result.returncode == 0, result.stdout + result.stderr
    grandchild = project.events("grandchild")[0]["child_pid"]
    assert not pid_alive(grandchild)  # the run waited for it to be killed before it ended
    assert len(starts_of(project, "A")) == 1


@pytest.mark.soak
@pytest.mark.timeout(soak_timeout(60))
def test_workers_killed_at_random_still_finish_within_the_budget(tmp_path, rng, capsys):
    """Each round: SIGKILL random live workers of a layered run; every stream must still finish."""
    kills = duplicates = unfinished = over_budget = leftovers = 0
    budget = 10
    for number in range(ROUNDS):
        project = Project.create(tmp_path / f"round-{number}")
        try:
            layered_db(project.db)
            project.env["FAKE_CLAUDE_DELAY"] = "0.15"
            orchestrator = project.start_background()
            killed_streams = []
            while orchestrator.poll() is None and len(killed_streams) < 4:
                workers = live_fake_workers(project)
                if workers and rng.random() < 0.3:
                    pid, sid = rng.choice(sorted(workers.items()))
                    os.kill(pid, signal.SIGKILL)
                    killed_streams.append(sid)
                orchestrator_wait(orchestrator, rng.uniform(0.05, 0.4))
            out, err = orchestrator.communicate(timeout=120)
            assert orchestrator.returncode == 0 and "Traceback" not in out + err, out + err
            kills += len(killed_streams)
            duplicates += len(project.events("duplicate"))
            unfinished += len(unfinished_streams(project))
            leftovers += len(live_fake_workers(project))
            starts = starts_per_stream(project)
            over_budget += sum(1 for sid in LAYERED if starts[sid] > budget + 1)
            # A stream restarts only when one of its workers was killed.
            for sid, count in starts.items():
                assert count <= 1 + killed_streams.count(sid), (sid, count, killed_streams)
        finally:
            project.stop_leftovers()
    with capsys.disabled():
        print(f"\n[soak] workers killed: {ROUNDS} rounds, {kills} workers killed; duplicates {duplicates}, "
              f"unfinished {unfinished}, left running {leftovers}, over budget {over_budget}")
    assert (duplicates, unfinished, leftovers, over_budget) == (0, 0, 0, 0)


def orchestrator_wait(process, seconds: float) -> None:
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:  # still running: that is the point
        pass
