"""The stream lifecycle: every state a stream can be in, and the one function that changes it.

Each stream has one row (`Life`) in one table. Four states are passive: the
tracker and the graph decide them (`waiting`, `ready`, `complete`, `invalid`)
and `Observed` events keep them current. The others are the supervisor's:
`starting`, `running`, `backoff` (until `retry_at`), `stopping` (until a
deadline, never a blocking wait), `held` (stopped by the user) and `failed`.
With worktree isolation (`Policy.merge`) a stream whose work is done goes to
`merging` first and is `complete` only once merged; a merge that cannot be made
parks it in `merge_conflict` or `check_failed` (PARKED) until `start STREAM`.
`transition` is the only code that changes a row; it is pure (the time comes
in with the event), so tests replay scripted events with a fake clock. The
table is saved atomically (`save_table`) so a restarted orchestrator continues
where the last one stopped; a file of the wrong shape is reported and ignored.
Standard library only, Python 3.9+.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from . import atomic

MAX_BACKOFF_SECONDS = 120.0


class StreamState(str, Enum):
    WAITING = "waiting"
    READY = "ready"
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    RATE_LIMITED = "rate_limited"  # the next issues add these four
    MERGING = "merging"
    MERGE_CONFLICT = "merge_conflict"
    CHECK_FAILED = "check_failed"
    HELD = "held"
    FAILED = "failed"
    COMPLETE = "complete"
    INVALID = "invalid"


PASSIVE = frozenset({StreamState.WAITING, StreamState.READY, StreamState.COMPLETE, StreamState.INVALID})
LIVE = frozenset({StreamState.STARTING, StreamState.RUNNING, StreamState.STOPPING})  # a worker exists
PARKED = frozenset({StreamState.MERGE_CONFLICT, StreamState.CHECK_FAILED})  # wait for the user's `start STREAM`


@dataclass(frozen=True)
class Life:
    """One stream's row: its state and what the supervisor must remember about it."""

    state: StreamState = StreamState.WAITING
    attempts: int = 0  # workers started in this run, reopened streams included
    failures: int = 0  # failed attempts since the last success: sets the back-off
    retry_at: Optional[float] = None  # backoff: when it may start again
    deadline: Optional[float] = None  # stopping: when TERM becomes KILL
    after_stop: Optional[StreamState] = None  # stopping: where the stream goes once the worker is gone
    reason: str = ""  # failed, held, stopping: why
    last_exit: str = ""  # how its last worker ended ("code 1", "signal 9", ...)
    complete_since: Optional[float] = None  # running: when the tracker first showed it complete
    ran: bool = False  # a worker of ours ran it: a reopened stream counts as a new attempt
    spent_usd: float = 0.0  # what its ended attempts cost (agent workers that report it)
    session_id: str = ""  # the agent session of its last attempt
    resume: bool = False  # the next attempt continues that session (after a usage limit)
    conflicts: Tuple[str, ...] = ()  # files of a merge conflict handed back or parked (cleared once merged)
    handed_back: bool = False  # its agent already had its one chance at a merge conflict


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class Observed:
    """The tracker and the graph say the stream is now `state` (a passive state)."""

    state: StreamState


@dataclass(frozen=True)
class Spawning:
    """A worker is being started (its identity record written, its command not yet run)."""

    attempt: int
    session_id: str = ""  # the agent session it starts or continues, when the orchestrator chose it


@dataclass(frozen=True)
class Adopted:
    """A live worker of an orchestrator that died was found and taken over."""

    attempt: int


@dataclass(frozen=True)
class Spawned:
    """The worker's command runs."""


@dataclass(frozen=True)
class SpawnFailed:
    """The worker could not be started (its log unusable, disk full, ...): a failed attempt."""

    reason: str


@dataclass(frozen=True)
class Exited:
    """The worker ended with `status`; `complete` is whether the tracker shows the stream complete.

    `ending` is what its output said of the end: `exit` (judge by the tracker), `usage_limit` (pause
    until `resume_at`; no attempt spent), `budget` (its --max-budget-usd ran out: failed, not
    retried), `fatal` (a configuration failure: the run stops; no attempt spent) or `fresh` (its
    session to resume is gone: start over; no attempt spent)."""

    status: str
    complete: bool
    detail: str = ""  # the rest of the failure reason: "with 0/2 tasks done; last log line: ..."
    ending: str = "exit"
    resume_at: Optional[float] = None
    cost_usd: float = 0.0  # what this attempt cost
    session_id: str = ""


@dataclass(frozen=True)
class StopRequested:
    """End the worker: TERM now, KILL at `deadline`; then go to `after` (held, failed, ready...)."""

    after: StreamState
    reason: str
    deadline: float


@dataclass(frozen=True)
class Hold:
    """The user stopped the stream while no worker ran."""

    reason: str


@dataclass(frozen=True)
class GiveUp:
    """The stream cannot be run again as it is (its budget is spent): failed, with the reason."""

    reason: str


@dataclass(frozen=True)
class Release:
    """The user asked for the stream again (`start STREAM`, `--retry-failed`): a fresh budget."""


@dataclass(frozen=True)
class Merged:
    """The stream's branch is in the integration branch (and passed the merge check)."""


@dataclass(frozen=True)
class MergeConflict:
    """Its branch does not merge: `files` conflict (none: another problem, said in `reason`)."""

    files: Tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class CheckFailed:
    """The merge check failed on the merged tree; the merge was undone."""

    reason: str


Event = Union[Observed, Spawning, Adopted, Spawned, SpawnFailed, Exited, StopRequested, Hold, GiveUp, Release,
              Merged, MergeConflict, CheckFailed]


@dataclass(frozen=True)
class Policy:
    """What transitions need from the settings."""

    max_restarts: int = 10
    restart_delay: float = 5.0
    merge: bool = False  # worktree isolation: finished work is merged before the stream is complete
    hand_back: bool = True  # a merge conflict goes to the stream's own agent once (conflicts = agent)

    def backoff(self, failures: int) -> float:
        """Seconds before the next attempt after `failures` failures in a row."""
        return min(self.restart_delay * 2 ** max(failures - 1, 0), MAX_BACKOFF_SECONDS)


USER_STOP = "stopped by you; `start STREAM` resumes it"


class TransitionError(ValueError):
    """An event that makes no sense in the stream's state: a bug in the caller."""


def transition(life: Life, event: Event, now: float, policy: Policy) -> Life:
    """The stream's next row. Every state change of every stream goes through here."""
    state = life.state
    if isinstance(event, Observed):
        return _observe(life, event.state, now, policy)
    if isinstance(event, Spawning):
        _expect(life, event, PASSIVE - {StreamState.COMPLETE, StreamState.INVALID}
                | {StreamState.BACKOFF, StreamState.RATE_LIMITED})
        return replace(life, state=StreamState.STARTING, attempts=event.attempt, retry_at=None, reason="",
                       complete_since=None, ran=True, session_id=event.session_id or life.session_id)
    if isinstance(event, Adopted):
        if state in LIVE:
            return replace(life, attempts=max(life.attempts, event.attempt))
        return replace(life, state=StreamState.RUNNING, attempts=max(life.attempts, event.attempt), ran=True,
                       retry_at=None, complete_since=None)
    if isinstance(event, Spawned):
        _expect(life, event, {StreamState.STARTING})
        return replace(life, state=StreamState.RUNNING)
    if isinstance(event, SpawnFailed):
        _expect(life, event, {StreamState.STARTING})
        return _failed_attempt(life, event.reason, now, policy)
    if isinstance(event, Exited):
        return _exited(life, event, now, policy)
    if isinstance(event, StopRequested):
        if state in LIVE:
            keep = state is StreamState.STOPPING and life.deadline is not None and life.deadline < event.deadline
            return replace(life, state=StreamState.STOPPING, after_stop=event.after, reason=event.reason,
                           deadline=life.deadline if keep else event.deadline)
        return _settle(life, event.after, event.reason) if event.after is StreamState.HELD else life
    if isinstance(event, Hold):
        if state in LIVE:
            raise TransitionError(f"hold while a worker runs: use StopRequested (state {state.value})")
        if state in (StreamState.COMPLETE, StreamState.MERGING):
            return life  # a merge is quick git work (or a check) that ends on its own
        return _settle(life, StreamState.HELD, event.reason)
    if isinstance(event, (Merged, MergeConflict, CheckFailed)):
        return _merge_outcome(life, event, policy)
    if isinstance(event, GiveUp):
        if state in LIVE:
            raise TransitionError(f"give up while a worker runs: use StopRequested (state {state.value})")
        return _settle(life, StreamState.FAILED, event.reason)
    if isinstance(event, Release):
        fresh = replace(life, attempts=0, failures=0, retry_at=None, reason="")
        if state in PARKED or (life.conflicts and state in (StreamState.HELD, StreamState.FAILED, StreamState.BACKOFF)):
            return replace(fresh, state=StreamState.MERGING)  # try the merge again
        if state in (StreamState.HELD, StreamState.FAILED, StreamState.BACKOFF):
            return replace(fresh, state=StreamState.WAITING)  # the next Observed says waiting or ready
        return fresh
    raise TransitionError(f"unknown event {event!r}")


def _expect(life: Life, event: Event, states) -> None:
    if life.state not in states:
        raise TransitionError(f"{type(event).__name__} in state {life.state.value}")


def _observe(life: Life, seen: StreamState, now: float, policy: Policy) -> Life:
    state = life.state
    if state is StreamState.MERGING or state in PARKED or (life.conflicts and state not in LIVE):
        return life  # its work is done; only the merge (or the user) moves it on
    if state in PASSIVE:
        if policy.merge and seen is StreamState.COMPLETE and state is not StreamState.COMPLETE and life.ran:
            return _done(life, policy)  # our worker's work, finished by other hands
        if state is StreamState.COMPLETE and seen is not StreamState.COMPLETE and life.ran:
            # Reopened after our worker completed it: a new attempt, with back-off and budget,
            # or a plan that reopens itself would respawn without end.
            return _failed_attempt(life, "its tasks were reopened after it completed", now, policy)
        return replace(life, state=seen) if seen is not state else life
    if state in LIVE:
        if seen is StreamState.COMPLETE and not life.conflicts:  # a hand-back starts complete: no lingering
            return life if life.complete_since is not None else replace(life, complete_since=now)
        return replace(life, complete_since=None) if life.complete_since is not None else life
    if seen is StreamState.COMPLETE:  # held, failed, backoff: finished by other hands
        return _done(life, policy)
    if seen is StreamState.INVALID and state is StreamState.BACKOFF:
        return _settle(life, StreamState.INVALID, "")
    return life


def _exited(life: Life, event: Exited, now: float, policy: Policy) -> Life:
    life = replace(life, last_exit=event.status, deadline=None, complete_since=None,
                   spent_usd=life.spent_usd + max(event.cost_usd, 0.0), session_id=event.session_id or life.session_id,
                   resume=False)
    if life.state is StreamState.STOPPING:
        after, reason = life.after_stop, life.reason
        life = replace(life, after_stop=None)
        if event.complete:
            return _done(life, policy)
        if after is StreamState.HELD:
            return _settle(life, StreamState.HELD, reason)
        if event.ending in AGENT_ENDINGS:  # what the agent said outranks why we were stopping it
            return _agent_ending(life, event, now)
        if after is StreamState.FAILED:
            return _failed_attempt(life, reason, now, policy)
        return _settle(life, StreamState.WAITING, "")  # shut down: neither a failure nor a hold
    _expect(life, event, LIVE)
    if event.complete:
        return _done(life, policy)
    if event.ending in AGENT_ENDINGS:
        return _agent_ending(life, event, now)
    return _failed_attempt(life, f"worker exited with {event.status} {event.detail}".rstrip(), now, policy)


# Ends the agent's own output explains: a pause, a spent budget, a configuration error, a lost session.
AGENT_ENDINGS = ("usage_limit", "budget", "fatal", "fresh")


def _agent_ending(life: Life, event: Exited, now: float) -> Life:
    """A worker ended for a reason its output gave. Only a spent budget fails the stream; the others
    spend no attempt (the account's limit, a configuration error and a lost session are not its fault)."""
    if event.ending == "budget":
        return _settle(life, StreamState.FAILED, f"budget: {event.detail}" if event.detail else "budget")
    not_counted = replace(life, attempts=max(life.attempts - 1, 0))
    if event.ending == "usage_limit":
        return replace(_settle(not_counted, StreamState.RATE_LIMITED, event.detail), retry_at=event.resume_at or now,
                       resume=bool(not_counted.session_id))
    fresh = replace(not_counted, session_id="") if event.ending == "fresh" else not_counted
    return _settle(fresh, StreamState.WAITING, "")  # the next Observed says waiting or ready


def _failed_attempt(life: Life, reason: str, now: float, policy: Policy) -> Life:
    failures = life.failures + 1
    if life.attempts > policy.max_restarts:
        return replace(life, state=StreamState.FAILED, failures=failures, retry_at=None, reason=reason)
    return replace(life, state=StreamState.BACKOFF, failures=failures, retry_at=now + policy.backoff(failures),
                   reason=reason)


def _done(life: Life, policy: Policy) -> Life:
    """Its tasks are complete: merge first with worktree isolation (when a worker of ours ran it)."""
    if policy.merge and life.ran:
        return _settle(life, StreamState.MERGING, "")
    return _settle(life, StreamState.COMPLETE, "")


def _merge_outcome(life: Life, event: Union[Merged, MergeConflict, CheckFailed], policy: Policy) -> Life:
    _expect(life, event, {StreamState.MERGING})
    if isinstance(event, Merged):
        return replace(_settle(life, StreamState.COMPLETE, ""), conflicts=(), handed_back=False)
    if isinstance(event, CheckFailed):
        return _settle(life, StreamState.CHECK_FAILED, event.reason)
    if event.files and policy.hand_back and not life.handed_back:
        # Its agent resolves it: started again through the normal spawn (an attempt that counts).
        return replace(_settle(life, StreamState.READY, "merge conflict handed back to its agent"),
                       conflicts=event.files, handed_back=True)
    return replace(_settle(life, StreamState.MERGE_CONFLICT, event.reason), conflicts=event.files)


def _settle(life: Life, state: StreamState, reason: str) -> Life:
    return replace(life, state=state, reason=reason, retry_at=None, deadline=None, after_stop=None)


# ---------------------------------------------------------------- the table on disk


@dataclass
class RunInfo:
    """The run around the table: when it started and how it ended."""

    started_at: float = 0.0
    ended_at: Optional[float] = None
    exit_code: Optional[int] = None
    outcome: str = ""  # one line: "all complete", "stopped by request", ...
    isolation: str = ""  # worktree or none ("" before the first start)
    integration_branch: Optional[str] = None  # worktree: the branch every stream is merged into
    base: Optional[str] = None  # worktree: the user's HEAD when the run began
    max_restarts: Optional[int] = None  # the run's budget (config or --max-restarts): status counts with it


@dataclass
class Table:
    """Every stream's row, and the run. Saved as one JSON file, replaced atomically."""

    rows: Dict[str, Life] = field(default_factory=dict)
    run: RunInfo = field(default_factory=RunInfo)

    def get(self, stream_id: str) -> Life:
        return self.rows.get(stream_id, Life())


def table_to_json(table: Table) -> dict:
    rows = {}
    for sid, life in table.rows.items():
        row = asdict(life)
        row["state"] = life.state.value
        row["after_stop"] = life.after_stop.value if life.after_stop else None
        rows[sid] = row
    return {"version": 2, "run": asdict(table.run), "streams": rows}


def save_table(path: Path, table: Table) -> None:
    """Write atomically: a reader sees the old table or the new one, never half."""
    atomic.write_text(path, json.dumps(table_to_json(table), indent=1, sort_keys=True))


def load_table(path: Path) -> Tuple[Table, List[str]]:
    """The saved table and warnings; a missing file is an empty table, a damaged one is reported
    and replaced by an empty table (never a traceback), bad rows are dropped one by one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Table(), []
    except (OSError, ValueError) as exc:
        return Table(), [f"ignored the saved run state {path.name} ({type(exc).__name__}); starting afresh"]
    if not isinstance(data, dict) or not isinstance(data.get("streams", {}), dict):
        return Table(), [f"ignored the saved run state {path.name} (not a table); starting afresh"]
    warnings: List[str] = []
    table = Table(run=_run_from(data.get("run")))
    for sid, row in (data.get("streams") or {}).items():
        life = _life_from(row)
        if life is None:
            warnings.append(f"ignored the saved state of stream {sid!r} (damaged)")
        else:
            table.rows[sid] = life
    return table, warnings


def _number(value: object, whole: bool = False) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if whole and (value < 0 or int(value) != value):
        return None
    return int(value) if whole else float(value)


def _run_from(data: object) -> RunInfo:
    if not isinstance(data, dict):
        return RunInfo()
    code = _number(data.get("exit_code"), whole=True)
    texts = {k: data.get(k) if isinstance(data.get(k), str) and data.get(k) else None
             for k in ("integration_branch", "base")}
    budget = _number(data.get("max_restarts"), whole=True)
    return RunInfo(started_at=_number(data.get("started_at")) or 0.0, ended_at=_number(data.get("ended_at")),
                   exit_code=None if code is None else int(code), outcome=str(data.get("outcome") or ""),
                   isolation=str(data.get("isolation") or ""), max_restarts=None if budget is None else int(budget),
                   **texts)


def _life_from(row: object) -> Optional[Life]:
    if not isinstance(row, dict):
        return None
    try:
        state = StreamState(row.get("state"))
        after = StreamState(row["after_stop"]) if row.get("after_stop") else None
    except ValueError:
        return None
    counts = {k: _number(row.get(k, 0), whole=True) for k in ("attempts", "failures")}
    if None in counts.values():
        return None
    times = {k: _number(row[k]) if row.get(k) is not None else None
             for k in ("retry_at", "deadline", "complete_since")}
    texts = {k: row.get(k, "") for k in ("reason", "last_exit", "session_id")}
    if not all(isinstance(v, str) for v in texts.values()):
        return None
    conflicts = row.get("conflicts") or []
    if not isinstance(conflicts, list) or not all(isinstance(f, str) for f in conflicts):
        return None
    spent = _number(row.get("spent_usd", 0.0))
    if spent is None:
        return None
    return Life(state=state, after_stop=after, ran=bool(row.get("ran")), conflicts=tuple(conflicts),
                handed_back=bool(row.get("handed_back")), resume=bool(row.get("resume")), spent_usd=float(spent),
                **counts, **times, **texts)  # type: ignore[arg-type]


# ---------------------------------------------------------------- what users read


def describe(life: Life, now: float, max_restarts: int, waiting_on: Tuple[str, ...] = ()) -> str:
    """The state as a short phrase for `status` and the dashboard."""
    state = life.state
    if state is StreamState.WAITING:
        return "waiting on " + ", ".join(waiting_on) if waiting_on else "waiting"
    if state is StreamState.BACKOFF:
        left = max(int(math.ceil((life.retry_at or now) - now)), 0)
        return f"restarting in {left} s (attempt {life.attempts + 1} of {max_restarts + 1})"
    if state is StreamState.RATE_LIMITED:
        when = time.strftime("%H:%M", time.localtime(life.retry_at or now))
        return f"usage limit, resumes {when}" + (" (its session continues)" if life.resume else "")
    if state is StreamState.HELD:
        return life.reason or USER_STOP
    if state is StreamState.FAILED:
        return f"failed after {life.attempts} attempt{'s' if life.attempts != 1 else ''}"
    if state is StreamState.STOPPING:
        return f"stopping ({life.reason})" if life.reason else "stopping"
    if state in PARKED:
        return f"{state.value}: {life.reason}" if life.reason else state.value
    if state is StreamState.READY and life.conflicts:
        return "ready: merge conflict handed back to its agent (" + ", ".join(life.conflicts[:5]) + ")"
    return state.value
