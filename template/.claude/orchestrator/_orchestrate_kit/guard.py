"""The loop's last-resort guard: a bug met while handling one stream fails that stream, not the run.

Everything the supervisor does for one stream (building its spec and starting it,
reading its output, merging its branch) runs inside `StreamGuard.stream(sid, doing,
now)`, and judging its worker's exit inside `StreamGuard.judging(sid, now)`. An
unexpected exception there is a bug of ours, or an input nobody foresaw: the
orchestrator must not die of it while other workers run unsupervised. The stream fails
with the reason (its worker, if one runs, is stopped first: TERM, KILL after the stop
grace, and the stream is failed once it is gone; a stream being merged is parked as a
merge problem instead, its work kept), the traceback goes to `state/crash.log`, one
line is said, and the loop goes on with the others. `start STREAM` or `--retry-failed`
runs it again (merges it again). A stream whose tasks turn out complete completes as
usual. Standard library only, Python 3.9+.
"""

from __future__ import annotations

import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, ContextManager, Dict, Iterator, Mapping

from .executor import Ended, Executor
from .lifecycle import LIVE, Event, Exited, GiveUp, Life, MergeConflict, StopRequested, StreamState
from .logfiles import rotate_log
from .names import printable

CRASH_LOG_BYTES = 1 << 20  # state/crash.log is rotated past this (one older copy kept)
DONE = (StreamState.COMPLETE, StreamState.MERGING)  # its work is done: a bug after that fails nothing


class StreamGuard:
    """One guard for the loop; `stream(...)` wraps each piece of one stream's handling."""

    def __init__(self, crash_log: Path, rows: Callable[[], Mapping[str, Life]], apply: Callable[[str, Event, float], Life],
                 executor: Executor, grace: float, say: Callable[[str], None]):
        self.crash_log, self.rows, self.apply = crash_log, rows, apply
        self.executor, self.grace, self.say = executor, grace, say
        self.failing: Dict[str, str] = {}  # stream -> why: its worker is being stopped, then it fails

    @contextmanager
    def stream(self, stream_id: str, doing: str, now: float, judging: bool = False) -> Iterator[None]:
        """Run one piece of a stream's handling; an exception fails that stream and is not raised.
        KeyboardInterrupt and SystemExit pass: they are not bugs of one stream."""
        try:
            yield
        except Exception as exc:  # the last resort: whatever it is, the run must go on
            if not stream_id:
                raise  # a step for no one stream (the pull requests' poll): not one stream's to fail
            self._crashed(stream_id, doing, exc, now, judging)
        else:
            self._settle(stream_id, now)

    def judging(self, stream_id: str, now: float) -> ContextManager[None]:
        """Judging an ended worker's exit: if that fails, the exit is consumed here (the stream's row
        leaves its live state) and the stream fails."""
        return self.stream(stream_id, "judging its exit", now, judging=True)

    def _crashed(self, sid: str, doing: str, exc: Exception, now: float, judging: bool) -> None:
        first = sid not in self.failing
        reason = self.failing.get(sid) or (f"internal error while {doing}: {type(exc).__name__}: "
                                           f"{printable(str(exc), 200)} (traceback in {self.crash_log})")
        if first:
            self._write_traceback(sid, doing)
            self.say(f"{printable(sid)}: {reason}; failing this stream, the run goes on")
        try:
            self._fail(sid, reason, now, judging)
        except Exception:  # failing it failed too: note it; the stream's row stays as it is
            self._write_traceback(sid, "failing it after an internal error")

    def _fail(self, sid: str, reason: str, now: float, judging: bool) -> None:
        handle = self.executor.live().get(sid)
        life = self.rows().get(sid, Life())
        if handle is not None or (life.state in LIVE and life.state is not StreamState.STARTING and not judging):
            # Its worker runs (stop it first), or has just ended and its exit is still to be judged:
            # the stream fails once that exit is judged (`_settle`).
            if sid not in self.failing and handle is not None:
                self.apply(sid, StopRequested(StreamState.FAILED, reason, now + self.grace), now)
                self.executor.terminate(handle)
            self.failing[sid] = reason
            return
        self.failing.pop(sid, None)
        if life.state is StreamState.MERGING:  # its work is done and kept: parked until `start STREAM`
            self.apply(sid, MergeConflict((), reason), now)
            return
        if life.state in LIVE:  # its exit, consumed here; or a worker that never started
            life = self.apply(sid, Exited(Ended(why=reason), complete=False, detail=reason), now)
        if life.state not in DONE and life.state is not StreamState.FAILED:
            self.apply(sid, GiveUp(reason), now)

    def _settle(self, sid: str, now: float) -> None:
        """After a stream's exit was judged: a stream failed while its worker ran fails now."""
        if sid in self.failing and sid not in self.executor.live():
            reason = self.failing.pop(sid)
            life = self.rows().get(sid, Life())
            if life.state not in LIVE and life.state not in DONE and life.state is not StreamState.FAILED:
                self.apply(sid, GiveUp(reason), now)
                self.say(f"{printable(sid)} failed: {reason}")

    def _write_traceback(self, sid: str, doing: str) -> None:
        try:
            self.crash_log.parent.mkdir(parents=True, exist_ok=True)
            rotate_log(self.crash_log, CRASH_LOG_BYTES, 1)
            with open(self.crash_log, "a", encoding="utf-8", errors="replace") as log:
                log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} stream {printable(sid)}, while {doing}:\n"
                          f"{traceback.format_exc()}\n")
        except OSError:
            pass  # the line said is what the user gets then
