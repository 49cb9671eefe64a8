"""What the orchestrator tells people while it runs: timestamped lines, and the `on_event` hook.

`Reporter` writes the lines (to the terminal, or the orchestrator log once the
terminal is gone). `Announcer` turns what the loop saw into those lines and
notifications: a worker's start and exit, the tracker's changes (completions,
reopened streams, new graph problems), usage limits, configuration failures,
kills, give-ups. It decides nothing. Standard library only, Python 3.9+.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Optional, Set, TextIO

from .agent.events import Fatal
from .executor import Ended, Handle
from .graph import Board
from .lifecycle import LIVE, Life, Policy, StreamState
from .names import printable
from .notify import Notifier
from .scheduler import RUN_STOPPING
from .settings import Layout
from .trackers import StreamRecord


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


def spawn_failed_line(sid: str, exc: Exception, gave_up: bool) -> str:
    return f"{printable(sid)}: its worker could not be started ({exc}); " + ("giving up" if gave_up else "will retry")


class Announcer:
    """The loop's news, said once each, with the matching `on_event` notifications."""

    def __init__(self, say, notifier: Notifier, root: Path):
        self.say, self.notifier, self.root = say, notifier, root
        self.killed: Set[str] = set()  # handles already reported killed (a KILL may be repeated)

    @classmethod
    def of(cls, reporter: Reporter, on_event: str, layout: Layout) -> "Announcer":
        """Lines through `reporter`; notifications run `on_event` (its output in the orchestrator log)."""
        return cls(reporter.say, Notifier(on_event, layout.orchestrator_log,
                                          lambda message: reporter.say(f"warning: {message}")), layout.root)

    def warn(self, message: str) -> None:
        self.say(f"warning: {message}")

    def started(self, handle: Handle, log: Path, resume: Optional[str], was_limited: bool, name: str) -> None:
        rel_log = os.path.relpath(log, self.root)
        self.say(f"started {printable(handle.stream_id)} (attempt {handle.attempt}, {handle.where}"
                 + (f", continuing session {resume}" if resume else "") + f"); log: {rel_log}")
        if was_limited:
            self.notifier.fire("usage_limit_resumed", stream_id=handle.stream_id, stream_name=name)

    def killed_worker(self, handle: Handle) -> None:
        if handle.key not in self.killed:
            self.killed.add(handle.key)
            self.say(f"{printable(handle.stream_id)} did not end after TERM within its grace; killed it")

    def exit(self, sid: str, ended: Ended, stream: Optional[StreamRecord], life: Life, policy: Policy,
             tracked: bool = True) -> None:
        """`tracked`: the tracker could be read (else `stream` is None for want of it)."""
        name, how = printable(sid), ended.describe()
        if stream is None:
            self.say(f"{name} is no longer in the database; its worker exited with {how}" if tracked
                     else f"{name} worker exited with {how} (the database cannot be read now)")
        elif life.state is StreamState.COMPLETE:
            if ended.exit_code != 0:
                self.say(f"{name} worker exited with {how} after its stream completed")
        elif life.state is StreamState.HELD:
            self.say(f"{name} stopped by request; it will not be restarted")
        elif life.state is StreamState.BACKOFF:
            self.say(f"{name} worker exited with {how} with {stream.finished}/{stream.total} tasks done; "
                     f"restart {life.attempts} of {policy.max_restarts} in {policy.backoff(life.failures):g}s")
        elif life.state is StreamState.FAILED:
            self.say(f"{name} failed after {life.attempts} attempt(s): {life.reason}")
        if life.state is StreamState.FAILED:
            self.notifier.fire("stream_failed", stream_id=sid, stream_name=stream.stream_name if stream else sid,
                               reason=life.reason, cost_usd=life.spent_usd)

    def limit(self, sid: str, message: str, until: float, known: bool) -> None:
        when = time.strftime("%H:%M:%S", time.localtime(until))
        self.say(f"usage limit hit by {printable(sid)}'s worker ({printable(message, 160)}); no worker starts "
                 f"until {when}" + ("" if known else " (reset time unknown: a documented default wait)"))
        self.notifier.fire("usage_limit", stream_id=sid, reason=message, resume_at=until)

    def fatal(self, sid: str, fatal: Fatal) -> None:
        self.say(f"configuration error, seen in {printable(sid)}'s worker: {printable(fatal.message, 300)}")
        self.say(f"fix: {fatal.fix}")
        self.notifier.fire("configuration_error", stream_id=sid, reason=fatal.message, fix=fatal.fix)

    def stopping(self, sid: str, reason: str) -> None:
        if reason != RUN_STOPPING:  # the run's own stop was said once, for every worker
            self.say(f"{printable(sid)} {reason}")

    def spawn_failed(self, sid: str, exc: Exception, gave_up: bool) -> None:
        self.say(spawn_failed_line(sid, exc, gave_up))

    def gave_up(self, sid: str) -> None:
        self.say(f"{printable(sid)} failed: its budget is spent")

    def board_changes(self, before: Optional[Board], after: Board) -> None:
        """Say what changed in the tracker: completions, reopened streams, new graph problems."""
        if before is None or not after.views:
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
