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
from typing import AbstractSet, List, Optional

from lifecycle import LIVE, Life, StreamState
from settings import EXIT_OK, EXIT_STUCK, Settings
from stream_graph import Board, start_order

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


@dataclass
class Decision:
    """What to do now, and when to look again at the latest."""

    spawn: List[Spawn] = field(default_factory=list)
    stop: List[Stop] = field(default_factory=list)
    kill: List[str] = field(default_factory=list)  # stopping workers whose deadline passed
    wake_at: Optional[float] = None
    outcome: Optional[int] = None  # the run's exit code once nothing can progress


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
        if state is StreamState.READY or (state is StreamState.BACKOFF and (life.retry_at or 0) <= now):
            ids.append(sid)
    return start_order(board, ids)


def decide(board: Board, settings: Settings, now: float, targets: Optional[AbstractSet[str]] = None) -> Decision:
    decision = Decision()
    busy = 0
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
    room = settings.max_parallel - busy if settings.max_parallel else None
    for sid in startable(board, now, targets):
        if room is not None and room <= 0:
            break
        decision.spawn.append(Spawn(sid, board.rows[sid].attempts + 1 if sid in board.rows else 1))
        if room is not None:
            room -= 1
    for sid, life in board.rows.items():
        if life.state is StreamState.BACKOFF and (targets is None or sid in targets) and life.retry_at:
            if life.retry_at > now:
                decision.wake_at = _earliest(decision.wake_at, life.retry_at)
    decision.outcome = _outcome(board, decision, targets)
    return decision


def _outcome(board: Board, decision: Decision, targets: Optional[AbstractSet[str]]) -> Optional[int]:
    """None while something can still progress; else the exit code."""
    if decision.spawn or any(life.state in LIVE or _merge_pending(life) for life in board.rows.values()):
        return None
    wanted = [v for sid, v in board.views.items() if targets is None or sid in targets]
    if wanted and all(v.state is StreamState.COMPLETE for v in wanted):
        return EXIT_OK
    if any(v.state is StreamState.BACKOFF and v.graph_state is StreamState.READY for v in wanted):
        return None
    return EXIT_STUCK


def _merge_pending(life: Life) -> bool:
    """A merge runs, or a handed-back conflict waits for its agent's next attempt."""
    return life.state is StreamState.MERGING or (life.state is StreamState.BACKOFF and bool(life.conflicts))


def _earliest(current: Optional[float], candidate: Optional[float]) -> Optional[float]:
    if candidate is None:
        return current
    return candidate if current is None else min(current, candidate)
