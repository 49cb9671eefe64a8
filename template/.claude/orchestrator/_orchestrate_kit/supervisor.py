"""The supervisor: a thin loop that gathers events, applies transitions, asks the scheduler, acts.

Each turn: stop signals and user requests (files in the state folder, announced by SIGUSR1),
worker exits (their SIGCHLD wakes the loop), what workers said (their logs), a database change
(watch.py), and the clock. Exits are judged against a fresh read of the tracker (exits.py). Every
change of a stream's row goes through `lifecycle.transition`, of the run's row through
`transition_run`; everything to do comes from `scheduler.decide`, carried out through the executor
(workers) and the merger (git: merges, the merge gate). Nothing here waits for a worker: stopping
is a state with a deadline. Signal handlers only note what arrived. Clock, executor, merger and
tracker reader are injectable: tests drive it turn by turn (`begin`, `turn`). Stdlib only, 3.9+.
"""

from __future__ import annotations

import signal
import time
from typing import Callable, Dict, Iterable, Optional, Set

from .agent.claude import is_claude
from .agent.events import Fatal
from .agent.output import WorkerOutputs
from .announce import Announcer, Reporter
from .executor import Ended, Executor, open_executor
from .exits import judge_exit, limit_until
from .git.merging import PREPARING, Merger, open_merger
from .graph import Board
from .guard import StreamGuard
from .journal import new_run_id
from .lifecycle import (LIVE, USER_STOP, Adopted, Event, FatalSeen, GiveUp as Failed, Hold, Life, LimitHit, LimitLifted,
                        Paced, Release, RunBegins, RunEnds, RunEvent, RunState, Spawned, SpawnFailed, Spawning,
                        SpendCap, StopAsked, StopRequested, StopSignal, StreamState, Table, TableFile, Tick,
                        carried_rows, transition, transition_run)
from .locks import Lock
from .names import printable
from .requests import Asked, asked, serve_requests
from .scheduler import GIT_ACTIONS, Decision, Facts, Finish, GiveUp, Kill, Shutdown, Spawn, Stop, decide, earliest
from .settings import Layout, Settings, UserError
from .status import board_for, last_log_line, policy_of
from .summary import closing_lines, outcome_of
from .trackers import DatabaseLocation, Snapshot
from .wakeup import Inbox
from .watch import Reader, TrackerWatch, database_signature, keep_own_files
from .worker_spec import build_spec, choose_session, stream_budgets, stream_limits

DECIDE_ROUNDS = 8  # decisions per turn at most: a merge unlocks dependents, whose spawns follow at once


class Supervisor:
    """Runs the streams of one project until every target is complete or nothing can progress."""

    def __init__(self, layout: Layout, settings: Settings, location: DatabaseLocation,
                 targets: Optional[Set[str]], reporter: Reporter, *, release: Iterable[str] = (),
                 retry_failed: bool = False, locks: Iterable[Lock] = (), clock: Callable[[], float] = time.time,
                 executor: Optional[Executor] = None, reader: Optional[Reader] = None,
                 merger: Optional[Merger] = None, signature: Optional[Callable[[], tuple]] = None):
        self.layout, self.settings, self.location, self.clock = layout, settings, location, clock
        self.targets = set(targets) if targets is not None else None
        self.releasing = (set(release), retry_failed)  # what `start` asked to run again
        self.announce = Announcer.of(reporter, settings, layout, clock)  # lines, on_event and the run's journal
        journal = self.announce.record.journal  # written once the table is saved: never ahead of it
        self.executor = executor or open_executor(layout, settings.stop_grace, clock, settings, location)
        self.merger = merger or open_merger(layout, settings, location, reporter.say, self.announce.notifier.fire,
                                            clock, journal)
        self.store = TableFile(layout.run_file, self.announce.warn, journal.flush)
        self.tracker = TrackerWatch(reader or location.open(), signature or (lambda: database_signature(location.path)),
                                    reporter.say, keep_own_files(layout, locks, self.store.forget), location.path)
        self.table = Table()
        self.policy = policy_of(settings)
        self.outputs = WorkerOutputs(note=lambda sid, text: self.announce.warn(f"{printable(sid)}'s worker: {text}"))
        self.board: Optional[Board] = None
        self.dirty = True  # something the board shows changed: decide again
        self.due: Optional[float] = None  # decide again by then at the latest
        self.exits: Dict[str, Ended] = {}  # workers that ended, judged once the tracker is read
        self.inbox = Inbox()
        self.guard = StreamGuard(layout.state / "crash.log", lambda: self.table.rows, self._apply, self.executor,
                                 settings.stop_grace, self.announce.say)  # a bug in one stream's handling fails it

    # ---------------------------------------------------------------- the loop

    def run(self) -> int:
        self.inbox.install()
        self.begin()
        while True:
            code = self.turn()
            if code is not None:
                return code
            self.inbox.sleep(self.sleep_time())

    def sleep_time(self) -> float:
        """Until the next thing due; never a blind long poll, never a spin."""
        poll = self.settings.poll_interval
        return 0.0 if self.dirty else poll if self.due is None else max(min(poll, self.due - self.clock()), 0.0)

    def begin(self) -> None:
        """Continue the saved table (after a run that ended, what it carries into a new one), adopt
        live workers, and note the workers that ended while no orchestrator ran (judged at first)."""
        now = self.clock()
        self.table, warnings = self.store.load()
        for line in warnings:
            self.announce.warn(line)
        self.table.rows = carried_rows(self.table)  # after a run that ended: a new one, with fresh counts
        self.merger.begin(self.table)  # worktrees: recover, then start or continue the integration branch
        self.policy = policy_of(self.settings, self.table.run)
        self.table.run.max_restarts = self.settings.max_restarts  # status shows "attempt a of b" with it
        self._apply_run(RunBegins(new_run_id(now)), now)
        self.announce.record.begin(self.table, self.tracker.reader, self.targets, self.location.generation, now)
        release, retry_failed = self.releasing
        for sid, life in list(self.table.rows.items()):
            if sid in release or (retry_failed and life.state is StreamState.FAILED):
                self._apply(sid, Release(), now)
        adoption = self.executor.adopt()
        for handle in adoption.live:
            self._apply(handle.stream_id, Adopted(handle.attempt), now)
            output = self.executor.output(handle)
            self.outputs.watch(handle.stream_id, output.path, output.offset, now)
        for handle, ended in adoption.ended:
            self._apply(handle.stream_id, Adopted(handle.attempt), now)
            self.exits[handle.stream_id] = ended
        recorded = {h.stream_id for h in adoption.live} | {h.stream_id for h, _ in adoption.ended}
        for sid, life in self.table.rows.items():
            if life.state in LIVE and sid not in recorded:
                self.exits[sid] = Ended(why="its worker record was lost")
        self.announce.adopted(adoption, self.table)  # said, and attempts whose start the journal never got
        self.store.save(self.table)

    def turn(self) -> Optional[int]:
        now = self.clock()
        self._apply_run(Tick(), now)
        for signum in self.inbox.take_stops():
            self._apply_run(StopSignal(self.settings.stop_grace, signum == signal.SIGINT), now)
        if self.inbox.requests:  # after the signals: a `stop --grace S` then shortens their grace
            self._handle_requests(now)
        for sid, handle in list(self.executor.live().items()):
            ended = self.executor.poll(handle)
            if ended is not None:
                self.exits[sid] = ended
                self.tracker.expect_change()  # its last writes may be in the database: look again
        self._read_outputs(now)
        self.dirty |= self.tracker.look(now)
        busy = self.merger.activity
        self.merger.poll(self._apply, now, self.table.rows, self.guard.stream)  # steps' ends, each guarded
        self.dirty |= self.merger.activity != busy
        stopping = self.table.run_life.state is RunState.STOPPING  # then judged even without the tracker
        if self.exits and (self.tracker.fresh or stopping):
            self._settle_exits(self.tracker.snapshot, now)
        code = self._decide_and_act(now)
        before = self.executor.cleaning_up()
        self.due = earliest(self.due, self.executor.tick())  # its housekeeping's next step, if sooner
        self.dirty |= self.executor.cleaning_up() != before
        self.store.save(self.table)
        self.outputs.save_activity(self.layout.activity_file, self._spent(), now, force=code is not None)
        return code

    # ---------------------------------------------------------------- transitions

    def _apply(self, stream_id: str, event: Event, now: float) -> Life:
        before = self.table.get(stream_id)
        self.table.rows[stream_id] = life = transition(before, event, now, self.policy)
        self.announce.changed(stream_id, before, life)  # said, notified and journaled
        self.dirty = True
        return life

    def _apply_run(self, event: RunEvent, now: float) -> None:
        before = self.table.run_life
        self.table.run_life = after = transition_run(before, event, now)
        self.dirty |= after != before
        self.announce.run_changed(before, after, self.table.rows, now)

    # ---------------------------------------------------------------- what happened

    def _handle_requests(self, now: float) -> None:
        """Answer what `start STREAM`, `stop STREAM` and `stop` asked of the running orchestrator."""
        self.inbox.requests = False
        known = self.tracker.snapshot.streams if self.tracker.snapshot else {}
        failed = [sid for sid, life in self.table.rows.items() if life.state is StreamState.FAILED]
        serve_requests(self.layout, lambda ask: self._obey(asked(ask, known, failed, self.settings.stop_grace), now))

    def _obey(self, asked: Asked, now: float) -> str:
        if asked.shutdown is not None:
            self._apply_run(StopAsked(asked.shutdown), now)
        for sid in asked.release + asked.retry:
            self._apply(sid, Release(), now)
        if self.targets is not None:
            self.targets.update(asked.release)
        for sid in asked.hold:
            if self.table.get(sid).state in LIVE:
                self._stop(Stop(sid, USER_STOP, StreamState.HELD, now + asked.grace), now)
            else:
                self._apply(sid, Hold(USER_STOP), now)
        return asked.reply

    def _read_outputs(self, now: float) -> None:
        """What running workers said since the last turn: a usage limit or a fatal failure acts at once."""
        for sid in list(self.outputs.tails):
            with self.guard.stream(sid, "reading its output", now):
                for seen in self.outputs.read_stream(sid, now):
                    if isinstance(seen, Fatal):
                        self._on_fatal(sid, seen, now)
                    else:
                        self._on_limit(sid, seen.message, limit_until(seen.resume_at, now), now)
        run = self.table.run_life
        if run.state is RunState.PROBING and self.outputs.any_turn_since(run.paused_until or 0.0):
            self._apply_run(LimitLifted(), now)  # the probe got an answer: the limit has lifted

    def _on_limit(self, sid: str, message: str, limit: LimitHit, now: float) -> None:
        """The account hit its usage limit: no worker starts anywhere until it resets."""
        if self.table.run_life.state is not RunState.PAUSED:
            self.announce.limit(sid, message, limit.until, limit.known)
        self._apply_run(limit, now)

    def _on_fatal(self, sid: str, fatal: Fatal, now: float) -> None:
        """A configuration failure is the same for every worker: stop the run, say what to fix."""
        if not self.table.run_life.fatal:
            self.announce.fatal(sid, fatal)
            self._apply_run(FatalSeen(fatal.message, fatal.fix, self.settings.stop_grace), now)

    def _settle_exits(self, snapshot: Optional[Snapshot], now: float) -> None:
        for sid, ended in self.exits.items():
            with self.guard.judging(sid, now):
                stream = snapshot.streams.get(sid) if snapshot else None
                if self.table.get(sid).state not in LIVE:
                    self._apply(sid, Adopted(self.table.get(sid).attempts), now)
                before = self.table.get(sid)
                verdict = judge_exit(ended, stream, self.outputs.finish(sid, ended.returncode, now),
                                     last_log_line(self.layout.log_for(sid)), now, self.tracker.write_problem)
                if verdict.limit is not None:
                    self._on_limit(sid, verdict.limit_message, verdict.limit, now)
                if verdict.fatal is not None:
                    self._on_fatal(sid, verdict.fatal, now)
                after = self._apply(sid, verdict.exited, now)
                self.announce.exit(sid, ended, stream, before, after, self.policy, verdict, now, snapshot is not None)
        self.exits.clear()

    # ---------------------------------------------------------------- deciding and acting

    def _decide_and_act(self, now: float) -> Optional[int]:
        """Decide when something changed or came due, and again while acting changed what it reads."""
        if not (self.dirty or (self.due is not None and now >= self.due)):
            return None
        for _ in range(DECIDE_ROUNDS):
            decision = self._decide(now)
            code = None if decision is None else self._act(decision, now)
            if code is not None or decision is None or not self.dirty:
                return code
        return None

    def _decide(self, now: float) -> Optional[Decision]:
        snapshot = self.tracker.snapshot
        if snapshot is None and self.table.run_life.state is not RunState.STOPPING:
            self.dirty = False  # nothing to decide on until the tracker is read (a read makes it dirty)
            return None
        board = board_for(snapshot or Snapshot({}), self.table, self.executor.live(), self.settings, now)
        if snapshot is not None:
            self.announce.board_changes(self.board, board)
            self.board = board
        self.announce.observed(self.table.rows, board)
        self.table.rows, self.dirty = dict(board.rows), False
        facts = Facts(self._run_budget_left(), stream_budgets(snapshot, self.settings) if snapshot else {},
                      self.outputs.last_output(), self.executor.cleaning_up(), self.merger.busy, bool(self.exits),
                      self.tracker.fresh, *self.announce.record.spend_left(now, self.outputs.live_cost()),
                      **self.merger.facts())
        decision = decide(board, self.table.run_life, self.settings, now, facts, self.targets)
        self._apply_run(SpendCap(decision.capped, facts.spend_lifts_at), now)  # the run's row says so
        self.due = decision.wake_at
        return decision

    def _act(self, decision: Decision, now: float) -> Optional[int]:
        live = self.executor.live()
        for action in decision.actions():
            if isinstance(action, Kill) and action.stream_id in live:
                self.executor.kill(live[action.stream_id])
                self.announce.killed_worker(live[action.stream_id])
            elif isinstance(action, Stop):
                self._stop(action, now)
                self.announce.stopping(action.stream_id, action.reason)
            elif isinstance(action, GiveUp):
                self._apply(action.stream_id, Failed(action.reason), now)
                self.announce.gave_up(action.stream_id)
            elif isinstance(action, GIT_ACTIONS):  # merges and the merge gate's steps
                with self.guard.stream(getattr(action, "stream_id", ""), "merging it", now):
                    self.merger.act(action, self.table.rows, self._apply, now)
            elif isinstance(action, Spawn):
                with self.guard.stream(action.stream_id, "starting its worker", now):
                    self._spawn(action, now)
            elif isinstance(action, Shutdown):
                self.executor.shutdown(action.deadline)
                busy = self.merger.activity
                self.merger.stop(action.deadline)  # a check ends, a merge by then; merged again next start
                self.dirty |= self.merger.activity != busy
            elif isinstance(action, Finish):
                return self._finish(action, now)
        self.merger.flush(self._apply, now)  # the turn's merges, started as one step
        if decision.credit != self.table.run_life.credit or decision.spawn:
            self._apply_run(Paced(decision.credit), now)
        return None

    def _stop(self, stop: Stop, now: float) -> None:
        deadline = stop.deadline if stop.deadline is not None else now + self.settings.stop_grace
        self._apply(stop.stream_id, StopRequested(stop.after, stop.reason, deadline), now)
        for handle in [h for sid, h in self.executor.live().items() if sid == stop.stream_id]:
            self.executor.terminate(handle)

    def _spawn(self, spawn: Spawn, now: float, prepared: Optional[tuple] = None) -> None:
        """Start a worker; with worktrees a step makes its worktree, then calls this again (`prepared`)."""
        assert self.board is not None and self.tracker.snapshot is not None
        sid, life = spawn.stream_id, self.table.get(spawn.stream_id)
        limited, workspace = prepared or (life.state is StreamState.RATE_LIMITED, None)
        if prepared is None:
            resume, session = choose_session(life.session_id, life.resume, self.settings)
            life = self._apply(sid, Spawning(spawn.attempt, resume or session or ""), now)
        resume, session = (life.session_id, None) if life.resume and life.session_id else (None, life.session_id or None)
        tasks = self.tracker.stream_tasks(sid)
        try:
            self.layout.logs.mkdir(parents=True, exist_ok=True)
            if prepared is None:  # its worktree (None: the project root; PREPARING: a step makes it, then back here)
                workspace = self.merger.prepare(sid, lambda made, at: self._spawn(spawn, at, (limited, made)))
                if workspace is PREPARING:
                    return
            limits = stream_limits(self.tracker.snapshot.streams.get(sid), is_claude(self.settings.worker_argv()))
            spec = build_spec(self.board.views[sid], spawn.attempt, tasks, self.layout, self.settings, self.location,
                              limits, resume, spawn.budget_usd, session, warn=self.announce.warn, workspace=workspace,
                              conflicts=life.conflicts, integration_branch=self.merger.integration_branch,
                              feedback=life.feedback)
            handle = self.executor.spawn(spec, before_go=lambda _handle: self.store.save(self.table))
        except (OSError, UserError) as exc:
            failed = self._apply(sid, SpawnFailed(f"its worker could not be started: {exc}"), now)
            self.announce.spawn_failed(sid, exc, failed.state is StreamState.FAILED)
            return
        self._apply(sid, Spawned(), now)
        output = self.executor.output(handle)
        self.outputs.watch(sid, output.path, output.offset, now)
        self.announce.started(handle, spec, resume, limited, self.board.views[sid].stream_name, session or "")

    def _finish(self, finish: Finish, now: float) -> int:
        spent = sum(self._spent().values())
        outcome = outcome_of(finish, self.table.run_life, spent, self.settings.max_cost_usd)
        self._apply_run(RunEnds(finish.exit_code, outcome), now)
        self.store.save(self.table)
        self.tracker.close()
        self.announce.finished(outcome, finish.exit_code, spent, closing_lines(  # and the run's report
            finish, outcome, self.board, self.table.run_life, self.targets, self.merger.integration_branch), self.board)
        return finish.exit_code

    def _spent(self) -> Dict[str, float]:
        return {sid: life.spent_usd for sid, life in self.table.rows.items() if life.spent_usd}

    def _run_budget_left(self) -> Optional[float]:
        spent = sum(self._spent().values()) + self.outputs.live_cost()
        return self.settings.max_cost_usd - spent if self.settings.max_cost_usd else None

