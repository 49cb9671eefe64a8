"""The supervisor: a thin loop that gathers events, applies transitions, asks the scheduler, acts.

Each turn: user requests (files in the state folder, announced by SIGUSR1),
worker exits (SIGCHLD on a wakeup fd), a database change (a cheap stat of the
file and its WAL), and the clock. Exits are judged against a fresh snapshot
(the worker's last writes decide whether its stream completed). Every state
change goes through `lifecycle.transition`; what to start or stop comes from
`scheduler.decide`; workers are started and signalled through the executor.
Nothing here waits for a worker: stopping is a state with a deadline. Signal
handlers only set a flag. Clock, executor and database reader are injectable.
Standard library only, Python 3.9+.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Dict, List, Optional, Set, TextIO

from .agent.events import DEFAULT_LIMIT_WAIT, EndKind, Fatal
from .agent.claude import MIN_BUDGET_USD, StreamLimits, budget_left, is_claude, parse_worker_options
from .executor.local import LocalExecutor
from .lifecycle import (
    LIVE,
    USER_STOP,
    Adopted,
    Event,
    Exited,
    GiveUp,
    Hold,
    Life,
    Release,
    Spawned,
    SpawnFailed,
    Spawning,
    StopRequested,
    StreamState,
    Table,
    carried_rows,
    load_table,
    save_table,
    transition,
)
from .locks import Lock
from .git.merging import Merger
from .executor.processes import read_pid_dir, remove_file
from .names import printable
from .notify import Notifier
from .requests import pending_requests
from .scheduler import Decision, Pace, Spawn, decide
from .summary import end_of_run
from .settings import EXIT_OK, EXIT_STUCK, EXIT_USAGE, Layout, Settings, UserError
from .status import board_for, format_duration, last_log_line, policy_of, write_orchestrator_record
from .graph import Board
from .trackers import Database, DatabaseBusy, DatabaseError, DatabaseLocation, Snapshot, StreamRecord
from .agent.output import WorkerOutputs
from .worker_spec import build_spec

EXIT_INTERRUPTED = 130
# What an agent's own account of its end means for the stream (lifecycle.Exited.ending).
ENDINGS = {EndKind.USAGE_LIMIT: "usage_limit", EndKind.BUDGET_EXHAUSTED: "budget", EndKind.FATAL: "fatal",
           EndKind.SESSION_NOT_FOUND: "fresh"}


def exit_code_of(status: str) -> Optional[int]:
    """The exit code in the executor's "code 1" / "signal 9" wording; None when it is not known."""
    kind, _, number = status.partition(" ")
    if not number.isdigit():
        return None
    return int(number) if kind == "code" else -int(number) if kind == "signal" else None
SAFETY_REFRESH_SECONDS = 30.0  # look at the database and our files even when nothing signalled
RUN_STOPPING = "the run is stopping"


class Reporter:
    """Timestamped lines for the terminal or the detached log. A dead stdout (a closed pipe,
    `>&-`, no terminal) never ends supervision: lines then go to the orchestrator log."""

    def __init__(self, out: Optional[TextIO], fallback: Path):
        self.out = out
        self.fallback = fallback

    def say(self, message: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {message}\n"
        if self.out is not None:
            try:
                self.out.write(line)
                self.out.flush()
                return
            except (OSError, ValueError):
                self.out = None
                sys.stdout = open(os.devnull, "w")  # no "Exception ignored" at exit either
                line += f"[{time.strftime('%H:%M:%S')}] (standard output is gone; logging here)\n"
        try:
            self.fallback.parent.mkdir(parents=True, exist_ok=True)
            with open(self.fallback, "a", encoding="utf-8") as log:
                log.write(line)
        except OSError:
            pass  # nowhere left to write: supervision goes on regardless


class Supervisor:
    """Runs the streams of one project until every target is complete or nothing can progress."""

    def __init__(self, layout: Layout, settings: Settings, location: DatabaseLocation,
                 targets: Optional[Set[str]], reporter: Reporter, *, release: Set[str] = frozenset(),
                 retry_failed: bool = False, locks: List[Lock] = (), clock: Callable[[], float] = time.time,
                 executor: Optional[LocalExecutor] = None, reader: Optional[Database] = None):
        self.layout, self.settings, self.location = layout, settings, location
        self.targets, self.release, self.retry_failed = targets, set(release), retry_failed
        self.say = reporter.say
        self.locks = list(locks)
        self.clock = clock
        self.policy = policy_of(settings)
        self.executor = executor or LocalExecutor(layout.pid_for, settings.stop_grace, clock)
        self.db = reader or location.open()
        self.table = Table()
        self.saved: Optional[dict] = None
        self.snapshot: Optional[Snapshot] = None
        self.board: Optional[Board] = None
        self.decision: Optional[Decision] = None
        self.fresh = False
        self.dirty = True
        self.pending_exits: Dict[str, str] = {}
        self.db_signature: tuple = ()
        self.force_refresh = True
        self.last_look = 0.0
        self.last_warning = ""
        self.save_failed = False
        self.signals = 0  # stop signals so far: the first stops gracefully, the second forces
        self.interrupted = False  # Ctrl-C: the run ends with 130, as shells expect
        self.requests_waiting = True
        self.stop_grace = settings.stop_grace
        self.shutting_down = False
        self.next_sweep: Optional[float] = None
        self.outputs = WorkerOutputs(note=lambda sid, text: self.say(f"warning: {printable(sid)}'s worker: {text}"))
        self.paused_until: Optional[float] = None  # a usage limit: no spawn anywhere before this
        self.probing = False  # the last limit's reset was unknown: one worker probes before the others
        self.last_spawn_at: Optional[float] = None
        self.fatal: Optional[Fatal] = None  # a configuration failure: the run stops with exit 2
        self.notifier = Notifier(settings.on_event, layout.orchestrator_log,
                                 lambda message: self.say(f"warning: {message}"))
        self.wake_r, self.wake_w = os.pipe()
        self.merger = Merger(layout.root, settings, location, self.say, layout.log_for)  # worktree isolation

    # ---------------------------------------------------------------- the loop

    def run(self) -> int:
        self._install_signal_handlers()
        self._resume()
        while True:
            code = self._turn()
            if code is not None:
                return code
            self._wait()

    def _turn(self) -> Optional[int]:
        now = self.clock()
        self.executor.reap()
        if self.requests_waiting:  # first: a `stop --grace S` request sets the grace the shutdown uses
            self._handle_requests(now)
        self._collect_exits()
        self._read_outputs(now)
        self._refresh(now)
        if self.pending_exits and (self.fresh or self.shutting_down) and self.snapshot is not None:
            self._settle_exits(now)
        if self.signals and not self.shutting_down:  # Ctrl-C, `stop`, or a fatal failure: exits judged first
            self._begin_shutdown(now)
        if not self.shutting_down:
            self.merger.step(self.table.rows, self._apply, now, busy=self.executor.has_leftovers)  # MERGING streams
        if self.snapshot is None:
            return self._finish(EXIT_STUCK, "stopped by request") if self.shutting_down else None
        wake = self.decision.wake_at if self.decision else None
        if self.dirty or self.decision is None or (wake is not None and now >= wake):
            self._rebuild(now)
        self._act(now)
        self.next_sweep, swept = self.executor.sweep()
        self.dirty |= swept
        self._save()
        self.outputs.save_activity(self.layout.activity_file, self._spent(), now)
        return self._outcome()

    def _install_signal_handlers(self) -> None:
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the loop at once
        signal.signal(signal.SIGUSR1, self._on_request)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_stop)

    def _on_stop(self, signum, _frame) -> None:
        self.signals += 1  # handlers only set a flag; the loop acts
        self.interrupted = self.interrupted or signum == signal.SIGINT

    def _on_request(self, *_args) -> None:
        self.requests_waiting = True

    def _wait(self) -> None:
        """Sleep until a signal or the next thing due; never a blind long poll."""
        now = self.clock()
        timeout = self.settings.poll_interval
        dues = [self.decision.wake_at if self.decision else None, self.next_sweep]
        if self.shutting_down:
            dues += [life.deadline for life in self.table.rows.values() if life.state is StreamState.STOPPING]
        for due in dues:
            if due is not None:
                timeout = min(timeout, max(due - now, 0.0))
        try:
            ready, _, _ = select.select([self.wake_r], [], [], timeout)
        except InterruptedError:
            return
        if ready:
            try:
                os.read(self.wake_r, 4096)
            except BlockingIOError:
                pass

    # ---------------------------------------------------------------- transitions

    def _apply(self, stream_id: str, event: Event, now: float) -> Life:
        life = transition(self.table.get(stream_id), event, now, self.policy)
        self.table.rows[stream_id] = life
        self.dirty = True
        return life

    def _resume(self) -> None:
        """Continue the saved table (attempts, back-off, holds; after a run that ended, what it
        carries into a new one), adopt live workers, and judge the workers that ended while no
        orchestrator ran."""
        now = self.clock()
        self.table, warnings = load_table(self.layout.run_file)
        for line in warnings:
            self.say(f"warning: {line}")
        self.table.rows = carried_rows(self.table)  # a run that ended: a new one, with fresh counts
        self.merger.begin(self.table)  # worktrees: recover, then start or continue the integration branch
        self.policy = policy_of(self.settings, self.table.run)
        if self.table.run.ended_at is not None or not self.table.run.started_at:
            self.table.run.started_at = now
        self.table.run.ended_at, self.table.run.exit_code, self.table.run.outcome = None, None, ""
        self.table.run.max_restarts = self.settings.max_restarts  # status shows "attempt a of b" with it
        for sid, life in list(self.table.rows.items()):
            if sid in self.release or (self.retry_failed and life.state is StreamState.FAILED):
                self._apply(sid, Release(), now)
        recorded = set()
        for path, record in read_pid_dir(self.layout.pids).items():
            if record is None:
                self.say(f"removing unreadable pid file {path.name}")
                remove_file(path)
                continue
            recorded.add(record.stream_id)
            self._apply(record.stream_id, Adopted(record.attempt), now)
            if self.executor.adopt(record, path):
                self.say(f"adopted running worker of {printable(record.stream_id)} (pid {record.pid})")
                log = self.layout.log_for(record.stream_id)
                self.outputs.watch(record.stream_id, log, log.stat().st_size if log.exists() else 0, now)
            else:
                self.executor.forget_ended(record, path)
                self.pending_exits[record.stream_id] = "unknown code (ended while no orchestrator ran)"
        for sid, life in self.table.rows.items():
            if life.state in LIVE and sid not in recorded:
                self.pending_exits[sid] = "unknown code (its worker record was lost)"
        self._save()

    def _collect_exits(self) -> None:
        for sid in list(self.executor.live()):
            status = self.executor.poll(sid)
            if status is not None:
                self.pending_exits[sid] = status
                self.force_refresh = True  # its last writes may be in the database: look again

    def _settle_exits(self, now: float) -> None:
        assert self.snapshot is not None
        for sid, status in self.pending_exits.items():
            stream = self.snapshot.streams.get(sid)
            complete = stream is not None and stream.is_complete
            before = self.table.get(sid)
            if before.state not in LIVE:
                self._apply(sid, Adopted(before.attempts), now)
            after = self._apply(sid, self._ending(sid, status, stream, complete, now), now)
            self._report_exit(sid, status, stream, after)
            if after.state is StreamState.FAILED:
                self.notifier.fire("stream_failed", stream_id=sid, stream_name=stream.stream_name if stream else sid,
                                   reason=after.reason, cost_usd=after.spent_usd)
        self.pending_exits.clear()
        self.dirty = True

    def _ending(self, sid: str, status: str, stream: Optional[StreamRecord], complete: bool, now: float) -> Exited:
        """How a worker ended: its exit, and what its output said (usage limit, budget, fatal, ...)."""
        progress = f"with {stream.finished}/{stream.total} tasks done" if stream is not None else ""
        ended = self.outputs.finish(sid, exit_code_of(status), now)
        if ended is None or (ended[1].events == 0 and ended[0].kind is EndKind.CRASH):
            tail = printable(last_log_line(self.layout.log_for(sid)), 200)
            detail = progress + (f"; last log line: {tail}" if tail else "")
            return Exited(status, complete, detail if not complete else "")
        outcome, agent = ended
        detail = "" if complete else f"{progress}; {printable(outcome.reason, 200)}"
        ending, resume_at = ENDINGS.get(outcome.kind, "exit"), None
        if outcome.kind is EndKind.USAGE_LIMIT:
            resume_at = self._on_limit(sid, outcome.reason, outcome.resume_at, now)
            detail = printable(outcome.reason, 200)
        elif outcome.kind is EndKind.FATAL and outcome.fatal is not None:
            self._on_fatal(sid, outcome.fatal)
        return Exited(status, complete, detail, ending, resume_at, agent.cost_usd or 0.0, agent.session_id or "",
                      agent.turns, agent.input_tokens + agent.output_tokens)

    def _read_outputs(self, now: float) -> None:
        """What running workers said since the last turn: a usage limit or a fatal failure acts at once."""
        for sid, signal_seen in self.outputs.read(now):
            if isinstance(signal_seen, Fatal):
                self._on_fatal(sid, signal_seen)
            else:
                self._on_limit(sid, signal_seen.message, signal_seen.resume_at, now)
        if self.probing and self.outputs.any_turn_since(self.paused_until or 0.0):
            self.probing, self.dirty = False, True  # the probe got an answer: the limit has lifted

    def _on_limit(self, sid: str, message: str, resume_at: Optional[float], now: float) -> float:
        """The account hit its usage limit: no worker starts anywhere until it resets."""
        until = resume_at if resume_at is not None else now + DEFAULT_LIMIT_WAIT
        if self.paused_until is None or self.paused_until < now:
            when = time.strftime("%H:%M:%S", time.localtime(until))
            self.say(f"usage limit hit by {printable(sid)}'s worker ({printable(message, 160)}); no worker starts "
                     f"until {when}" + ("" if resume_at else " (reset time unknown: a documented default wait)"))
            self.notifier.fire("usage_limit", stream_id=sid, reason=message, resume_at=until)
        self.paused_until = max(self.paused_until or 0.0, until)
        self.probing = self.probing or resume_at is None
        self.dirty = True
        return until

    def _on_fatal(self, sid: str, fatal: Fatal) -> None:
        """A configuration failure is the same for every worker: stop the run, say what to fix."""
        if self.fatal is not None:
            return
        self.fatal = fatal
        self.say(f"configuration error, seen in {printable(sid)}'s worker: {printable(fatal.message, 300)}")
        self.say(f"fix: {fatal.fix}")
        self.notifier.fire("configuration_error", stream_id=sid, reason=fatal.message, fix=fatal.fix)
        self.signals = max(self.signals, 1)

    def _spent(self) -> Dict[str, float]:
        return {sid: life.spent_usd for sid, life in self.table.rows.items() if life.spent_usd}

    def _run_budget_left(self) -> Optional[float]:
        if not self.settings.max_cost_usd:
            return None
        return self.settings.max_cost_usd - sum(self._spent().values()) - self.outputs.live_cost()

    def _report_exit(self, sid: str, status: str, stream: Optional[StreamRecord], life: Life) -> None:
        name = printable(sid)
        if stream is None:
            self.say(f"{name} is no longer in the database; its worker exited with {status}")
        elif life.state is StreamState.COMPLETE:
            if status != "code 0":
                self.say(f"{name} worker exited with {status} after its stream completed")
        elif life.state is StreamState.HELD:
            self.say(f"{name} stopped by request; it will not be restarted")
        elif life.state is StreamState.BACKOFF:
            self.say(f"{name} worker exited with {status} with {stream.finished}/{stream.total} tasks done; "
                     f"restart {life.attempts} of {self.settings.max_restarts} in {self.policy.backoff(life.failures):g}s")
        elif life.state is StreamState.FAILED:
            self.say(f"{name} failed after {life.attempts} attempt(s): {life.reason}")

    # ---------------------------------------------------------------- the database

    def _signature(self) -> tuple:
        """What changes with every commit, read cheaply: each file's inode, time and size, and the
        WAL's header. A commit right after a checkpoint rewrites the WAL from its start and can leave
        its size and (coarse) time unchanged, but never its header's salt. Only the WAL is opened:
        SQLite keeps no locks on it that closing our descriptor could drop."""
        parts: list = []
        for suffix in ("", "-wal"):
            try:
                st = os.stat(f"{self.location.path}{suffix}")
                parts.append((st.st_ino, st.st_mtime_ns, st.st_size))
            except OSError:
                parts.append(None)
        try:
            with open(f"{self.location.path}-wal", "rb") as wal:
                parts.append(wal.read(32))
        except OSError:
            parts.append(None)
        return tuple(parts)

    def _refresh(self, now: float) -> None:
        signature = self._signature()
        safety = now - self.last_look > SAFETY_REFRESH_SECONDS
        if safety:
            self._check_our_files()
        changed = signature != self.db_signature
        if not (self.force_refresh or safety or not self.fresh or changed):
            return
        self.last_look = now
        try:
            snapshot = self.db.snapshot()
        except DatabaseError as exc:
            self.fresh = False
            self._warn(str(exc) if isinstance(exc, DatabaseBusy) else f"{exc}; waiting for it to come back")
            return
        # A commit in flight as we looked (its WAL frames written, not yet marked committed) leaves
        # no later trace in the files: after a change, read once more at the next turn.
        self.db_signature, self.fresh, self.force_refresh = signature, True, changed
        if self.snapshot is None or snapshot.warnings() != self.snapshot.warnings():
            for line in snapshot.warnings():
                self.say(f"warning: {line}")
        self.snapshot, self.dirty, self.last_warning = snapshot, True, ""

    def _warn(self, message: str) -> None:
        if message != self.last_warning:
            self.say(f"warning: {message}")
            self.last_warning = message

    def _check_our_files(self) -> None:
        """Re-create what an agent's `git clean` or `rm` took: folders, locks, our pid record."""
        try:
            self.layout.make_dirs()
        except OSError as exc:
            self._warn(f"cannot re-create the orchestrator's folders: {exc}")
        for lock in self.locks:
            problem = lock.verify()
            if problem:
                self.say(f"warning: {problem}")
        if not self.layout.orchestrator_pid.exists():
            try:
                write_orchestrator_record(self.layout)
            except OSError as exc:
                self._warn(f"cannot re-create {self.layout.orchestrator_pid}: {exc}")
        for sid, record in self.executor.live().items():
            if not self.layout.pid_for(sid).exists():
                self.executor.rewrite_record(record)
        if not self.layout.run_file.exists():
            self.saved = None

    # ---------------------------------------------------------------- deciding and acting

    def _rebuild(self, now: float) -> None:
        assert self.snapshot is not None
        previous = self.board
        board = board_for(self.snapshot, self.table, self.executor.live(), self.settings, now)
        self._announce(previous, board)
        self.table.rows = dict(board.rows)
        self.board, self.dirty = board, False
        pace = Pace(self.paused_until, self.last_spawn_at, self._run_budget_left(), self.outputs.last_output(),
                    self.probing)
        self.decision = None if self.shutting_down else decide(board, self.settings, now, self.targets, pace)

    def _announce(self, before: Optional[Board], after: Board) -> None:
        """Say what changed in the tracker: completions, reopened streams, new graph problems."""
        if before is None:
            return
        for sid, view in after.views.items():
            old = before.views.get(sid)
            if old is None:
                continue
            if view.graph_state is StreamState.COMPLETE and old.graph_state is not StreamState.COMPLETE:
                self.say(f"{printable(sid)} complete ({view.finished}/{view.total} tasks)")
            elif old.graph_state is StreamState.COMPLETE and view.graph_state is not StreamState.COMPLETE:
                started = [d for d, v in after.views.items() if sid in v.dependencies
                           and (after.rows.get(d) and after.rows[d].ran)]
                self.say(f"warning: {printable(sid)} was reopened after it completed"
                         + (f"; its dependents already started on it: {', '.join(printable(d) for d in started)}"
                            if started else ""))
            life = after.rows.get(sid)
            if life is not None and life.state is StreamState.BACKOFF and before.rows.get(sid) \
                    and before.rows[sid].state is StreamState.COMPLETE:
                self.say(f"{printable(sid)}: {view.describe()}")
        new = set(after.problems.messages()) - set(before.problems.messages())
        for line in sorted(new):
            running = [sid for sid, v in after.views.items() if v.graph_state is StreamState.INVALID
                       and after.rows.get(sid) and after.rows[sid].state in LIVE]
            self.say(f"warning: the stream graph changed: {printable(line)}"
                     + (f"; running worker(s) of {', '.join(printable(s) for s in running)} are left to finish "
                        "but will not be restarted" if running else ""))

    def _act(self, now: float) -> None:
        decision = self.decision
        if decision is None:
            return
        for sid in decision.kill:
            self.executor.kill(sid)
            self.say(f"{printable(sid)} ignored TERM for {self.stop_grace:g}s; killed it")
        for stop in decision.stop:
            self._stop(stop.stream_id, stop.after, stop.reason, now, self.settings.stop_grace)
            self.say(f"{printable(stop.stream_id)} {stop.reason}")
        for spawn in decision.spawn:
            if self.executor.has_leftovers(spawn.stream_id):
                continue  # what its last worker left behind is still being ended: `sweep` wakes us
            self._spawn(spawn, now)
        if decision.kill or decision.stop or decision.spawn:
            self.decision = None if self.shutting_down else Decision(wake_at=decision.wake_at)
            self.dirty = True

    def _stop(self, sid: str, after: StreamState, reason: str, now: float, grace: float) -> None:
        self._apply(sid, StopRequested(after, reason, now + grace), now)
        self.executor.terminate(sid)

    def _spawn(self, spawn: Spawn, now: float) -> None:
        assert self.board is not None
        sid = spawn.stream_id
        view = self.board.views[sid]
        try:
            tasks = self.db.stream_tasks(sid)
        except DatabaseError:
            tasks = []
        life = self.table.get(sid)
        record_in_db = self.snapshot.streams.get(sid) if self.snapshot else None
        claude = is_claude(self.settings.worker_argv())
        limits = parse_worker_options(record_in_db.worker_options) if claude and record_in_db \
            and record_in_db.worker_options else StreamLimits()
        budget = budget_left(limits, life.spent_usd, self._run_budget_left())
        if budget is not None and budget < MIN_BUDGET_USD:
            self._apply(sid, GiveUp(f"budget: {life.spent_usd:.2f} USD spent, nothing left"), now)
            self.say(f"{printable(sid)} failed: its budget is spent")
            return
        resume = life.session_id if life.resume else None
        # A new session gets an id we choose, so a resume after a usage limit knows it even when the
        # worker dies before printing its first event.
        session = None if resume or not claude else str(uuid.uuid4())
        was_limited = life.state is StreamState.RATE_LIMITED
        self._apply(sid, Spawning(spawn.attempt, resume or session or ""), now)
        try:
            self.layout.logs.mkdir(parents=True, exist_ok=True)
            workspace = self.merger.prepare(sid)  # its worktree (None: the project root)
            spec = build_spec(view, spawn.attempt, tasks, self.layout, self.settings, self.location, limits,
                              resume, budget, session, warn=lambda problem: self.say(f"warning: {problem}"),
                              workspace=workspace, conflicts=self.table.get(sid).conflicts,
                              integration_branch=self.merger.integration_branch)
            record = self.executor.spawn(spec, before_go=lambda _record: self._save())
        except (OSError, UserError) as exc:
            life = self._apply(sid, SpawnFailed(f"its worker could not be started: {exc}"), now)
            self.say(f"{printable(sid)}: its worker could not be started ({exc}); "
                     + ("giving up" if life.state is StreamState.FAILED else "will retry"))
            return
        self._apply(sid, Spawned(), now)
        self.last_spawn_at = now
        self.outputs.watch(sid, spec.log_path, self.executor.log_offset(sid), now)
        rel_log = os.path.relpath(spec.log_path, self.layout.root)
        self.say(f"started {printable(sid)} (attempt {spawn.attempt}, pid {record.pid}"
                 + (f", continuing session {resume}" if resume else "") + f"); log: {rel_log}")
        if was_limited:
            self.notifier.fire("usage_limit_resumed", stream_id=sid, stream_name=view.stream_name)

    def _save(self) -> None:
        data = self.table
        snapshot = (dict(data.rows), data.run.ended_at, data.run.started_at)
        if self.saved == snapshot:
            return
        try:
            self.layout.state.mkdir(parents=True, exist_ok=True)
            save_table(self.layout.run_file, data)
        except OSError as exc:
            if not self.save_failed:
                self.say(f"warning: cannot save the run state ({exc}); supervision goes on")
            self.save_failed = True
            return
        self.saved, self.save_failed = snapshot, False

    # ---------------------------------------------------------------- requests and stopping

    def _handle_requests(self, now: float) -> None:
        """Apply what `start STREAM`, `stop STREAM` and `stop` asked of the running orchestrator."""
        self.requests_waiting = False
        for request in pending_requests(self.layout):
            try:
                reply = self._apply_request(request.read(), now)
            except (OSError, ValueError, TypeError, KeyError) as exc:
                reply = f"the request could not be read: {exc}"
            request.answer(reply)

    def _apply_request(self, request: dict, now: float) -> str:
        action = request["action"]
        streams = [str(s) for s in request.get("streams", [])]
        grace = float(request.get("grace") or self.settings.stop_grace)
        if action == "shutdown":
            self.stop_grace = grace
            self.signals = max(self.signals, 1)
            return "stopping"
        known = self.snapshot.streams if self.snapshot else {}
        unknown = [s for s in streams if s not in known]
        if unknown:
            return "unknown stream(s): " + ", ".join(printable(s) for s in unknown)
        if action == "start":
            for sid in streams:
                self._apply(sid, Release(), now)
                if self.targets is not None:
                    self.targets.add(sid)
            return ("the running orchestrator lifted any stop on " + ", ".join(printable(s) for s in streams)
                    + ", reset its restart budget and runs it as its dependencies allow")
        if action == "retry_failed":
            failed = [sid for sid, life in self.table.rows.items() if life.state is StreamState.FAILED]
            for sid in failed:
                self._apply(sid, Release(), now)
            return f"the running orchestrator retries {len(failed)} failed stream(s)"
        if action == "stop":
            for sid in streams:
                if self.table.get(sid).state in LIVE:
                    self._stop(sid, StreamState.HELD, USER_STOP, now, grace)
                else:
                    self._apply(sid, Hold(USER_STOP), now)
            return ("stopping " + ", ".join(printable(s) for s in streams)
                    + f"; it stays stopped until `orchestrate.py start {printable(streams[0]) if streams else 'STREAM'}`")
        return f"unknown request {action!r}"

    def _begin_shutdown(self, now: float) -> None:
        self.shutting_down = True
        self.decision = None
        self.merger.stop()  # a running merge check ends; its stream is merged again next start
        live = [sid for sid, life in self.table.rows.items() if life.state in LIVE]
        if live:  # a fatal error seen as a worker ended leaves none: nothing to announce
            self.say(f"stopping {len(live)} worker(s)")
        for sid in live:
            if self.table.rows[sid].state is not StreamState.STOPPING:
                self._stop(sid, StreamState.WAITING, RUN_STOPPING, now, self.stop_grace)
        self.executor.hurry_leftovers(self.clock() + self.stop_grace)  # the run's grace, not each worker's

    def _outcome(self) -> Optional[int]:
        if self.shutting_down:
            if self.signals > 1:
                self.executor.kill_all()  # a second Ctrl-C: no more grace
            busy = any(life.state in LIVE for life in self.table.rows.values())
            if busy or self.pending_exits or self.executor.leftovers:
                self._kill_overdue()
                return None
            board = self.board
            done = board is not None and board.all_complete()
            if self.fatal is not None:
                return self._finish(EXIT_USAGE, f"stopped: configuration error: {self.fatal.message}")
            self.say("stopped by request")
            code = EXIT_INTERRUPTED if self.interrupted else EXIT_OK if done else EXIT_STUCK
            return self._finish(code, "stopped by request")
        if self.pending_exits or not self.fresh or self.decision is None or self.executor.leftovers:
            return None
        code = self.decision.outcome
        if code is None:
            return None
        if self.decision.held_back == "run budget" and code != EXIT_OK:
            spent = sum(self._spent().values())
            return self._finish(code, f"failed: run budget reached ({spent:.2f} of {self.settings.max_cost_usd:.2f} USD)")
        return self._finish(code, "all complete" if code == EXIT_OK else "nothing more can progress")

    def _kill_overdue(self) -> None:
        now = self.clock()
        for sid, life in self.table.rows.items():
            if life.state is StreamState.STOPPING and life.deadline is not None and life.deadline <= now:
                self.executor.kill(sid)

    def _finish(self, code: int, outcome: str) -> int:
        run = self.table.run
        run.ended_at, run.exit_code, run.outcome = self.clock(), code, outcome
        self._save()
        self.outputs.save_activity(self.layout.activity_file, self._spent(), run.ended_at, force=True)
        self.db.close()
        self.notifier.fire("run_finished", reason=outcome, exit_code=code, cost_usd=sum(self._spent().values()))
        for line in end_of_run(self.board, self.targets, code == EXIT_OK, outcome,
                               format_duration(run.ended_at - run.started_at), self.merger.integration_branch):
            self.say(line)
        return code
