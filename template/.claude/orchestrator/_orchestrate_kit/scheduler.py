"""The scheduler: from one board (graph + stream rows), the run's row and the time, what to do now. Pure.

`decide` is the one definition of what happens next: the loop, `start
--dry-run`, `plan` and `status` all ask it. It knows max-parallel,
critical-path-first order, back-off deadlines, holds (a held or failed stream
is never started), budgets (a stream whose own budget is spent is given up),
the account's usage limit and its probe, the spend cap across runs (at the
cap no worker starts and the run waits for the window to roll), pacing, what an ended worker left
still being ended (that stream is neither respawned nor merged yet), merges
(in critical-path order, one at a time while a merge check runs), the merge
gate's steps (a review's commit, a pull request opened, pull requests polled
every pr_poll_interval), workers that
linger after their stream completed, stalls, stopping deadlines (KILL), and
when the run is over and with which exit code. It does no I/O and reads no
clock: `now` and the facts the loop observed come in.

Pacing: a burst of up to BURST ready streams starts at once; in a larger wave
the rest start one every `spawn_gap` seconds (a token bucket of BURST tokens,
one back every `spawn_gap`, full again once no ready stream waits for it). A
lone ready stream never waits. Standard library only, Python 3.9+.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import AbstractSet, List, Mapping, Optional, Tuple, Union

from .agent.claude import MIN_BUDGET_USD
from .graph import Board, start_order
from .lifecycle import LIVE, Life, RunLife, RunState, StreamState, handed_back
from .settings import EXIT_OK, EXIT_STUCK, EXIT_USAGE, Settings

EXIT_INTERRUPTED = 130  # Ctrl-C, as shells expect
BURST = 8  # ready streams that start together; a larger wave is paced
KILL_AGAIN_SECONDS = 1.0  # a KILLed worker still not gone is KILLed again this much later

# Why the scheduler stops a worker, as the rest of a sentence that starts with the stream's id.
LINGERING = "is complete but its worker is still running; stopping it"
VANISHED = "disappeared from the database; stopping its worker"
RUN_STOPPING = "the run is stopping"
AWAITING_REVIEW = "awaiting review"  # Finish.why: nothing else can progress while streams wait for a person


# ---------------------------------------------------------------- actions


@dataclass(frozen=True)
class Spawn:
    stream_id: str
    attempt: int
    budget_usd: Optional[float] = None  # what this attempt may spend (the stream's and the run's caps)


@dataclass(frozen=True)
class Stop:
    """TERM the worker now; KILL at `deadline` (None: the run's stop grace from now)."""

    stream_id: str
    reason: str
    after: StreamState = StreamState.WAITING  # FAILED for a stall: a failed attempt
    deadline: Optional[float] = None


@dataclass(frozen=True)
class Kill:
    stream_id: str


@dataclass(frozen=True)
class GiveUp:
    """The stream cannot run again as it is (its own budget is spent): failed, with the reason."""

    stream_id: str
    reason: str


@dataclass(frozen=True)
class Merge:
    """Merge the stream's branch into the integration branch (worktree isolation): its tip, or with an
    approval exactly the approved commit. Several in one decision are merged one after another."""

    stream_id: str


@dataclass(frozen=True)
class Gate:
    """Take the stream to its merge gate (merge_gate review or pr): commit what its worker left, then
    wait for a review, or push it and open its draft pull request. Gates need no merge slot."""

    stream_id: str


@dataclass(frozen=True)
class PollPullRequests:
    """Ask about the pull requests of the streams awaiting theirs (one step for all of them)."""


@dataclass(frozen=True)
class Shutdown:
    """The run is stopping: a running merge check ends, a merge step by `deadline`, and what ended workers
    left is gone by then."""

    deadline: float


@dataclass(frozen=True)
class Finish:
    """The run is over: its exit code, and why (`complete`, `stuck`, `run budget`, `stopped`, `configuration`)."""

    exit_code: int
    why: str


Action = Union[Kill, Stop, GiveUp, Merge, Gate, PollPullRequests, Spawn, Shutdown, Finish]
GitAction = Union[Merge, Gate, PollPullRequests]  # what the merger (git/merging.py) carries out
GIT_ACTIONS = (Merge, Gate, PollPullRequests)


@dataclass(frozen=True)
class Facts:
    """What the loop observed that the board does not hold."""

    budget_left: Optional[float] = None  # USD the run may still spend; None: no run budget
    stream_budgets: Mapping[str, float] = field(default_factory=dict)  # a stream's own cap (maxBudgetUsd)
    last_output: Mapping[str, float] = field(default_factory=dict)  # when each live worker last said anything
    cleaning_up: AbstractSet[str] = frozenset()  # an ended attempt still has something being ended
    merge_busy: bool = False  # a merge or its check runs: no other stream is merged meanwhile
    exits_pending: bool = False  # workers ended whose exits are not judged yet: the run cannot end
    fresh: bool = True  # the board was built from a current read of the tracker
    spend_left: Optional[float] = None  # USD every run together may still spend in the cap's window; None: no cap
    spend_lifts_at: Optional[float] = None  # at the cap: when enough old spending leaves the window
    merge_ready: bool = True  # the run's integration branch is set up (worktrees): streams may start and merge
    stepping: AbstractSet[str] = frozenset()  # streams whose git step runs (or is being ended): nothing new for them
    polled_at: Optional[float] = None  # when the pull requests were last asked about (None: not yet this run)
    polling: bool = False  # that step runs now
    step_deadline: Optional[float] = None  # the earliest deadline of a git step that runs: decide again then


@dataclass
class Decision:
    """What to do now, and when to look again at the latest."""

    kill: List[Kill] = field(default_factory=list)
    stop: List[Stop] = field(default_factory=list)
    give_up: List[GiveUp] = field(default_factory=list)
    merge: List[Merge] = field(default_factory=list)
    gate: List[Gate] = field(default_factory=list)
    poll: Optional[PollPullRequests] = None
    spawn: List[Spawn] = field(default_factory=list)
    shutdown: Optional[Shutdown] = None
    finish: Optional[Finish] = None
    wake_at: Optional[float] = None
    held_back: str = ""  # why nothing starts although streams are ready: "usage limit", "run budget", ...
    credit: Optional[float] = None  # the pacing's credit after these spawns (None: a full burst)
    capped: bool = False  # the spend cap is reached: the run's row says so (lifecycle.CapReached)

    def actions(self) -> List[Action]:
        """Every action, in the order the loop carries them out."""
        tail: List[Action] = [a for a in (self.shutdown, self.finish) if a is not None]
        poll: List[Action] = [self.poll] if self.poll is not None else []
        return [*self.kill, *self.stop, *self.give_up, *self.merge, *self.gate, *poll, *self.spawn, *tail]


# ---------------------------------------------------------------- deciding


def decide(board: Board, run: RunLife, settings: Settings, now: float, facts: Facts = Facts(),
           targets: Optional[AbstractSet[str]] = None) -> Decision:
    decision = Decision(credit=run.credit)
    if run.state is RunState.ENDED:
        return decision
    stopping = run.state is RunState.STOPPING
    busy = _watch_live(decision, board, run, settings, now, facts)
    if stopping:
        decision.shutdown = Shutdown(run.deadline if run.deadline is not None else now)
        decision.finish = _stopped(board, run, facts)
        decision.wake_at = earliest(decision.wake_at, facts.step_deadline)  # a merge step is ended then
        return decision
    decision.capped = facts.spend_left is not None and facts.spend_left < MIN_BUDGET_USD
    _choose_merges(decision, board, settings, facts)
    _choose_poll(decision, board, settings, now, facts)
    decision.wake_at = earliest(decision.wake_at, facts.step_deadline)
    if facts.merge_ready:
        _choose_spawns(decision, board, run, settings, now, targets, facts, busy)
    elif startable(board, now, targets):
        decision.held_back = "preparing the run's integration branch"
    for sid, life in board.rows.items():
        waits = life.state in (StreamState.BACKOFF, StreamState.RATE_LIMITED)
        if waits and (targets is None or sid in targets) and life.retry_at and life.retry_at > now:
            decision.wake_at = earliest(decision.wake_at, life.retry_at)
    if facts.fresh and facts.merge_ready and not facts.exits_pending and not facts.cleaning_up and not facts.stepping:
        decision.finish = _over(board, decision, targets, facts)
    return decision


def _watch_live(decision: Decision, board: Board, run: RunLife, settings: Settings, now: float,
                facts: Facts) -> int:
    """Stop, kill or wait on every live worker; how many take a slot of max-parallel."""
    busy = 0
    stall = settings.stall_timeout * 60
    for sid, life in board.rows.items():
        if life.state not in LIVE:
            continue
        if life.state is StreamState.STOPPING:
            busy += 1
            due = life.deadline if life.deadline is not None else now
            if run.forced or due <= now:
                decision.kill.append(Kill(sid))
                due = now + KILL_AGAIN_SECONDS
            decision.wake_at = earliest(decision.wake_at, due)
        elif run.state is RunState.STOPPING:
            busy += 1
            decision.stop.append(Stop(sid, RUN_STOPPING, StreamState.WAITING, run.deadline))
        elif sid not in board.views:
            decision.stop.append(Stop(sid, VANISHED))
        elif life.complete_since is not None:
            due = life.complete_since + settings.finish_grace
            if due <= now:
                decision.stop.append(Stop(sid, LINGERING))
            else:
                decision.wake_at = earliest(decision.wake_at, due)
        else:
            busy += 1
            _watch_for_stall(decision, sid, facts.last_output.get(sid), stall, now)
    return busy


def _watch_for_stall(decision: Decision, sid: str, last_output: Optional[float], stall: float, now: float) -> None:
    """A running worker silent for `stall` seconds is stopped, as a failed attempt."""
    if not stall or last_output is None:
        return
    if last_output + stall <= now:
        decision.stop.append(Stop(sid, f"stalled: no output for {stall / 60:g} min; stopping it", StreamState.FAILED))
    else:
        decision.wake_at = earliest(decision.wake_at, last_output + stall)


def startable(board: Board, now: float, targets: Optional[AbstractSet[str]] = None) -> List[str]:
    """Streams that may start now, best first (longest remaining path, then most tasks)."""
    ids = []
    for sid, view in board.views.items():
        life = board.rows.get(sid)
        # Handed back (a merge conflict, a reviewer's reason): complete in the tracker, yet its agent has work.
        again = life is not None and handed_back(life)
        if targets is not None and sid not in targets or view.graph_state is not StreamState.READY and not again:
            continue
        state = life.state if life else StreamState.READY
        waits = state in (StreamState.BACKOFF, StreamState.RATE_LIMITED)
        if state is StreamState.READY or (waits and life is not None and (life.retry_at or 0) <= now):
            ids.append(sid)
    return start_order(board, ids)


def needs_gate(life: Life, merge_gate: str) -> bool:
    """A stream in `merging` goes to its gate first (review or pr) unless a person approved a commit of it."""
    return merge_gate == "pr" or (merge_gate == "review" and not life.commit)


def _choose_merges(decision: Decision, board: Board, settings: Settings, facts: Facts) -> None:
    """Streams whose work is done, merged in critical-path order (a dependency unlocks the most work
    first); while a merge check runs nothing else is merged, so a failing check undoes only its own.
    Streams going to their gate need no merge slot: they touch only their own worktree and the remote."""
    if not facts.merge_ready:
        return
    waiting = [sid for sid, life in board.rows.items() if life.state is StreamState.MERGING
               and sid not in facts.cleaning_up and sid not in facts.stepping]
    known = [sid for sid in waiting if sid in board.views]  # a stream gone from the tracker merges last
    ordered = start_order(board, known) + sorted(set(waiting) - set(known))
    decision.gate = [Gate(sid) for sid in ordered if needs_gate(board.rows[sid], settings.merge_gate)]
    merges = [Merge(sid) for sid in ordered if not needs_gate(board.rows[sid], settings.merge_gate)]
    if not facts.merge_busy:
        decision.merge = merges[:1] if settings.merge_check.strip() else merges


def _choose_poll(decision: Decision, board: Board, settings: Settings, now: float, facts: Facts) -> None:
    """Pull requests are asked about every pr_poll_interval seconds while a stream awaits its own."""
    if facts.polling or not any(life.state is StreamState.AWAITING_PR for life in board.rows.values()):
        return
    due = now if facts.polled_at is None else facts.polled_at + max(settings.pr_poll_interval, 1.0)
    if due <= now:
        decision.poll = PollPullRequests()
    else:
        decision.wake_at = earliest(decision.wake_at, due)


def _choose_spawns(decision: Decision, board: Board, run: RunLife, settings: Settings, now: float,
                   targets: Optional[AbstractSet[str]], facts: Facts, busy: int) -> None:
    """Ready streams, best first, as budgets, the usage limit, max-parallel, the probe and the pacing allow."""
    ready = []
    for sid in startable(board, now, targets):
        if sid in facts.cleaning_up or sid in facts.stepping:
            continue  # what its last worker (or step) left is still being ended: its end wakes the loop
        life = board.rows.get(sid, Life())
        own = facts.stream_budgets.get(sid)
        if own is not None and own - life.spent_usd < MIN_BUDGET_USD:
            decision.give_up.append(GiveUp(sid, f"budget: {life.spent_usd:.2f} USD spent, nothing left"))
            continue
        ready.append(sid)
    if not ready:
        return
    limit = max([(run.paused_until or 0.0) if run.state is RunState.PAUSED else 0.0]
                + [life.retry_at or 0.0 for life in board.rows.values() if life.state is StreamState.RATE_LIMITED])
    if limit > now:  # the limit is the account's: no worker starts anywhere until it resets
        decision.held_back, decision.wake_at = "usage limit", earliest(decision.wake_at, limit)
        return
    if facts.budget_left is not None and facts.budget_left < MIN_BUDGET_USD:
        decision.held_back = "run budget"  # this run's own budget ends it; the spend cap only waits
        return
    if decision.capped:  # finish current, dispatch nothing: the run waits for old spending to roll out
        decision.held_back, decision.wake_at = "spend cap", earliest(decision.wake_at, facts.spend_lifts_at)
        return
    room = settings.max_parallel - busy if settings.max_parallel else len(ready)
    if run.state is RunState.PROBING:  # one worker tries whether the limit has lifted; the rest follow
        if busy:
            decision.held_back = "usage limit probe"
            return
        room = min(room, 1)
    room = max(min(room, len(ready)), 0)
    credit = pacing_credit(run, now, settings.spawn_gap)
    allowed = room if math.isinf(credit) else min(room, int(credit))
    if allowed < room:  # ready streams wait for the pacing: the next one in a gap
        decision.credit = credit - allowed
        decision.held_back = decision.held_back or "pacing"
        decision.wake_at = earliest(decision.wake_at, now + (1 - decision.credit % 1) * settings.spawn_gap)
    else:
        decision.credit = None  # nobody waits for it: the next wave gets a full burst again
    left = min((cap for cap in (facts.budget_left, facts.spend_left) if cap is not None), default=None)
    for sid in ready[:allowed]:
        life = board.rows.get(sid, Life())
        decision.spawn.append(Spawn(sid, life.attempts + 1, _budget(facts.stream_budgets.get(sid), life, left)))


def pacing_credit(run: RunLife, now: float, gap: float) -> float:
    """Spawns the pacing allows now: a full burst, less what recent spawns took, one back per `gap`."""
    if gap <= 0 or run.credit is None:
        return float(BURST) if gap > 0 else math.inf
    return min(float(BURST), run.credit + max(now - run.credit_at, 0.0) / gap)


def _budget(own: Optional[float], life: Life, run_left: Optional[float]) -> Optional[float]:
    """What this attempt may spend: the stream's cap less what its attempts cost, capped by what the
    run (max_cost_usd) and the spend cap may still spend."""
    caps = [cap for cap in (None if own is None else own - life.spent_usd, run_left) if cap is not None]
    return min(caps) if caps else None


# ---------------------------------------------------------------- the end


def _over(board: Board, decision: Decision, targets: Optional[AbstractSet[str]], facts: Facts) -> Optional[Finish]:
    """None while something can still progress; else how the run ends."""
    if decision.spawn or decision.merge or decision.gate or decision.give_up or facts.merge_busy \
            or any(life.state in LIVE or _merge_pending(life) for life in board.rows.values()):
        return None
    if decision.held_back == "spend cap":
        return None  # the run waits at the cap, never ends for it: the window rolls
    budget = decision.held_back == "run budget"
    wanted = [v for sid, v in board.views.items() if targets is None or sid in targets]
    if wanted and all(v.state is StreamState.COMPLETE for v in wanted):
        return Finish(EXIT_OK, "complete")
    if any(v.state in (StreamState.BACKOFF, StreamState.RATE_LIMITED) and v.graph_state is StreamState.READY
           for v in wanted):
        return Finish(EXIT_STUCK, "run budget") if budget else None
    if decision.wake_at is not None and not budget and startable(board, decision.wake_at, targets):
        return None  # ready streams wait for the pacing or the usage limit
    if not budget and any(life.state is StreamState.AWAITING_REVIEW for life in board.rows.values()):
        return Finish(EXIT_STUCK, AWAITING_REVIEW)
    return Finish(EXIT_STUCK, "run budget" if budget else "stuck")


def _stopped(board: Board, run: RunLife, facts: Facts) -> Optional[Finish]:
    """A stopping run ends once every worker, and whatever they left, is gone."""
    if facts.exits_pending or facts.cleaning_up or facts.merge_busy or facts.stepping \
            or any(life.state in LIVE for life in board.rows.values()):
        return None
    if run.fatal:
        return Finish(EXIT_USAGE, "configuration")
    if run.interrupted:
        return Finish(EXIT_INTERRUPTED, "stopped")
    return Finish(EXIT_OK if board.all_complete() else EXIT_STUCK, "stopped")


def _merge_pending(life: Life) -> bool:
    """A merge runs, a pull request is polled, or work handed back (a conflict, a review's reason) waits
    for its agent's next attempt. A stream awaiting review is not: it waits for a person, who may come
    while no orchestrator runs (`approve` records it; the next `start` merges it), so the run ends when
    nothing else can progress."""
    return life.state in (StreamState.MERGING, StreamState.AWAITING_PR) \
        or (life.state is StreamState.BACKOFF and handed_back(life))


def earliest(current: Optional[float], candidate: Optional[float]) -> Optional[float]:
    """The sooner of two times, either of which may be None (nothing due)."""
    if candidate is None:
        return current
    return candidate if current is None else min(current, candidate)


def first_starts(board: Board, settings: Settings, now: float,
                 targets: Optional[AbstractSet[str]] = None) -> Tuple[List[str], List[str]]:
    """For `plan` and `start --dry-run`: the ready streams a start would begin at once, and those of
    a wave larger than the burst that follow, one every `spawn_gap` seconds, in that order."""
    at_once = [s.stream_id for s in decide(board, RunLife(), settings, now, targets=targets).spawn]
    unpaced = decide(board, RunLife(), replace(settings, spawn_gap=0), now, targets=targets)
    return at_once, [s.stream_id for s in unpaced.spawn if s.stream_id not in at_once]
