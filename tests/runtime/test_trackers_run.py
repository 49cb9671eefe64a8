"""Both Task Copilot generations end to end: the real orchestrator, real databases, the fake worker."""

import hashlib
import json
import os

from tests.runtime.test_run import spans
from tests.support import taskdb


def as_mcp_default(project):
    """No WORKSPACE_ID anywhere: the server's default workspace, the MD5 of the project path."""
    del project.env["WORKSPACE_ID"]
    workspace = hashlib.md5(os.path.realpath(project.root).encode()).hexdigest()[:12]
    return project.base / workspace / "tasks.db"


def as_tc_user(project):
    """A tc user has no TASK_DB_PATH or WORKSPACE_ID (the database is <project>/.copilot/tasks.db)."""
    del project.env["WORKSPACE_ID"], project.env["TASK_DB_PATH"]


def assert_diamond_order(project):
    t = spans(project)
    assert t["Stream-B"][0] >= t["Stream-A"][1] and t["Stream-C"][0] >= t["Stream-A"][1]
    assert t["Stream-B"][0] < t["Stream-C"][1] and t["Stream-C"][0] < t["Stream-B"][1]
    assert t["Stream-Z"][0] >= max(t["Stream-B"][1], t["Stream-C"][1])


def shape(value):
    """Keys all the way down (list items by their first element): what a consumer relies on."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return None


def test_diamond_on_generation_1_with_the_servers_md5_workspace(project):
    db = taskdb.diamond(as_mcp_default(project))
    project.env["FAKE_CLAUDE_DELAY"] = "0.3"
    result = project.orchestrate("start")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "MD5 of the project path" in result.stdout
    assert_diamond_order(project)
    status = project.status()
    assert status["tracker"] == "mcp" and status["database"] == str(db)
    assert set(project.states().values()) == {"complete"}
    prompt = project.events("start")[0]["prompt"]
    assert "task_update" in prompt and "tc task" not in prompt


def test_diamond_on_generation_2_with_tc_and_the_same_status_shape(project, tmp_path):
    as_tc_user(project)
    db = taskdb.tc_diamond(project.root)
    project.env["FAKE_CLAUDE_DELAY"] = "0.3"
    result = project.orchestrate("start")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "walking up" in result.stdout
    assert_diamond_order(project)
    start = next(e for e in project.events("start") if e["stream"] == "Stream-B")
    assert "tc task update <id> --status" in start["prompt"] and "task_update tool" not in start["prompt"]
    assert start["stream_name"] == "API Implementation"
    tc_status = project.status()
    assert tc_status["tracker"] == "tc" and tc_status["database"] == str(db)
    assert set(project.states().values()) == {"complete"}
    # The same report from a generation-1 database: identical in shape.
    mcp_db = taskdb.diamond(tmp_path / "gen1" / "ws" / "tasks.db")
    taskdb.set_stream_status(mcp_db, "Stream-A", "completed")
    result = project.orchestrate("status", "--json", "--db", str(mcp_db))
    mcp_status = json.loads(result.stdout)
    assert mcp_status["tracker"] == "mcp"
    assert shape(mcp_status) == shape(tc_status)
    assert [s["stream_id"] for s in mcp_status["streams"]] == [s["stream_id"] for s in tc_status["streams"]]


def test_tc_task_dependency_across_streams_orders_the_run(project):
    as_tc_user(project)
    db = taskdb.make_tc_db(project.root)
    (ui,) = taskdb.add_tc_stream(db, "UI", [], 1)
    (api,) = taskdb.add_tc_stream(db, "API", [], 1)
    taskdb.add_tc_dependency(db, ui, api)  # UI's task needs API's task: no stream-level dependency
    plan = project.orchestrate("plan")
    assert plan.returncode == 0, plan.stderr
    assert f"UI waits on task(s): {api}" in plan.stdout and "tracker tc" in plan.stdout
    project.env["FAKE_CLAUDE_DELAY"] = "0.2"
    result = project.orchestrate("start")
    assert result.returncode == 0, result.stdout + result.stderr
    t = spans(project)
    assert t["UI"][0] >= t["API"][1]


def test_paused_tc_stream_is_shown_and_not_started(project):
    as_tc_user(project)
    db = taskdb.make_tc_db(project.root)
    taskdb.add_tc_stream(db, "Live", [], 1)
    taskdb.add_tc_stream(db, "Held", [], 1, row_status="paused")
    taskdb.add_tc_stream(db, "Gone", [], 1, row_status="archived")
    result = project.orchestrate("start")
    assert result.returncode == 1, result.stdout + result.stderr
    assert [e["stream"] for e in project.events("start")] == ["Live"]
    assert "Held: waiting: paused" in result.stdout
    states = project.states()
    assert states == {"Held": "waiting", "Live": "complete"}


def test_generation_1_task_id_dependency_waits_for_that_task(project):
    taskdb.make_db(project.db)
    (api_task,) = taskdb.add_stream(project.db, "API", [], 1)
    taskdb.add_task(project.db, {"streamId": "UI", "dependencies": [api_task]})
    plan = json.loads(project.orchestrate("plan", "--json").stdout)
    assert plan["task_waits"] == {"UI": [api_task]} and plan["problems"] == []
    assert "WORKSPACE_ID from the environment" in plan["database_found_by"]
    project.env["FAKE_CLAUDE_DELAY"] = "0.2"
    result = project.orchestrate("start")
    assert result.returncode == 0, result.stdout + result.stderr
    t = spans(project)
    assert t["UI"][0] >= t["API"][1]


def test_db_flag_no_worker_could_open_is_refused_before_anything_starts(project, tmp_path):
    db = taskdb.diamond(tmp_path / "backup" / "tasks-copy.db")
    result = project.orchestrate("start", "--db", str(db))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "nothing was started" in result.stderr and "is not named <workspace>/tasks.db" in result.stderr
    assert "Traceback" not in result.stderr
    assert project.events() == []
    assert project.orchestrate("status", "--db", str(db)).returncode == 0  # reading it is fine


def test_tracker_choice_from_flag_and_setting(project):
    tc_db = taskdb.tc_diamond(project.root)
    taskdb.diamond(project.db)  # WORKSPACE_ID/TASK_DB_PATH point at generation 1: preferred
    assert project.status()["tracker"] == "mcp"
    assert "using mcp" in project.status()["database_notes"][-1]
    result = project.orchestrate("status", "--json", "--tracker", "tc")
    assert json.loads(result.stdout)["database"] == str(tc_db)
    project.configure(tracker="tc")
    assert project.status()["tracker"] == "tc"
    project.configure(tracker="jira")
    bad = project.orchestrate("status")
    assert bad.returncode == 2 and "tracker must be one of auto, mcp, tc" in bad.stderr


def test_status_shows_the_rule_and_percent_rounded_once(project):
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 11, statuses=["completed"] * 5)
    text = project.orchestrate("status").stdout
    assert "5/11 (45%)" in text and "tasks (45%)" in text
    assert "Tracker: mcp, database TASK_DB_PATH from the environment, WORKSPACE_ID from the environment" in text
