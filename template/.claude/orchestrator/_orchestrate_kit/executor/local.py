"""The executor: the one interface that starts, signals and observes workers. Local processes today.

`spawn(spec, before_go)` starts a worker as a tiny launcher that execs the real
command only after `before_go` has run (the caller records the worker there),
so no worker ever runs unrecorded; `poll` says whether it ended; `terminate`
sends TERM (and CONT, so a stopped process can act on it) and returns at once;
`kill` sends KILL; `adopt` takes over a worker of an orchestrator that died;
`sweep` ends what an exited worker left behind in its group, TERM first and
KILL once its grace has passed, without ever waiting. Nothing here blocks the
supervisor's loop. A cluster executor would implement the same methods.
Standard library only, Python 3.9+.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from ..logfiles import DEFAULT_KEEP, DEFAULT_MAX_BYTES, rotate_log
from .processes import PidRecord, members_of, process_start_time, read_pid_file, remove_file, signal_worker, write_pid_file

KILL_RECHECK_SECONDS = 0.1  # after KILL, how soon to look whether the group is gone

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


@dataclass(frozen=True)
class WorkerSpec:
    """Everything needed to start one attempt of one stream."""

    stream_id: str
    attempt: int
    argv: List[str]
    env: Dict[str, str]
    cwd: Path
    log_path: Path
    token: str
    banner: str  # written to the log before the worker's own output
    log_max_bytes: int = DEFAULT_MAX_BYTES  # the log is rotated before this attempt beyond this size
    log_keep: int = DEFAULT_KEEP
    warn: Callable[[str], None] = lambda _message: None


@dataclass
class _Worker:
    record: PidRecord
    pid_path: Path
    popen: Optional[subprocess.Popen] = None
    log_offset: int = 0  # where its own output starts in its log, after our banner


@dataclass
class _Leftover:
    """What an ended worker left in its group (or carrying its token): TERMed, KILLed at `kill_at`."""

    record: PidRecord
    kill_at: float


@dataclass
class LocalExecutor:
    """Workers as local process groups, identified by pid + start time + token (processes.py)."""

    pid_path_for: Callable[[str], Path]
    grace: float
    clock: Callable[[], float] = time.monotonic
    workers: Dict[str, _Worker] = field(default_factory=dict)
    leftovers: Dict[int, _Leftover] = field(default_factory=dict)

    def spawn(self, spec: WorkerSpec, before_go: Callable[[PidRecord], None]) -> PidRecord:
        """Start a worker. Raises OSError (log unusable, no processes left, ...) with nothing left running."""
        problem = rotate_log(spec.log_path, spec.log_max_bytes, spec.log_keep)
        if problem:
            spec.warn(problem)
        go_read, go_write = os.pipe()
        try:
            with open(spec.log_path, "ab") as log:
                log.write(spec.banner.encode("utf-8", "replace"))
                log.flush()
                offset = log.tell()
                popen = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(go_read)] + spec.argv,
                    cwd=str(spec.cwd), env=spec.env, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(go_read,),
                )
        except BaseException:
            os.close(go_write)
            raise
        finally:
            os.close(go_read)
        record = PidRecord(popen.pid, process_start_time(popen.pid) or "", spec.stream_id, spec.attempt,
                           time.time(), spec.token)
        pid_path = self.pid_path_for(spec.stream_id)
        try:
            write_pid_file(pid_path, record)
            before_go(record)
        except BaseException:
            os.close(go_write)  # the launcher reads end-of-file and exits without running the command
            popen.wait()
            remove_file(pid_path)
            raise
        self.workers[spec.stream_id] = _Worker(record, pid_path, popen, offset)
        try:
            os.write(go_write, b"go")
        finally:
            os.close(go_write)
        return record

    def adopt(self, record: PidRecord, pid_path: Path) -> bool:
        """Take over a live worker of an earlier orchestrator; False if it is not (or no longer) ours."""
        if not record.is_alive():
            return False
        self.workers[record.stream_id] = _Worker(record, pid_path)
        return True

    def forget_ended(self, record: PidRecord, pid_path: Path) -> None:
        """A recorded worker that ended while no orchestrator ran: end what it left, drop its record."""
        self._end_leftovers(record)
        remove_file(pid_path)

    def rewrite_record(self, record: PidRecord) -> None:
        """Write a live worker's record again (an agent deleted it)."""
        worker = self.workers.get(record.stream_id)
        if worker is not None:
            worker.pid_path.parent.mkdir(parents=True, exist_ok=True)
            write_pid_file(worker.pid_path, record)

    def log_offset(self, stream_id: str) -> int:
        worker = self.workers.get(stream_id)
        return worker.log_offset if worker else 0

    def live(self) -> Dict[str, PidRecord]:
        return {sid: worker.record for sid, worker in self.workers.items()}

    def poll(self, stream_id: str) -> Optional[str]:
        """None while the worker runs; else how it ended. An ended worker is forgotten, its pid
        file removed, and whatever it left in its group is handed to `sweep`."""
        worker = self.workers.get(stream_id)
        if worker is None:
            return "unknown code (no worker)"
        status = _exit_status(worker)
        if status is None:
            return None
        del self.workers[stream_id]
        current = read_pid_file(worker.pid_path)
        if current is None or current.pid == worker.record.pid:
            remove_file(worker.pid_path)
        self._end_leftovers(worker.record)
        return status

    def _end_leftovers(self, record: PidRecord) -> None:
        """TERM what an ended worker left (its group, and any process carrying its token); `sweep` KILLs
        what is still there after the grace."""
        if signal_worker(record, signal.SIGTERM):
            self.leftovers[record.pid] = _Leftover(record, self.clock() + self.grace)

    def terminate(self, stream_id: str) -> None:
        """TERM the worker's group (and CONT it, so a stopped group can act); returns at once."""
        worker = self.workers.get(stream_id)
        if worker is not None:
            signal_worker(worker.record, signal.SIGTERM)  # CONT follows TERM there

    def kill(self, stream_id: str) -> None:
        worker = self.workers.get(stream_id)
        if worker is not None:
            signal_worker(worker.record, signal.SIGKILL)

    def kill_all(self) -> None:
        for sid in list(self.workers):
            self.kill(sid)
        for leftover in self.leftovers.values():
            signal_worker(leftover.record, signal.SIGKILL)

    def reap(self) -> None:
        """Collect exited children of ours, so none lingers as a zombie."""
        for worker in self.workers.values():
            if worker.popen is not None:
                worker.popen.poll()

    def hurry_leftovers(self, kill_at: float) -> None:
        """KILL what ended workers left by `kill_at` at the latest (the run is stopping)."""
        for leftover in self.leftovers.values():
            leftover.kill_at = min(leftover.kill_at, kill_at)

    def has_leftovers(self, stream_id: str) -> bool:
        return any(left.record.stream_id == stream_id for left in self.leftovers.values())

    def sweep(self) -> Tuple[Optional[float], bool]:
        """KILL leftovers whose grace has passed, forget ended ones. Returns when to sweep next
        (None: nothing left) and whether any leftover is gone for good."""
        now = self.clock()
        next_due: Optional[float] = None
        gone = False
        for pgid, leftover in list(self.leftovers.items()):
            if not members_of(leftover.record):
                del self.leftovers[pgid]
                gone = True
                continue
            if leftover.kill_at <= now:
                signal_worker(leftover.record, signal.SIGKILL)
                leftover.kill_at = now + KILL_RECHECK_SECONDS
            next_due = leftover.kill_at if next_due is None else min(next_due, leftover.kill_at)
        return next_due, gone


def _exit_status(worker: _Worker) -> Optional[str]:
    if worker.popen is not None:
        code = worker.popen.poll()
        if code is None:
            return None
        return f"signal {-code}" if code < 0 else f"code {code}"
    return None if worker.record.is_alive() else "unknown code (adopted worker)"
