"""The scheduler: from one board (graph + lifecycle rows) and the time, what to do now. Pure.

`decide` is the one definition of what starts: the loop, `start --dry-run`,
`plan` and `status` all ask it. It knows max-parallel, critical-path-first
order, back-off deadlines, holds (a held or failed stream is never started),
workers that linger after their stream completed, stopping deadlines, and when
a run is over. It does no I/O and reads no clock: `now` comes in.
Standard library only, Python 3.9+.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import AbstractSet, List, Mapping, Optional

from .lifecycle import LIVE, Life, StreamState
from .settings import EXIT_OK, EXIT_STUCK, Settings
from .graph import Board, start_order

# Why the scheduler stops a worker, as the rest of a sentence that starts with the stream's id.
LINGERING = "is complete but its worker is still running; stopping it"
VANISHED = "disappeared from the database; stopping its worker"


@dataclass(frozen=True)
class Spawn:
    stream_id: str
    attempt: int


@dataclass(frozen=True)
class Stop:
    stream_id: str
    reason: str
    after: StreamState = StreamState.WAITING  # FAILED for a stall: a failed attempt


@dataclass(frozen=True)
class Pace:
    """What limits spawning beyond the graph: the account's usage limit, the gap between spawns,
    the run's budget, and when each running worker last said anything (for the stall watchdog)."""

    paused_until: Optional[float] = None  # a usage limit seen in a running worker's output
    last_spawn_at: Optional[float] = None
    budget_left: Optional[float] = None  # USD the run may still spend; None: no run budget
    last_output: Mapping[str, float] = field(default_factory=dict)
    probing: bool = False  # after a limit whose reset was unknown: one worker first, to see it has lifted


@dataclass
class Decision:
    """What to do now, and when to look again at the latest."""

    spawn: List[Spawn] = field(default_factory=list)
    stop: List[Stop] = field(default_factory=list)
    kill: List[str] = field(default_factory=list)  # stopping workers whose deadline passed
    wake_at: Optional[float] = None
    outcome: Optional[int] = None  # the run's exit code once nothing can progress
    held_back: str = ""  # why nothing starts although streams are ready: "usage limit", "run budget"


def startable(board: Board, now: float, targets: Optional[AbstractSet[str]] = None) -> List[str]:
    """Streams that may start now, best first (longest remaining path, then most tasks)."""
    ids = []
    for sid, view in board.views.items():
        life = board.rows.get(sid)
        # A handed-back merge conflict: complete in the tracker, yet its agent has work to do.
        handed_back = life is not None and bool(life.conflicts)
        if targets is not None and sid not in targets or view.graph_state is not StreamState.READY and not handed_back:
            continue
        state = life.state if life else StreamState.READY
        waits = state in (StreamState.BACKOFF, StreamState.RATE_LIMITED)
        if state is StreamState.READY or (waits and life is not None and (life.retry_at or 0) <= now):
            ids.append(sid)
    return start_order(board, ids)


def decide(board: Board, settings: Settings, now: float, targets: Optional[AbstractSet[str]] = None,
           pace: Pace = Pace()) -> Decision:
    decision = Decision()
    busy = 0
    stall = settings.stall_timeout * 60
    for sid, life in board.rows.items():
        if life.state not in LIVE:
            continue
        if life.state is StreamState.STOPPING:
            busy += 1
            if life.deadline is not None and life.deadline <= now:
                decision.kill.append(sid)
            else:
                decision.wake_at = _earliest(decision.wake_at, life.deadline)
        elif sid not in board.views:
            decision.stop.append(Stop(sid, VANISHED))
        elif life.complete_since is not None:
            due = life.complete_since + settings.finish_grace
            if due <= now:
                decision.stop.append(Stop(sid, LINGERING))
            else:
                decision.wake_at = _earliest(decision.wake_at, due)
        else:
            busy += 1
            _watch_for_stall(decision, sid, pace.last_output.get(sid), stall, now)
    _choose_spawns(decision, board, settings, now, targets, pace, busy)
    for sid, life in board.rows.items():
        waits = life.state in (StreamState.BACKOFF, StreamState.RATE_LIMITED)
        if waits and (targets is None or sid in targets) and life.retry_at and life.retry_at > now:
            decision.wake_at = _earliest(decision.wake_at, life.retry_at)
    decision.outcome = _outcome(board, decision, targets)
    return decision


def _watch_for_stall(decision: Decision, sid: str, last_output: Optional[float], stall: float, now: float) -> None:
    """A running worker silent for `stall` seconds is stopped, as a failed attempt."""
    if not stall or last_output is None:
        return
    if last_output + stall <= now:
        decision.stop.append(Stop(sid, f"stalled: no output for {stall / 60:g} min; stopping it", StreamState.FAILED))
    else:
        decision.wake_at = _earliest(decision.wake_at, last_output + stall)


def _choose_spawns(decision: Decision, board: Board, settings: Settings, now: float,
                   targets: Optional[AbstractSet[str]], pace: Pace, busy: int) -> None:
    """Ready streams, best first, as max-parallel, the usage limit, the run budget and the gap allow."""
    ready = startable(board, now, targets)
    if not ready:
        return
    limit = max([pace.paused_until or 0.0] + [life.retry_at or 0.0 for life in board.rows.values()
                                                if life.state is StreamState.RATE_LIMITED])
    if limit > now:  # the limit is the account's: no worker starts anywhere until it resets
        decision.held_back, decision.wake_at = "usage limit", _earliest(decision.wake_at, limit)
        return
    if pace.budget_left is not None and pace.budget_left <= 0:
        decision.held_back = "run budget"
        return
    room = settings.max_parallel - busy if settings.max_parallel else len(ready)
    if pace.probing:  # one worker tries whether the limit has lifted; the rest follow once it works
        if busy:
            decision.held_back = "usage limit probe"
            return
        room = min(room, 1)
    if settings.spawn_gap > 0:
        if pace.last_spawn_at is not None and now < pace.last_spawn_at + settings.spawn_gap:
            decision.wake_at = _earliest(decision.wake_at, pace.last_spawn_at + settings.spawn_gap)
            return
        room = min(room, 1)  # one now, the next after the gap: a wave of ready streams is staggered
    for sid in ready[:max(room, 0)]:
        decision.spawn.append(Spawn(sid, board.rows[sid].attempts + 1 if sid in board.rows else 1))


def _outcome(board: Board, decision: Decision, targets: Optional[AbstractSet[str]]) -> Optional[int]:
    """None while something can still progress; else the exit code."""
    if decision.spawn or any(life.state in LIVE or _merge_pending(life) for life in board.rows.values()):
        return None
    wanted = [v for sid, v in board.views.items() if targets is None or sid in targets]
    if wanted and all(v.state is StreamState.COMPLETE for v in wanted):
        return EXIT_OK
    if any(v.state in (StreamState.BACKOFF, StreamState.RATE_LIMITED) and v.graph_state is StreamState.READY
           for v in wanted):
        return None if decision.held_back != "run budget" else EXIT_STUCK
    if decision.wake_at is not None and decision.held_back != "run budget" and startable(board, decision.wake_at, targets):
        return None  # ready streams wait for the spawn gap or the usage limit
    return EXIT_STUCK


def _merge_pending(life: Life) -> bool:
    """A merge runs, or a handed-back conflict waits for its agent's next attempt."""
    return life.state is StreamState.MERGING or (life.state is StreamState.BACKOFF and bool(life.conflicts))


def _earliest(current: Optional[float], candidate: Optional[float]) -> Optional[float]:
    if candidate is None:
        return current
    return candidate if current is None else min(current, candidate)
