"""watch.TrackerWatch on a real database: it reads again exactly when a commit may have changed something."""

import os
import sqlite3

from tests.runtime.runtime_import import task_copilot_client as tcc
from tests.runtime.runtime_import import watch
from tests.support import taskdb


def tracker(db, reader=None):
    said = []
    return watch.TrackerWatch(reader or tcc.Database(db), lambda: watch.database_signature(db), said.append), said


def set_status(conn, status):
    """One commit by a worker that keeps its connection open, so the WAL stays in place."""
    with conn:
        conn.execute("UPDATE tasks SET status = ?", (status,))
    conn.execute("PRAGMA wal_checkpoint(RESTART)")  # the next commit rewrites the WAL from its start


def test_a_commit_in_the_same_clock_tick_with_an_unchanged_wal_size_is_still_seen(tmp_path):
    """Two commits within one tick of the file clock can leave the database and its WAL with the
    same size and time; the watch must not go blind until its 30 s safety refresh."""
    db = taskdb.make_db(tmp_path / "tasks" / "ws" / "tasks.db")
    taskdb.add_stream(db, "A", [], 1)
    worker = sqlite3.connect(db)
    set_status(worker, "completed")
    watched, _ = tracker(db)
    assert watched.look(1000.0) and watched.snapshot.streams["A"].is_complete
    watched.look(1000.5)  # after a change it reads once more; then it settles
    before = [os.stat(f"{db}{suffix}") for suffix in ("", "-wal")]
    set_status(worker, "pending")
    for suffix, old in zip(("", "-wal"), before):
        assert os.stat(f"{db}{suffix}").st_size == old.st_size
        os.utime(f"{db}{suffix}", ns=(old.st_atime_ns, old.st_mtime_ns))  # as if in the same clock tick
    assert watched.look(1001.0)
    assert not watched.snapshot.streams["A"].is_complete
    watched.close()
    worker.close()


class LaggingReader:
    """A database reader whose first look after a commit misses it, as when the commit was in flight
    (its WAL frames written, not yet marked committed) at the moment of the read."""

    def __init__(self, db):
        self.real = tcc.Database(db)
        self.stale = None
        self.reads = 0

    def snapshot(self):
        self.reads += 1
        fresh = self.real.snapshot()
        if self.stale is not None:
            fresh, self.stale = self.stale, None
        return fresh

    def stream_tasks(self, stream_id):
        return self.real.stream_tasks(stream_id)

    def close(self):
        self.real.close()


def test_after_a_change_the_database_is_read_once_more_so_a_commit_in_flight_is_not_missed(tmp_path):
    db = taskdb.make_db(tmp_path / "tasks" / "ws" / "tasks.db")
    taskdb.add_stream(db, "A", [], 1)
    reader = LaggingReader(db)
    watched, _ = tracker(db, reader)
    for _ in range(3):  # settle: nothing changes, so the reads stop
        watched.look(1000.0)
    settled = reader.reads
    assert not watched.look(1000.0) and reader.reads == settled  # idle: no read without a change
    reader.stale = reader.real.snapshot()  # what the files said before the commit
    taskdb.set_stream_status(db, "A", "completed")
    watched.look(1000.0)
    assert not watched.snapshot.streams["A"].is_complete  # the commit was in flight
    watched.look(1000.0)  # no further change in the files
    assert watched.snapshot.streams["A"].is_complete
    watched.close()


def test_a_worker_that_ended_makes_it_look_again_and_a_broken_database_is_said_once(tmp_path):
    db = taskdb.make_db(tmp_path / "tasks" / "ws" / "tasks.db")
    taskdb.add_stream(db, "A", [], 1)
    reader = LaggingReader(db)
    watched, said = tracker(db, reader)
    watched.look(1000.0)
    watched.look(1000.0)
    reads = reader.reads
    watched.expect_change()
    assert watched.look(1000.0) and reader.reads == reads + 1
    assert not watched.look(1000.0)
    assert watched.look(1031.0)  # the safety refresh, with nothing signalled

    def broken():
        raise tcc.DatabaseError("the database is gone")

    reader.snapshot = broken
    watched.expect_change()
    for _ in range(3):
        assert not watched.look(1032.0) and not watched.fresh
    assert said == ["warning: the database is gone; waiting for it to come back"]
    watched.close()
