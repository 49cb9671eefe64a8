#!/usr/bin/env python3
"""orchestrate: run Task Copilot streams in parallel, each as soon as its dependencies are complete.

    python3 .claude/orchestrator/orchestrate.py start [STREAM ...] [--detach] [--dry-run]
    python3 .claude/orchestrator/orchestrate.py status [--json]
    python3 .claude/orchestrator/orchestrate.py stop [STREAM]
    python3 .claude/orchestrator/orchestrate.py logs STREAM [-f] [-n N]
    python3 .claude/orchestrator/orchestrate.py plan [--json]

Parts, top to bottom: settings and file layout; the run state the supervisor
keeps; status collection (shared with the dashboard); the worker (spawn, pid
file, prompt); the supervisor loop; the commands; main(). Standard library
only, Python 3.9+.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set, TextIO, Tuple

sys.path.insert(0, str(Path(__file__).absolute().parent))

from processes import (  # noqa: E402  (the runtime folder is put on sys.path first)
    PidRecord,
    file_stem,
    printable,
    process_start_time,
    read_pid_dir,
    read_pid_file,
    remove_file,
    runs_script,
    terminate_groups,
    write_pid_file,
)
from stream_graph import Board, StreamState, StreamView, WorkerFacts, build_board, critical_path, start_order  # noqa: E402
from task_copilot_client import (  # noqa: E402
    Database,
    DatabaseBusy,
    DatabaseError,
    DatabaseLocation,
    Snapshot,
    locate_tracker,
    progress_summary_of,
    read_snapshot,
    whole_percent,
)
from trackers import CHOICES as TRACKER_CHOICES  # noqa: E402

PROG = "orchestrate"
EXIT_OK, EXIT_STUCK, EXIT_USAGE = 0, 1, 2
MAX_BACKOFF_SECONDS = 120.0
SAFETY_REFRESH_SECONDS = 30.0
LOCK_FD_ENV = "ORCHESTRATE_KIT_LOCK_FD"  # a detached orchestrator's inherited project lock
METADATA_EXAMPLE = '{"streamId": "Stream-A", "streamName": "Foundation", "dependencies": []}'


class UserError(Exception):
    """A mistake the user can fix: printed as one line, never as a traceback."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


# ================================================================ settings and layout


@dataclass(frozen=True)
class Settings:
    """Install answers (orchestrator.conf), overridden by command-line flags."""

    worker_command: str = "claude --print --dangerously-skip-permissions -p"
    max_parallel: int = 0
    max_restarts: int = 10
    poll_interval: float = 1.0
    refresh_interval: float = 15.0
    restart_delay: float = 5.0  # first back-off; doubles per failure
    stop_grace: float = 10.0  # TERM -> KILL
    finish_grace: float = 30.0  # a worker may linger this long after its stream completes
    tracker: str = "auto"  # which Task Copilot: auto, mcp (the MCP server) or tc (the tc CLI)

    def worker_argv(self) -> List[str]:
        try:
            argv = shlex.split(self.worker_command)
        except ValueError as exc:
            raise UserError(f"worker_command in orchestrator.conf cannot be parsed: {exc}") from None
        if not argv:
            raise UserError("worker_command in orchestrator.conf is empty")
        return argv


def load_settings(path: Path) -> Settings:
    """Read `key = value` lines; unknown keys are ignored so older runtimes read newer files."""
    if not path.exists():
        return Settings()
    types = {f.name: f.type for f in fields(Settings)}
    values = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = (part.strip() for part in line.partition("="))
        if not sep:
            raise UserError(f"{path}:{number}: expected `key = value`, got {line!r}")
        if key not in types:
            continue
        values[key] = _setting_value(key, value, types[key], f"{path}:{number}")
    return Settings(**values)


def _setting_value(key: str, value: str, kind: str, where: str):
    if kind == "str":
        return value
    try:
        number = int(value) if kind == "int" else float(value)
    except ValueError:
        raise UserError(f"{where}: {key} must be a number, got {value!r}") from None
    if number < 0 or (key.endswith("interval") and number == 0):
        raise UserError(f"{where}: {key} must be {'positive' if key.endswith('interval') else '0 or more'}")
    return number


@dataclass(frozen=True)
class Layout:
    """Where everything lives: .claude/orchestrator/ inside the project."""

    home: Path

    @property
    def root(self) -> Path:
        return self.home.parent.parent

    logs = property(lambda self: self.home / "logs")
    pids = property(lambda self: self.home / "pids")
    state = property(lambda self: self.home / "state")
    config = property(lambda self: self.home / "orchestrator.conf")
    lock = property(lambda self: self.state / "orchestrator.lock")
    orchestrator_pid = property(lambda self: self.state / "orchestrator.pid")
    run_file = property(lambda self: self.state / "run.json")
    holds = property(lambda self: self.state / "held")
    orchestrator_log = property(lambda self: self.logs / "orchestrator.log")

    def log_for(self, stream_id: str) -> Path:
        return self.logs / f"{file_stem(stream_id)}.log"

    def pid_for(self, stream_id: str) -> Path:
        return self.pids / f"{file_stem(stream_id)}.pid"

    def hold_for(self, stream_id: str) -> Path:
        return self.holds / file_stem(stream_id)

    def make_dirs(self) -> None:
        for folder in (self.logs, self.pids, self.state, self.holds):
            folder.mkdir(parents=True, exist_ok=True)


def default_layout() -> Layout:
    return Layout(Path(__file__).absolute().parent)


# ================================================================ run state


@dataclass
class StreamRun:
    """The supervisor's memory of one stream within a run."""

    attempts: int = 0
    failures: int = 0
    last_exit: Optional[str] = None
    failed_reason: str = ""


@dataclass
class RunState:
    """Persisted in state/run.json so a restarted orchestrator keeps its counts."""

    streams: Dict[str, StreamRun] = field(default_factory=dict)
    started_at: float = 0.0
    ended_at: Optional[float] = None
    exit_code: Optional[int] = None

    def stream(self, stream_id: str) -> StreamRun:
        return self.streams.setdefault(stream_id, StreamRun())

    @classmethod
    def load(cls, path: Path) -> "RunState":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            streams = {sid: StreamRun(**entry) for sid, entry in data.pop("streams", {}).items()}
            return cls(streams=streams, **data)
        except (OSError, ValueError, TypeError):
            return cls()

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)


def held_streams(layout: Layout) -> Set[str]:
    """Streams the user stopped with `stop STREAM`: not restarted until started again."""
    if not layout.holds.is_dir():
        return set()
    held = set()
    for marker in layout.holds.iterdir():
        try:
            held.add(marker.read_text(encoding="utf-8"))
        except OSError:
            continue
    return held


STOPPED_BY_USER = "stopped with `orchestrate.py stop`"


def live_workers(layout: Layout) -> Dict[str, PidRecord]:
    """Workers whose pid file names a live process that is really ours."""
    return {rec.stream_id: rec for rec in read_pid_dir(layout.pids).values() if rec and rec.is_alive()}


def live_orchestrator(layout: Layout) -> Optional[PidRecord]:
    """The running orchestrator, if its pid file names a live process that runs this script."""
    record = read_pid_file(layout.orchestrator_pid)
    alive = record and record.is_alive() and runs_script(record.pid, Path(__file__).name)
    return record if alive else None


# ================================================================ status (shared with the dashboard)


@dataclass
class StatusReport:
    """One consistent picture: database, graph, workers. `status` and the dashboard both print this."""

    location: DatabaseLocation
    snapshot: Snapshot
    board: Board
    orchestrator: Optional[PidRecord]
    run: RunState
    layout: Layout

    def to_json(self) -> dict:
        summary = progress_summary_of(self.snapshot)
        return {
            "workspace": self.location.workspace_id,
            "database": str(self.location.path),
            "tracker": self.location.generation,
            "database_found_by": self.location.how,
            "database_notes": list(self.location.notes),
            "orchestrator": {"running": self.orchestrator is not None,
                             "pid": self.orchestrator.pid if self.orchestrator else None},
            "summary": asdict(summary),
            "streams": [view_json(v) for v in self.board.views.values()],
            "problems": self.board.problems.messages(),
            "warnings": self.snapshot.warnings(),
        }


def view_json(view: StreamView) -> dict:
    return {
        "stream_id": view.stream_id,
        "stream_name": view.stream_name,
        "state": view.state.value,
        "description": view.describe(),
        "dependencies": list(view.dependencies),
        "waiting_on": list(view.waiting_on),
        "reason": view.reason,
        "level": view.level,
        "tasks": {"total": view.total, "finished": view.finished, **view.counts},
        "percent": view.percent,
        "pid": view.pid,
        "attempts": view.attempts,
        "started_at": view.started_at,
    }


def worker_facts(run: RunState, live: Dict[str, PidRecord], held: Set[str]) -> Dict[str, WorkerFacts]:
    facts = {}
    for sid in set(run.streams) | set(live) | held:
        entry = run.streams.get(sid, StreamRun())
        record = live.get(sid)
        failed = STOPPED_BY_USER if sid in held and record is None else entry.failed_reason
        facts[sid] = WorkerFacts(
            pid=record.pid if record else None,
            attempts=max(entry.attempts, record.attempt if record else 0),
            started_at=record.started_at if record else None,
            failed_reason=failed or None,
        )
    return facts


def open_database(layout: Layout, db_override: Optional[str], tracker: Optional[str] = None) -> DatabaseLocation:
    """Locate the database (--tracker, else the `tracker` setting) and fail with where we looked."""
    if tracker is None:
        try:
            tracker = load_settings(layout.config).tracker
        except UserError:
            tracker = "auto"  # a broken config is reported by `start`; reading status must not depend on it
    if tracker not in TRACKER_CHOICES:
        raise UserError(f"tracker must be one of {', '.join(TRACKER_CHOICES)}, not {tracker!r} "
                        f"(see {layout.config}, or pass --tracker)")
    location = locate_tracker(layout.root, db_override, tracker, os.environ)
    if not location.exists:
        raise UserError(location.missing_message())
    return location


def take_snapshot(location: DatabaseLocation) -> Snapshot:
    try:
        return read_snapshot(location.path, generation=location.generation)
    except DatabaseBusy as exc:
        raise UserError(f"{exc}; try again in a moment", EXIT_STUCK) from None
    except DatabaseError as exc:
        raise UserError(str(exc)) from None


def collect_status(layout: Layout, db_override: Optional[str] = None, tracker: Optional[str] = None) -> StatusReport:
    """Read the database once and the supervisor's files, and derive every stream's state."""
    location = open_database(layout, db_override, tracker)
    snapshot = take_snapshot(location)
    run = RunState.load(layout.run_file)
    facts = worker_facts(run, live_workers(layout), held_streams(layout))
    board = build_board(snapshot.streams, facts)
    return StatusReport(location, snapshot, board, live_orchestrator(layout), run, layout)


def last_log_line(path: Path) -> str:
    """The last non-empty line of a log (read from the end: logs can be large)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(handle.tell() - 4096, 0))
            lines = [ln for ln in handle.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


# ================================================================ workers

# The worker is first a tiny Python launcher that waits for "go" on a pipe and
# only then execs the real command. The orchestrator writes the pid file before
# saying "go", so no worker ever runs without a pid file; if the orchestrator
# dies first, the launcher reads end-of-file and exits without running anything.
_LAUNCHER = (
    "import os,sys\n"
    "fd=int(sys.argv[1]); go=os.read(fd,2); os.close(fd)\n"
    "if go!=b'go': sys.exit(75)\n"
    "try: os.execvp(sys.argv[2], sys.argv[2:])\n"
    "except OSError as e:\n"
    "    sys.stderr.write('orchestrate: cannot run worker command %r: %s\\n' % (sys.argv[2], e)); sys.exit(127)\n"
)


# Linux refuses a single argument over 128 KiB (MAX_ARG_STRLEN), and the prompt is one
# argument: bound what it lists so that any database yields a prompt that can be passed.
PROMPT_TASKS = 100


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clean(text: str) -> str:
    return text.replace("\0", "")  # NUL cannot travel in argv or the environment


def worker_prompt(view: StreamView, tasks: Sequence[Tuple[str, str, str]], workspace: str, attempt: int,
                  how_to_update: str) -> str:
    """What the worker is asked to do: its stream, its remaining tasks, how to report."""
    open_tasks = [t for t in tasks if t[2] not in ("completed", "cancelled")]
    listed = "\n".join(f"- {_cut(tid, 100)} [{status}] {_cut(title, 300)}"
                       for tid, title, status in open_tasks[:PROMPT_TASKS])
    more = f"\n- ... and {len(open_tasks) - PROMPT_TASKS} more" if len(open_tasks) > PROMPT_TASKS else ""
    restart = (
        f"\nThis is attempt {attempt}: an earlier attempt ended before the stream was complete. "
        "Check what is already done and resume with what is left.\n"
        if attempt > 1 else ""
    )
    return _clean(
        f"You are the worker for stream {_cut(view.stream_id, 2000)!r} ({_cut(view.stream_name, 500)}) in Task Copilot "
        f"workspace {workspace!r}, started by orchestrate-kit.\n"
        f"Its remaining tasks:\n{listed or '- (none listed)'}{more}\n"
        f"{restart}"
        f"Work through them in order. {how_to_update} "
        "Work only on this stream's tasks; other streams run in parallel. "
        "The stream is done when all its tasks are completed in Task Copilot; then exit.\n"
    )


def worker_environment(view: StreamView, location: DatabaseLocation, attempt: int, token: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CLAUDECODE"}  # a nested claude refuses to start
    env.update(
        STREAM_ID=view.stream_id,
        STREAM_NAME=view.stream_name,
        ORCHESTRATOR_ATTEMPT=str(attempt),
        **location.worker_environment(),
        ORCHESTRATE_DB_FILE=str(location.path),
        ORCHESTRATE_KIT_TOKEN=token,
    )
    return {k: _clean(v) for k, v in env.items()}


@dataclass
class Worker:
    """One live worker process: ours (popen set) or adopted from an earlier orchestrator."""

    record: PidRecord
    pid_path: Path
    popen: Optional[subprocess.Popen] = None
    complete_since: Optional[float] = None

    @property
    def stream_id(self) -> str:
        return self.record.stream_id

    def exit_status(self) -> Optional[str]:
        """None while running; else the exit code (or how we know it ended)."""
        if self.popen is not None:
            code = self.popen.poll()
            if code is None:
                return None
            return f"signal {-code}" if code < 0 else f"code {code}"
        return None if self.record.is_alive() else "unknown code (adopted worker)"

    def group(self) -> Dict[int, Callable[[], List[int]]]:
        """Its process group, for terminate_groups: id -> how to list the live members."""
        return {self.record.pid: self.record.own_group_members}

    def forget(self) -> None:
        """Remove our pid file, but only if it still describes this worker."""
        current = read_pid_file(self.pid_path)
        if current is None or current.pid == self.record.pid:
            remove_file(self.pid_path)


# ================================================================ the supervisor


class Reporter:
    """Timestamped lines for the terminal or the detached log."""

    def __init__(self, out: TextIO = sys.stdout):
        self.out = out

    def say(self, message: str) -> None:
        self.out.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
        self.out.flush()


class Supervisor:
    """The loop: watch the database and the workers, start what is ready, restart what failed."""

    def __init__(self, layout: Layout, settings: Settings, location: DatabaseLocation,
                 selection: Optional[Set[str]], reporter: Reporter):
        self.layout, self.settings, self.location = layout, settings, location
        self.selection = selection
        self.say = reporter.say
        self.db = location.open()
        self.run = RunState(started_at=time.time())
        self.workers: Dict[str, Worker] = {}
        self.retry_at: Dict[str, float] = {}
        self.unsettled: List[Tuple[PidRecord, str]] = []  # exits seen, not yet judged
        self.snapshot: Optional[Snapshot] = None
        self.board: Optional[Board] = None  # None when its inputs changed: rebuilt on demand
        self.fresh = False
        self.stop_requested = False
        self.db_signature: Tuple = ()
        self.last_refresh = 0.0
        self.last_warning = ""
        self.wake_r, self.wake_w = os.pipe()

    # ---------------------------------------------------------------- life cycle

    def run_until_done(self) -> int:
        self._install_signal_handlers()
        self._resume_run_state()
        self._adopt_workers()
        while True:
            self._collect_exits()
            self._refresh_if_changed()
            if self.fresh:
                self._settle_exits()
                self._stop_stale_workers()
            board = self._board()
            if self.stop_requested:
                return self._shut_down(board)
            if self.fresh:
                self._start_ready(board)
                board = self._board()
            outcome = self._outcome(board)
            if outcome is not None:
                return self._finish(board, outcome)
            self._wait()

    def _install_signal_handlers(self) -> None:
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the loop at once
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._request_stop)

    def _request_stop(self, *_args) -> None:
        self.stop_requested = True  # handlers only set a flag; the loop acts

    def _resume_run_state(self) -> None:
        """Keep attempt counts across an orchestrator crash; a run that ended starts afresh."""
        previous = RunState.load(self.layout.run_file)
        if previous.ended_at is None and previous.streams:
            self.run.streams = previous.streams
            self.run.started_at = previous.started_at or self.run.started_at
        self.run.ended_at = None
        for sid in list(self.run.streams):
            if self._targets(sid) and self.run.streams[sid].failed_reason:
                self.run.streams[sid] = StreamRun()  # asked again: a failed stream gets a fresh budget
        self.run.save(self.layout.run_file)

    def _adopt_workers(self) -> None:
        """Take over live workers of an orchestrator that died, instead of starting duplicates."""
        for path, record in read_pid_dir(self.layout.pids).items():
            if record is None:
                self.say(f"removing unreadable pid file {path.name}")
                remove_file(path)
            elif record.is_alive():
                self.workers[record.stream_id] = Worker(record, path)
                self.run.stream(record.stream_id).attempts = max(
                    self.run.stream(record.stream_id).attempts, record.attempt)
                self.say(f"adopted running worker of {printable(record.stream_id)} (pid {record.pid})")
            else:
                # The process is gone (or the pid now belongs to someone else, who is
                # never signalled). Clean up what is left of our own group, then judge the exit.
                terminate_groups({record.pid: record.own_group_members}, self.settings.stop_grace)
                remove_file(path)
                self.unsettled.append((record, "unknown code (ended while no orchestrator ran)"))

    # ---------------------------------------------------------------- observing

    def _collect_exits(self) -> None:
        for sid, worker in list(self.workers.items()):
            status = worker.exit_status()
            if status is None:
                continue
            del self.workers[sid]
            self.board = None
            # Children the worker left behind in its group must not keep working unsupervised.
            terminate_groups(worker.group(), self.settings.stop_grace, self._reap)
            worker.forget()
            self.unsettled.append((worker.record, status))
            self.db_signature = ()  # its last writes may be in the database: look again

    def _reap(self) -> None:
        for worker in self.workers.values():
            if worker.popen is not None:
                worker.popen.poll()

    def _signature(self) -> Tuple:
        parts = []
        for suffix in ("", "-wal"):
            try:
                st = os.stat(f"{self.location.path}{suffix}")
                parts.append((st.st_ino, st.st_mtime_ns, st.st_size))
            except OSError:
                parts.append(None)
        return tuple(parts)

    def _refresh_if_changed(self) -> None:
        signature = self._signature()
        stale = time.monotonic() - self.last_refresh > SAFETY_REFRESH_SECONDS
        if self.snapshot is not None and self.fresh and signature == self.db_signature and not stale:
            return
        try:
            snapshot = self.db.snapshot()
        except DatabaseError as exc:
            self.fresh = False
            self._warn(str(exc) if isinstance(exc, DatabaseBusy) else f"{exc}; waiting for it to come back")
            return
        self.db_signature, self.last_refresh, self.fresh = signature, time.monotonic(), True
        if self.snapshot is None or snapshot.warnings() != self.snapshot.warnings():
            for line in snapshot.warnings():
                self.say(f"warning: {line}")
        if self.snapshot is not None:
            self._announce_completions(self.snapshot, snapshot)
        self.snapshot, self.board = snapshot, None
        self.last_warning = ""

    def _announce_completions(self, before: Snapshot, after: Snapshot) -> None:
        """Say when the database first shows a stream complete: that is what starts its dependents."""
        for sid, stream in after.streams.items():
            previous = before.streams.get(sid)
            if stream.is_complete and not (previous and previous.is_complete):
                self.say(f"{printable(sid)} complete ({stream.finished}/{stream.total} tasks)")

    def _warn(self, message: str) -> None:
        if message != self.last_warning:
            self.say(f"warning: {message}")
            self.last_warning = message

    def _board(self) -> Board:
        """The stream states, rebuilt only after the snapshot, the workers or the run changed:
        with many streams a rebuild costs milliseconds, and an idle loop must stay near 0% CPU."""
        if self.board is None:
            facts = worker_facts(self.run, {w.stream_id: w.record for w in self.workers.values()},
                                 held_streams(self.layout))
            self.board = build_board(self.snapshot.streams if self.snapshot else {}, facts)
        return self.board

    # ---------------------------------------------------------------- judging exits

    def _settle_exits(self) -> None:
        held = held_streams(self.layout)
        for record, status in self.unsettled:
            sid = record.stream_id
            stream = self.snapshot.streams.get(sid)
            entry = self.run.stream(sid)
            entry.last_exit = status
            if stream is not None and stream.is_complete:
                if status != "code 0":
                    self.say(f"{printable(sid)} worker exited with {status} after its stream completed")
            elif stream is None:
                self.say(f"{printable(sid)} is no longer in the database; its worker exited with {status}")
            elif sid in held:
                entry.failed_reason = STOPPED_BY_USER
                self.say(f"{printable(sid)} stopped by request; it will not be restarted")
            else:
                self._count_failure(sid, entry, stream.finished, stream.total, status)
        if self.unsettled:
            self.unsettled, self.board = [], None
            self.run.save(self.layout.run_file)

    def _count_failure(self, sid: str, entry: StreamRun, done: int, total: int, status: str) -> None:
        entry.failures += 1
        name = printable(sid)
        if entry.attempts > self.settings.max_restarts:
            tail = printable(last_log_line(self.layout.log_for(sid)), 200)
            entry.failed_reason = f"worker exited with {status} with {done}/{total} tasks done" + (
                f"; last log line: {tail}" if tail else "")
            self.say(f"{name} failed after {entry.attempts} attempt(s): {entry.failed_reason}")
            return
        delay = min(self.settings.restart_delay * 2 ** (entry.failures - 1), MAX_BACKOFF_SECONDS)
        self.retry_at[sid] = time.monotonic() + delay
        self.say(f"{name} worker exited with {status} with {done}/{total} tasks done; "
                 f"restart {entry.attempts} of {self.settings.max_restarts} in {delay:g}s")

    def _stop_stale_workers(self) -> None:
        """Stop workers whose stream vanished, and those lingering after their stream completed."""
        now = time.monotonic()
        for sid, worker in list(self.workers.items()):
            stream = self.snapshot.streams.get(sid)
            if stream is None:
                self.say(f"{printable(sid)} disappeared from the database; stopping its worker")
            elif stream.is_complete:
                worker.complete_since = worker.complete_since or now
                if now - worker.complete_since < self.settings.finish_grace:
                    continue
                self.say(f"{printable(sid)} is complete but its worker is still running; stopping it")
            else:
                worker.complete_since = None
                continue
            terminate_groups(worker.group(), self.settings.stop_grace, self._reap)

    # ---------------------------------------------------------------- starting

    def _targets(self, sid: str) -> bool:
        return self.selection is None or sid in self.selection

    def _startable(self, board: Board) -> List[str]:
        now = time.monotonic()
        return [
            v.stream_id for v in board.in_state(StreamState.READY)
            if self._targets(v.stream_id) and self.retry_at.get(v.stream_id, 0) <= now
        ]

    def _start_ready(self, board: Board) -> None:
        running = sum(1 for sid in self.workers if not board.views.get(sid) or
                      board.views[sid].state is not StreamState.COMPLETE)
        room = self.settings.max_parallel - running if self.settings.max_parallel else None
        for sid in start_order(board, self._startable(board)):
            if room is not None and room <= 0:
                break
            self._spawn(board.views[sid])
            self.retry_at.pop(sid, None)
            if room is not None:
                room -= 1

    def _spawn(self, view: StreamView) -> None:
        sid = view.stream_id
        entry = self.run.stream(sid)
        attempt = entry.attempts + 1
        token = secrets.token_hex(8)
        try:
            tasks = self.db.stream_tasks(sid)
        except DatabaseError:
            tasks = []
        prompt = worker_prompt(view, tasks, self.location.workspace_id, attempt, self.location.update_instructions())
        argv = [_clean(a) for a in self.settings.worker_argv()] + [prompt]
        log_path = self.layout.log_for(sid)
        go_read, go_write = os.pipe()
        with open(log_path, "ab") as log:
            log.write(f"\n=== orchestrate-kit: {sid!r} attempt {attempt} at "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')} ===\n".encode("utf-8", "replace"))
            log.flush()
            popen = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(go_read)] + argv,
                cwd=str(self.layout.root), env=worker_environment(view, self.location, attempt, token),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, pass_fds=(go_read,),
            )
        os.close(go_read)
        record = PidRecord(popen.pid, process_start_time(popen.pid) or "", sid, attempt, time.time(), token)
        pid_path = self.layout.pid_for(sid)
        write_pid_file(pid_path, record)
        entry.attempts = attempt
        self.run.save(self.layout.run_file)
        self.workers[sid] = Worker(record, pid_path, popen)
        self.board = None
        os.write(go_write, b"go")
        os.close(go_write)
        rel_log = os.path.relpath(log_path, self.layout.root)
        self.say(f"started {printable(sid)} (attempt {attempt}, pid {popen.pid}); log: {rel_log}")

    # ---------------------------------------------------------------- ending

    def _outcome(self, board: Board) -> Optional[int]:
        """None while something can still progress; else the exit code."""
        if self.workers or self.unsettled or not self.fresh:
            return None
        targets = [v for v in board.views.values() if self._targets(v.stream_id)]
        if targets and all(v.state is StreamState.COMPLETE for v in targets):
            return EXIT_OK
        if any(self.retry_at.get(v.stream_id) for v in targets if v.state is StreamState.READY):
            return None
        return None if self._startable(board) else EXIT_STUCK

    def _finish(self, board: Board, code: int) -> int:
        self._end_run(code)
        if code == EXIT_OK:
            elapsed = time.time() - self.run.started_at
            self.say(f"all {sum(1 for v in board.views.values() if self._targets(v.stream_id))} "
                     f"stream(s) complete in {format_duration(elapsed)}")
        else:
            self.say("nothing more can progress:")
            for line in self._summary(board):
                self.say(line)
        return code

    def _shut_down(self, board: Board) -> int:
        self.say(f"stopping {len(self.workers)} worker(s)")
        groups = {}
        for worker in self.workers.values():
            groups.update(worker.group())
        killed = terminate_groups(groups, self.settings.stop_grace, self._reap)
        if killed:
            self.say(f"killed {len(killed)} worker group(s) that ignored TERM for {self.settings.stop_grace:g}s")
        for worker in self.workers.values():
            if worker.popen is not None:
                worker.popen.poll()
            worker.forget()
        self.workers.clear()
        self.board = None
        code = EXIT_OK if board.all_complete() else EXIT_STUCK
        self._end_run(code)
        self.say("stopped by request")
        return code

    def _end_run(self, code: int) -> None:
        self.run.ended_at, self.run.exit_code = time.time(), code
        self.run.save(self.layout.run_file)
        self.db.close()

    def _summary(self, board: Board) -> List[str]:
        lines = []
        for view in board.views.values():
            if not self._targets(view.stream_id) or view.state is StreamState.COMPLETE:
                continue
            text = f"  {printable(view.stream_id)}: {printable(view.describe())}"
            if view.state is StreamState.FAILED and view.reason:
                text += f" ({printable(view.reason, 300)})"
            outside = [d for d in view.waiting_on if not self._targets(d)]
            if outside:
                text += " (not part of this run: " + ", ".join(printable(d) for d in outside) + ")"
            lines.append(text)
        return lines

    # ---------------------------------------------------------------- waiting

    def _wait(self) -> None:
        """Sleep until a signal (a worker exited) or the next check; never a blind long poll."""
        timeout = self.settings.poll_interval
        now = time.monotonic()
        for due in self.retry_at.values():
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


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


# ================================================================ commands


def settings_from(args: argparse.Namespace, layout: Layout) -> Settings:
    settings = load_settings(layout.config)
    overrides = {
        "max_parallel": getattr(args, "max_parallel", None),
        "max_restarts": getattr(args, "max_restarts", None),
        "poll_interval": getattr(args, "poll_interval", None),
    }
    return replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def with_dependencies(streams: Dict, selection: Iterable[str]) -> Set[str]:
    """The selected streams and everything they depend on, transitively."""
    seen: Set[str] = set()
    todo = list(selection)
    while todo:
        sid = todo.pop()
        if sid in seen:
            continue
        seen.add(sid)
        if sid in streams:
            todo.extend(streams[sid].dependencies)
    return seen


def preflight(layout: Layout, settings: Settings, args: argparse.Namespace) -> Tuple[DatabaseLocation, Optional[Set[str]], Board]:
    """Everything `start` checks before it spawns anything; each failure says how to fix it."""
    location = open_database(layout, args.db, args.tracker)
    refusal = location.worker_refusal()
    if refusal:
        raise UserError(f"no worker could open the database this run reads, so nothing was started: {refusal}")
    snapshot = take_snapshot(location)
    if not snapshot.streams:
        raise UserError(
            f"No streams found in Task Copilot database {location.path}. A task belongs to a stream "
            f"when its metadata has a streamId, e.g. {METADATA_EXAMPLE}"
            + (f" ({snapshot.warnings()[0]})" if snapshot.warnings() else ""))
    selection = set(args.streams) if args.streams else None
    unknown = sorted((selection or set()) - set(snapshot.streams))
    if unknown:
        raise UserError("unknown stream(s): " + ", ".join(printable(s) for s in unknown)
                        + ". Known: " + ", ".join(printable(s) for s in snapshot.streams))
    facts = worker_facts(RunState(), live_workers(layout), set())
    board = build_board(snapshot.streams, facts)
    scope = with_dependencies(snapshot.streams, selection) if selection else set(snapshot.streams)
    bad = {s for s in scope if board.views.get(s) and board.views[s].state is StreamState.INVALID}
    if bad:
        raise UserError("the stream graph is invalid; nothing was started:\n  "
                        + "\n  ".join(printable(m) for m in board.problems.messages(bad)))
    command = settings.worker_argv()[0]
    if shutil.which(command) is None:
        raise UserError(f"worker command {command!r} was not found on PATH. Install it, or set "
                        f"worker_command in {layout.config}")
    return location, selection, board


def cmd_start(args: argparse.Namespace, layout: Layout) -> int:
    settings = settings_from(args, layout)
    location, selection, board = preflight(layout, settings, args)
    if args.dry_run:
        return dry_run(board, selection)
    layout.make_dirs()
    for sid in (selection or held_streams(layout)):
        remove_file(layout.hold_for(sid))  # asking to start a stream lifts its stop
    if args.detach:
        lock = acquire_lock(layout)  # taken here, so a refusal is reported here; the child inherits it
        try:
            return detach(args, layout, lock)
        finally:
            os.close(lock)
    lock = inherited_lock(layout)
    if lock is None:
        lock = acquire_lock(layout)
    try:
        write_pid_file(layout.orchestrator_pid, PidRecord(os.getpid(), process_start_time(os.getpid()) or "", "", 0, time.time()))
        reporter = Reporter()
        total = len(selection) if selection else len(board.views)
        reporter.say(f"orchestrating {total} stream(s) from {location.path} "
                     f"(workspace {printable(location.workspace_id)}); stop with Ctrl-C or `orchestrate.py stop`")
        for line in (f"database {location.how} (tracker {location.generation})",) + location.notes:
            reporter.say(printable(line))
        if selection:
            for sid in sorted(selection):
                outside = [d for d in board.views[sid].waiting_on if d not in selection]
                if outside:
                    reporter.say(f"{printable(sid)} waits on " + ", ".join(printable(d) for d in outside)
                                 + ", which this run will not start")
        supervisor = Supervisor(layout, settings, location, selection, reporter)
        return supervisor.run_until_done()
    finally:
        remove_file(layout.orchestrator_pid)
        os.close(lock)


def acquire_lock(layout: Layout) -> int:
    """One orchestrator per project: an exclusive lock held for the process's life."""
    import fcntl

    fd = os.open(layout.lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        other = live_orchestrator(layout)
        who = f" (pid {other.pid})" if other else ""
        raise UserError(f"an orchestrator is already running on this project{who}. "
                        "See `orchestrate.py status`, or `orchestrate.py stop` it first.", EXIT_STUCK) from None
    return fd


def inherited_lock(layout: Layout) -> Optional[int]:
    """The project lock a `start --detach` took and handed down to us (see `detach`), if any."""
    import fcntl

    text = os.environ.pop(LOCK_FD_ENV, "")  # popped: workers must not see it
    if not text.isdigit():
        return None
    fd = int(text)
    try:
        held, lock = os.fstat(fd), os.stat(layout.lock)
        if (held.st_dev, held.st_ino) != (lock.st_dev, lock.st_ino):
            return None
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the same open file: already ours, succeeds at once
    except OSError:
        return None
    return fd


def dry_run(board: Board, selection: Optional[Set[str]]) -> int:
    ready = [v.stream_id for v in board.in_state(StreamState.READY) if selection is None or v.stream_id in selection]
    order = start_order(board, ready)
    if order:
        print("Would start now: " + ", ".join(printable(s) for s in order))
    else:
        print("Nothing would start now.")
    for view in board.views.values():
        if (selection is None or view.stream_id in selection) and view.state is not StreamState.READY:
            print(f"  {printable(view.stream_id)}: {printable(view.describe())}")
    return EXIT_OK


def detach(args: argparse.Namespace, layout: Layout, lock: int) -> int:
    """Start the orchestrator in the background and return once it has taken over.

    The caller holds the project lock and the child inherits it, so of several `start
    --detach` at once exactly one gets the lock and the others are refused in the foreground,
    with the reason, instead of reading some other process's line from the shared log.
    """
    argv = [sys.executable, str(Path(__file__).absolute())] + [a for a in args.raw_argv if a != "--detach"]
    env = dict(os.environ, **{LOCK_FD_ENV: str(lock)})
    with open(layout.orchestrator_log, "ab") as log:
        child = subprocess.Popen(argv, cwd=str(layout.root), stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True, env=env, pass_fds=(lock,))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        record = live_orchestrator(layout)
        if record and record.pid == child.pid:
            log_rel = os.path.relpath(layout.orchestrator_log, Path.cwd())
            print(f"Orchestrator started in the background (pid {child.pid}); log: {log_rel}\n"
                  "Watch it with ./watch-status, or `orchestrate.py status`.")
            return EXIT_OK
        code = child.poll()
        if code is not None:
            print(f"{PROG}: the background orchestrator exited at once (code {code}); "
                  f"see {layout.orchestrator_log}:\n  {printable(last_log_line(layout.orchestrator_log))}",
                  file=sys.stderr)
            return code or EXIT_STUCK
        time.sleep(0.05)
    print(f"{PROG}: the background orchestrator (pid {child.pid}) did not report in; see {layout.orchestrator_log}",
          file=sys.stderr)
    return EXIT_STUCK


def cmd_status(args: argparse.Namespace, layout: Layout) -> int:
    report = collect_status(layout, args.db, args.tracker)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return EXIT_OK
    print(render_status(report))
    return EXIT_OK


def render_status(report: StatusReport) -> str:
    """The plain-text status table."""
    board = report.board
    lines = [f"Workspace: {printable(report.location.workspace_id)}   Database: {report.location.path}",
             f"Tracker: {report.location.generation}, database {printable(report.location.how)}"]
    lines += [f"note: {printable(n)}" for n in report.location.notes]
    orch = report.orchestrator
    lines.append(f"Orchestrator: running (pid {orch.pid})" if orch else "Orchestrator: not running")
    lines.append("")
    rows = [("STREAM", "STATE", "TASKS", "PID", "ATTEMPTS", "NAME")]
    for view in board.views.values():
        rows.append((
            printable(view.stream_id, 40),
            printable(view.describe(), 60),
            f"{view.finished}/{view.total} ({whole_percent(view.finished, view.total)}%)",
            str(view.pid) if view.pid else "-",
            str(view.attempts),
            printable(view.stream_name, 40) if view.stream_name != view.stream_id else "",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    lines.append("")
    lines.append(overall_line(report))
    lines += [f"warning: {w}" for w in report.snapshot.warnings()]
    return "\n".join(lines)


def overall_line(report: StatusReport) -> str:
    summary = progress_summary_of(report.snapshot)
    counts = {}
    for view in report.board.views.values():
        counts[view.state.value] = counts.get(view.state.value, 0) + 1
    states = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    done = summary.completed_tasks + summary.cancelled_tasks
    return (f"Overall: {done}/{summary.total_tasks} tasks ({whole_percent(done, summary.total_tasks)}%), "
            f"{summary.completed_streams}/{summary.total_streams} streams complete" + (f"; {states}" if states else ""))


def cmd_stop(args: argparse.Namespace, layout: Layout) -> int:
    if args.stream is not None:
        return stop_stream(layout, args.stream, args.grace)
    orchestrator = live_orchestrator(layout)
    if orchestrator:
        os.kill(orchestrator.pid, signal.SIGTERM)  # it stops its own workers, then exits
        print(f"Asked the orchestrator (pid {orchestrator.pid}) to stop its workers and exit.")
        deadline = time.monotonic() + args.grace + 5
        while orchestrator.is_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
    # Workers with no orchestrator (it was killed) are stopped here; stale pid
    # files name no process of ours and are only removed, never signalled.
    records = [rec for rec in read_pid_dir(layout.pids).values() if rec]
    groups = {rec.pid: rec.own_group_members for rec in records if rec.own_group_members()}
    killed = terminate_groups(groups, args.grace)
    for path, record in read_pid_dir(layout.pids).items():
        if record is None or not record.own_group_members():
            remove_file(path)
    if groups:
        print(f"Stopped {len(groups)} worker group(s)" + (f", {len(killed)} with KILL" if killed else "") + ".")
    elif not orchestrator:
        print("Nothing to stop: no orchestrator or worker is running.")
    return EXIT_OK


def stop_stream(layout: Layout, stream_id: str, grace: float) -> int:
    """Stop one stream's worker and keep the orchestrator from restarting it."""
    record = read_pid_file(layout.pid_for(stream_id))
    members = record.own_group_members() if record and record.stream_id == stream_id else []
    if not members:
        raise UserError(f"stream {printable(stream_id)} has no running worker", EXIT_STUCK)
    layout.make_dirs()
    layout.hold_for(stream_id).write_text(stream_id, encoding="utf-8")
    killed = terminate_groups({record.pid: record.own_group_members}, grace)
    print(f"Stopped the worker of {printable(stream_id)} (pid {record.pid})" + (" with KILL" if killed else "")
          + f". It stays stopped until `orchestrate.py start {shlex.quote(printable(stream_id))}`.")
    return EXIT_OK


def cmd_logs(args: argparse.Namespace, layout: Layout) -> int:
    path = layout.log_for(args.stream)
    if not path.is_file():
        raise UserError(f"no log for stream {printable(args.stream)} yet (looked for {path})", EXIT_STUCK)
    with open(path, "rb") as handle:
        lines = handle.read().decode("utf-8", "replace").splitlines()
        for line in lines[-args.lines:] if args.lines else []:
            print(printable(line))
        if not args.follow:
            return EXIT_OK
        buffered = ""
        try:
            while True:
                chunk = handle.read().decode("utf-8", "replace")
                if not chunk:
                    time.sleep(0.2)
                    continue
                buffered += chunk
                *complete, buffered = buffered.split("\n")
                for line in complete:
                    print(printable(line), flush=True)
        except KeyboardInterrupt:
            return EXIT_OK


def cmd_plan(args: argparse.Namespace, layout: Layout) -> int:
    location = open_database(layout, args.db, args.tracker)
    snapshot = take_snapshot(location)
    task_waits = {sid: list(rec.task_waits) for sid, rec in snapshot.streams.items() if rec.task_waits}
    facts = worker_facts(RunState.load(layout.run_file), live_workers(layout), held_streams(layout))
    board = build_board(snapshot.streams, facts)
    levels: Dict[int, List[str]] = {}
    for view in board.views.values():
        if view.level is not None:
            levels.setdefault(view.level, []).append(view.stream_id)
    path = critical_path(snapshot.streams, board.order)
    ready = start_order(board, [v.stream_id for v in board.in_state(StreamState.READY)])
    problems = board.problems.messages()
    if args.json:
        print(json.dumps({
            "database": str(location.path), "tracker": location.generation, "database_found_by": location.how,
            "database_notes": list(location.notes), "task_waits": task_waits, "streams": len(board.views),
            "levels": [levels[k] for k in sorted(levels)], "critical_path": path,
            "ready": ready, "problems": problems, "warnings": snapshot.warnings(),
        }, indent=2))
    else:
        print(f"Database: {location.path} (tracker {location.generation}, {printable(location.how)})")
        for note in location.notes:
            print(f"note: {printable(note)}")
        if not board.views:
            print(f"No streams found in Task Copilot database {location.path}.")
        for level in sorted(levels):
            print(f"Level {level}: " + ", ".join(printable(s) for s in levels[level]))
        for sid, waits in task_waits.items():
            print(f"{printable(sid)} waits on task(s): " + ", ".join(printable(t) for t in waits))
        if path:
            print(f"Critical path ({len(path)} stream(s) to go): " + " -> ".join(printable(s) for s in path))
        print("Would start now: " + (", ".join(printable(s) for s in ready) or "nothing"))
        for line in problems:
            print(f"error: {printable(line)}", file=sys.stderr)
    return EXIT_USAGE if problems or not board.views else EXIT_OK


# ================================================================ main


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrate.py",
        description="Run Task Copilot streams in parallel with headless workers, each as soon as "
                    "every stream it depends on is complete.",
        epilog="Exit codes: 0 all complete; 1 stopped with failed or stuck streams; "
               "2 usage error, missing database or invalid graph.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    start = sub.add_parser("start", help="run every stream (or the named ones) as its dependencies complete")
    start.add_argument("streams", nargs="*", metavar="STREAM", help="only these streams (their incomplete dependencies are not started)")
    start.add_argument("--detach", action="store_true", help="run in the background (log: logs/orchestrator.log) and return at once")
    start.add_argument("--max-parallel", type=non_negative_int, metavar="N", help="most workers at once (0 = unlimited)")
    start.add_argument("--max-restarts", type=non_negative_int, metavar="N", help="restarts per stream before it is failed (default 10)")
    start.add_argument("--poll-interval", type=positive_float, metavar="S", help="seconds between database checks")
    start.add_argument("--db", metavar="PATH", help="the tasks.db to use (default: from TASK_DB_PATH and WORKSPACE_ID)")
    start.add_argument("--tracker", choices=TRACKER_CHOICES, help="which Task Copilot: mcp (the MCP server) or tc (the tc CLI); default: the tracker setting, auto")
    start.add_argument("--dry-run", action="store_true", help="print what would start; start nothing")
    start.set_defaults(handler=cmd_start)

    status = sub.add_parser("status", help="every stream's state, tasks, worker and attempts")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--db", metavar="PATH", help="the tasks.db to use")
    status.add_argument("--tracker", choices=TRACKER_CHOICES, help="which Task Copilot: mcp or tc (default: auto)")
    status.set_defaults(handler=cmd_status)

    stop = sub.add_parser("stop", help="stop the orchestrator and its workers (or one stream's worker)")
    stop.add_argument("stream", nargs="?", metavar="STREAM", help="stop only this stream's worker; it is not restarted")
    stop.add_argument("--grace", type=positive_float, default=Settings.stop_grace, metavar="S",
                      help="seconds between TERM and KILL (default %(default)g)")
    stop.set_defaults(handler=cmd_stop)

    logs = sub.add_parser("logs", help="show (or follow) one stream's log")
    logs.add_argument("stream", metavar="STREAM")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C ends)")
    logs.add_argument("-n", "--lines", type=non_negative_int, default=40, metavar="N", help="lines to show (default %(default)s)")
    logs.set_defaults(handler=cmd_logs)

    plan = sub.add_parser("plan", help="dependency levels, the critical path, and what would start now")
    plan.add_argument("--json", action="store_true", help="machine-readable output")
    plan.add_argument("--db", metavar="PATH", help="the tasks.db to use")
    plan.add_argument("--tracker", choices=TRACKER_CHOICES, help="which Task Copilot: mcp or tc (default: auto)")
    plan.set_defaults(handler=cmd_plan)
    return parser


def main(argv: Optional[List[str]] = None, layout: Optional[Layout] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.raw_argv = argv
    layout = layout or default_layout()
    try:
        return args.handler(args, layout)
    except UserError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # a bug: one line for the user, the traceback in a file
        crash = layout.state / "crash.log"
        try:
            layout.make_dirs()
            crash.write_text(traceback.format_exc(), encoding="utf-8")
        except OSError:
            crash = Path("(could not be written)")
        print(f"{PROG}: internal error: {exc!r}; traceback written to {crash}", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
