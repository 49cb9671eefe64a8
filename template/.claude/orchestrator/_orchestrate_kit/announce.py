"""What the orchestrator tells people while it runs: timestamped lines, the `on_event` hook, the run's journal.

`Reporter` writes the lines (to the terminal, or the orchestrator log once the
terminal is gone). `Announcer` turns what the loop saw into those lines, into
notifications and into the run's record (record.py: the journal, the spend cap's
window, the report): a worker's start and exit, every change of a stream's row,
the tracker's changes (completions, reopened streams, new graph problems), the
run's own changes (usage limits and their end, the spend cap, stopping),
configuration failures, kills, give-ups and the run's end. Every notification
says whether a person must act (`ORCHESTRATE_NEEDS_YOU`): a merge conflict or a
failed check that waits for you, a configuration error, the spend cap, a stream
failed for good. It decides nothing. Standard library only, Python 3.9+.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable, List, Mapping, Optional, Set, TextIO

from .agent.events import Fatal
from .executor import Adoption, Ended, Handle, WorkerSpec
from .exits import Verdict
from .graph import Board
from .lifecycle import LIVE, Life, Policy, RunLife, RunState, StreamState, Table
from .names import printable
from .notify import Notifier
from .record import RunRecord
from .scheduler import RUN_STOPPING
from .settings import Layout, Settings
from .spend import gauge_text
from .summary import STOPPED
from .trackers import StreamRecord

# Entering these states is news for whoever watches: the event, and whether a person must act.
# (A gate that waits for a person adds its state here, e.g. StreamState.AWAITING_REVIEW: ("awaiting_review", True).)
NOTIFY_ON_ENTER = {StreamState.FAILED: ("stream_failed", True), StreamState.MERGE_CONFLICT: ("merge_conflict", True),
                   StreamState.CHECK_FAILED: ("check_failed", True)}


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
    """The loop's news, said once each, with the matching `on_event` notifications and journal lines."""

    def __init__(self, say, notifier: Notifier, root: Path, record: RunRecord):
        self.say, self.notifier, self.root, self.record = say, notifier, root, record
        self.killed: Set[str] = set()  # handles already reported killed (a KILL may be repeated)
        self.names: Mapping[str, object] = {}  # the latest board's views: streams' names for notifications
        self.cap_told = False  # spend_cap_reached is sent once a run
        self.limit_told: Optional[float] = None  # the reset time of the last usage limit said (a known one)

    @classmethod
    def of(cls, reporter: Reporter, settings: Settings, layout: Layout,
           clock: Callable[[], float] = time.time) -> "Announcer":
        """Lines through `reporter`; notifications run `on_event` in the project's root (its output in
        the orchestrator log); the record writes the run's journal."""
        def warn(message: str) -> None:
            reporter.say(f"warning: {message}")

        notifier = Notifier(settings.on_event, layout.orchestrator_log, warn, cwd=layout.root)
        return cls(reporter.say, notifier, layout.root, RunRecord(layout, settings, warn, clock))

    def warn(self, message: str) -> None:
        self.say(f"warning: {message}")

    def _name(self, sid: str) -> str:
        return str(getattr(self.names.get(sid), "stream_name", "") or sid)

    def started(self, handle: Handle, spec: WorkerSpec, resume: Optional[str], was_limited: bool, name: str,
                session: str = "") -> None:
        rel_log = os.path.relpath(spec.log_path, self.root)
        self.say(f"started {printable(handle.stream_id)} (attempt {handle.attempt}, {handle.where}"
                 + (f", continuing session {resume}" if resume else "") + f"); log: {rel_log}")
        self.record.started(handle, spec, resume or session, bool(resume))
        if was_limited:
            self.notifier.fire("usage_limit_resumed", False, stream_id=handle.stream_id, stream_name=name)

    def killed_worker(self, handle: Handle) -> None:
        if handle.key not in self.killed:
            self.killed.add(handle.key)
            self.say(f"{printable(handle.stream_id)} did not end after TERM within its grace; killed it")

    def exit(self, sid: str, ended: Ended, stream: Optional[StreamRecord], before: Life, life: Life, policy: Policy,
             verdict: Verdict, now: float, tracked: bool = True) -> None:
        """`tracked`: the tracker could be read (else `stream` is None for want of it)."""
        self.record.ended(sid, ended, before, life, verdict, now)
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

    def changed(self, sid: str, before: Life, after: Life) -> None:
        """A stream's row changed (every transition, and what the tracker's state did to it)."""
        if after.state is before.state:
            return
        self.record.changed(sid, before, after)
        told = NOTIFY_ON_ENTER.get(after.state)
        if told is None and after.state is StreamState.READY and after.conflicts and before.state is StreamState.MERGING:
            told = ("merge_conflict", False)  # handed back to its own agent: nobody needs to act yet
        if told is not None:
            self.notifier.fire(told[0], told[1], stream_id=sid, stream_name=self._name(sid), reason=after.reason,
                               cost_usd=after.spent_usd)

    def observed(self, rows: Mapping[str, Life], board: Board) -> None:
        """The rows as the tracker and the graph left them (build_board), against the table's."""
        self.names = board.views
        for sid, life in board.rows.items():
            old = rows.get(sid)
            if old is not life:
                self.changed(sid, old or Life(), life)

    def adopted(self, adoption: Adoption, table: Table) -> None:
        """Workers an earlier orchestrator left: what the executor noted, each live one, and their attempts."""
        for note in adoption.notes:
            self.say(note)
        for handle in adoption.live:
            self.say(f"adopted running worker of {printable(handle.stream_id)} ({handle.where})")
        self.record.adopted(adoption, table)

    def run_changed(self, before: RunLife, after: RunLife, rows: Mapping[str, Life], now: float) -> None:
        """The run's own row changed: stopping, the usage limit's end, the spend cap."""
        if after.state is before.state:
            return
        if after.state is RunState.STOPPING:
            live = sum(1 for life in rows.values() if life.state in LIVE)
            if live:  # none left (a fatal error seen as the last worker ended): nothing to announce
                self.say(f"stopping {live} worker(s)")
        if before.state is RunState.PAUSED and after.state in (RunState.RUNNING, RunState.PROBING):
            self.record.journal.usage_limit_resumed()
        standing = self.record.standing(now)
        figures = gauge_text(standing.spent_usd, standing.cap_usd, standing.period) if standing else ""
        if after.state is RunState.CAPPED:
            self.record.capped(now)
            until = f" until ~{time.strftime('%H:%M', time.localtime(after.capped_until))}" if after.capped_until else ""
            self.say(f"spend cap reached ({figures}): no new worker starts{until}; running workers finish their attempt")
            if not self.cap_told:
                self.cap_told = True
                self.notifier.fire("spend_cap_reached", True, reason=f"spend cap reached: {figures}",
                                   resume_at=after.capped_until)
        elif before.state is RunState.CAPPED and after.state is RunState.RUNNING:
            self.say(f"the spend cap has room again ({figures}); workers start again")

    def finished(self, outcome: str, exit_code: int, cost_usd: float, lines: List[str], board: Optional[Board]) -> None:
        """The run's end: its last journal line and report, the closing lines, and `run_finished`,
        which needs a person when the run did not complete and nobody stopped it on purpose."""
        lines = lines + self._cap_lines(outcome)
        report = self.record.finished(exit_code, outcome, cost_usd, board)
        shown = os.path.relpath(report, self.root) if report is not None else ""
        for line in lines + ([f"report: {shown}"] if report is not None else []):
            self.say(line)
        self.notifier.fire("run_finished", exit_code != 0 and outcome != STOPPED, reason=outcome,
                           exit_code=exit_code, cost_usd=cost_usd, report=str(report or ""), summary="\n".join(lines))

    def _cap_lines(self, outcome: str) -> List[str]:
        """A run that ends at the spend cap with work left says so, and when the next run has room."""
        standing = self.record.standing(self.record.clock())
        if standing is None or not standing.reached or outcome == "all complete":
            return []
        when = f" (~{time.strftime('%H:%M', time.localtime(standing.lifts_at))})" if standing.lifts_at else ""
        return [f"the spend cap is reached ({gauge_text(standing.spent_usd, standing.cap_usd, standing.period)}): "
                f"the next run starts workers once old spending leaves the window{when}"]

    def limit(self, sid: str, message: str, until: float, known: bool) -> None:
        """Said once per limit: a worker's output shows it as it comes and its exit again, which on Ray
        can come after the reset, when the run is no longer paused (the same reset time: not said again)."""
        if known and until == self.limit_told:
            return
        self.limit_told = until if known else None
        when = time.strftime("%H:%M:%S", time.localtime(until))
        self.say(f"usage limit hit by {printable(sid)}'s worker ({printable(message, 160)}); no worker starts "
                 f"until {when}" + ("" if known else " (reset time unknown: a documented default wait)"))
        self.record.journal.usage_limit(sid, until, message, probing=not known)
        self.notifier.fire("usage_limit", False, stream_id=sid, reason=message, resume_at=until)

    def fatal(self, sid: str, fatal: Fatal) -> None:
        self.say(f"configuration error, seen in {printable(sid)}'s worker: {printable(fatal.message, 300)}")
        self.say(f"fix: {fatal.fix}")
        self.notifier.fire("configuration_error", True, stream_id=sid, reason=fatal.message, fix=fatal.fix)

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
