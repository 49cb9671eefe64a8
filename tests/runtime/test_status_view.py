"""What `status` (and the dashboard's title) tell a user, end to end with the real orchestrator.

Streams in dependency order with their cost; the agent turns and tokens of finished attempts kept
after the run; how the last run ended when nothing runs; the project's name where the Task Copilot
server's default workspace is a hash of the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

from tests.support import taskdb


def table_rows(text: str) -> list:
    """The status table's rows (header first), as lists of cells."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("LEVEL"))
    rows = []
    for line in lines[start:]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


def test_status_lists_streams_by_level_with_their_cost(project):
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "zz-base", [], 1)
    taskdb.add_stream(project.db, "mm-middle", ["zz-base"], 1)
    taskdb.add_stream(project.db, "aa-top", ["mm-middle"], 1)
    project.env["FAKE_CLAUDE_COST"] = "0.25"
    project.plan({"mm-middle": ["hang"]})
    orchestrator = project.start_background()
    try:
        project.wait_for(lambda: project.states()["mm-middle"] == "running", what="mm-middle to run")
        rows = table_rows(project.orchestrate("status").stdout)
    finally:
        assert project.orchestrate("stop", "--grace", "1").returncode == 0
        orchestrator.wait(timeout=30)
    assert rows[0] == ["LEVEL", "STREAM", "STATE", "TASKS", "PID", "ATTEMPTS", "COST", "NAME"]
    assert [(r[0], r[1]) for r in rows[1:]] == [("0", "zz-base"), ("1", "mm-middle"), ("2", "aa-top")]
    base = rows[1]
    assert base[2] == "complete" and base[-1] == "$0.25"  # its one attempt's cost, from its result


def result_of(log_text: str) -> dict:
    results = [json.loads(line) for line in log_text.splitlines() if line.startswith('{"type":"result"')]
    return results[-1]


def test_turns_and_tokens_of_each_stream_are_kept_after_the_run(project):
    taskdb.diamond(project.db)
    result = project.orchestrate("start")
    assert result.returncode == 0, result.stdout + result.stderr
    status = project.status()
    assert not status["orchestrator"]["running"]
    for view in status["streams"]:
        said = result_of((project.home / "logs" / f"{view['stream_id']}.log").read_text())
        usage = said["usage"]
        tokens = (usage["input_tokens"] + usage.get("cache_read_input_tokens", 0)
                  + usage.get("cache_creation_input_tokens", 0) + usage["output_tokens"])
        assert (view["turns"], view["tokens"]) == (said["num_turns"], tokens), view
    assert status["run"]["turns"] == sum(v["turns"] for v in status["streams"]) > 0
    assert status["run"]["tokens"] == sum(v["tokens"] for v in status["streams"]) > 0


def test_after_a_run_stopped_by_a_configuration_error_status_says_why_nothing_ran(project):
    taskdb.diamond(project.db)
    project.plan({"Stream-A": ["not-logged-in"]})
    result = project.orchestrate("start", "--no-preflight")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "stopping 0 worker(s)" not in result.stdout
    text = project.orchestrate("status").stdout
    line = next(line for line in text.splitlines() if line.startswith("Last run:"))
    assert "exit 2: stopped: configuration error: Not logged in" in line
    assert "the next `start` begins a new run" in line


def test_the_servers_default_workspace_shows_the_projects_name(project):
    """No WORKSPACE_ID: the server's workspace is the MD5 of the project's path; users know the folder."""
    workspace = hashlib.md5(os.path.realpath(project.root).encode()).hexdigest()[:12]
    taskdb.diamond(project.base / workspace / "tasks.db")
    del project.env["WORKSPACE_ID"]
    text = project.orchestrate("status").stdout
    assert text.splitlines()[0].startswith(f"Project: project (Task Copilot workspace {workspace}, ")
    assert project.status()["project"] == "project"
    frame = subprocess.run([str(project.home / "check-streams")], cwd=project.root, env=project.env,
                           capture_output=True, text=True)
    assert frame.returncode == 0, frame.stderr
    assert frame.stdout.startswith("Streams of project at ")
