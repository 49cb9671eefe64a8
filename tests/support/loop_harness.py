"""Drive the real supervisor loop with scripted histories: events in, transitions and actions out.

As honcho's tests drive its manager: the `Harness` builds a real `Supervisor`
over a fake clock, the in-memory executor (fake_executor.py), a scripted tracker
(`FakeTracker`: snapshots the test edits) and a scripted merger (`FakeMerger`),
then feeds it what happens (a worker exits, the tracker changes, a request or a
signal arrives, time passes) one turn at a time. Tests read what it did from
the executor's calls, the table it keeps (`rows`, `run`), the lines it said and
the exit code of the turn that ended the run. Nothing sleeps.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from tests.runtime.runtime_import import lifecycle as lc
from tests.runtime.runtime_import import scheduler as sch
from tests.runtime.runtime_import import settings as st
from tests.runtime.runtime_import import supervisor as sv
from tests.runtime.runtime_import import task_copilot_client as tcc
from tests.support import taskdb
from tests.support.fake_executor import FakeExecutor
from _orchestrate_kit.git import gating

S = lc.StreamState
START = 1_760_000_000.0  # 2025-10-09: usage-limit messages carry real unix times


class FakeClock:
    def __init__(self, now: float = START):
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeTracker:
    """The tracker as the test scripts it: stream records it edits; each edit is a new database state."""

    def __init__(self, graph: Dict[str, Sequence[str]], tasks: int = 1):
        self.streams = {sid: tcc.StreamRecord(sid, sid, tuple(deps), {"pending": tasks}) for sid, deps in graph.items()}
        self.version = 0
        self.reads = 0
        self.broken: Optional[Exception] = None

    def complete(self, *sids: str) -> None:
        for sid in sids:
            self._set(sid, {"completed": self.streams[sid].total})

    def reopen(self, *sids: str) -> None:
        for sid in sids:
            self._set(sid, {"pending": self.streams[sid].total})

    def options(self, sid: str, **options: object) -> None:
        self.streams[sid].worker_options = dict(options)
        self.version += 1

    def _set(self, sid: str, counts: Dict[str, int]) -> None:
        self.streams[sid].counts = counts
        self.version += 1

    # the loop's side: watch.Reader, and the change signature
    def signature(self) -> tuple:
        return (self.version,)

    def snapshot(self):
        self.reads += 1
        if self.broken is not None:
            raise self.broken
        return tcc.Snapshot({sid: _copy(rec) for sid, rec in self.streams.items()})

    def stream_tasks(self, stream_id: str) -> List[Tuple[str, str, str]]:
        rec = self.streams[stream_id]
        return [(f"{stream_id}-{i}", f"task {i}", "completed" if rec.is_complete else "pending")
                for i in range(rec.total)]

    def close(self) -> None:
        pass


def _copy(rec):
    return tcc.StreamRecord(rec.stream_id, rec.stream_name, rec.dependencies, dict(rec.counts),
                            worker_options=dict(rec.worker_options))


class FakeMerger:
    """Merges as the test scripts them: each merge is recorded; with `checks`, a merge starts a check that
    runs until the test ends it (`check_done`)."""

    def __init__(self, checks: bool = False):
        self.checks = checks
        self.merged: List[str] = []
        self.checking: Optional[str] = None
        self.verdict: Optional[bool] = None
        self.stopped = 0
        self.gated: List[str] = []  # streams taken to review
        self.polls = 0
        self.commits: List[str] = []  # the commit each merge was told to merge ('' : the branch's tip)
        self.gating = None  # set by the Harness: the real git.gating.Gating over its state folder

    # the loop's side (git.merging.Merger)
    integration_branch = "orchestrate/test"

    def begin(self, table) -> None:
        table.run.isolation = "worktree"  # finished work is merged before its stream is complete

    def prepare(self, stream_id: str, then=None):
        return None

    @property
    def busy(self) -> bool:
        return self.checking is not None

    def act(self, action, rows, apply, now) -> None:
        if isinstance(action, sch.Merge):
            self.merge(action.stream_id, rows.get(action.stream_id, lc.Life()), apply, now)
        elif isinstance(action, sch.PollPullRequests):
            self.polls += 1
        elif isinstance(action, sch.Gate):  # merge_gate = review: its work "committed" at a scripted commit
            self.gated.append(action.stream_id)
            apply(action.stream_id, lc.AwaitReview(f"c0ffee{len(self.gated):02d}" + "0" * 32, "1 file changed"), now)

    def merge(self, sid, life, apply, now) -> None:
        assert self.checking is None, "a merge while a check runs"
        self.merged.append(sid)
        self.commits.append(life.commit)
        if self.checks:
            self.checking = sid
        else:
            apply(sid, lc.Merged(), now)

    def flush(self, apply, now) -> None:
        pass  # the real Merger starts the turn's merges as one step here; this one merged them in merge()

    @property
    def activity(self) -> tuple:
        return (self.busy,)

    def facts(self) -> dict:
        return {}

    def check_done(self, passed: bool = True) -> None:
        self.verdict = passed

    def poll(self, apply, now, rows=None, guard=None) -> None:
        if self.gating is not None:  # the real reading of review decisions, from records the test writes
            self.gating.poll(rows or {}, apply, now)
        if self.checking is not None and self.verdict is not None:
            sid, passed = self.checking, self.verdict
            self.checking = self.verdict = None
            apply(sid, lc.Merged() if passed else lc.CheckFailed("the check failed"), now)

    def stop(self, deadline: float = 0.0) -> None:
        self.stopped += 1
        self.checking = None

    def landing_hint(self):
        return "land it"


class Lines:
    """A reporter that keeps what the supervisor said."""

    def __init__(self):
        self.lines: List[str] = []

    def say(self, message: str) -> None:
        self.lines.append(message)


class Harness:
    def __init__(self, tmp_path: Path, graph: Dict[str, Sequence[str]], *, targets: Optional[Iterable[str]] = None,
                 merger: Optional[FakeMerger] = None, tasks: int = 1, table: Optional[lc.Table] = None,
                 records: Iterable[Tuple[str, int, bool]] = (), **settings):
        self.layout = st.Layout(tmp_path / "project" / ".claude" / "orchestrator", tmp_path / "state-root")
        self.layout.make_dirs()
        db = taskdb.make_db(tmp_path / "tasks" / "ws" / "tasks.db")  # where workers would find the tracker
        location = tcc.locate_database(tmp_path / "project", db, {})
        base = dict(spawn_gap=0, agent_events=False, stop_grace=10.0, finish_grace=30.0, restart_delay=5.0,
                    max_restarts=2, poll_interval=1.0, stall_timeout=0, worker_command="claude -p")
        self.settings = st.Settings(**{**base, **settings})
        self.clock = FakeClock()
        self.tracker = FakeTracker(graph, tasks)
        self.executor = FakeExecutor(self.clock, self.layout.logs)
        for sid, attempt, alive in records:  # what an earlier orchestrator's workers left in the records
            self.executor.recorded(sid, attempt, alive)
        self.merger = merger
        self.said = Lines()
        if merger is not None:
            merger.gating = gating.Gating(tmp_path, self.layout.state, self.said.say, lambda *_a, **_k: None)
        if table is not None:
            lc.save_table(self.layout.run_file, table)
        self.location, self.targets = location, set(targets) if targets else None
        self.supervisor = self._supervisor()
        self.codes: List[int] = []
        self.supervisor.begin()

    def _supervisor(self) -> sv.Supervisor:
        return sv.Supervisor(self.layout, self.settings, self.location, self.targets, self.said, clock=self.clock,
                             executor=self.executor, reader=self.tracker, merger=self.merger,
                             signature=self.tracker.signature)

    def restart(self) -> None:
        """A new orchestrator on the same project: the next `start` after the run ended, or the one
        after a kill (the workers still running are found in their records, as a real executor's)."""
        self.executor.recorded_live = list(self.executor.running.values())
        self.executor.recorded_ended = []
        self.supervisor = self._supervisor()
        self.supervisor.begin()

    # ---------------------------------------------------------------- events in

    def turn(self) -> Optional[int]:
        code = self.supervisor.turn()
        if code is not None:
            self.codes.append(code)
        return code

    def settle(self, turns: int = 10) -> Optional[int]:
        """Turns until the loop would sleep (or the run ends), without time passing. A worker that has
        ended wakes the loop at once, as its SIGCHLD does."""
        for _ in range(turns):
            code = self.turn()
            if code is not None or (self.supervisor.sleep_time() > 0 and not self.executor.ended_unseen()):
                return code
        raise AssertionError("the loop never settles: it wants a turn again at once, every time")

    def wait(self, seconds: Optional[float] = None) -> Optional[int]:
        """Let time pass (by default until what the loop said it waits for), then one turn."""
        self.clock.now += self.supervisor.sleep_time() if seconds is None else seconds
        return self.settle()

    def wait_until(self, predicate, limit: float = 3600.0) -> Optional[int]:
        """Let time pass as the loop sleeps, turn by turn, until `predicate()` holds or the run ends."""
        deadline = self.clock.now + limit
        code = None
        while not predicate() and code is None:
            assert self.clock.now < deadline, "it never happened"
            code = self.wait()
        return code

    def finish(self, sid: str, code: int = 0) -> Optional[int]:
        """The worker completes its stream in the tracker and exits."""
        self.tracker.complete(sid)
        self.executor.exit(sid, code)
        return self.settle()

    def request(self, payload: dict) -> str:
        """A request as `orchestrate.py stop STREAM` writes it, the orchestrator woken as SIGUSR1 does."""
        path = self.layout.requests / f"{self.clock.now:.6f}-{len(self.codes)}.json"
        path.write_text(json.dumps(payload), encoding="utf-8")
        self.supervisor.inbox.request()
        self.settle()
        reply = path.with_suffix(".reply")
        return json.loads(reply.read_text(encoding="utf-8"))["message"]

    def signal(self, signum: int = signal.SIGTERM) -> Optional[int]:
        """A stop signal, as the handler notes it."""
        self.supervisor.inbox.stop(signum)
        return self.settle()

    # ---------------------------------------------------------------- what came out

    def state(self, sid: str) -> lc.StreamState:
        return self.supervisor.table.get(sid).state

    def states(self) -> Dict[str, str]:
        return {sid: life.state.value for sid, life in sorted(self.supervisor.table.rows.items())}

    def row(self, sid: str) -> lc.Life:
        return self.supervisor.table.get(sid)

    @property
    def run(self) -> lc.RunLife:
        return self.supervisor.table.run_life

    def saved(self) -> lc.Table:
        return lc.load_table(self.layout.run_file)[0]

    def lines(self, containing: str = "") -> List[str]:
        return [line for line in self.said.lines if containing in line]
