"""task_copilot_client against real-schema databases: location, snapshot, the documented API."""

import sqlite3

import pytest

from tests.runtime.runtime_import import task_copilot_client as tcc
from tests.support import taskdb


def test_location_honours_task_db_path_and_workspace_id(tmp_path):
    loc = tcc.locate_database(tmp_path / "proj", None, {"TASK_DB_PATH": str(tmp_path / "base"), "WORKSPACE_ID": "ws1"})
    assert loc.path == tmp_path / "base" / "ws1" / "tasks.db"
    assert loc.workspace_id == "ws1" and loc.base_dir == tmp_path / "base"


def test_location_defaults_to_the_servers_md5_workspace_under_home(tmp_path):
    """With WORKSPACE_ID set nowhere and no database yet, the server's own default is where it would be."""
    import hashlib
    import os

    home = tmp_path / "home"
    project = tmp_path / "my-project"
    project.mkdir()
    loc = tcc.locate_database(project, None, {"HOME": str(home)})
    md5 = hashlib.md5(os.path.realpath(project).encode()).hexdigest()[:12]
    assert loc.workspace_id == md5
    assert loc.path == home / ".claude" / "tasks" / md5 / "tasks.db"
    message = loc.missing_message()
    assert "TASK_DB_PATH" in message and "--db" in message
    assert str(home / ".claude" / "tasks" / "my-project" / "tasks.db") in message  # the folder name was tried too


def test_location_from_explicit_db_path(tmp_path):
    loc = tcc.locate_database(tmp_path, tmp_path / "base" / "wsX" / "tasks.db", {})
    assert (loc.workspace_id, loc.base_dir) == ("wsX", tmp_path / "base")


def test_snapshot_counts_unions_dependencies_and_names_each_task_with_bad_metadata(tmp_path):
    db = taskdb.make_db(tmp_path / "tasks.db")
    taskdb.add_task(db, {"streamId": "A", "streamName": "Foundation"}, "completed")
    taskdb.add_task(db, {"streamId": "A"}, "cancelled")
    taskdb.add_task(db, {"streamId": "B", "dependencies": ["A"]}, "in_progress")
    taskdb.add_task(db, {"streamId": "B", "streamDependencies": ["C"]}, "pending")
    taskdb.add_task(db, {"streamId": "C"}, "blocked")
    taskdb.add_task(db, {"streamId": "C"}, "pending", archived=1)  # archived: ignored
    bad = {}
    for text, title in (("not json", "not json"), ("[1, 2]", "a list"), ('{"streamId": 5}', "a number"),
                        ('{"streamId": "Q", "dependencies": "A"}', "deps text"),
                        ('{"streamId": "Q", "dependencies": [null]}', "deps null"), ('{"streamId": ""}', "empty")):
        bad[title] = taskdb.add_task(db, text, title=title)
    taskdb.add_task(db, {})  # a plain task outside any stream: not a warning
    taskdb.add_task(db, None)
    snap = tcc.read_snapshot(db)
    # Q's tasks name their stream but not usable dependencies: Q is kept (it is not complete,
    # and the graph makes it invalid) instead of vanishing or running on guessed dependencies.
    assert list(snap.streams) == ["A", "B", "C", "Q"]
    q = snap.streams["Q"]
    assert not q.is_complete and q.bad_tasks == (
        f"task {bad['deps text']} 'deps text': \"dependencies\" is text; it must be a list of stream or task ids",
        f"task {bad['deps null']} 'deps null': \"dependencies\" holds null; it must hold only stream or task ids")
    a, b, c = (snap.streams[s] for s in "ABC")
    assert a.stream_name == "Foundation" and a.is_complete and a.total == 2
    assert b.dependencies == ("A", "C") and b.counts == {"in_progress": 1, "pending": 1}
    assert c.total == 1 and not c.is_complete and not a.bad_tasks
    # The four tasks in no stream are each named once, with what is wrong (Q's two are the graph's to report).
    assert snap.malformed_tasks == 4
    left_out = {t.title: t for t in snap.bad_tasks}
    assert sorted(left_out) == ["a list", "a number", "empty", "not json"]
    assert left_out["not json"].task_id == bad["not json"]
    assert left_out["not json"].problem.startswith("its metadata is not valid JSON: Expecting value at character 0")
    assert left_out["a list"].problem == "its metadata is a list, not a JSON object"
    assert left_out["a number"].problem == '"streamId" is the number 5; it must be a stream id (text)'
    assert left_out["empty"].problem == '"streamId" is an empty text; it must be a stream id (text)'
    warnings = snap.warnings()
    assert len(warnings) == 4 and all("it is left out of every stream" in w for w in warnings)
    assert f"task {bad['a list']} 'a list': its metadata is a list, not a JSON object" in warnings[1]


def test_a_stream_only_broken_tasks_name_is_unreadable_not_unknown(tmp_path):
    """Broken JSON still shows which stream it meant: a dependency on it says so, with the task."""
    db = taskdb.make_db(tmp_path / "tasks.db")
    broken = taskdb.add_task(db, '{"streamId": "Stream-B" "dependencies": []}', title="Build the API")
    snap = tcc.read_snapshot(db)
    assert snap.streams == {} and snap.bad_tasks[0].names_stream == "Stream-B"
    assert snap.unreadable() == {"Stream-B": (
        f"task {broken} 'Build the API': its metadata is not valid JSON: Expecting ',' delimiter at character 24",)}
    assert "it seems to belong to stream 'Stream-B', which is left without it" in snap.warnings()[0]


def test_snapshot_is_one_query(tmp_path, monkeypatch):
    db = taskdb.diamond(tmp_path / "tasks.db")
    statements = []
    original = tcc.Database._connect

    def traced(self):
        conn = original(self)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(tcc.Database, "_connect", traced)
    database = tcc.Database(db)
    database.snapshot()
    statements.clear()
    database.snapshot()
    queries = [s for s in statements if "FROM tasks" in s or "from tasks" in s]
    assert len(queries) == 1, statements


def test_database_without_archived_column(tmp_path):
    db = taskdb.make_db(tmp_path / "tasks.db", archived_column=False)
    taskdb.add_stream(db, "A", [], 2, statuses=["completed", "completed"])
    assert tcc.read_snapshot(db).streams["A"].is_complete


def test_empty_stream_is_not_complete(tmp_path):
    record = tcc.StreamRecord("A", "A", ())
    assert not record.is_complete


@pytest.mark.parametrize("content, message", [
    (b"", "no tasks table"),
    (b"this is not a database at all" * 100, "not a readable SQLite database"),
])
def test_unusable_files_raise_clear_errors(tmp_path, content, message):
    path = tmp_path / "tasks.db"
    path.write_bytes(content)
    with pytest.raises(tcc.DatabaseError, match=message):
        tcc.read_snapshot(path)


def test_locked_database_raises_busy(tmp_path):
    db = taskdb.make_db(tmp_path / "tasks.db", wal=False)
    taskdb.add_stream(db, "A")
    writer = sqlite3.connect(db)
    writer.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(tcc.DatabaseBusy):
            tcc.read_snapshot(db, busy_timeout=0.2)
    finally:
        writer.rollback()
        writer.close()


def test_documented_client_api(tmp_path, monkeypatch):
    base = tmp_path / "tasks"
    db = taskdb.diamond(base / "ws" / "tasks.db")
    taskdb.set_stream_status(db, "Stream-A", "completed")
    monkeypatch.setenv("TASK_DB_PATH", str(base))
    client = tcc.TaskCopilotClient("ws")
    streams = client.stream_list()
    assert [s.stream_id for s in streams] == ["Stream-A", "Stream-B", "Stream-C", "Stream-Z"]
    assert streams[3] == tcc.StreamInfo("Stream-Z", "Integration", ["Stream-B", "Stream-C"])
    a = client.stream_get("Stream-A")
    assert a.is_complete and a.completion_percentage == 100.0 and a.completed_tasks == 2
    assert client.stream_get("nope") is None
    summary = client.progress_summary()
    assert (summary.total_tasks, summary.completed_tasks, summary.total_streams, summary.completed_streams) == (8, 2, 4, 1)
    assert summary.completion_percentage == 25.0


def test_client_reports_missing_database(tmp_path, monkeypatch):
    monkeypatch.setenv("TASK_DB_PATH", str(tmp_path))
    with pytest.raises(tcc.DatabaseError, match="No Task Copilot database"):
        tcc.TaskCopilotClient("absent").stream_list()
