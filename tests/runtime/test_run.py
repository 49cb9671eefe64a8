"""End-to-end runs: real orchestrator processes, real database, the fake claude as the worker."""

import json
import re
import signal
import subprocess
import sqlite3
import threading
import time

from tests.support import taskdb


def spans(project):
    """stream -> (first start time, last end time) from the fake worker's events."""
    starts = {e["stream"]: e["time"] for e in reversed(project.events("start"))}
    ends = {e["stream"]: e["time"] for e in project.events("end")}
    return {s: (starts[s], ends.get(s)) for s in starts}


def test_documented_diamond_runs_in_dependency_order(project):
    taskdb.diamond(project.db)
    project.env["FAKE_CLAUDE_DELAY"] = "0.3"
    result = project.orchestrate("start")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all 4 stream(s) complete" in result.stdout
    t = spans(project)
    assert t["Stream-B"][0] >= t["Stream-A"][1] and t["Stream-C"][0] >= t["Stream-A"][1]
    # B and C overlap: each started before the other ended.
    assert t["Stream-B"][0] < t["Stream-C"][1] and t["Stream-C"][0] < t["Stream-B"][1]
    assert t["Stream-Z"][0] >= max(t["Stream-B"][1], t["Stream-C"][1])
    assert set(project.states().values()) == {"complete"}
    assert not list((project.home / "pids").glob("*.pid"))


def test_worker_contract_environment_prompt_and_stdin(project):
    taskdb.diamond(project.db)
    assert project.orchestrate("start", "--max-parallel", "1").returncode == 0
    start = next(e for e in project.events("start") if e["stream"] == "Stream-B")
    assert start["claudecode"] is False  # CLAUDECODE removed for nested claude
    assert start["stdin_devnull"] is True
    # Claude Code workers print stream-json, in a session whose id the orchestrator chose and whose name
    # is the stream; the prompt follows `--`, so no option can swallow it.
    session = start["argv"][5]
    assert start["argv"] == ["--print", "--dangerously-skip-permissions", "-p", "--output-format=stream-json",
                             "--verbose", session, "--name=Stream-B", "--"]
    assert re.fullmatch(r"--session-id=[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", session)
    views = {s["stream_id"]: s for s in project.status()["streams"]}
    assert views["Stream-B"]["session_id"] == session.split("=", 1)[1]
    assert start["stream_name"] == "API Implementation"
    assert start["cwd"] == str(project.root)
    assert "Stream-B" in start["prompt"] and "Stream-B task 1" in start["prompt"]
    assert "Task Copilot" in start["prompt"] and "completed" in start["prompt"]


def test_chain_runs_one_after_another(project):
    taskdb.make_db(project.db)
    for i in range(4):
        taskdb.add_stream(project.db, f"S{i}", [f"S{i - 1}"] if i else [], 1)
    assert project.orchestrate("start").returncode == 0
    t = spans(project)
    for i in range(1, 4):
        assert t[f"S{i}"][0] >= t[f"S{i - 1}"][1]


def test_max_parallel_starts_longest_remaining_path_first(project):
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "aaa-short", [], 1)
    taskdb.add_stream(project.db, "bbb-short", [], 1)
    taskdb.add_stream(project.db, "zzz-long1", [], 1)
    taskdb.add_stream(project.db, "zzz-long2", ["zzz-long1"], 1)
    taskdb.add_stream(project.db, "zzz-long3", ["zzz-long2"], 1)
    result = project.orchestrate("start", "--max-parallel", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    order = [e["stream"] for e in project.events("start")]
    assert order[0] == "zzz-long1"
    assert len(order) == 5
    # Never two workers at once.
    timeline = sorted([(e["time"], 1) for e in project.events("start")] + [(e["time"], -1) for e in project.events("end")])
    live = peak = 0
    for _, delta in timeline:
        live += delta
        peak = max(peak, live)
    assert peak == 1


def test_cancelled_tasks_count_as_finished(project):
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 2, statuses=["completed", "cancelled"])
    taskdb.add_stream(project.db, "B", ["A"], 1)
    assert project.orchestrate("start").returncode == 0
    assert [e["stream"] for e in project.events("start")] == ["B"]


def test_stream_dependencies_key_and_per_task_union(project):
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 1)
    taskdb.add_stream(project.db, "B", [], 1)
    taskdb.add_task(project.db, {"streamId": "Z", "dependencies": ["A"]})
    taskdb.add_task(project.db, {"streamId": "Z", "streamDependencies": ["B"]})
    taskdb.add_task(project.db, {"streamId": "Z", "dependencies": []})
    project.env["FAKE_CLAUDE_DELAY"] = "0.2"
    assert project.orchestrate("start").returncode == 0
    t = spans(project)
    assert t["Z"][0] >= t["A"][1] and t["Z"][0] >= t["B"][1]
    status = {s["stream_id"]: s for s in project.status()["streams"]}
    assert status["Z"]["dependencies"] == ["A", "B"]


def test_named_streams_only_and_what_they_wait_for(project):
    taskdb.diamond(project.db)
    result = project.orchestrate("start", "Stream-B")
    assert result.returncode == 1
    assert "Stream-B waits on Stream-A, which this run will not start" in result.stdout
    assert project.events("start") == []
    result = project.orchestrate("start", "Stream-A", "Stream-B")
    assert result.returncode == 0, result.stdout
    assert [e["stream"] for e in project.events("start")] == ["Stream-A", "Stream-B"]
    assert project.states()["Stream-C"] == "ready"


def test_dry_run_starts_nothing(project):
    taskdb.diamond(project.db)
    result = project.orchestrate("start", "--dry-run")
    assert result.returncode == 0
    assert "Would start now: Stream-A" in result.stdout
    assert "Stream-Z: waiting on Stream-B, Stream-C" in result.stdout
    assert project.events() == []


def test_plan_shows_levels_critical_path_and_ready(project):
    taskdb.diamond(project.db)
    result = project.orchestrate("plan", "--json")
    plan = json.loads(result.stdout)
    assert plan["levels"] == [["Stream-A"], ["Stream-B", "Stream-C"], ["Stream-Z"]]
    assert plan["critical_path"] == ["Stream-A", "Stream-B", "Stream-Z"]
    assert plan["ready"] == ["Stream-A"]
    text = project.orchestrate("plan").stdout
    assert "Level 1: Stream-B, Stream-C" in text and "Critical path (3 stream(s) to go)" in text


def test_tasks_added_mid_run_are_picked_up(project):
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 3)
    project.env["FAKE_CLAUDE_DELAY"] = "0.4"
    proc = project.start_background()
    project.wait_for(lambda: project.events("start"), what="A to start")
    taskdb.add_stream(project.db, "Late", ["A"], 1)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert [e["stream"] for e in project.events("start")] == ["A", "Late"]


def test_locked_database_for_seconds_does_not_crash(project):
    taskdb.make_db(project.db, wal=False)  # rollback journal: an exclusive lock blocks readers too
    taskdb.add_stream(project.db, "A", [], 2)
    taskdb.add_stream(project.db, "B", ["A"], 2)
    project.env["FAKE_CLAUDE_DELAY"] = "0.2"

    def hold_lock():
        conn = sqlite3.connect(project.db, timeout=30)
        conn.execute("BEGIN EXCLUSIVE")
        time.sleep(3.5)
        conn.rollback()
        conn.close()

    proc = project.start_background()
    project.wait_for(lambda: project.events("start"), what="A to start")
    holder = threading.Thread(target=hold_lock)
    holder.start()
    out, err = proc.communicate(timeout=90)
    holder.join()
    assert proc.returncode == 0, out + err
    assert "Traceback" not in out + err
    assert set(project.states().values()) == {"complete"}


def test_detach_returns_at_once_and_logs(project, tmp_path):
    taskdb.diamond(project.db)
    gate = tmp_path / "gate"
    project.env["FAKE_CLAUDE_GATE"] = str(gate)
    project.plan({"Stream-A": ["gated"]})  # the run cannot end before the test opens the gate
    result = project.orchestrate("start", "--detach")
    assert result.returncode == 0, result.stderr
    assert "started in the background" in result.stdout
    assert project.states()["Stream-Z"] != "complete"  # `start --detach` returned while the run goes on
    gate.touch()
    project.wait_for(lambda: all(s == "complete" for s in project.states().values()), what="run to finish")
    log = project.home / "logs" / "orchestrator.log"
    project.wait_for(lambda: "all 4 stream(s) complete" in log.read_text(), what="final log line")
    assert project.status()["orchestrator"]["running"] is False or project.wait_for(
        lambda: not project.status()["orchestrator"]["running"], what="orchestrator exit")


def test_logs_command_shows_a_stream_log(project):
    taskdb.diamond(project.db)
    assert project.orchestrate("start").returncode == 0
    result = project.orchestrate("logs", "Stream-A", "-n", "5")
    assert result.returncode == 0
    assert '"type":"result"' in result.stdout and "Working on stream Stream-A" in result.stdout
    missing = project.orchestrate("logs", "Nope")
    assert missing.returncode == 1 and "unknown stream(s): Nope" in missing.stderr
    close = project.orchestrate("logs", "Stream-AA")
    assert close.returncode == 1 and "did you mean Stream-A" in close.stderr
    unknown_stop = project.orchestrate("stop", "Stream-AA")
    assert unknown_stop.returncode == 1 and "did you mean" in unknown_stop.stderr


def ctrl_c_as_in_a_shell():
    """SIGINT's default action for the child, as a shell gives it: pytest-xdist workers run with SIGINT
    ignored, and an ignored signal stays ignored across exec (Python then never raises KeyboardInterrupt)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_logs_follow_waits_for_a_stream_that_has_not_started(project):
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 1)
    follower = subprocess.Popen(project.command("logs", "A", "-f"), env=project.env, cwd=project.root,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_as_in_a_shell)
    try:
        assert "has not started yet" in follower.stderr.readline()
        assert project.orchestrate("start").returncode == 0
        line = follower.stdout.readline()
        while line == "\n":
            line = follower.stdout.readline()
        assert "=== orchestrate-kit: 'A' attempt 1" in line  # the first thing the worker's log gets
    finally:
        follower.send_signal(signal.SIGINT)
        follower.communicate(timeout=30)
    assert follower.returncode == 0


def test_prompt_stays_passable_with_huge_task_titles(project):
    """A single argv string over 128 KiB cannot be exec'd: the prompt must stay well below it."""
    taskdb.make_db(project.db)
    for i in range(150):
        taskdb.add_task(project.db, {"streamId": "Big", "streamName": "N" * 5000}, title=f"{i} " + "t" * 20000)
    project.env["FAKE_CLAUDE_DELAY"] = "0"  # the prompt is what is tested, not 150 tasks worked at 0.05 s each
    result = project.orchestrate("start", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    prompt = project.events("start")[0]["prompt"]
    assert len(prompt.encode()) < 64 * 1024
    assert "... and 50 more" in prompt


def test_logs_follow_prints_new_lines_until_interrupted(project):
    import signal
    import subprocess

    taskdb.diamond(project.db)
    assert project.orchestrate("start").returncode == 0
    log = project.home / "logs" / "Stream-A.log"
    follower = subprocess.Popen(project.command("logs", "Stream-A", "-f", "-n", "1"), env=project.env,
                                cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=ctrl_c_as_in_a_shell)
    try:
        first = follower.stdout.readline()
        assert first.strip()  # the last line already there
        with open(log, "a", encoding="utf-8") as handle:
            handle.write("appended \x1b[31mafter\x1b[0m the start\n")
        assert follower.stdout.readline() == "appended \\x1b[31mafter\\x1b[0m the start\n"  # printed inert
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(timeout=10)
    assert follower.returncode == 0
    assert "Traceback" not in follower.stderr.read()
