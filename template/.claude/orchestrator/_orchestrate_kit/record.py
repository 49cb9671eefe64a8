"""The run's record as the loop keeps it: its journal, the spend cap's window, and the report at its end.

`RunRecord` is what the supervisor and the announcer write through (announce.py holds it): the
run's `Journal`, opened at `begin` with the run's first line (its settings, targets and plan) or,
when an orchestrator continues a run cut short, with a `resumed` line and what the saved table
says happened since the journal's last line (the journal is flushed only after the table is saved,
so it may lag the table but never leads it: nothing is recorded twice); each state change of a
stream; each attempt's start and end with the agent's own account; the spend cap's window
(`SpendWindow`, loaded once, added to as attempts end), whose figures reach `decide` as facts; and
the run's end, its report written to `reports/<run id>.html`. Nothing here decides anything.
Standard library only, Python 3.9+.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import AbstractSet, Callable, Dict, Mapping, Optional, Tuple

from .agent.claude import MIN_BUDGET_USD
from .executor import Adoption, Ended, Handle, WorkerSpec
from .exits import Verdict
from .graph import Board, critical_path
from .journal import RESULT_LIMIT, Journal, journal_path, plan_of, recorded, settings_of
from .lifecycle import LIVE, Life, StreamState, Table
from .settings import Layout, Settings
from .spend import SpendWindow, Standing
from .status import board_for
from .trackers import DatabaseError, Snapshot
from .watch import Reader

RESUMED_REASON = "as its saved state says (recorded when the run continued after its orchestrator stopped)"
STOPPED_AFTER = frozenset({StreamState.HELD, StreamState.WAITING, StreamState.READY})  # a stop, not a failure


class RunRecord:
    """One run's journal and spend window, fed by the loop."""

    def __init__(self, layout: Layout, settings: Settings, warn: Callable[[str], None],
                 clock: Callable[[], float] = time.time):
        self.layout, self.settings, self.warn, self.clock = layout, settings, warn, clock
        # Durations come from the monotonic clock; a loop driven by a test's clock uses that one for both.
        monotonic = time.monotonic if clock is time.time else clock
        self.journal = Journal(warn=warn, clock=clock, monotonic=monotonic, held=True)
        self.spend: Optional[SpendWindow] = None
        self.run_id = ""
        self.unended: Dict[str, int] = {}  # a continued run: attempts its journal has started and not ended
        self.live_usd = 0.0  # what running workers had cost at the last look at the spend cap

    # ---------------------------------------------------------------- the run's start

    def begin(self, table: Table, reader: Reader, targets: Optional[AbstractSet[str]], tracker: str,
              now: float) -> None:
        """Open the run's journal and write its first line (a new run) or its continuation, with the
        plan as the tracker shows it now (read here, apart from the loop's own reads)."""
        try:
            snapshot: Optional[Snapshot] = reader.snapshot()
        except DatabaseError:
            snapshot = None  # the loop says so when it reads; the plan then names the saved streams only
        self.run_id = table.run_life.run_id
        path = journal_path(self.layout.journals, self.run_id)
        before = recorded(path, self.warn)
        self.journal.open(path, self.run_id)
        if self.settings.spend_cap_usd > 0:
            self.spend = SpendWindow.load(self.layout.journals, now, self.settings.spend_cap_period)
        board = board_for(snapshot, table, {}, self.settings, now) if snapshot is not None else None
        views: Mapping[str, object] = board.views if board is not None else table.rows  # ids at least
        path_planned = critical_path(snapshot.streams, board.order) if board and snapshot else []
        self.journal.run_started(settings=settings_of(self.settings), targets=None if targets is None else sorted(targets),
                                 tracker=tracker, isolation=table.run.isolation, plan=plan_of(views, path_planned),
                                 resumed=before.events > 0, integration_branch=table.run.integration_branch)
        for sid, life in table.rows.items():  # what happened after the last line the journal got
            was = before.states.get(sid)
            if was is not None and was != life.state.value:
                self.journal.transition(sid, was, life.state.value, RESUMED_REASON)
            if sid in before.open_attempts and life.state not in LIVE:
                self.journal.attempt_ended(sid, before.open_attempts[sid], exit_code=None, signal=None,
                                           complete=life.state is StreamState.COMPLETE, ending="unknown",
                                           reason="its end was not recorded: its orchestrator stopped first")
        self.unended = before.open_attempts

    def adopted(self, adoption: Adoption, table: Table) -> None:
        """Workers found running (or ended) at the start of a continued run, and live rows whose
        worker record is gone: each gets its attempt's start if the journal never had it."""
        handles = list(adoption.live) + [handle for handle, _ in adoption.ended]
        found = {h.stream_id: (h.attempt, h.where) for h in handles}
        found.update({sid: (life.attempts, "") for sid, life in table.rows.items()
                      if life.state in LIVE and sid not in found})
        for sid, (attempt, where) in found.items():
            if sid not in self.unended:
                self.journal.attempt_started(sid, attempt, where=where)
        self.unended = {}

    # ---------------------------------------------------------------- what happens

    def changed(self, sid: str, before: Life, after: Life) -> None:
        """A stream's row changed: its state (with the reason), and a back-off's end and failures."""
        if after.state is before.state:
            return
        self.journal.transition(sid, before.state.value, after.state.value, after.reason)
        if after.state is StreamState.BACKOFF and after.retry_at is not None:
            self.journal.backoff(sid, until=after.retry_at, failures=after.failures)

    def started(self, handle: Handle, spec: WorkerSpec, session: str, resume: bool) -> None:
        self.journal.attempt_started(handle.stream_id, handle.attempt, session_id=session, where=handle.where,
                                     workspace=str(spec.cwd), resume=resume)

    def ended(self, sid: str, ended: Ended, before: Life, after: Life, verdict: Verdict, now: float) -> None:
        """An attempt ended: its exit, the agent's account of it, and what it cost (into the spend window)."""
        exited, agent = verdict.exited, verdict.agent
        stopped = (exited.ending == "exit" and not exited.complete and before.state is StreamState.STOPPING
                   and after.state in STOPPED_AFTER)
        reason = after.reason if after.state in (StreamState.FAILED, StreamState.BACKOFF) else exited.detail
        self.journal.attempt_ended(
            sid, before.attempts, exit_code=ended.exit_code, signal=ended.signal, complete=exited.complete,
            ending="stopped" if stopped else exited.ending, reason=reason or ended.why,
            cost_usd=exited.cost_usd if agent is not None and agent.cost_usd is not None else None,
            turns=exited.turns, input_tokens=agent.input_tokens if agent else 0,
            output_tokens=agent.output_tokens if agent else 0, session_id=exited.session_id,
            result=self._result(sid, verdict))
        if self.spend is not None:
            self.spend.add(now, exited.cost_usd)

    def _result(self, sid: str, verdict: Verdict) -> str:
        """The worker's final `result` text, read from its log only when its output had one (an attempt
        without one must not show an earlier attempt's)."""
        agent = verdict.agent
        if agent is None or agent.result is None:
            return ""
        from .git.gates import last_result_text  # the log read backwards, bounded

        return last_result_text(self.layout.log_for(sid), limit=RESULT_LIMIT) or agent.result.text

    # ---------------------------------------------------------------- the spend cap

    def spend_left(self, now: float, live_usd: float) -> Tuple[Optional[float], Optional[float]]:
        """(USD every run may still spend in the cap's window, when the cap lifts if it is reached);
        (None, None) without a cap. `live_usd`: what running workers have cost so far."""
        standing = self.standing(now, live_usd)
        return (None, None) if standing is None else (standing.left_usd, standing.lifts_at)

    def standing(self, now: float, live_usd: Optional[float] = None) -> Optional[Standing]:
        if self.spend is None:
            return None
        self.live_usd = self.live_usd if live_usd is None else live_usd
        return self.spend.standing(now, self.settings.spend_cap_usd, self.live_usd, MIN_BUDGET_USD)

    def capped(self, now: float) -> None:
        standing = self.standing(now)
        if standing is not None:
            self.journal.spend_cap_reached(spent_usd=round(standing.spent_usd, 6), cap_usd=standing.cap_usd,
                                           period=standing.period)

    # ---------------------------------------------------------------- the end

    def finished(self, exit_code: int, outcome: str, cost_usd: float, board: Optional[Board]) -> Optional[Path]:
        """The run's last line, then its report; the report's path (None if it could not be written)."""
        if not self.run_id:
            return None
        from .report import report_at_end  # the report's code loads only when a run ends

        states: Dict[str, int] = {}
        for view in board.views.values() if board else ():
            states[view.state.value] = states.get(view.state.value, 0) + 1
        report = self.layout.reports / f"{self.run_id}.html"
        self.journal.run_finished(exit_code=exit_code, outcome=outcome, cost_usd=round(cost_usd, 6), states=states,
                                  report=str(report))
        self.journal.close()
        return report_at_end(self.layout, self.run_id, self.warn)
