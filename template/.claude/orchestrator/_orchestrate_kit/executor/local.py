"""The local executor: workers as local process groups (the `Executor` interface in __init__.py).

`spawn` starts a worker as a tiny launcher that execs the real command only
after `before_go` has run (the caller records the worker there) and after the
worker's pid file is written, so no worker ever runs unrecorded. A worker is
identified by pid + start time + a token in its environment (processes.py), so
a reused pid is never taken for ours. `terminate` sends TERM (and CONT, so a
stopped process can act on it) to the whole group and returns at once; `kill`
sends KILL. What an ended worker left in its group, or carrying its token, is
a leftover: TERMed at once, KILLed once the grace has passed (`tick`), never
waited for. `adopt` takes over the workers the pid files show after a restart.
Standard library only, Python 3.9+.
"""

from __future__ import annotations

import os
import secrets
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
    members_of,
    process_start_time,
    read_pid_dir,
    read_pid_file,
    remove_file,
    signal_worker,
    write_pid_file,
)

KILL_RECHECK_SECONDS = 0.1  # after KILL, how soon to look whether a leftover is gone
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
                self.workers[record.stream_id] = _Worker(record, path, handle, Output(log, _size(log)))
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
            signal_worker(worker.record, signal.SIGTERM)  # CONT follows TERM there

    def kill(self, handle: Handle) -> None:
        worker = self._worker(handle)
        if worker is not None:
            signal_worker(worker.record, signal.SIGKILL)

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
        return self._sweep()

    # ---------------------------------------------------------------- inside

    def _worker(self, handle: Handle) -> Optional[_Worker]:
        worker = self.workers.get(handle.stream_id)
        return worker if worker is not None and worker.handle.key == handle.key else None

    def _end_leftovers(self, record: PidRecord) -> None:
        """TERM what an ended worker left (its group, and any process carrying its token); `tick`
        KILLs what is still there after the grace."""
        if signal_worker(record, signal.SIGTERM):
            kill_at = self.clock() + self.grace
            self.leftovers[record.pid] = _Leftover(record, kill_at if self.deadline is None
                                                   else min(kill_at, self.deadline))

    def _sweep(self) -> Optional[float]:
        now = self.clock()
        next_due: Optional[float] = None
        for pgid, leftover in list(self.leftovers.items()):
            if not members_of(leftover.record):
                del self.leftovers[pgid]
                continue
            if leftover.kill_at <= now:
                signal_worker(leftover.record, signal.SIGKILL)
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
    return None if worker.record.is_alive() else Ended(why="an adopted worker, not our child")


def recorded_workers(pids: Path) -> Dict[str, Handle]:
    """Read only: the live workers the pid files in `pids` show (for `status`, `plan`, `start`)."""
    return {rec.stream_id: handle_of(rec) for rec in read_pid_dir(pids).values() if rec and rec.is_alive()}
