"""Database trouble: a clear message, no traceback, and nothing started that should not be.

Already covered in tests/runtime (not repeated): a missing database at start/status/plan, an
empty file and a non-SQLite file at start, tasks added mid-run, an exclusive lock held for a few
seconds while a run goes on, broken JSON and a list streamId named task by task.
Here: the same files appearing *during* a run, a lock held at `start` and `status`, every kind of
malformed metadata (and a malformed task inside a good stream), text that is not UTF-8, a stream
deleted mid-run, and new streams that depend on running ones.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest

from tests.support import taskdb
from tests.support.project import pid_alive

from .checks import starts_per_stream


def assert_clean(result, code):
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


class ExclusiveLock:
    """An exclusive lock on the database, held by a thread until the test releases it: however
    slow the machine, the commands under test run while it is held (no wall-clock race)."""

    def __init__(self, db):
        self.db = db
        self.taken = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._hold)

    def _hold(self) -> None:
        conn = sqlite3.connect(self.db, timeout=30)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            self.taken.set()
            self.release.wait()
            conn.rollback()
        finally:
            conn.close()

    def __enter__(self) -> "ExclusiveLock":
        self.thread.start()
        assert self.taken.wait(60), "the lock was not taken"
        return self

    def __exit__(self, *_exc) -> None:
        self.release.set()
        self.thread.join()


def start_logged(project) -> "tuple[subprocess.Popen, Path]":
    """The orchestrator in the background, its output in a file the test can read while it runs."""
    log = project.root.parent / "orchestrator-output.txt"
    with open(log, "wb") as out:
        proc = subprocess.Popen(project.command("start"), env=project.env, cwd=project.root, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    return proc, log


def test_locked_longer_than_the_busy_timeout_at_start_and_status(project):
    taskdb.make_db(project.db, wal=False)  # rollback journal: an exclusive lock blocks readers too
    taskdb.add_stream(project.db, "A", [], 1)
    with ExclusiveLock(project.db):  # held until every command below has run
        for command in (["start"], ["status"], ["plan"]):
            result = project.orchestrate(*command)
            assert_clean(result, 1)
            assert "is busy (a writer holds it)" in result.stderr and "try again in a moment" in result.stderr
    assert project.events() == []
    result = project.orchestrate("start")
    assert_clean(result, 0)


@pytest.mark.parametrize("trouble", ["deleted", "emptied", "garbage", "locked"])
def test_database_trouble_during_a_run_waits_and_resumes(project, trouble):
    taskdb.make_db(project.db, wal=False)
    taskdb.add_stream(project.db, "A", [], 2)
    taskdb.add_stream(project.db, "B", ["A"], 1)
    project.plan({"A": ["hang"]})
    orchestrator, log = start_logged(project)
    worker = project.wait_for(lambda: project.events("start"), what="A to start")[0]
    saved = project.db.read_bytes()
    lock = ExclusiveLock(project.db) if trouble == "locked" else None
    if lock:
        lock.__enter__()
        os.utime(project.db)  # a change the orchestrator notices: it reads, and finds the database busy
    elif trouble == "deleted":
        project.db.unlink()
    else:
        project.db.write_bytes(b"" if trouble == "emptied" else b"not a database " * 300)
    # The trouble lasts until the orchestrator has met it and said so: it waits, and starts nothing.
    project.wait_for(lambda: "warning:" in log.read_text(errors="replace"), timeout=60,
                     what="the orchestrator to warn about the database")
    assert orchestrator.poll() is None, log.read_text()
    assert [e["stream"] for e in project.events("start")] == ["A"]  # nothing new started meanwhile
    if lock:
        lock.__exit__()
    else:
        tmp = project.db.with_name("restore.db")
        tmp.write_bytes(saved)
        tmp.replace(project.db)  # it comes back, as a restore from backup would
    taskdb.set_stream_status(project.db, "A", "completed")
    assert orchestrator.wait(timeout=60) == 0, log.read_text()
    assert "Traceback" not in log.read_text()
    assert [e["stream"] for e in project.events("start")] == ["A", "B"]
    assert worker["pid"] not in [e["pid"] for e in project.events("start")[1:]]


MALFORMED = [
    "{broken json",                                     # not JSON
    "[1, 2]", '"Stream-A"', "42", "true",               # JSON, not an object
    '{"streamId": 5}', '{"streamId": null, "dependencies": []}', '{"streamId": {"id": "X"}}',
    '{"streamId": ["X"]}', '{"streamId": ""}',           # streamId not a (non-empty) string
]


def test_tasks_outside_any_usable_stream_are_left_out_each_named(project):
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 1)
    ids = [taskdb.add_task(project.db, metadata) for metadata in MALFORMED]
    result = project.orchestrate("start")
    assert_clean(result, 0)
    warnings = [line for line in result.stdout.splitlines() if "left out of every stream" in line]
    assert [line.split("warning: task ")[1].split()[0] for line in warnings] == ids  # each once, in order
    assert starts_per_stream(project) == {"A": 1}
    assert project.states() == {"A": "complete"}


@pytest.mark.parametrize("metadata", [
    '{"streamId": "A", "dependencies": "Stream-Base"}',   # not a list
    '{"streamId": "A", "dependencies": {"0": "Base"}}',
    '{"streamId": "A", "dependencies": [null, true]}',    # a list, not of stream or task ids
    '{"streamId": "A", "streamDependencies": "Base"}',
    '{"streamId": "A", "streamName": ["not", "text"]}',
])
def test_a_malformed_task_inside_a_stream_keeps_it_and_its_dependents_from_running(project, metadata):
    """A's good task is done, but one of its tasks is unreadable: A is not complete, and nothing
    that depends on it may start. Nor is A itself started: what it depends on is unknown."""
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "Base", [], 1)
    taskdb.add_stream(project.db, "A", [], 1, statuses=["completed"])
    taskdb.add_task(project.db, metadata, "pending")
    taskdb.add_stream(project.db, "B", ["A"], 1)
    result = project.orchestrate("start")
    assert_clean(result, 2)
    assert "Stream 'A' cannot run until its task is fixed in Task Copilot: task " in result.stderr
    assert project.events("start") == []
    states = project.states()
    assert states["A"] == "invalid" and states["B"] == "waiting"


@pytest.mark.parametrize("raw", [
    b'{"streamId": "\\ud800", "dependencies": []}',          # JSON escape of a lone surrogate
    b'{"streamId": "bad-\xff-bytes", "dependencies": []}',   # not UTF-8 at all
    b'{"streamId": "A", "streamName": "\xfe\xff", "dependencies": []}',
])
def test_text_that_is_not_utf8_does_not_make_the_whole_database_unreadable(project, raw):
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 1)
    taskdb.add_stream(project.db, "B", ["A"], 1)
    with sqlite3.connect(project.db) as conn:
        conn.execute("INSERT INTO tasks (id, title, status, metadata, created_at, updated_at) "
                     "VALUES ('RAW-1', 'raw', 'completed', CAST(? AS TEXT), 'x', 'x')", (raw,))
    status = project.orchestrate("status")
    assert_clean(status, 0)
    result = project.orchestrate("start")
    assert_clean(result, 0)
    assert set(starts_per_stream(project)) == {"A", "B"}


def test_a_stream_deleted_mid_run_stops_its_worker_and_its_dependents_do_not_start(project):
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 1)
    taskdb.add_stream(project.db, "Gone", [], 2)
    taskdb.add_stream(project.db, "After", ["Gone"], 1)
    project.plan({"Gone": ["hang"]})
    orchestrator = project.start_background()
    worker = project.wait_for(lambda: [e for e in project.events("start") if e["stream"] == "Gone"],
                              what="Gone to start")[0]
    with sqlite3.connect(project.db) as conn:
        conn.execute("DELETE FROM tasks WHERE json_extract(metadata, '$.streamId') = 'Gone'")
    out, err = orchestrator.communicate(timeout=60)
    assert orchestrator.returncode == 1, out + err
    assert "Traceback" not in out + err
    assert "Gone disappeared from the database; stopping its worker" in out
    assert "depends on unknown stream 'Gone'" in out
    assert not pid_alive(worker["pid"])
    assert starts_per_stream(project) == {"A": 1, "Gone": 1}


def test_new_streams_mid_run_wait_for_running_ones_or_start_at_once(project):
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 2)
    project.plan({"A": ["hang", "ok"]})
    orchestrator = project.start_background()
    project.wait_for(lambda: project.events("start"), what="A to start")
    taskdb.add_stream(project.db, "Free", [], 1)
    taskdb.add_stream(project.db, "AfterA", ["A"], 1)
    project.wait_for(lambda: "Free" in starts_per_stream(project), what="Free to start while A runs")
    assert "AfterA" not in starts_per_stream(project)
    assert project.states()["AfterA"] == "waiting"
    taskdb.set_stream_status(project.db, "A", "completed")
    out, err = orchestrator.communicate(timeout=60)
    assert orchestrator.returncode == 0, out + err
    assert starts_per_stream(project) == {"A": 1, "Free": 1, "AfterA": 1}
