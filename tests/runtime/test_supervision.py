"""Supervision with real process trees: restarts, budgets, adoption after SIGKILL, stop, pid reuse."""

import json
import os
import subprocess
import time

from tests.support import taskdb
from tests.support.project import pid_alive


def test_worker_that_fails_once_is_restarted_and_finishes(project):
    taskdb.diamond(project.db)
    project.plan({"Stream-B": ["fail", "ok"]})
    result = project.orchestrate("start")
    assert result.returncode == 0, result.stdout + result.stderr
    b_starts = [e for e in project.events("start") if e["stream"] == "Stream-B"]
    assert [e["attempt"] for e in b_starts] == [1, 2]
    assert "attempt 2" in b_starts[1]["prompt"] and "resume" in b_starts[1]["prompt"]
    assert "restart 1 of 10" in result.stdout
    status = {s["stream_id"]: s for s in project.status()["streams"]}
    assert status["Stream-B"]["attempts"] == 2


def test_worker_that_always_fails_is_failed_after_budget_and_blocks_dependents(project):
    taskdb.diamond(project.db)
    project.plan({"Stream-B": ["fail"]})
    result = project.orchestrate("start", "--max-restarts", "2")
    assert result.returncode == 1, result.stdout + result.stderr
    b_starts = [e for e in project.events("start") if e["stream"] == "Stream-B"]
    assert len(b_starts) == 3  # 1 attempt + 2 restarts
    assert "Stream-Z" not in {e["stream"] for e in project.events("start")}
    assert "Stream-B: failed after 3 attempts" in result.stdout
    assert "failing on purpose" in result.stdout  # the last log line is in the summary
    assert "Stream-Z: waiting on Stream-B" in result.stdout
    states = project.states()
    assert states == {"Stream-A": "complete", "Stream-B": "failed", "Stream-C": "complete", "Stream-Z": "waiting"}
    # Back-off doubles (restart_delay 0.2 s here), as the orchestrator says; test_lifecycle.py checks the
    # deadlines themselves on a fake clock, not from wall-clock gaps between starts.
    assert "restart 1 of 2 in 0.2s" in result.stdout and "restart 2 of 2 in 0.4s" in result.stdout


def test_restart_budget_survives_orchestrator_restarts(project):
    """The original reset its restart counter every 15 s; ours is persisted per run."""
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 1)
    project.configure(restart_delay=0.2)  # back-off growth itself is tested in test_lifecycle.py, on a fake clock
    project.plan({"A": ["fail"]})
    proc = project.start_background("--max-restarts", "3")
    project.wait_for(lambda: len(project.events("end")) >= 1, what="first failure")
    proc.kill()
    proc.wait()
    result = project.orchestrate("start", "--max-restarts", "3")
    assert result.returncode == 1
    assert len(project.events("start")) == 4  # not 1 + 4: the count went on from where it was


def test_sigkilled_orchestrator_is_replaced_without_duplicate_workers(project):
    taskdb.diamond(project.db, tasks=3)
    gate = project.root.parent / "gate"  # B and C work on only once the second orchestrator has them
    project.env["FAKE_CLAUDE_GATE"] = str(gate)
    project.plan({"Stream-B": ["gated"], "Stream-C": ["gated"]})
    project.start_and_kill_when(lambda: {e["stream"] for e in project.events("start")} >= {"Stream-B", "Stream-C"},
                                "B and C to start")
    live_before = [e for e in project.events("start") if pid_alive(e["pid"])]
    assert {e["stream"] for e in live_before} == {"Stream-B", "Stream-C"}, "workers should outlive the orchestrator"
    said = project.root.parent / "second.out"
    with open(said, "w") as out:
        second = subprocess.Popen(project.command("start"), env=project.env, cwd=project.root, stdout=out,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    project.wait_for(lambda: said.read_text().count("adopted running worker") == 2,
                     what="the second orchestrator to take B and C over")
    gate.touch()
    assert second.wait(timeout=120) == 0, said.read_text()
    assert project.events("duplicate") == []
    starts_per_stream = {}
    for e in project.events("start"):
        starts_per_stream[e["stream"]] = starts_per_stream.get(e["stream"], 0) + 1
    assert starts_per_stream == {"Stream-A": 1, "Stream-B": 1, "Stream-C": 1, "Stream-Z": 1}


def test_second_orchestrator_is_refused(project):
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 1)
    project.plan({"A": ["hang"]})
    first = project.start_background()
    project.wait_for(lambda: project.events("start"), what="A to start")
    second = project.orchestrate("start")
    assert second.returncode == 1
    assert "already running" in second.stderr and str(first.pid) in second.stderr
    assert len(project.events("start")) == 1
    stop = project.orchestrate("stop")
    assert stop.returncode == 0
    first.wait(timeout=30)
    assert first.returncode == 1


def unrelated_process():
    return subprocess.Popen(["sleep", "300"], start_new_session=True)


def write_fake_pid_file(project, stream_id, pid, start_time="1"):
    folder = project.home / "pids"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stream_id}.pid").write_text(json.dumps(
        {"pid": pid, "start_time": start_time, "stream_id": stream_id, "attempt": 1, "started_at": 0}))


def test_stale_pid_file_naming_an_unrelated_process_is_never_signalled(project):
    taskdb.diamond(project.db)
    bystander = unrelated_process()
    try:
        write_fake_pid_file(project, "Stream-A", bystander.pid)
        assert project.states()["Stream-A"] == "ready"  # not mistaken for a running worker
        stop = project.orchestrate("stop")
        assert stop.returncode == 0
        assert pid_alive(bystander.pid)
        write_fake_pid_file(project, "Stream-A", bystander.pid)
        result = project.orchestrate("start")
        assert result.returncode == 0, result.stdout + result.stderr
        assert pid_alive(bystander.pid)
        assert project.events("duplicate") == []
    finally:
        bystander.kill()
        bystander.wait()


def test_stop_kills_the_whole_worker_tree(project):
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 1)
    project.plan({"A": ["spawn-child"]})
    assert project.orchestrate("start", "--detach").returncode == 0
    child = project.wait_for(lambda: project.events("grandchild"), what="grandchild")[0]
    worker_pid, grandchild_pid = child["pid"], child["child_pid"]
    assert pid_alive(worker_pid) and pid_alive(grandchild_pid)
    result = project.orchestrate("stop")
    assert result.returncode == 0, result.stderr
    project.wait_for(lambda: not pid_alive(worker_pid) and not pid_alive(grandchild_pid), timeout=10,
                     what="worker and grandchild to die")
    assert not list((project.home / "pids").glob("*.pid"))
    assert project.status()["orchestrator"]["running"] is False


def test_stop_after_orchestrator_was_killed_still_stops_workers(project):
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 1)
    project.plan({"A": ["spawn-child"]})
    child = project.start_and_kill_when(lambda: project.events("grandchild"), "grandchild")[0]
    assert project.orchestrate("stop").returncode == 0
    project.wait_for(lambda: not pid_alive(child["pid"]) and not pid_alive(child["child_pid"]), timeout=10,
                     what="orphaned worker tree to die")


def test_stop_one_stream_holds_it_until_started_again(project):
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 1)
    taskdb.add_stream(project.db, "B", [], 1)
    project.plan({"A": ["hang", "ok"], "B": ["hang", "ok"]})
    orchestrator = project.start_background()
    project.wait_for(lambda: len(project.events("start")) == 2, what="both to start")
    result = project.orchestrate("stop", "A")
    assert result.returncode == 0, result.stderr
    assert "Handed to the running orchestrator" in result.stdout
    project.wait_for(lambda: project.states()["A"] == "held", what="A to be held")
    views = {s["stream_id"]: s for s in project.status()["streams"]}
    assert views["A"]["description"] == "stopped by you; `start STREAM` resumes it"
    assert views["A"]["attempts"] == 1  # a stop by the user is not a failed attempt
    time.sleep(0.6)
    assert len(project.events("start")) == 2  # A was not restarted
    assert project.states()["B"] == "running"
    project.orchestrate("stop")
    orchestrator.wait(timeout=30)
    project.plan({"A": ["ok"]})
    result = project.orchestrate("start", "A")
    assert result.returncode == 0, result.stdout + result.stderr
    assert project.states()["A"] == "complete"


def test_finished_workers_are_reaped_not_counted_as_running(project):
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 1)
    taskdb.add_stream(project.db, "B", [], 1)
    project.plan({"B": ["hang"]})
    orchestrator = project.start_background()
    project.wait_for(lambda: project.events("end"), what="A to finish")
    a_pid = project.events("end")[0]["pid"]
    project.wait_for(lambda: project.states()["A"] == "complete", what="A complete")
    assert not pid_alive(a_pid)  # reaped: no zombie left behind
    assert not os.path.exists(f"/proc/{a_pid}")
    status = {s["stream_id"]: s for s in project.status()["streams"]}
    assert status["A"]["pid"] is None and status["B"]["state"] == "running"
    project.orchestrate("stop")
    orchestrator.wait(timeout=30)


def test_worker_lingering_after_completion_is_stopped(project):
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 1)
    taskdb.add_stream(project.db, "B", ["A"], 1)
    project.plan({"A": ["hang-after-done"]})
    result = project.orchestrate("start")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "complete but its worker is still running; stopping it" in result.stdout
    a = next(e for e in project.events("start") if e["stream"] == "A")
    assert not pid_alive(a["pid"])
    b = next(e for e in project.events("start") if e["stream"] == "B")
    assert b["time"] < time.time()


def test_children_left_by_an_exited_worker_are_stopped(project):
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 1)
    project.plan({"A": ["ok-with-child"]})
    result = project.orchestrate("start")
    assert result.returncode == 0, result.stdout + result.stderr
    grandchild = project.events("grandchild")[0]["child_pid"]
    project.wait_for(lambda: not pid_alive(grandchild), timeout=10, what="left-behind child to be stopped")
