"""The supervisor driven in-process on a real database with a fake clock: what it notices, turn by turn."""

import json
import os
import sqlite3

from tests.runtime.runtime_import import lifecycle as lc
from tests.runtime.runtime_import import processes as pr
from tests.runtime.runtime_import import settings as st
from tests.runtime.runtime_import import supervisor as sv
from tests.runtime.runtime_import import task_copilot_client as tcc
from tests.support import taskdb


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_supervisor(tmp_path, db):
    layout = st.Layout(tmp_path / "project" / ".claude" / "orchestrator", tmp_path / "state-root")
    layout.make_dirs()
    location = tcc.locate_database(tmp_path / "project", db, {})
    settings = st.Settings(spawn_gap=0, agent_events=False)
    return sv.Supervisor(layout, settings, location, None, sv.Reporter(None, layout.orchestrator_log),
                         clock=FakeClock())


def set_status(conn, status):
    """One commit by a worker that keeps its connection open, so the WAL stays in place."""
    with conn:
        conn.execute("UPDATE tasks SET status = ?", (status,))
    conn.execute("PRAGMA wal_checkpoint(RESTART)")  # the next commit rewrites the WAL from its start


def test_a_commit_in_the_same_clock_tick_with_an_unchanged_wal_size_is_still_seen(tmp_path):
    """Two commits within one tick of the file clock can leave the database and its WAL with the
    same size and time; the supervisor must not go blind for its 30 s safety refresh."""
    db = taskdb.make_db(tmp_path / "tasks" / "ws" / "tasks.db")
    taskdb.add_stream(db, "A", [], 1)
    worker = sqlite3.connect(db)
    set_status(worker, "completed")
    supervisor = make_supervisor(tmp_path, db)
    supervisor._refresh(supervisor.clock())
    assert supervisor.snapshot.streams["A"].is_complete
    before = [os.stat(f"{db}{suffix}") for suffix in ("", "-wal")]
    set_status(worker, "pending")
    for suffix, old in zip(("", "-wal"), before):
        assert os.stat(f"{db}{suffix}").st_size == old.st_size
        os.utime(f"{db}{suffix}", ns=(old.st_atime_ns, old.st_mtime_ns))  # as if in the same clock tick
    supervisor.clock.now += 1
    supervisor._refresh(supervisor.clock())
    assert not supervisor.snapshot.streams["A"].is_complete
    supervisor.db.close()
    worker.close()


def test_requests_are_read_before_a_shutdown_begins(tmp_path):
    """`stop --grace 1`: the grace of the request, not the configured one, sets the stopping deadlines."""
    db = taskdb.make_db(tmp_path / "tasks" / "ws" / "tasks.db")
    taskdb.add_stream(db, "A", [], 1)
    supervisor = make_supervisor(tmp_path, db)
    supervisor.table.rows["A"] = lc.Life(state=lc.StreamState.RUNNING, attempts=1, ran=True)
    (supervisor.layout.requests / "1-stop.json").write_text('{"action": "shutdown", "grace": 1}')
    supervisor.signals = 1  # a TERM arrived in the same turn
    supervisor._turn()
    row = supervisor.table.rows["A"]
    assert (row.state, row.deadline) == (lc.StreamState.STOPPING, supervisor.clock() + 1)
    supervisor.db.close()


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

    def close(self):
        self.real.close()


def test_after_a_change_the_database_is_read_once_more_so_a_commit_in_flight_is_not_missed(tmp_path):
    db = taskdb.make_db(tmp_path / "tasks" / "ws" / "tasks.db")
    taskdb.add_stream(db, "A", [], 1)
    supervisor = make_supervisor(tmp_path, db)
    supervisor.db = reader = LaggingReader(db)
    for _ in range(3):  # settle: nothing changes, so the reads stop
        supervisor._refresh(supervisor.clock())
    settled = reader.reads
    supervisor._refresh(supervisor.clock())
    assert reader.reads == settled  # idle: no read without a change
    reader.stale = reader.real.snapshot()  # what the files said before the commit
    taskdb.set_stream_status(db, "A", "completed")
    supervisor._refresh(supervisor.clock())
    assert not supervisor.snapshot.streams["A"].is_complete  # the commit was in flight
    supervisor._refresh(supervisor.clock())  # no further change in the files
    assert supervisor.snapshot.streams["A"].is_complete
    reader.close()


class FakeExecutor:
    """Workers as entries in a dict: the test says when each one exits; every call is logged."""

    def __init__(self):
        self.workers = {}
        self.exits = {}  # stream -> how its worker ended, once the test says so
        self.leftovers = {}
        self.calls = []

    def spawn(self, spec, before_go):
        record = pr.PidRecord(4000 + len(self.calls), "1", spec.stream_id, spec.attempt, 0.0, spec.token)
        before_go(record)
        self.workers[spec.stream_id] = record
        self.calls.append(("spawn", spec.stream_id, spec.attempt))
        return record

    def live(self):
        return dict(self.workers)

    def poll(self, stream_id):
        status = self.exits.pop(stream_id, None)
        if status is not None:
            del self.workers[stream_id]
        return status

    def terminate(self, stream_id):
        self.calls.append(("terminate", stream_id))

    def kill(self, stream_id):
        self.calls.append(("kill", stream_id))

    def kill_all(self):
        self.calls.append(("kill_all",))

    def reap(self):
        pass

    def has_leftovers(self, stream_id):
        return False

    def log_offset(self, stream_id):
        return 0

    def hurry_leftovers(self, kill_at):
        pass

    def sweep(self):
        return None, False


def request(supervisor, name, payload):
    (supervisor.layout.requests / f"{name}.json").write_text(json.dumps(payload))
    supervisor.requests_waiting = True


def test_a_worker_deaf_to_term_delays_nothing_and_a_user_stop_holds_without_a_failure(tmp_path):
    db = taskdb.make_db(tmp_path / "tasks" / "ws" / "tasks.db")
    for sid, deps in (("A", []), ("B", []), ("C", ["B"])):
        taskdb.add_stream(db, sid, deps, 1)
    supervisor = make_supervisor(tmp_path, db)
    supervisor.executor = executor = FakeExecutor()
    clock = supervisor.clock
    assert supervisor._turn() is None
    assert executor.calls == [("spawn", "B", 1), ("spawn", "A", 1)]  # B heads the longer path

    request(supervisor, "1", {"action": "stop", "streams": ["A"], "grace": 10})
    assert supervisor._turn() is None
    assert executor.calls[-1] == ("terminate", "A")
    assert supervisor.table.rows["A"].state is lc.StreamState.STOPPING
    assert json.loads((supervisor.layout.requests / "1.reply").read_text())["message"].startswith("stopping A")

    # A ignores TERM; B completes meanwhile: C starts in the same turn, nobody waits for A.
    taskdb.set_stream_status(db, "B", "completed")
    executor.exits["B"] = "code 0"
    clock.now += 1
    assert supervisor._turn() is None
    assert executor.calls[-1] == ("spawn", "C", 1)
    assert supervisor.table.rows["B"].state is lc.StreamState.COMPLETE

    clock.now += 9  # A's deadline: KILL
    assert supervisor._turn() is None
    assert ("kill", "A") in executor.calls
    executor.exits["A"] = "signal 9"
    clock.now += 0.1
    supervisor._turn()
    a = supervisor.table.rows["A"]
    assert (a.state, a.failures, a.attempts, a.reason) == (lc.StreamState.HELD, 0, 1, lc.USER_STOP)
    assert [c for c in executor.calls if c[0] == "spawn" and c[1] == "A"] == [("spawn", "A", 1)]
    supervisor.db.close()
