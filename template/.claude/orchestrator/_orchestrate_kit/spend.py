"""Spend caps across runs: what this project's runs spent in a rolling day or week, summed from their journals.

`spend_cap_usd` (0 = none) caps what every run of the project together may spend in the last
`spend_cap_period` (`day` or `week`, rolling: the 24 hours or 7 days before now). What an attempt
cost counts at the moment it ended (the journal's `attempt_ended` cost, the CLI's own
`total_cost_usd`); what running workers have cost so far comes in as `live_usd`. The arithmetic
here is pure (events and the time in, figures out): `spent_in_period` is the definition,
`cap_lifts_at` says when enough old spending leaves the window for work to start again, and
`SpendWindow` keeps the costs of the window in memory for the loop, so a turn never re-reads a
journal; its `standing` is the one reading of where spending stands against the cap, for the loop
(record.py) and for `status` and the dashboard (`standing_of`, from the journals and live costs).
Standard library only, Python 3.9+.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, List, Mapping, Optional, Tuple

from .journal import Kind, events_of, run_ids, journal_path

PERIODS = {"day": 24 * 3600.0, "week": 7 * 24 * 3600.0}
Cost = Tuple[float, float]  # (when the attempt ended, unix seconds; what it cost, USD)


def period_seconds(period: str) -> float:
    try:
        return PERIODS[period]
    except KeyError:
        raise ValueError(f"spend_cap_period must be one of {', '.join(PERIODS)}, not {period!r}") from None


def attempt_costs(events: Iterable[Mapping[str, object]]) -> Iterator[Cost]:
    """(time, cost) of every ended attempt that reported a cost."""
    for event in events:
        if event.get("kind") != Kind.ATTEMPT_ENDED.value:
            continue
        cost, when = event.get("cost_usd"), event.get("t")
        if _amount(cost) and isinstance(when, (int, float)):
            yield float(when), float(cost)  # type: ignore[arg-type]


def spent_in_period(journals: Iterable[Iterable[Mapping[str, object]]], now: float, period: str,
                    live_usd: float = 0.0) -> float:
    """USD spent in the `period` before `now` by the runs whose events are in `journals` (one
    iterable of events per run), plus what running workers have cost so far."""
    costs = [cost for events in journals for cost in attempt_costs(events)]
    return _window_sum(costs, now, period_seconds(period)) + max(live_usd, 0.0)


def cap_lifts_at(journals: Iterable[Iterable[Mapping[str, object]]], now: float, period: str, cap_usd: float,
                 live_usd: float = 0.0) -> Optional[float]:
    """When the spending in the window falls below the cap again as old costs roll out of it
    (None: it is below the cap now, or only live costs hold it there, which never roll out)."""
    costs = [cost for events in journals for cost in attempt_costs(events)]
    return _lifts_at(costs, now, period_seconds(period), cap_usd, live_usd)


def _window_sum(costs: Iterable[Cost], now: float, seconds: float) -> float:
    return sum(cost for when, cost in costs if now - seconds < when <= now)


def _lifts_at(costs: Iterable[Cost], now: float, seconds: float, cap_usd: float, live_usd: float) -> Optional[float]:
    inside = sorted((when, cost) for when, cost in costs if now - seconds < when <= now)
    spent = sum(cost for _, cost in inside) + max(live_usd, 0.0)
    for when, cost in inside:  # oldest first: each one leaves the window at when + seconds
        if spent < cap_usd:
            break
        spent -= cost
        if spent < cap_usd:
            return when + seconds
    return None


def _amount(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def journals_since(folder: Path, since: float) -> List[Path]:
    """The journals in `folder` written to at or after `since` (by modification time): only they can
    hold costs of the window, so older runs are never opened."""
    found = []
    for run_id in run_ids(folder):
        path = journal_path(folder, run_id)
        try:
            if os.stat(path).st_mtime >= since:
                found.append(path)
        except OSError:
            continue
    return found


@dataclass
class SpendWindow:
    """The costs of one rolling window, for the loop: loaded from the journals once, then added to
    as attempts end (`add`), so `spent` and `lifts_at` never read a file."""

    period: str
    costs: List[Cost] = field(default_factory=list)

    @classmethod
    def load(cls, folder: Path, now: float, period: str) -> "SpendWindow":
        seconds = period_seconds(period)
        journals = events_of(journals_since(folder, now - seconds), kinds={Kind.ATTEMPT_ENDED.value})
        return cls(period, [cost for events in journals for cost in attempt_costs(events) if cost[0] > now - seconds])

    def add(self, when: float, cost_usd: Optional[float]) -> None:
        if _amount(cost_usd):
            self.costs.append((when, float(cost_usd)))  # type: ignore[arg-type]

    def spent(self, now: float, live_usd: float = 0.0) -> float:
        seconds = period_seconds(self.period)
        self.costs = [cost for cost in self.costs if cost[0] > now - seconds]  # what rolled out never returns
        return _window_sum(self.costs, now, seconds) + max(live_usd, 0.0)

    def lifts_at(self, now: float, cap_usd: float, live_usd: float = 0.0) -> Optional[float]:
        return _lifts_at(self.costs, now, period_seconds(self.period), cap_usd, live_usd)

    def standing(self, now: float, cap_usd: float, live_usd: float = 0.0, least_usd: float = 0.0) -> "Standing":
        """Where spending stands: reached once less than `least_usd` (the smallest budget a worker can
        be given) is left under the cap; then when enough old spending leaves the window."""
        spent = self.spent(now, live_usd)
        reached = cap_usd - spent < least_usd
        lifts = self.lifts_at(now, cap_usd - least_usd, live_usd) if reached else None
        return Standing(spent, cap_usd, self.period, reached, lifts)


@dataclass(frozen=True)
class Standing:
    """Spending in the cap's window against the cap."""

    spent_usd: float
    cap_usd: float
    period: str
    reached: bool
    lifts_at: Optional[float] = None

    @property
    def left_usd(self) -> float:
        return self.cap_usd - self.spent_usd

    def as_json(self) -> dict:
        """`status --json`'s `run.spend`."""
        return {"spent_usd": round(self.spent_usd, 6), "cap_usd": self.cap_usd, "period": self.period,
                "reached": self.reached, "lifts_at": self.lifts_at}

    def gauge(self, width: int = 20) -> str:
        """"[########------------] 8.10 of 20.00 USD in the last day" (ASCII: any terminal draws it)."""
        filled = 0 if self.cap_usd <= 0 else min(int(round(width * self.spent_usd / self.cap_usd)), width)
        return f"[{'#' * filled}{'-' * (width - filled)}] {gauge_text(self.spent_usd, self.cap_usd, self.period)}"


def standing_of(folder: Path, now: float, cap_usd: float, period: str, live_usd: float = 0.0,
                least_usd: float = 0.0) -> Standing:
    """Where spending stands, read from the journals in `folder` (for `status`: a separate process)."""
    return SpendWindow.load(folder, now, period).standing(now, cap_usd, live_usd, least_usd)


def gauge_text(spent_usd: float, cap_usd: float, period: str) -> str:
    """The gauge status and the dashboard show: "12.40 of 20.00 USD in the last day"."""
    return f"{spent_usd:.2f} of {cap_usd:.2f} USD in the last {period}"
