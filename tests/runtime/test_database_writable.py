"""A tracker database that cannot be written (issue 18): asked of the database itself, and a configuration
failure of the run, not a failed attempt of each stream.

`watch.database_write_problem` on real SQLite files in both journal modes, made unwritable with the
immutable flag (the tests run as root, which permission bits do not bind); `judge_exit` with a
scripted answer; and the loop through the fake executor: one worker fails while the database cannot
be written, the run stops with exit 2, the other worker is stopped, no attempt is spent. The same
with real workers is tests/reliability/test_read_only_database.py.
"""

import shutil
import sqlite3
import subprocess
from types import SimpleNamespace

import pytest

from tests.runtime.runtime_import import executor_api as ex
from tests.runtime.runtime_import import lifecycle as lc
from tests.runtime.runtime_import import supervisor as sv
from tests.runtime.runtime_import import watch
from tests.support.loop_harness import Harness

S = lc.StreamState
FIX = "make the folder writable"


def database(tmp_path, mode):
    db = tmp_path / mode / "tasks.db"
    db.parent.mkdir()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA journal_mode={mode}")
    conn.execute("CREATE TABLE tasks(id)")
    conn.commit()
    conn.close()
    return db


def set_immutable(paths, on):
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", "+i" if on else "-i", *map(str, paths)], capture_output=True).returncode == 0


@pytest.mark.parametrize("mode", ["wal", "delete"])
@pytest.mark.parametrize("reader_open", [False, True])
def test_an_unwritable_database_is_told_and_a_writable_one_is_left_as_it_was(tmp_path, mode, reader_open):
    db = database(tmp_path, mode)
    reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True) if reader_open else None
    if reader is not None:
        reader.execute("SELECT * FROM tasks").fetchall()  # in WAL mode its -wal and -shm files stay
    assert watch.database_write_problem(db) is None
    names = [row[0] for row in sqlite3.connect(db).execute("SELECT name FROM sqlite_master")]
    assert names == ["tasks"]  # the probe's change was rolled back
    files = [db.parent, *sorted(db.parent.glob("tasks.db*"))]
    if not set_immutable(files, True):
        pytest.skip("no immutable flag (chattr +i) on this file system")
    try:
        problem = watch.database_write_problem(db)
    finally:
        set_immutable(files, False)
        if reader is not None:
            reader.close()
    assert problem is not None
    message, fix = problem
    assert message.startswith(f"Task Copilot database {db} cannot be written (")
    assert f"make {db.parent} and the database files in it writable again" in fix


def test_a_busy_or_missing_database_is_not_called_unwritable(tmp_path):
    db = database(tmp_path, "wal")
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another writer holds it: proof that it can be written
    try:
        assert watch.database_write_problem(db) is None
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert watch.database_write_problem(tmp_path / "gone.db") is None  # the reader reports a missing one
    assert not (tmp_path / "gone.db").exists()


def failed_exit(problem):
    return sv.judge_exit(ex.Ended(exit_code=1), None, None, "", 100.0, lambda: problem)


def test_judge_exit_makes_a_failed_attempt_the_runs_fatal_failure_only_when_the_database_cannot_be_written():
    assert failed_exit(None).fatal is None and failed_exit(None).exited.ending == "exit"
    verdict = failed_exit(("the database cannot be written", FIX))
    assert verdict.exited.ending == "fatal" and verdict.exited.detail == "the database cannot be written"
    assert verdict.fatal.message == "the database cannot be written" and verdict.fatal.fix == FIX
    asked = []
    done = SimpleNamespace(is_complete=True, finished=1, total=1)
    complete = sv.judge_exit(ex.Ended(exit_code=1), done, None, "", 100.0, lambda: asked.append(1))
    assert complete.exited.complete and complete.fatal is None
    assert asked == []  # a stream whose work is done is no question for the database


def test_the_loop_stops_the_run_with_exit_2_and_spends_no_attempt(tmp_path, monkeypatch):
    h = Harness(tmp_path, {"A": [], "B": [], "C": ["A"]})
    h.settle()
    assert h.states() == {"A": "running", "B": "running", "C": "waiting"}
    monkeypatch.setattr(h.supervisor.tracker, "write_problem",
                        lambda: ("Task Copilot database x cannot be written (attempt to write a readonly database)", FIX))
    h.executor.exit("A", 1)
    assert h.settle() == 2  # B answers its TERM at once here
    assert h.run.fatal and h.run.exit_code == 2
    assert h.executor.sent("terminate") == ["B"]  # the other worker is stopped, not left to fail too
    assert h.lines("cannot be written (attempt to write a readonly database)")
    assert h.states() == {"A": "ready", "B": "ready", "C": "waiting"}  # nothing failed, nothing in back-off
    assert all(h.row(sid).failures == 0 and h.row(sid).attempts == 0 for sid in "AB")
    assert h.executor.spawns() == [("A", 1), ("B", 1)]  # no restart
