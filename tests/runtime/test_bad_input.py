"""Bad input gets a clear message, the documented exit code, and starts nothing."""

import os
import re
from pathlib import Path

import pytest

from tests.support import taskdb


def assert_clean_failure(result, code):
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_cycle_starts_nothing_and_names_the_streams(project):
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", ["C"], 1)
    taskdb.add_stream(project.db, "B", ["A"], 1)
    taskdb.add_stream(project.db, "C", ["B"], 1)
    taskdb.add_stream(project.db, "Free", [], 1)
    result = project.orchestrate("start", timeout=20)
    assert_clean_failure(result, 2)
    assert "Circular dependency detected: A -> C -> B -> A" in result.stderr
    assert project.events() == []
    assert project.orchestrate("plan").returncode == 2


def test_unknown_dependency_starts_nothing(project):
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 1)
    taskdb.add_stream(project.db, "B", ["Stream-Ghost"], 1)
    result = project.orchestrate("start", timeout=20)
    assert_clean_failure(result, 2)
    assert "'B' depends on unknown stream 'Stream-Ghost'" in result.stderr
    assert project.events() == []


def test_missing_database_says_where_it_looked_and_how_to_override(project):
    for command in (["start"], ["status"], ["plan"]):
        result = project.orchestrate(*command)
        assert_clean_failure(result, 2)
        assert str(project.db) in result.stderr
        assert "TASK_DB_PATH" in result.stderr and "WORKSPACE_ID" in result.stderr and "--db" in result.stderr


def test_default_workspace_is_the_project_folder_name(project, tmp_path):
    env = dict(project.env)
    del env["WORKSPACE_ID"]
    taskdb.diamond(project.base / "project" / "tasks.db")
    result = project.orchestrate("status", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert '"workspace": "project"' in result.stdout


def test_db_flag_overrides_the_lookup(project, tmp_path):
    db = taskdb.diamond(tmp_path / "elsewhere" / "ws9" / "tasks.db")
    result = project.orchestrate("start", "--db", str(db))
    assert result.returncode == 0, result.stdout + result.stderr
    start = project.events("start")[0]
    assert start["stream"] == "Stream-A"  # the fake worker found the same DB via TASK_DB_PATH/WORKSPACE_ID


@pytest.mark.parametrize("content", [b"", b"garbage" * 200])
def test_unusable_database_file(project, content):
    project.db.parent.mkdir(parents=True)
    project.db.write_bytes(content)
    result = project.orchestrate("start")
    assert_clean_failure(result, 2)
    assert str(project.db) in result.stderr


def test_no_streams_explains_the_metadata_contract(project):
    taskdb.make_db(project.db)
    taskdb.add_task(project.db, {})
    result = project.orchestrate("start")
    assert_clean_failure(result, 2)
    assert "No streams found in Task Copilot database" in result.stderr
    assert '"streamId"' in result.stderr


def test_each_task_with_malformed_metadata_is_named_in_plan_start_and_status(project):
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 1)
    broken = taskdb.add_task(project.db, "{broken json", title="Wire the API")
    listed = taskdb.add_task(project.db, '{"streamId": ["not", "a", "string"]}', title="Add the tests")
    named = [f"task {broken} 'Wire the API': its metadata is not valid JSON",
             f"task {listed} 'Add the tests': \"streamId\" is a list; it must be a stream id (text)"]
    plan = project.orchestrate("plan")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    status = project.orchestrate("status").stdout
    detached = project.orchestrate("start", "--dry-run")
    result = project.orchestrate("start")
    assert result.returncode == 0, result.stdout + result.stderr
    for output in (plan.stderr, status, detached.stderr, result.stdout):
        for text in named:
            assert output.count(text) == 1, (text, output)  # each task once, never counted twice
        assert "left out of every stream" in output


def test_a_dependency_on_a_stream_whose_only_task_is_broken_says_so(project):
    """Not "depends on unknown stream": the stream is in the plan, its one task's JSON is broken."""
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "Stream-A", [], 1)
    broken = taskdb.add_task(project.db, '{"streamId": "Stream-B", "dependencies": ["Stream-A"],}', title="API")
    taskdb.add_stream(project.db, "Stream-C", ["Stream-B"], 1)
    taskdb.add_stream(project.db, "Stream-D", ["Stream-Aa"], 1)
    result = project.orchestrate("start")
    assert_clean_failure(result, 2)
    assert "unknown stream 'Stream-B'" not in result.stderr
    assert (f"Stream 'Stream-C' depends on stream 'Stream-B', whose only task(s) have metadata that cannot be read "
            f"(task {broken} 'API': its metadata is not valid JSON") in result.stderr
    assert "Stream 'Stream-D' depends on unknown stream 'Stream-Aa' (did you mean 'Stream-A'?)" in result.stderr
    assert project.events("start") == []
    plan = project.orchestrate("plan")
    assert "whose only task(s) have metadata that cannot be read" in plan.stderr and "did you mean" in plan.stderr
    status = project.orchestrate("status").stdout
    assert "error: Stream 'Stream-C' depends on stream 'Stream-B', whose only task(s)" in status


def test_unknown_stream_name_for_start(project):
    taskdb.diamond(project.db)
    result = project.orchestrate("start", "Stream-Q")
    assert_clean_failure(result, 2)
    assert "unknown stream(s): Stream-Q" in result.stderr and "Stream-A" in result.stderr


def test_worker_command_not_found(project):
    taskdb.diamond(project.db)
    project.configure(worker_command="no-such-agent-cli --flag")
    result = project.orchestrate("start")
    assert_clean_failure(result, 2)
    assert "'no-such-agent-cli' was not found on PATH" in result.stderr


def test_broken_config_file(project):
    taskdb.diamond(project.db)
    (project.home / "orchestrator.conf").write_text("max_parallel = lots\n")
    result = project.orchestrate("start")
    assert_clean_failure(result, 2)
    assert "orchestrator.conf:1: max_parallel must be 0 (unlimited) or a positive whole number" in result.stderr


@pytest.mark.parametrize("args", [[], ["frobnicate"], ["start", "--max-parallel", "-1"], ["logs"],
                                  ["start", "--poll-interval", "0"]])
def test_usage_errors(project, args):
    result = project.orchestrate(*args)
    assert_clean_failure(result, 2)
    assert "usage:" in result.stderr


def test_help_lists_every_command(project):
    result = project.orchestrate("--help")
    assert result.returncode == 0
    for command in ("start", "status", "stop", "logs", "plan"):
        assert command in result.stdout


HOSTILE = ["../escape", "a/b", "$(touch pwned)", "`touch pwned2`", "with space", "new\nline",
           "Ünïcødé-流", "..", "-rf", "x" * 300, "tab\there", "\x1b[31mred"]


def test_hostile_stream_ids_stay_inside_logs_and_pids_and_run_nothing(project, tmp_path):
    taskdb.make_db(project.db)
    previous = None
    for sid in HOSTILE:
        taskdb.add_stream(project.db, sid, [previous] if previous else [], 1, name=f"name of {sid}")
        previous = sid
    before = {p for p in tmp_path.rglob("*")}
    result = project.orchestrate("start", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {e["stream"] for e in project.events("start")} == set(HOSTILE)
    assert "\x1b" not in result.stdout  # printed inert
    created = {p for p in tmp_path.rglob("*")} - before
    orchestrator_dir = project.home
    for path in created:
        if str(path).startswith(str(project.events_file)) or project.base in path.parents:
            continue  # the fake worker's own records, and the database's journal files
        assert orchestrator_dir in path.parents, f"file outside the runtime folder: {path}"
        relative = path.relative_to(orchestrator_dir)
        assert relative.parts[0] in {"logs", "pids", "state", "reports"}, path
        if relative.parts[0] == "reports":  # the run's report, named by its run id, never by a stream
            assert relative == Path("reports") or re.fullmatch(r"reports/\d{8}T\d{6}Z-[0-9a-f]{6}\.html",
                                                                 relative.as_posix()), path
    assert not list(tmp_path.rglob("pwned*"))
    assert not os.path.exists("pwned") and not os.path.exists(os.path.expanduser("~/pwned"))
    logs = sorted(p.name for p in (project.home / "logs").iterdir())
    assert len(logs) == len(HOSTILE)
    assert all("/" not in n and "\n" not in n and not n.startswith(".") for n in logs)
    status = project.orchestrate("status")
    assert "\x1b" not in status.stdout
    assert project.orchestrate("logs", "$(touch pwned)").returncode == 0
