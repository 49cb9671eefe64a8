"""What `status`, `status --json` and a dashboard frame print, byte for byte, on boards with every state.

Each scenario is a real project (a database of both generations, a saved table with a row in every
state, live stand-ins for a worker and the orchestrator where it needs them) read by the project's
own scripts in a child Python whose clock is fixed, with TZ=UTC. The outputs are compared with the
files under board_output/, written by the runtime before the board's speed work (issue 17): the
dashboard and `status` must print what they printed. Process ids and the temporary folder are
replaced by <pid ...> and <tmp> first.

    ORCHESTRATE_WRITE_OUTPUTS=1 pytest tests/runtime/test_board_output.py

writes the files anew from the runtime under test (ORCHESTRATE_TEST_RUNTIME names another one,
e.g. an earlier version from `git archive`): only for a change that means to change the output.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest

from tests.runtime.runtime_import import processes, settings
from tests.support import taskdb
from tests.support.project import Project

EXPECTED = Path(__file__).with_name("board_output")
NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
CREATED = "2026-11-23T00:00:00Z"
RUN_STARTED = NOW - 3725
FRAMES = (["--width", "100"], ["--width", "100", "--draw"], ["--width", "60", "--draw", "--colour", "--ascii"])
# A message naming the database is wrapped where the temporary folder's length puts it: these frames
# are wide enough for it to stay whole.
WIDE_FRAMES = (["--width", "400"], ["--width", "400", "--draw"])
# A child Python with the clock stopped at NOW, running one of the project's scripts as its own main.
CLOCK = ("import runpy, sys, time; time.time = lambda: {now!r}; sys.argv = {argv!r}; "
         "runpy.run_path(sys.argv[0], run_name='__main__')")


def insert_tasks(db: Path, tasks: List[tuple]) -> None:
    """(id, title, status, metadata as text or a dict) into generation 1's tasks table."""
    rows = [(task_id, title, status, meta if isinstance(meta, str) or meta is None else json.dumps(meta), CREATED,
             CREATED) for task_id, title, status, meta in tasks]
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO tasks (id, title, status, metadata, created_at, updated_at) "
                         "VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.close()


def stream(db_rows: List[tuple], sid: str, deps: List[str], statuses: List[str], name: str = "", **extra) -> None:
    meta = {"streamId": sid, "dependencies": deps, **({"streamName": name} if name else {}), **extra}
    first = 1 + sum(1 for row in db_rows if row[0].startswith(f"{sid}-t"))
    for i, status in enumerate(statuses, first):
        db_rows.append((f"{sid}-t{i}", f"{sid} task {i}", status, meta))


def write_table(project: Project, run: dict, rows: Dict[str, dict]) -> None:
    layout = settings.layout_for(project.home)
    layout.state.mkdir(parents=True, exist_ok=True)
    layout.run_file.write_text(json.dumps({"version": 3, "run": run, "streams": rows}), encoding="utf-8")


def every_state_plan(project: Project) -> None:
    """Generation 1: streams waiting, ready, complete and invalid every way, rows in every state."""
    taskdb.make_db(project.db)
    done, half, todo = ["completed"] * 2, ["completed", "pending"], ["pending", "pending"]
    rows: List[tuple] = []
    stream(rows, "Stream-A", [], done + ["cancelled"], "Foundation")
    stream(rows, "Stream-B", ["Stream-A"], half + ["in_progress"], "API Implementation")
    stream(rows, "Stream-C", ["Stream-A"], todo, "UI Components")
    stream(rows, "Stream-D", ["Stream-B", "Stream-C"], todo, "Integration")
    stream(rows, "Stream-E", [], ["blocked", "pending"], "名前のストリーム wide")
    stream(rows, "Stream-F", [], todo, "Fails")
    stream(rows, "Stream-G", [], todo, "Held by you")
    stream(rows, "Stream-H", [], todo, "Limited")
    stream(rows, "Stream-I", [], done, "Conflicted")
    stream(rows, "Stream-J", [], done, "Under review")
    stream(rows, "Stream-K", [], done, "In a pull request")
    stream(rows, "Stream-L", [], done, "Pull request closed")
    stream(rows, "Stream-M", [], done, "Check failed")
    stream(rows, "Stream-N", ["Stream-Nope"], todo, "Unknown dependency")
    stream(rows, "Stream-O", ["stream-a"], todo, "Misspelt dependency")
    stream(rows, "Stream-X", ["Stream-Y"], todo, "Cycle one")
    stream(rows, "Stream-Y", ["Stream-X"], todo, "Cycle two")
    stream(rows, "Stream-P", [], ["pending"], "Worker options", maxTurns=5)
    stream(rows, "Stream-P", [], ["pending"], "Worker options", maxTurns=7)
    stream(rows, "Stream-Q", ["Stream-Gone"], todo)
    stream(rows, "Stream-R", [], half, "Bad\tname\x1b[31m red", files=["src/a.py", "src/b.py"])
    stream(rows, "Stream-S", [], done, "Merging")
    stream(rows, "Stream-T", [], done, "Handed back")
    stream(rows, "Stream-U", ["Stream-C"], todo, "Stopping", streamDependencies=["Stream-A"])
    stream(rows, "Stream-V", [], todo, "Spawning")
    stream(rows, "Stream-W", ["TASK-dep"], todo, "Waits on a task")
    rows += [
        ("TASK-dep", "a task named as a dependency", "in_progress", None),
        ("TASK-plain", "a plain task", "pending", '{"owner": "someone"}'),
        ("TASK-null", "no metadata", "pending", None),
        ("TASK-bad1", "streamId is a number", "pending", '{"streamId": 5}'),
        ("TASK-bad2", "not JSON", "pending", '{"streamId": "Stream-Gone", "dependencies": [}'),
        ("TASK-bad3", "bad dependencies", "pending", '{"streamId": "Stream-R", "dependencies": "Stream-A"}'),
        ("TASK-bad4", "a list", "pending", '[1, 2]'),
        ("TASK-esc", "escaped text", "completed", '{"streamId": "Stream-\\u00c9", "streamName": "\\u00c9t\\u00e9"}'),
    ]
    insert_tasks(project.db, rows)
    (project.home / "logs").mkdir(exist_ok=True)
    (project.home / "logs" / "Stream-F.log").write_text("starting\nError: the tests do not pass\n\n", encoding="utf-8")
    exit1 = {"exit_code": 1, "signal": None, "why": ""}
    write_table(project, {"isolation": "worktree", "integration_branch": "orchestrate/integration", "base": "main",
                          "max_restarts": 3, "state": "running", "started_at": RUN_STARTED, "run_id": ""}, {
        "Stream-A": {"state": "complete", "attempts": 1, "ran": True, "spent_usd": 1.25, "turns": 30, "tokens": 9000},
        "Stream-B": {"state": "backoff", "attempts": 2, "failures": 1, "retry_at": NOW + 12, "reason": "worker exited",
                     "last_exit": exit1, "ran": True},
        "Stream-F": {"state": "failed", "attempts": 4, "failures": 4, "reason": "worker exited with code 1",
                     "last_exit": exit1, "ran": True},
        "Stream-G": {"state": "held", "reason": ""},
        "Stream-H": {"state": "rate_limited", "attempts": 1, "retry_at": NOW + 5400, "resume": True,
                     "session_id": "sess-h", "ran": True},
        "Stream-I": {"state": "merge_conflict", "reason": "conflicts in src/app.py", "conflicts": ["src/app.py"],
                     "handed_back": True, "ran": True, "attempts": 2},
        "Stream-J": {"state": "awaiting_review", "commit": "0123456789abcdef0123", "diff_stat":
                     "3 files changed, 20 insertions(+)", "ran": True, "attempts": 1},
        "Stream-K": {"state": "awaiting_pr", "pull_request": "https://example.invalid/pr/7", "commit": "feedbeef",
                     "ran": True, "attempts": 1},
        "Stream-L": {"state": "pr_closed", "reason": "its pull request https://example.invalid/pr/8 was closed",
                     "pull_request": "https://example.invalid/pr/8", "ran": True, "attempts": 1},
        "Stream-M": {"state": "check_failed", "reason": "the merge check failed (exit 2)", "ran": True, "attempts": 1},
        "Stream-S": {"state": "merging", "commit": "abcdef0123456789", "ran": True, "attempts": 1},
        "Stream-T": {"state": "ready", "conflicts": ["a.txt", "b.txt"], "handed_back": True, "ran": True,
                     "reason": "merge conflict handed back to its agent", "attempts": 1},
        "Stream-U": {"state": "stopping", "deadline": NOW + 3, "after_stop": "held", "reason": "stop requested",
                     "ran": True, "attempts": 1},
        "Stream-V": {"state": "starting", "attempts": 1, "ran": True},
        "Stream-Gone": {"state": "failed", "attempts": 2, "reason": "gone from the tracker"},
        "Stream-Bad": "not a row",
    })


def live_plan(project: Project) -> Dict[str, subprocess.Popen]:
    """A run in progress: a live orchestrator, one worker running with its agent's activity, the
    spend cap reached (ready streams say so)."""
    taskdb.make_db(project.db)
    rows: List[tuple] = []
    stream(rows, "Stream-A", [], ["completed"] * 3, "Foundation")
    stream(rows, "Stream-B", ["Stream-A"], ["completed", "in_progress", "pending"], "Running now")
    stream(rows, "Stream-C", ["Stream-A"], ["pending"], "Ready, capped")
    stream(rows, "Stream-D", ["Stream-B"], ["pending"], "Waiting")
    insert_tasks(project.db, rows)
    with open(project.home / "orchestrator.conf", "a", encoding="utf-8") as conf:
        conf.write("spend_cap_usd = 5\nspend_cap_period = day\n")
    layout = settings.layout_for(project.home)
    write_table(project, {"isolation": "none", "state": "capped", "started_at": RUN_STARTED, "capped_until": NOW + 7200,
                          "run_id": "20270115T065915Z-abcdef"}, {
        "Stream-A": {"state": "complete", "attempts": 1, "ran": True, "spent_usd": 2.5, "turns": 10, "tokens": 5000},
        "Stream-B": {"state": "running", "attempts": 2, "failures": 1, "ran": True, "spent_usd": 0.5, "turns": 3,
                     "tokens": 700, "session_id": "sess-b"},
    })
    layout.activity_file.write_text(json.dumps({"Stream-B": {
        "turns": 12, "last_activity": NOW - 8, "last_message": "Writing the tests", "cost_usd": 1.42,
        "tokens": 4321, "session_id": "sess-b2"}}), encoding="utf-8")
    token = "test-token-b"
    worker = subprocess.Popen(["sleep", "600"], env={"PATH": os.environ["PATH"], processes.TOKEN_VARIABLE: token})
    orchestrator = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "orchestrate.py"])
    for child in (worker, orchestrator):  # each has exec'd once its start time and command line say so
        deadline = time.monotonic() + 30
        while not processes.process_start_time(child.pid) or (
                child is worker and not processes.carries_token(child.pid, token)) or (
                child is orchestrator and not processes.runs_script(child.pid, "orchestrate.py")):
            assert time.monotonic() < deadline, "a stand-in process did not start"
            time.sleep(0.01)
    layout.pids.mkdir(parents=True, exist_ok=True)
    processes.write_pid_file(layout.pid_for("Stream-B"), processes.PidRecord(
        worker.pid, processes.process_start_time(worker.pid) or "", "Stream-B", 2, NOW - 754, token))
    processes.write_pid_file(layout.orchestrator_pid, processes.PidRecord(
        orchestrator.pid, processes.process_start_time(orchestrator.pid) or "", "", 0, RUN_STARTED))
    return {"worker": worker, "orchestrator": orchestrator}


def tc_plan(project: Project) -> None:
    """Generation 2: streams rows (one paused, one archived), task-level dependencies across streams,
    a task in a row only; the last run ended."""
    db = taskdb.make_tc_db(project.root)
    taskdb.add_tc_stream(db, "Stream-A", [], 2, "Foundation", ["completed", "completed"])
    b = taskdb.add_tc_stream(db, "Stream-B", ["Stream-A"], 2, "Backend", ["in_progress", "pending"])
    c = taskdb.add_tc_stream(db, "Stream-C", [], 2, "Paused row", row_status="paused")
    taskdb.add_tc_stream(db, "Stream-D", [], 1, "Archived row", row_status="archived")
    taskdb.add_tc_dependency(db, c[0], b[1])
    row = taskdb.add_tc_stream_row(db, "Row-Only")
    taskdb.add_tc_task(db, "a task with no stream metadata", row, None, "pending")
    write_table(project, {"isolation": "none", "state": "ended", "started_at": RUN_STARTED, "ended_at": NOW - 600,
                          "exit_code": 1, "outcome": "stopped: nothing more can run"}, {
        "Stream-A": {"state": "complete", "attempts": 1, "ran": True},
        "Stream-B": {"state": "failed", "attempts": 3, "reason": "worker exited with code 1", "ran": True},
    })


def done_plan(project: Project) -> None:
    taskdb.make_db(project.db)
    rows: List[tuple] = []
    stream(rows, "Stream-A", [], ["completed"], "One")
    stream(rows, "Stream-B", ["Stream-A"], ["cancelled", "completed"])
    insert_tasks(project.db, rows)


def empty_plan(project: Project) -> None:
    taskdb.make_db(project.db)
    insert_tasks(project.db, [("TASK-1", "a plain task", "pending", '{"owner": "x"}')])


SCENARIOS = {"every_state": every_state_plan, "live": live_plan, "tc": tc_plan, "done": done_plan,
             "empty": empty_plan}


def run_script(project: Project, argv: List[str], isolated: bool) -> str:
    env = {**project.env, "TZ": "UTC", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "COLUMNS": "100"}
    flags = ["-I", "-S"] if isolated else []
    result = subprocess.run([sys.executable, *flags, "-c", CLOCK.format(now=NOW, argv=argv)], cwd=project.root,
                            env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    return f"$ {' '.join(Path(argv[0]).name if i == 0 else a for i, a in enumerate(argv))}  (exit {result.returncode})\n" \
           f"{result.stdout}{result.stderr}"


def outputs(project: Project, frames=FRAMES) -> str:
    frame = str(project.home / "check_streams_data.py")
    orchestrate = str(project.home / "orchestrate.py")
    parts = [run_script(project, [frame, *args], isolated=True) for args in frames]
    parts += [run_script(project, [orchestrate, "status"], isolated=False),
              run_script(project, [orchestrate, "status", "--json"], isolated=False)]
    return "\n".join(parts)


def normalized(text: str, project: Project, pids: Dict[str, int]) -> str:
    """The temporary folder and process ids replaced; with process ids, runs of spaces made two (the
    status table's columns are as wide as the widest pid, whose digits vary)."""
    text = text.replace(str(project.root.parent), "<tmp>")
    for name, pid in pids.items():
        text = re.sub(rf"(?<![0-9]){pid}(?![0-9])", f"<pid {name}>", text)
    return re.sub(" {2,}", "  ", text) if pids else text


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_output_is_what_it_was(tmp_path, scenario):
    project = Project.create(tmp_path)
    children = SCENARIOS[scenario](project) or {}
    try:
        frames = WIDE_FRAMES if scenario == "empty" else FRAMES
        got = normalized(outputs(project, frames), project, {name: child.pid for name, child in children.items()})
    finally:
        for child in children.values():
            child.kill()
            child.wait()
    expected = EXPECTED / f"{scenario}.txt"
    if os.environ.get("ORCHESTRATE_WRITE_OUTPUTS"):
        EXPECTED.mkdir(exist_ok=True)
        expected.write_text(got, encoding="utf-8")
    assert got == expected.read_text(encoding="utf-8")
