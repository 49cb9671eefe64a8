"""The local executor: workers as local process groups (the `Executor` interface in __init__.py).

`spawn` starts a worker as a tiny launcher that execs the real command only
after `before_go` has run (the caller records the worker there) and after the
worker's pid file is written, so no worker ever runs unrecorded. A worker is
identified by pid + start time + a token in its environment (processes.py), so
a reused pid is never taken for ours. `terminate` sends TERM (and CONT, so a
stopped process can act on it) to the whole group and returns at once; `kill`
sends KILL. What an ended worker left in its group, or carrying its token, is
a leftover: TERMed at once, KILLed once its own short grace (LEFTOVER_GRACE_SECONDS,
at most the stop grace) has passed (`tick`), never waited for: the worker itself has
already ended, and with worktrees its stream is merged only once they are gone.
`adopt` takes over the workers the pid files show after a restart; an adopted worker
is watched through a pidfd (Linux), so polling 300 of them costs what polling 300
children costs. Signalling many workers in one turn shares one look at /proc
(`processes.ProcessTable`). Standard library only, Python 3.9+.
"""

from __future__ import annotations

import os
import secrets
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import AbstractSet, Callable, Dict, List, Optional

from ..logfiles import rotate_log
from ..names import safe_name
from . import Adoption, Ended, Handle, Output, WorkerSpec
from .processes import (
    TOKEN_VARIABLE,
    PidRecord,
    ProcessTable,
    members_of,
    process_start_time,
    read_pid_dir,
    read_pid_file,
    remove_file,
    scan_processes,
    signal_worker,
    write_pid_file,
)

KILL_RECHECK_SECONDS = 0.1  # after KILL, how soon to look whether a leftover is gone
# What an ended worker left gets this long after TERM (or the stop grace, if shorter): the worker has
# said its last word, a process that answers TERM ends in milliseconds, and with worktrees its stream
# waits for them before it is merged (a TERM-deaf child held a merge for the whole stop_grace).
LEFTOVER_GRACE_SECONDS = 2.0
TABLE_SECONDS = 0.25  # one look at the processes serves the signals of one turn, never longer
REPAIR_SECONDS = 30.0  # how often the pid files of live workers are checked (an agent may delete them)
ENDED_UNSEEN = "ended while no orchestrator ran"

# The worker is first a tiny Python launcher that waits for "go" on a pipe and
# only then execs the real command. The orchestrator records the worker before
# saying "go"; if the orchestrator dies first, the launcher reads end-of-file
# and exits without running anything.
_LAUNCHER = (
    "import os,sys\n"
    "fd=int(sys.argv[1]); go=os.read(fd,2); os.close(fd)\n"
    "if go!=b'go': sys.exit(75)\n"
    "try: os.execvp(sys.argv[2], sys.argv[2:])\n"
    "except OSError as e:\n"
    "    sys.stderr.write('orchestrate: cannot run worker command %r: %s\\n' % (sys.argv[2], e)); sys.exit(127)\n"
)


@dataclass
class _Worker:
    record: PidRecord
    pid_path: Path
    handle: Handle
    output: Output
    popen: Optional[subprocess.Popen] = None  # None for a worker adopted from an earlier orchestrator
    pidfd: Optional[int] = None  # an adopted worker's (Linux): readable once it has exited


@dataclass
class _Leftover:
    """What an ended worker left in its group (or carrying its token): TERMed, KILLed at `kill_at`."""

    record: PidRecord
    kill_at: float


def handle_of(record: PidRecord) -> Handle:
    return Handle(record.stream_id, record.attempt, f"{record.pid}@{record.start_time}", record.started_at,
                  f"pid {record.pid}", (("pid", record.pid),))


@dataclass
class LocalExecutor:
    """Workers as local process groups, identified by pid + start time + token (processes.py)."""

    pids: Path  # the folder of its pid files, one per live worker
    log_path_for: Callable[[str], Path]  # where an adopted worker's output is read
    grace: float  # TERM -> KILL for leftovers
    clock: Callable[[], float] = time.monotonic
    workers: Dict[str, _Worker] = field(default_factory=dict)
    leftovers: Dict[int, _Leftover] = field(default_factory=dict)
    deadline: Optional[float] = None  # the run is stopping: every leftover is KILLed by then
    repaired_at: float = 0.0
    table: Optional[ProcessTable] = field(default=None, repr=False)  # the processes as last looked at
    table_at: float = 0.0  # when (time.monotonic)

    def pid_path(self, stream_id: str) -> Path:
        return self.pids / f"{safe_name(stream_id)}.pid"

    # ---------------------------------------------------------------- starting

    def spawn(self, spec: WorkerSpec, before_go: Callable[[Handle], None]) -> Handle:
        """Start a worker. Raises OSError (log unusable, no processes left, ...) with nothing left running."""
        problem = rotate_log(spec.log_path, spec.log_max_bytes, spec.log_keep)
        if problem:
            spec.warn(problem)
        token = secrets.token_hex(8)
        go_read, go_write = os.pipe()
        try:
            with open(spec.log_path, "ab") as log:
                log.write(spec.banner.encode("utf-8", "replace"))
                log.flush()
                offset = log.tell()
                popen = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(go_read)] + spec.argv,
                    cwd=str(spec.cwd), env={**spec.env, TOKEN_VARIABLE: token}, stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(go_read,),
                )
        except BaseException:
            os.close(go_write)
            raise
        finally:
            os.close(go_read)
        record = PidRecord(popen.pid, process_start_time(popen.pid) or "", spec.stream_id, spec.attempt,
                           time.time(), token)
        pid_path = self.pid_path(spec.stream_id)
        handle = handle_of(record)
        try:
            pid_path.parent.mkdir(parents=True, exist_ok=True)
            write_pid_file(pid_path, record)
            before_go(handle)
        except BaseException:
            os.close(go_write)  # the launcher reads end-of-file and exits without running the command
            popen.wait()
            remove_file(pid_path)
            raise
        self.workers[spec.stream_id] = _Worker(record, pid_path, handle, Output(spec.log_path, offset), popen)
        self.table = None  # a new process group: the next look at the processes must see it
        try:
            os.write(go_write, b"go")
        finally:
            os.close(go_write)
        return handle

    def adopt(self, streams: Optional[AbstractSet[str]] = None) -> Adoption:
        """Live workers of an earlier orchestrator become ours; the records of ended ones are dropped
        (what they left is ended like any leftover); unreadable pid files are removed."""
        live: List[Handle] = []
        ended = []
        notes = []
        for path, record in read_pid_dir(self.pids).items():
            if record is None:
                notes.append(f"removing unreadable pid file {path.name}")
                remove_file(path)
                continue
            if streams is not None and record.stream_id not in streams:
                continue
            handle = handle_of(record)
            if record.is_alive():
                log = self.log_path_for(record.stream_id)
                self.workers[record.stream_id] = _Worker(record, path, handle, Output(log, _size(log)),
                                                         pidfd=_open_pidfd(record))
                live.append(handle)
            else:
                self._end_leftovers(record)
                remove_file(path)
                ended.append((handle, Ended(why=ENDED_UNSEEN)))
        return Adoption(tuple(live), tuple(ended), tuple(notes))

    # ---------------------------------------------------------------- observing

    def live(self) -> Dict[str, Handle]:
        return {sid: worker.handle for sid, worker in self.workers.items()}

    def output(self, handle: Handle) -> Output:
        worker = self._worker(handle)
        if worker is not None:
            return worker.output
        log = self.log_path_for(handle.stream_id)
        return Output(log, _size(log))

    def poll(self, handle: Handle) -> Optional[Ended]:
        """None while the worker runs; else how it ended. An ended worker is forgotten, its pid
        file removed, and whatever it left in its group becomes a leftover."""
        worker = self._worker(handle)
        if worker is None:
            return Ended(why="no such worker")
        ended = _ended(worker)
        if ended is None:
            return None
        del self.workers[handle.stream_id]
        _close_pidfd(worker)
        current = read_pid_file(worker.pid_path)
        if current is None or current.pid == worker.record.pid:
            remove_file(worker.pid_path)
        self._end_leftovers(worker.record)
        return ended

    def cleaning_up(self) -> AbstractSet[str]:
        return frozenset(left.record.stream_id for left in self.leftovers.values())

    # ---------------------------------------------------------------- ending

    def terminate(self, handle: Handle) -> None:
        """TERM the worker's group (and CONT it, so a stopped group can act); returns at once."""
        worker = self._worker(handle)
        if worker is not None:
            signal_worker(worker.record, signal.SIGTERM, self._processes())  # CONT follows TERM there

    def kill(self, handle: Handle) -> None:
        worker = self._worker(handle)
        if worker is not None:
            signal_worker(worker.record, signal.SIGKILL, self._processes())

    def shutdown(self, deadline: float) -> None:
        """KILL what ended workers left by `deadline` at the latest (the run is stopping)."""
        self.deadline = deadline if self.deadline is None else min(self.deadline, deadline)
        for leftover in self.leftovers.values():
            leftover.kill_at = min(leftover.kill_at, self.deadline)
        if self.deadline <= self.clock():
            self._sweep()

    def tick(self) -> Optional[float]:
        """Reap our exited children, KILL leftovers whose grace has passed, re-create a live worker's
        pid file an agent deleted. Returns when a leftover is due next (None: none left)."""
        for worker in self.workers.values():
            if worker.popen is not None:
                worker.popen.poll()  # no zombie lingers
        now = self.clock()
        if now - self.repaired_at >= REPAIR_SECONDS:
            self.repaired_at = now
            self._repair()
        self.table = None  # the sweep looks afresh, and the next turn after it
        try:
            return self._sweep()
        finally:
            self.table = None

    # ---------------------------------------------------------------- inside

    def _worker(self, handle: Handle) -> Optional[_Worker]:
        worker = self.workers.get(handle.stream_id)
        return worker if worker is not None and worker.handle.key == handle.key else None

    def _processes(self) -> ProcessTable:
        """A look at the processes shared by every worker signalled in one turn (one /proc scan)."""
        if self.table is None or time.monotonic() - self.table_at > TABLE_SECONDS:
            self.table, self.table_at = scan_processes(), time.monotonic()
        return self.table

    def _end_leftovers(self, record: PidRecord) -> None:
        """TERM what an ended worker left (its group, and any process carrying its token); `tick`
        KILLs what is still there after the leftover grace."""
        if signal_worker(record, signal.SIGTERM, self._processes()):
            kill_at = self.clock() + min(self.grace, LEFTOVER_GRACE_SECONDS)
            self.leftovers[record.pid] = _Leftover(record, kill_at if self.deadline is None
                                                   else min(kill_at, self.deadline))

    def _sweep(self) -> Optional[float]:
        now = self.clock()
        next_due: Optional[float] = None
        for pgid, leftover in list(self.leftovers.items()):
            if not members_of(leftover.record, self._processes()):
                del self.leftovers[pgid]
                continue
            if leftover.kill_at <= now:
                signal_worker(leftover.record, signal.SIGKILL, self._processes())
                leftover.kill_at = now + KILL_RECHECK_SECONDS
            next_due = leftover.kill_at if next_due is None else min(next_due, leftover.kill_at)
        return next_due

    def _repair(self) -> None:
        for worker in self.workers.values():
            if not worker.pid_path.exists():
                try:
                    worker.pid_path.parent.mkdir(parents=True, exist_ok=True)
                    write_pid_file(worker.pid_path, worker.record)
                except OSError:
                    pass  # the next repair tries again; the worker runs on regardless


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _ended(worker: _Worker) -> Optional[Ended]:
    if worker.popen is not None:
        code = worker.popen.poll()
        if code is None:
            return None
        return Ended(signal=-code) if code < 0 else Ended(exit_code=code)
    if worker.pidfd is not None:
        poller = select.poll()  # (not select.select: a descriptor number past 1023 is fine here)
        poller.register(worker.pidfd, select.POLLIN)
        running = not poller.poll(0)  # one system call, no /proc read
    else:  # its identity (token included) was proven at adoption; pid + start time stay that process's
        running = process_start_time(worker.record.pid) == worker.record.start_time
    return None if running else Ended(why="an adopted worker, not our child")


def _open_pidfd(record: PidRecord) -> Optional[int]:
    """A pidfd for a live adopted worker (Linux 5.3+), or None (then its start time is read each poll).
    Opened after the identity check, so the start time is read again: a pid reused in between is
    not taken for the worker."""
    try:
        fd = os.pidfd_open(record.pid)  # Linux 5.3+ (AttributeError elsewhere)
    except (AttributeError, OSError):
        return None
    if process_start_time(record.pid) != record.start_time:
        os.close(fd)
        return None
    return fd


def _close_pidfd(worker: _Worker) -> None:
    if worker.pidfd is not None:
        os.close(worker.pidfd)
        worker.pidfd = None


def recorded_workers(pids: Path) -> Dict[str, Handle]:
    """Read only: the live workers the pid files in `pids` show (for `status`, `plan`, `start`)."""
    return {rec.stream_id: handle_of(rec) for rec in read_pid_dir(pids).values() if rec and rec.is_alive()}
