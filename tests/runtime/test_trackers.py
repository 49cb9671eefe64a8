"""Tracker adapters against real-schema databases of both Task Copilot generations (in process)."""

import hashlib
import json
import os
import sqlite3

import pytest

from tests.runtime.runtime_import import stream_graph as sg
from tests.runtime.runtime_import import task_copilot_client as tcc
from tests.support import taskdb

from _orchestrate_kit import trackers  # noqa: E402  (on sys.path through runtime_import)


def md5_of(folder):
    return hashlib.md5(os.path.realpath(folder).encode()).hexdigest()[:12]


@pytest.fixture
def proj(tmp_path):
    root = tmp_path / "my-project"
    root.mkdir()
    return root


def home_env(tmp_path, **extra):
    return {"HOME": str(tmp_path / "home"), **extra}


def default_base(tmp_path):
    return tmp_path / "home" / ".claude" / "tasks"


def write_mcp(root, key="task-copilot", env=None, args=("/opt/copilot/mcp-servers/task-copilot/dist/index.js",)):
    entry = {"command": "node", "args": list(args)}
    if env is not None:
        entry["env"] = env
    (root / ".mcp.json").write_text(json.dumps({"mcpServers": {key: entry}}), encoding="utf-8")


# ---------------------------------------------------------------- generation 1: finding the file


def test_md5_default_workspace_is_found_like_the_server(tmp_path, proj):
    db = taskdb.make_db(default_base(tmp_path) / md5_of(proj) / "tasks.db")
    loc = trackers.locate_tracker(proj, None, None, home_env(tmp_path))
    assert (loc.generation, loc.path, loc.workspace_id, loc.exists) == ("mcp", db, md5_of(proj), True)
    assert "MD5 of the project path" in loc.how and not loc.notes
    assert loc.worker_environment() == {"TASK_DB_PATH": str(default_base(tmp_path)), "WORKSPACE_ID": md5_of(proj)}
    assert loc.worker_refusal() is None
    # From a worktree the MD5 would differ: the explicit WORKSPACE_ID keeps the worker on this file.
    assert loc.worker_refusal(proj / ".claude" / "worktrees" / "Stream-A") is None


def test_folder_name_workspace_of_the_retired_orchestrator_is_found(tmp_path, proj):
    db = taskdb.make_db(default_base(tmp_path) / "my-project" / "tasks.db")
    loc = trackers.locate_tracker(proj, None, None, home_env(tmp_path))
    assert (loc.path, loc.workspace_id) == (db, "my-project")
    assert "folder's name" in loc.how


def test_both_default_workspaces_present_says_which_and_how_to_pick_the_other(tmp_path, proj):
    md5_db = taskdb.make_db(default_base(tmp_path) / md5_of(proj) / "tasks.db")
    named = taskdb.make_db(default_base(tmp_path) / "my-project" / "tasks.db")
    loc = trackers.locate_tracker(proj, None, None, home_env(tmp_path))
    assert loc.path == md5_db
    (note,) = loc.notes
    assert str(named) in note and "WORKSPACE_ID=my-project" in note and "--db" in note


@pytest.mark.parametrize("key", ["task-copilot", "tasks"])
def test_mcp_json_entry_by_key_or_by_args_with_relative_base(tmp_path, proj, key):
    write_mcp(proj, key, {"TASK_DB_PATH": "data/tasks", "WORKSPACE_ID": "shop"})
    db = taskdb.make_db(proj / "data" / "tasks" / "shop" / "tasks.db")
    loc = trackers.locate_tracker(proj, None, None, home_env(tmp_path))
    assert loc.path == db and loc.workspace_id == "shop"
    assert f"TASK_DB_PATH from .mcp.json (server {key!r})" in loc.how
    assert loc.worker_refusal() is None
    # A relative TASK_DB_PATH in .mcp.json wins over the worker's environment and is read from the
    # worker's folder: from a worktree it names another file, so workers there are refused.
    refusal = loc.worker_refusal(proj / ".claude" / "worktrees" / "Stream-A")
    assert refusal and "would open" in refusal and ".mcp.json" in refusal


def test_mcp_json_absolute_base_and_variable_expansion(tmp_path, proj):
    base = tmp_path / "shared-tasks"
    write_mcp(proj, env={"TASK_DB_PATH": str(base), "WORKSPACE_ID": "${PROJECT_WS:-fallback}"})
    db = taskdb.make_db(base / "fallback" / "tasks.db")
    loc = trackers.locate_tracker(proj, None, None, home_env(tmp_path))
    assert loc.path == db and "WORKSPACE_ID from .mcp.json" in loc.how
    assert loc.worker_refusal(proj / ".claude" / "worktrees" / "x") is None
    db2 = taskdb.make_db(base / "set-ws" / "tasks.db")
    assert trackers.locate_tracker(proj, None, None, home_env(tmp_path, PROJECT_WS="set-ws")).path == db2


def test_environment_comes_before_mcp_json_and_a_conflict_refuses_workers(tmp_path, proj):
    write_mcp(proj, env={"WORKSPACE_ID": "from-mcp"})
    base = tmp_path / "base"
    db = taskdb.make_db(base / "from-env" / "tasks.db")
    loc = trackers.locate_tracker(proj, None, None, home_env(tmp_path, TASK_DB_PATH=str(base), WORKSPACE_ID="from-env"))
    assert loc.path == db and "WORKSPACE_ID from the environment" in loc.how
    refusal = loc.worker_refusal()
    assert refusal and "WORKSPACE_ID=from-mcp" in refusal and "Claude Code applies" in refusal


def test_whitespace_workspace_id_is_trimmed_like_the_server(tmp_path, proj):
    base = tmp_path / "base"
    db = taskdb.make_db(base / "ws" / "tasks.db")
    loc = trackers.locate_tracker(proj, None, None, home_env(tmp_path, TASK_DB_PATH=str(base), WORKSPACE_ID="  ws \t"))
    assert loc.path == db and loc.worker_environment()["WORKSPACE_ID"] == "ws"
    blank = trackers.locate_tracker(proj, None, None, home_env(tmp_path, TASK_DB_PATH=str(base), WORKSPACE_ID="   "))
    assert blank.workspace_id == md5_of(proj)  # all whitespace: unset, as the server treats it


def test_tilde_base_is_used_as_given_with_a_note(tmp_path, proj):
    loc = trackers.locate_tracker(proj, None, None, home_env(tmp_path, TASK_DB_PATH="~/tasks", WORKSPACE_ID="w"))
    assert loc.path == proj / "~" / "tasks" / "w" / "tasks.db"
    assert any("does not expand" in n for n in loc.notes)


def test_db_with_a_name_no_server_would_open_is_refused(tmp_path, proj):
    odd = taskdb.make_db(tmp_path / "backup" / "copy-of-tasks.db")
    loc = trackers.locate_tracker(proj, str(odd), None, home_env(tmp_path))
    assert loc.exists and loc.how == "given with --db"
    assert "is not named <workspace>/tasks.db" in loc.worker_refusal()
    good = taskdb.make_db(tmp_path / "elsewhere" / "ws9" / "tasks.db")
    loc = trackers.locate_tracker(proj, str(good), None, home_env(tmp_path))
    assert loc.worker_refusal() is None
    assert loc.worker_environment() == {"TASK_DB_PATH": str(tmp_path / "elsewhere"), "WORKSPACE_ID": "ws9"}


def test_nothing_found_lists_every_place_tried(tmp_path, proj):
    loc = trackers.locate_tracker(proj, None, None, home_env(tmp_path))
    assert not loc.exists
    message = loc.missing_message()
    for place in (default_base(tmp_path) / md5_of(proj) / "tasks.db", default_base(tmp_path) / "my-project" / "tasks.db",
                  proj / ".mcp.json", proj / ".copilot" / "tasks.db"):
        assert str(place) in message
    assert "TASK_DB_PATH" in message and "tc init" in message


@pytest.mark.parametrize("workspace", ["ws", None])
def test_task_db_path_naming_the_file_says_it_must_be_the_folder(tmp_path, proj, workspace):
    db = taskdb.make_db(tmp_path / "tasks" / "ws" / "tasks.db")
    env = home_env(tmp_path, TASK_DB_PATH=str(db), **({"WORKSPACE_ID": workspace} if workspace else {}))
    loc = trackers.locate_tracker(proj, None, "mcp", env)
    assert not loc.exists
    message = loc.missing_message()
    assert f"TASK_DB_PATH names the file {db}, but it must be the folder that holds <workspace>/tasks.db" in message
    assert f"set TASK_DB_PATH={tmp_path / 'tasks'} and WORKSPACE_ID=ws, or pass --db {db}" in message


# ---------------------------------------------------------------- generation 2: finding the file


def test_tc_database_found_by_walking_up_and_from_a_worktree(tmp_path, proj):
    db = taskdb.make_tc_db(proj)
    sub = proj / "services" / "api"
    sub.mkdir(parents=True)
    loc = trackers.locate_tracker(sub, None, None, home_env(tmp_path))
    assert (loc.generation, loc.path, loc.exists) == ("tc", db, True)
    assert "walking up" in loc.how and loc.workspace_id == "my-project"
    assert loc.worker_environment() == {}
    assert "tc task update <id> --status" in loc.update_instructions()
    worktree = proj / ".claude" / "worktrees" / "Stream-A"
    worktree.mkdir(parents=True)
    assert loc.worker_refusal(worktree) is None
    taskdb.make_tc_db(worktree)  # e.g. .copilot/ committed and checked out in the worktree
    assert "would use" in loc.worker_refusal(worktree)


def test_tc_db_flag_elsewhere_is_refused(tmp_path, proj):
    other = taskdb.make_tc_db(tmp_path / "other")
    loc = trackers.locate_tracker(proj, str(other), None, home_env(tmp_path))
    assert loc.generation == "tc" and loc.exists
    assert "tc has no setting" in loc.worker_refusal()


def test_both_generations_prefer_what_the_configuration_points_at(tmp_path, proj):
    tc_db = taskdb.make_tc_db(proj)
    mcp_db = taskdb.make_db(default_base(tmp_path) / md5_of(proj) / "tasks.db")
    loc = trackers.locate_tracker(proj, None, None, home_env(tmp_path))
    assert loc.path == tc_db and "--tracker mcp" in loc.notes[-1]
    write_mcp(proj)  # the project runs the MCP server: its database is the one in use
    loc = trackers.locate_tracker(proj, None, None, home_env(tmp_path))
    assert loc.path == mcp_db and "--tracker tc" in loc.notes[-1]
    assert trackers.locate_tracker(proj, None, "tc", home_env(tmp_path)).path == tc_db
    with pytest.raises(ValueError):
        trackers.locate_tracker(proj, None, "jira", home_env(tmp_path))


# ---------------------------------------------------------------- snapshots


def tc_snapshot(db):
    return trackers.read_snapshot(db)


def test_tc_streams_rows_metadata_paused_archived_and_integer_ids(proj):
    db = taskdb.make_tc_db(proj)
    taskdb.add_tc_stream(db, "Stream-A", [], 2, "Foundation", statuses=["completed", "completed"])
    taskdb.add_tc_stream(db, "Stream-B", ["Stream-A"], 2, "API", row_status="paused")
    taskdb.add_tc_stream(db, "Old", [], 3, row_status="archived")
    row = taskdb.add_tc_stream_row(db, "Docs")  # tasks with no metadata belong to their row, by name
    first = taskdb.add_tc_task(db, "write", row)
    taskdb.add_tc_task(db, "review", row, status="in_progress")
    taskdb.add_tc_task(db, "a plain task outside any stream")
    snap = tc_snapshot(db)
    assert list(snap.streams) == ["Docs", "Stream-A", "Stream-B"]
    a, b, docs = snap.streams["Stream-A"], snap.streams["Stream-B"], snap.streams["Docs"]
    assert a.stream_name == "Foundation" and a.is_complete and not a.paused
    assert b.paused and b.dependencies == ("Stream-A",)
    assert docs.counts == {"pending": 1, "in_progress": 1} and docs.stream_name == "Docs"
    tasks = trackers.Database(db).stream_tasks("Docs")
    assert tasks[0] == (str(first), "write", "pending") and isinstance(tasks[0][0], str)
    board = sg.build_board(snap.streams, {})
    assert board.views["Stream-B"].state is sg.StreamState.WAITING
    assert "paused" in board.views["Stream-B"].describe()


def test_tc_cross_stream_task_dependencies_make_a_stream_wait(proj):
    db = taskdb.make_tc_db(proj)
    (x1, x2) = taskdb.add_tc_stream(db, "X", [], 2)
    (y1,) = taskdb.add_tc_stream(db, "Y", [], 1)
    (z1,) = taskdb.add_tc_stream(db, "Z", [], 1, statuses=["completed"])
    taskdb.add_tc_dependency(db, x2, y1)  # X waits for Y's task
    taskdb.add_tc_dependency(db, x2, x1)  # inside X: the worker's business, not a wait
    taskdb.add_tc_dependency(db, y1, z1)  # on a finished task: satisfied
    snap = tc_snapshot(db)
    assert snap.streams["X"].task_waits == (str(y1),)
    assert snap.streams["Y"].task_waits == ()
    board = sg.build_board(snap.streams, {})
    assert board.views["X"].state is sg.StreamState.WAITING
    assert board.views["X"].waiting_on == (f"task {y1}",)
    assert board.views["Y"].state is sg.StreamState.READY
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE tasks SET status = 'completed' WHERE id = ?", (y1,))
    conn.close()
    assert tc_snapshot(db).streams["X"].task_waits == ()


def test_gen1_dependencies_naming_tasks_streams_or_neither(tmp_path):
    db = taskdb.make_db(tmp_path / "ws" / "tasks.db")
    (a1,) = taskdb.add_stream(db, "A", [], 1)
    (a_done,) = taskdb.add_stream(db, "A2", [], 1, statuses=["completed"])
    taskdb.add_task(db, {"streamId": "B", "dependencies": [a1, "A2", a_done]})
    own = taskdb.add_task(db, {"streamId": "C"})
    taskdb.add_task(db, {"streamId": "C", "dependencies": [own]})  # its own task: not a wait
    taskdb.add_task(db, {"streamId": "D", "dependencies": ["ghost"]})
    snap = trackers.read_snapshot(db)
    b, c, d = (snap.streams[s] for s in "BCD")
    assert b.dependencies == ("A2",) and b.task_waits == (a1,)
    assert c.dependencies == () and c.task_waits == ()
    assert d.dependencies == ("ghost",)
    board = sg.build_board(snap.streams, {})
    assert board.views["B"].waiting_on == (f"task {a1}",)
    assert "Stream 'D' depends on unknown stream 'ghost'" in board.problems.messages()


def test_worker_options_are_passed_raw_and_disagreement_makes_the_stream_invalid(tmp_path):
    db = taskdb.make_db(tmp_path / "ws" / "tasks.db")
    taskdb.add_task(db, {"streamId": "A", "maxTurns": 30, "model": "sonnet", "allowedTools": ["Read", "Edit"]})
    taskdb.add_task(db, {"streamId": "A", "maxTurns": 30})
    taskdb.add_task(db, {"streamId": "B", "maxBudgetUsd": 2.5})
    taskdb.add_task(db, {"streamId": "B", "maxBudgetUsd": 4})
    snap = trackers.read_snapshot(db)
    assert snap.streams["A"].worker_options == {"maxTurns": 30, "model": "sonnet", "allowedTools": ["Read", "Edit"]}
    board = sg.build_board(snap.streams, {})
    assert board.views["A"].state is sg.StreamState.READY
    assert board.views["B"].state is sg.StreamState.INVALID
    assert "different maxBudgetUsd values (2.5 and 4)" in board.views["B"].reason


def traced_statements(database):
    statements = []
    original = database._connect

    def traced():
        conn = original()
        conn.set_trace_callback(statements.append)
        return conn

    database._connect = traced
    return statements


def test_tasks_with_bad_metadata_are_named_on_both_generations_with_one_more_query(tmp_path, proj):
    """Each bad task by id and title, once; a stream whose only tasks are unreadable is named by them."""
    mcp_db = taskdb.diamond(tmp_path / "ws" / "tasks.db")
    mcp_bad = taskdb.add_task(mcp_db, '{"streamId": "Stream-Q", dependencies: []}', title="Fix the login")
    mcp_inside = taskdb.add_task(mcp_db, {"streamId": "Stream-B", "streamName": 7}, title="Name it")
    tc_db = taskdb.tc_diamond(proj)
    row = taskdb.add_tc_stream_row(tc_db, "Stream-Q")
    tc_bad = taskdb.add_tc_task(tc_db, "Fix the login", row, metadata="{not json")
    tc_inside = taskdb.add_tc_task(tc_db, "Name it", None, metadata={"streamId": "Stream-B", "streamName": 7})
    for database, bad, inside in ((trackers.Database(mcp_db), mcp_bad, mcp_inside),
                                  (trackers.Database(tc_db), tc_bad, tc_inside)):
        statements = traced_statements(database)
        snap = database.snapshot()
        (task,) = snap.bad_tasks
        assert (task.task_id, task.title, task.names_stream) == (str(bad), "Fix the login", "Stream-Q")
        assert task.problem.startswith("its metadata is not valid JSON")
        assert snap.streams["Stream-B"].bad_tasks == (f"task {inside} 'Name it': \"streamName\" is the number 7; "
                                                     "it must be text",)
        assert list(snap.unreadable()) == ["Stream-Q"]
        reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        assert sum("CAST(" in s for s in reads) == 1  # one query names every bad task
        snap.streams["Stream-Z"].dependencies += ("Stream-Q",)
        problems = sg.check_graph(snap.streams, snap.unreadable())
        assert (f"Stream 'Stream-Z' depends on stream 'Stream-Q', whose only task(s) have metadata that cannot be "
                f"read (task {bad} 'Fix the login': its metadata is not valid JSON") in problems.messages()[0]
        assert problems.messages()[1] == (f"Stream 'Stream-B' cannot run until its task is fixed in Task Copilot: "
                                          f"task {inside} 'Name it': \"streamName\" is the number 7; it must be text")


def test_an_unknown_dependency_gets_a_did_you_mean():
    streams = {"Stream-A": tcc.StreamRecord("Stream-A", "Stream-A", (), {"pending": 1}),
               "Stream-B": tcc.StreamRecord("Stream-B", "Stream-B", ("Stream-a",), {"pending": 1}),
               "Stream-C": tcc.StreamRecord("Stream-C", "Stream-C", ("Frontend",), {"pending": 1})}
    messages = sg.check_graph(streams).messages()
    assert messages == ["Stream 'Stream-B' depends on unknown stream 'Stream-a' (did you mean 'Stream-A'?)",
                        "Stream 'Stream-C' depends on unknown stream 'Frontend'"]


def test_one_grouped_query_per_snapshot_on_both_generations(tmp_path, proj):
    mcp = trackers.Database(taskdb.diamond(tmp_path / "ws" / "tasks.db"))
    tc = trackers.Database(taskdb.tc_diamond(proj))
    for database, expected in ((mcp, 1), (tc, 2)):  # tc: plus one for open task_dependencies
        statements = traced_statements(database)
        database.snapshot()
        statements.clear()
        database.snapshot()
        reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        assert len(reads) == expected, statements


def test_snapshots_of_both_generations_have_the_same_shape(tmp_path, proj):
    mcp = trackers.read_snapshot(taskdb.diamond(tmp_path / "ws" / "tasks.db"))
    tc = trackers.read_snapshot(taskdb.tc_diamond(proj))
    assert mcp.streams == tc.streams
    assert mcp.streams["Stream-Z"].stream_name == "Integration"


def test_prompt_tasks_come_in_insertion_order_when_timestamps_tie(tmp_path, proj):
    db = taskdb.make_db(tmp_path / "ws" / "tasks.db")
    conn = sqlite3.connect(db)
    with conn:
        for task_id in ("zeta", "alpha", "mid"):
            conn.execute("INSERT INTO tasks (id, title, status, metadata, created_at, updated_at) VALUES "
                         "(?, ?, 'pending', '{\"streamId\": \"S\"}', 'T', 'T')", (task_id, task_id))
    conn.close()
    assert [t[0] for t in trackers.Database(db).stream_tasks("S")] == ["zeta", "alpha", "mid"]
    tc_db = taskdb.make_tc_db(proj)
    ids = [taskdb.add_tc_task(tc_db, f"t{i}", None, {"streamId": "S"}) for i in range(3)]
    assert [t[0] for t in trackers.Database(tc_db).stream_tasks("S")] == [str(i) for i in ids]


def test_percentages_are_rounded_once():
    assert tcc.whole_percent(5, 11) == 45
    assert tcc.whole_percent(999, 1000) == 99 and tcc.whole_percent(0, 0) == 0
    assert tcc.percentage(5, 11) == 45.5


def test_documented_client_on_generation_2(proj, monkeypatch):
    db = taskdb.tc_diamond(proj)
    taskdb.set_tc_stream_status(db, "Stream-A", "completed")
    monkeypatch.chdir(proj)
    monkeypatch.delenv("TASK_DB_PATH", raising=False)
    monkeypatch.delenv("WORKSPACE_ID", raising=False)
    client = tcc.TaskCopilotClient(tracker="tc")
    assert client.location.generation == "tc"
    assert client.stream_list()[3] == tcc.StreamInfo("Stream-Z", "Integration", ["Stream-B", "Stream-C"])
    assert client.stream_get("Stream-A").is_complete
    summary = client.progress_summary()
    assert (summary.total_streams, summary.completed_streams, summary.completion_percentage) == (4, 1, 25.0)
    assert tcc.TaskCopilotClient().location.generation == "tc"  # found on its own


# Metadata texts as planners write them, and near misses the short way must leave to the full one.
METADATA_TEXTS = [
    '{"streamId": "Stream-A", "streamName": "Foundation", "dependencies": []}',
    '{"streamId":"Stream-B","streamName":"API","dependencies":["Stream-A","TASK-7"]}',
    '{"dependencies": ["Stream-A"], "streamId": "Stream-C"}', '{"streamId": "Stream-D"}',
    '{"streamId": "Stream-E", "streamName": null, "dependencies": null}', '{"streamId": "名前", "streamName": "ä"}',
    '{"streamId": "Stream-F", "streamName": ""}', '{"streamId": "Stream-A", "streamId": "Stream-G"}',
    '{"streamId": ""}', '{"streamId": 5}', '{"streamId": null}', '{"streamId": "X", "streamName": 3}',
    '{"streamId": "X", "dependencies": "Stream-A"}', '{"streamId": "X", "dependencies": [""]}',
    '{"streamId": "X", "dependencies": [7, "A"]}', '{"streamId": "X", "dependencies": [true]}',
    '{"streamId": "X", "dependencies": [null]}', '{"streamId": "X", "dependencies": {}}',
    '{"streamId": "X", "streamDependencies": ["A"]}', '{"streamId": "X", "maxTurns": 5}',
    '{"streamId": "X", "files": ["a.py"]}', '{"streamId": "\\u00c9"}', '{"streamId": "\\ud800"}',
    '{"streamId": "X", "dependencies": ["\\u0041"]}', '{"streamId": "X"} ', ' {"streamId": "X"}',
    '{"streamId": "X"}{}', '{"streamId": "X",}', '{"streamId": "X"', '{"owner": "someone"}', '{}', '[]', 'null',
    '', '   ', 'not json', '{"streamId": "Bad\udcc3bytes"}', '{"streamId": "X", "streamName": "Bad\udcc3"}',
    '{"streamId": "X", "dependencies": ["Bad\udcc3"]}', '{"streamId": "X", "dependencies": [["A"]]}',
    '{"streamId": "X", "extra": {"nested": [1, 2, {"deep": true}]}}', "[" * 100_000,
]


@pytest.mark.parametrize("text", METADATA_TEXTS + [None])
def test_the_short_way_through_planned_metadata_reads_what_the_full_way_reads(text):
    """`classify` reads metadata as planners write it the short way (planned_meta) and everything else
    in full: both say the same of every text the short way takes."""
    from _orchestrate_kit.trackers import snapshot

    full = snapshot.classify_in_full(text)
    short = snapshot.planned_meta(text)
    assert short is None or short == full
    assert snapshot.classify(text) == full


def test_the_short_way_takes_the_metadata_planners_write():
    from _orchestrate_kit.trackers import snapshot

    assert [snapshot.planned_meta(text) is not None for text in METADATA_TEXTS[:8]] == [True] * 8
