"""The lifecycle: every state a stream and the run can be in, and the one function that changes each.

Each stream has one row (`Life`) in one table. Four states are passive: the
tracker and the graph decide them (`waiting`, `ready`, `complete`, `invalid`)
and `Observed` events keep them current. The others are the supervisor's:
`starting`, `running`, `backoff` (until `retry_at`), `stopping` (until a
deadline, never a blocking wait), `held` (stopped by the user) and `failed`.
With worktree isolation (`Policy.merge`) a stream whose work is done goes to
`merging` first and is `complete` only once merged; a merge that cannot be made
parks it in `merge_conflict` or `check_failed` (PARKED) until `start STREAM`.
A merge gate (`merge_gate`, GATED) holds a finished stream before its merge:
`awaiting_review` until a person approves the reviewed commit (then `merging`,
that commit exactly) or rejects it (back to its agent, `ready`, the reason in
its next prompt); `awaiting_pr` until its pull request is merged (`complete`)
or closed unmerged (`pr_closed`, parked). `starting` covers its worktree's
preparation: a stop then cancels the start without spending an attempt.
`transition` is the only code that changes a stream's row.

The run has a row of its own (`RunLife`): `running`, `paused` for the account's
usage limit (until its reset), `probing` after a reset that was not known (one
worker tries first), `stopping` (workers end by a deadline; a configuration
failure or Ctrl-C says how the run will end) and `ended` (with its exit code).
`transition_run` is the only code that changes it.

Both functions are pure (the time comes in with the event), so tests replay
scripted events with a fake clock. The table is saved atomically (`save_table`)
so a restarted orchestrator continues where the last one stopped; a file of the
wrong shape is reported and ignored. Standard library only, Python 3.9+.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from enum import Enum
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

from . import atomic
from .executor import Ended
from .journal import is_run_id

MAX_BACKOFF_SECONDS = 120.0


class StreamState(str, Enum):
    WAITING = "waiting"
    READY = "ready"
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    RATE_LIMITED = "rate_limited"
    MERGING = "merging"
    AWAITING_REVIEW = "awaiting_review"  # merge_gate = review: its work committed, waiting for approve or reject
    AWAITING_PR = "awaiting_pr"  # merge_gate = pr: its draft pull request waits to be merged
    MERGE_CONFLICT = "merge_conflict"
    CHECK_FAILED = "check_failed"
    PR_CLOSED = "pr_closed"  # its pull request was closed without merging: parked
    HELD = "held"
    FAILED = "failed"
    COMPLETE = "complete"
    INVALID = "invalid"


PASSIVE = frozenset({StreamState.WAITING, StreamState.READY, StreamState.COMPLETE, StreamState.INVALID})
LIVE = frozenset({StreamState.STARTING, StreamState.RUNNING, StreamState.STOPPING})  # a worker exists
PARKED = frozenset({StreamState.MERGE_CONFLICT, StreamState.CHECK_FAILED, StreamState.PR_CLOSED})  # `start STREAM`
GATED = frozenset({StreamState.AWAITING_REVIEW, StreamState.AWAITING_PR})  # a person's decision or a pull request
UNMERGED = frozenset({StreamState.MERGING}) | PARKED | GATED  # its work is done and not merged yet


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
    last_exit: Optional[Ended] = None  # how its last worker ended
    complete_since: Optional[float] = None  # running: when the tracker first showed it complete
    ran: bool = False  # a worker of ours ran it: a reopened stream counts as a new attempt
    spent_usd: float = 0.0  # what its ended attempts cost (agent workers that report it)
    turns: int = 0  # its ended attempts' agent turns (agent workers that report them)
    tokens: int = 0  # and their tokens, input and output
    session_id: str = ""  # the agent session of its last attempt
    resume: bool = False  # the next attempt continues that session (after a usage limit)
    conflicts: Tuple[str, ...] = ()  # files of a merge conflict handed back or parked (cleared once merged)
    handed_back: bool = False  # its agent already had its one chance at a merge conflict
    commit: str = ""  # its gate's commit: under review, approved (merging: exactly this one), in its pull request
    diff_stat: str = ""  # awaiting_review: what merging it brings ("3 files changed, 20 insertions(+)")
    pull_request: str = ""  # merge_gate = pr: its pull request's URL (kept once merged)
    feedback: str = ""  # the prompt's text about a rejection (or a closed pull request), until its next gate


NO_ROW = Life()  # the row of a stream the table has none for (frozen: shared)
_FRESH = {state: Life(state=state) for state in StreamState}  # NO_ROW observed in each state


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
    """The worker ended (`ended`); `complete` is whether the tracker shows the stream complete.

    `ending` is what its output said of the end: `exit` (judge by the tracker), `usage_limit` (pause
    until `resume_at`; no attempt spent), `budget` (its --max-budget-usd ran out: failed, not
    retried), `fatal` (a configuration failure: the run stops; no attempt spent) or `fresh` (its
    session to resume is gone: start over; no attempt spent)."""

    ended: Ended
    complete: bool
    detail: str = ""  # the rest of the failure reason: "with 0/2 tasks done; last log line: ..."
    ending: str = "exit"
    resume_at: Optional[float] = None
    cost_usd: float = 0.0  # what this attempt cost
    session_id: str = ""
    turns: int = 0  # this attempt's agent turns and tokens, as its output reported them
    tokens: int = 0


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


@dataclass(frozen=True)
class SpawnCancelled:
    """A start was stopped while its worktree was prepared (no worker ran): not an attempt; then `after`."""

    after: StreamState
    reason: str = ""


@dataclass(frozen=True)
class AwaitReview:
    """merge_gate = review: its work is committed at `commit`; it waits for a person's approve or reject."""

    commit: str
    diff_stat: str = ""


@dataclass(frozen=True)
class Approved:
    """A person approved the reviewed `commit`: it is merged, exactly that commit."""

    commit: str


@dataclass(frozen=True)
class Rejected:
    """A person rejected the reviewed commit: back to its agent (an attempt), `feedback` (the reviewer's
    reason, as its prompt says it) in its next prompts until its next gate."""

    feedback: str


@dataclass(frozen=True)
class PullRequestOpened:
    """merge_gate = pr: its draft pull request (`url`, from `commit`) waits to be merged; `Merged` when it is."""

    url: str
    commit: str = ""


@dataclass(frozen=True)
class PullRequestClosed:
    """Its pull request was closed without merging: parked until `start STREAM` hands it back to its agent."""

    url: str


Event = Union[Observed, Spawning, Adopted, Spawned, SpawnFailed, Exited, StopRequested, Hold, GiveUp, Release,
              Merged, MergeConflict, CheckFailed, SpawnCancelled, AwaitReview, Approved, Rejected, PullRequestOpened,
              PullRequestClosed]


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
REJECTED = "rejected in review: handed back to its agent with the reason"
PR_CLOSED_FEEDBACK = ("Its pull request {url} was closed without being merged. Read the comments there "
                      "(gh pr view {url} --comments) and address them; a new pull request is opened when you are done.")


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
    if isinstance(event, SpawnCancelled):  # stopped while its worktree was made: asked to stop, or the run stopping
        _expect(life, event, {StreamState.STARTING, StreamState.STOPPING})
        wanted = life.after_stop if state is StreamState.STOPPING else event.after
        after = StreamState.HELD if wanted is StreamState.HELD else StreamState.WAITING
        why = (life.reason if state is StreamState.STOPPING else event.reason) if after is StreamState.HELD else ""
        return replace(_settle(life, after, why), attempts=max(life.attempts - 1, 0))
    if isinstance(event, (AwaitReview, Approved, Rejected, PullRequestOpened, PullRequestClosed)):
        return _gate(life, event)
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
        if state in (StreamState.COMPLETE, StreamState.MERGING) or state in GATED:
            return life  # a merge ends on its own; a gate waits for a person or a pull request anyway
        return _settle(life, StreamState.HELD, event.reason)
    if isinstance(event, (Merged, MergeConflict, CheckFailed)):
        return _merge_outcome(life, event, policy)
    if isinstance(event, GiveUp):
        if state in LIVE:
            raise TransitionError(f"give up while a worker runs: use StopRequested (state {state.value})")
        return _settle(life, StreamState.FAILED, event.reason)
    if isinstance(event, Release):
        fresh = replace(life, attempts=0, failures=0, retry_at=None, reason="")
        if state is StreamState.PR_CLOSED:  # back to its agent, told to read the pull request's comments
            return replace(fresh, state=StreamState.READY, reason=REJECTED, resume=bool(life.session_id),
                           feedback=PR_CLOSED_FEEDBACK.format(url=life.pull_request))
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
    if state in UNMERGED or (handed_back(life) and state not in LIVE):
        return life  # its work is done; only the merge, its gate (or the user) moves it on
    if state in PASSIVE:
        if policy.merge and seen is StreamState.COMPLETE and state is not StreamState.COMPLETE and life.ran:
            return _done(life, policy)  # our worker's work, finished by other hands
        if state is StreamState.COMPLETE and seen is not StreamState.COMPLETE and life.ran:
            # Reopened after our worker completed it: a new attempt, with back-off and budget,
            # or a plan that reopens itself would respawn without end.
            return _failed_attempt(life, "its tasks were reopened after it completed", now, policy)
        if seen is state:
            return life
        return _FRESH[seen] if life is NO_ROW else replace(life, state=seen)  # (10,000 streams on a dashboard)
    if state in LIVE:
        if seen is StreamState.COMPLETE and not handed_back(life):  # a hand-back starts complete: no lingering
            return life if life.complete_since is not None else replace(life, complete_since=now)
        return replace(life, complete_since=None) if life.complete_since is not None else life
    if seen is StreamState.COMPLETE:  # held, failed, backoff: finished by other hands
        return _done(life, policy)
    if seen is StreamState.INVALID and state is StreamState.BACKOFF:
        return _settle(life, StreamState.INVALID, "")
    return life


def _exited(life: Life, event: Exited, now: float, policy: Policy) -> Life:
    life = replace(life, last_exit=event.ended, deadline=None, complete_since=None,
                   spent_usd=life.spent_usd + max(event.cost_usd, 0.0), session_id=event.session_id or life.session_id,
                   resume=False, turns=life.turns + max(event.turns, 0), tokens=life.tokens + max(event.tokens, 0))
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
    return _failed_attempt(life, f"worker exited with {event.ended.describe()} {event.detail}".rstrip(), now, policy)


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


def handed_back(life: Life) -> bool:
    """Its tracker says complete, yet its agent has work to do: a merge conflict, or a reviewer's reason."""
    return bool(life.conflicts or life.feedback)


def _gate(life: Life, event: Union[AwaitReview, Approved, Rejected, PullRequestOpened, PullRequestClosed]) -> Life:
    """The merge gate's steps: review (wait, approve, reject) and pull requests (opened, closed)."""
    if isinstance(event, AwaitReview):
        _expect(life, event, {StreamState.MERGING})
        return replace(_settle(life, StreamState.AWAITING_REVIEW, ""), commit=event.commit, diff_stat=event.diff_stat,
                       feedback="", conflicts=(), handed_back=False)
    if isinstance(event, Approved):
        _expect(life, event, {StreamState.AWAITING_REVIEW})
        return replace(_settle(life, StreamState.MERGING, ""), commit=event.commit)
    if isinstance(event, Rejected):
        _expect(life, event, {StreamState.AWAITING_REVIEW})
        return replace(_settle(life, StreamState.READY, REJECTED), commit="", diff_stat="",
                       feedback=event.feedback, resume=bool(life.session_id))
    if isinstance(event, PullRequestOpened):
        _expect(life, event, {StreamState.MERGING})
        return replace(_settle(life, StreamState.AWAITING_PR, ""), pull_request=event.url, commit=event.commit,
                       feedback="", conflicts=(), handed_back=False)
    _expect(life, event, {StreamState.AWAITING_PR})
    return replace(_settle(life, StreamState.PR_CLOSED, f"its pull request {event.url} was closed without merging; "
                                                        "`start STREAM` hands it back to its agent"))


def _merge_outcome(life: Life, event: Union[Merged, MergeConflict, CheckFailed], policy: Policy) -> Life:
    _expect(life, event, {StreamState.MERGING} | ({StreamState.AWAITING_PR} if isinstance(event, Merged) else set()))
    if isinstance(event, Merged):
        return replace(_settle(life, StreamState.COMPLETE, ""), conflicts=(), handed_back=False, commit="",
                       diff_stat="", feedback="")
    life = replace(life, commit="")  # an approval was of that merge: what fixes it is reviewed again
    if isinstance(event, CheckFailed):
        return _settle(life, StreamState.CHECK_FAILED, event.reason)
    if event.files and policy.hand_back and not life.handed_back:
        # Its agent resolves it: started again through the normal spawn (an attempt that counts).
        return replace(_settle(life, StreamState.READY, "merge conflict handed back to its agent"),
                       conflicts=event.files, handed_back=True)
    return replace(_settle(life, StreamState.MERGE_CONFLICT, event.reason), conflicts=event.files)


def _settle(life: Life, state: StreamState, reason: str) -> Life:
    return replace(life, state=state, reason=reason, retry_at=None, deadline=None, after_stop=None)


# ---------------------------------------------------------------- the run's own row


class RunState(str, Enum):
    RUNNING = "running"
    PAUSED = "paused"  # the account's usage limit: no worker starts before `paused_until`
    PROBING = "probing"  # after a reset that was not known: one worker at a time, until one gets an answer
    CAPPED = "capped"  # the spend cap across runs is reached: no worker starts (running ones finish)
    STOPPING = "stopping"  # every worker is being ended, KILLed at `deadline`; then the run ends
    ENDED = "ended"


@dataclass(frozen=True)
class RunLife:
    """The run's row: its state, and what the supervisor must remember about the run as a whole."""

    state: RunState = RunState.RUNNING
    started_at: float = 0.0
    ended_at: Optional[float] = None
    exit_code: Optional[int] = None
    outcome: str = ""  # one line: "all complete", "stopped by request", ...
    paused_until: Optional[float] = None  # paused: the limit's reset; probing: when the pause ended
    probe: bool = False  # paused: the reset was not known, so one worker probes first
    deadline: Optional[float] = None  # stopping: workers still running then are KILLed
    forced: bool = False  # stopping: a second stop signal took the rest of the grace
    interrupted: bool = False  # stopping: Ctrl-C, so the run ends with 130 as shells expect
    fatal: str = ""  # a configuration failure stopped the run (it ends with 2): what the worker said
    fix: str = ""  # ... and what to do about it
    credit: Optional[float] = None  # spawns the pacing allows at `credit_at` (None: a full burst)
    credit_at: float = 0.0
    run_id: str = ""  # the run's id (journal.new_run_id): its journal and report are named after it
    capped_until: Optional[float] = None  # capped: when enough old spending leaves the window (None: unknown)


@dataclass(frozen=True)
class RunBegins:
    """An orchestrator starts: a new run (with the id `run_id`), or the continuation of one whose
    orchestrator died (which keeps its own id)."""

    run_id: str = ""


@dataclass(frozen=True)
class SpendCap:
    """The decider looked at the spend cap across runs: `reached` (no new worker starts until `until`,
    None: not known), or there is room below it."""

    reached: bool
    until: Optional[float] = None


@dataclass(frozen=True)
class LimitHit:
    """A worker hit the account's usage limit: it resets at `until` (a default wait when not `known`)."""

    until: float
    known: bool = True


@dataclass(frozen=True)
class Tick:
    """Time passed: a pause whose reset has come ends (in a probe when the reset was not known)."""


@dataclass(frozen=True)
class LimitLifted:
    """A worker started after the pause got an answer from the model: the probe worked."""


@dataclass(frozen=True)
class StopSignal:
    """TERM, HUP or Ctrl-C (`interrupt`): stop with `grace`; a second one while stopping forces."""

    grace: float
    interrupt: bool = False


@dataclass(frozen=True)
class StopAsked:
    """`orchestrate.py stop --grace S` asked the running orchestrator to stop."""

    grace: float


@dataclass(frozen=True)
class FatalSeen:
    """A configuration failure, the same for every worker: stop the run; it ends with exit 2."""

    message: str
    fix: str
    grace: float


@dataclass(frozen=True)
class Paced:
    """Spawns were made: the pacing allows `credit` more at this moment (None: a full burst again)."""

    credit: Optional[float]


@dataclass(frozen=True)
class RunEnds:
    exit_code: int
    outcome: str


RunEvent = Union[RunBegins, LimitHit, Tick, LimitLifted, StopSignal, StopAsked, FatalSeen, Paced, RunEnds, SpendCap]
_ACTIVE = (RunState.RUNNING, RunState.PAUSED, RunState.PROBING, RunState.CAPPED)


def transition_run(run: RunLife, event: RunEvent, now: float) -> RunLife:
    """The run's next row. Every change of the run's state goes through here."""
    state = run.state
    if isinstance(event, RunBegins):
        fresh = state is RunState.ENDED or not run.started_at
        # The account's limit and the spend cap outlast an orchestrator (the next decision looks at the cap again).
        kept = state if state in (RunState.PAUSED, RunState.PROBING, RunState.CAPPED) else RunState.RUNNING
        run_id = run.run_id if run.run_id and not fresh else event.run_id
        return replace(RunLife(), state=kept, started_at=now if fresh else run.started_at, run_id=run_id,
                       paused_until=run.paused_until if kept in (RunState.PAUSED, RunState.PROBING) else None,
                       probe=run.probe, capped_until=run.capped_until if kept is RunState.CAPPED else None)
    if isinstance(event, Paced):
        return replace(run, credit=event.credit, credit_at=now)
    if isinstance(event, RunEnds):
        return replace(run, state=RunState.ENDED, ended_at=now, exit_code=event.exit_code, outcome=event.outcome,
                       deadline=None)
    if state is RunState.ENDED:
        raise TransitionError(f"{type(event).__name__} after the run ended")
    if isinstance(event, (StopSignal, StopAsked, FatalSeen)):
        return _stop_run(run, event, now)
    if state is RunState.STOPPING:
        return run  # a limit seen, or lifted, while stopping changes nothing now
    if isinstance(event, LimitHit):
        until = max(event.until, run.paused_until or 0.0) if state is RunState.PAUSED else event.until
        probe = (run.probe and state is RunState.PAUSED) or not event.known
        return replace(run, state=RunState.PAUSED, paused_until=until, probe=probe)
    if isinstance(event, Tick):
        if state is RunState.PAUSED and (run.paused_until or 0.0) <= now:
            if run.probe:
                return replace(run, state=RunState.PROBING, probe=False)
            return replace(run, state=RunState.RUNNING, paused_until=None)
        return run
    if isinstance(event, LimitLifted):
        return replace(run, state=RunState.RUNNING, paused_until=None) if state is RunState.PROBING else run
    if isinstance(event, SpendCap):  # the usage limit's pause and probe say more: the cap waits its turn
        if event.reached and state in (RunState.RUNNING, RunState.CAPPED):
            return replace(run, state=RunState.CAPPED, capped_until=event.until)
        return replace(run, state=RunState.RUNNING, capped_until=None) if state is RunState.CAPPED and not event.reached \
            else run
    raise TransitionError(f"unknown run event {event!r}")


def _stop_run(run: RunLife, event: Union[StopSignal, StopAsked, FatalSeen], now: float) -> RunLife:
    fatal = replace(run, fatal=event.message, fix=event.fix) if isinstance(event, FatalSeen) and not run.fatal else run
    interrupted = fatal.interrupted or (isinstance(event, StopSignal) and event.interrupt)
    if run.state is not RunState.STOPPING:
        return replace(fatal, state=RunState.STOPPING, deadline=now + event.grace, interrupted=interrupted,
                       paused_until=None, probe=False)
    if isinstance(event, StopSignal):  # the second: no more grace
        return replace(fatal, deadline=min(run.deadline or now, now), forced=True, interrupted=interrupted)
    if isinstance(event, StopAsked):
        return replace(fatal, deadline=min(run.deadline or now + event.grace, now + event.grace))
    return fatal


def describe_run(run: RunLife) -> str:
    """The run's state as a short phrase for `status`."""
    if run.state is RunState.PAUSED:
        when = time.strftime("%H:%M", time.localtime(run.paused_until or 0.0))
        return f"paused for the usage limit until {when}" + (", then one worker probes" if run.probe else "")
    if run.state is RunState.PROBING:
        return "probing: one worker tries whether the usage limit has lifted"
    if run.state is RunState.CAPPED:
        return "capped: the spend cap is reached; no new worker starts" + _resumes(run.capped_until)
    if run.state is RunState.STOPPING:
        return "stopping: configuration error" if run.fatal else "stopping"
    if run.state is RunState.ENDED:
        return f"ended: {run.outcome} (exit {run.exit_code})" if run.outcome else "ended"
    return run.state.value


def _resumes(until: Optional[float]) -> str:
    return f", resumes ~{time.strftime('%H:%M', time.localtime(until))}" if until else ""


# ---------------------------------------------------------------- the table on disk


@dataclass
class RunInfo:
    """Facts about the run that are not its state: where its work goes, and its restart budget."""

    isolation: str = ""  # worktree or none ("" before the first start)
    integration_branch: Optional[str] = None  # worktree: the branch every stream is merged into
    base: Optional[str] = None  # worktree: the user's HEAD when the run began
    max_restarts: Optional[int] = None  # the run's budget (config or --max-restarts): status counts with it


@dataclass
class Table:
    """Every stream's row, the run's row and the run's facts. Saved as one JSON file, replaced atomically."""

    rows: Dict[str, Life] = field(default_factory=dict)
    run: RunInfo = field(default_factory=RunInfo)
    run_life: RunLife = field(default_factory=RunLife)

    def get(self, stream_id: str) -> Life:
        return self.rows.get(stream_id, NO_ROW)

    def copy(self) -> "Table":
        """A copy to compare with later (rows and the run's row are frozen; the facts are copied)."""
        return Table(dict(self.rows), replace(self.run), self.run_life)


def run_json(table: Table) -> dict:
    """The run as one object: its facts and its row (`status --json` shows it too)."""
    life = asdict(table.run_life)
    life["state"] = table.run_life.state.value
    return {**asdict(table.run), **life}


_LIFE_FIELDS = tuple(f.name for f in fields(Life))


def _row_json(life: Life) -> dict:
    """One row as JSON values (by hand: `asdict` copies deeply and is slow for thousands of rows)."""
    row = {name: getattr(life, name) for name in _LIFE_FIELDS}
    row["state"] = life.state.value
    row["after_stop"] = life.after_stop.value if life.after_stop else None
    row["last_exit"] = asdict(life.last_exit) if life.last_exit else None
    row["conflicts"] = list(life.conflicts)
    return row


def carried_rows(table: Table) -> Dict[str, Life]:
    """The rows a `start` goes on with. A run cut short (its orchestrator killed: no end saved) is
    continued as it was: attempts, back-off, failures and all. After a run that ended, a new run
    begins: every stream's counts start afresh (a failed stream is tried again, reopened work is a
    first attempt), and only what is still owed is carried over: a hold (until `start STREAM`), a
    merge not yet made (merging, a gate, merge_conflict, check_failed, pr_closed, a conflict or a
    review handed back) with its files, and a usage-limited session to continue."""
    if table.run_life.ended_at is None:
        return dict(table.rows)
    carried = {}
    for sid, life in table.rows.items():
        owed = replace(life, attempts=0, failures=0, retry_at=None, deadline=None, after_stop=None,
                       complete_since=None, spent_usd=0.0, turns=0, tokens=0)
        if life.state is StreamState.HELD or life.state in UNMERGED:
            carried[sid] = owed
        elif handed_back(life):  # handed back to its agent: its next attempt, or the merge tried again
            again = StreamState.READY if life.state is StreamState.READY or life.feedback else StreamState.MERGING
            carried[sid] = replace(owed, state=again, reason=life.reason if again is StreamState.READY else "")
        elif life.resume and life.session_id:
            carried[sid] = Life(session_id=life.session_id, resume=True)
    return carried


def table_to_json(table: Table) -> dict:
    rows = {sid: _row_json(life) for sid, life in table.rows.items()}
    return {"version": 3, "run": run_json(table), "streams": rows}


def save_table(path: Path, table: Table) -> None:
    """Write atomically: a reader sees the old table or the new one, never half."""
    atomic.write_text(path, json.dumps(table_to_json(table), sort_keys=True))  # no indent: C-fast


def load_table(path: Path) -> Tuple[Table, List[str]]:
    """The saved table and warnings; a missing file is an empty table, a damaged one is reported
    and replaced by an empty table (never a traceback), bad rows are dropped one by one. Files of
    earlier versions load too (version 2 kept the run's start and end beside its facts)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Table(), []
    except (OSError, ValueError) as exc:
        return Table(), [f"ignored the saved run state {path.name} ({type(exc).__name__}); starting afresh"]
    if not isinstance(data, dict) or not isinstance(data.get("streams", {}), dict):
        return Table(), [f"ignored the saved run state {path.name} (not a table); starting afresh"]
    warnings: List[str] = []
    saved_run = data.get("run")
    run: dict = saved_run if isinstance(saved_run, dict) else {}
    table = Table(run=_run_from(run), run_life=_run_life_from(run))
    for sid, row in (data.get("streams") or {}).items():
        life = _life_from(row)
        if life is None:
            warnings.append(f"ignored the saved state of stream {sid!r} (damaged)")
        else:
            table.rows[sid] = life
    return table, warnings


class TableFile:
    """The table's file as the loop keeps it: written only when the table changed; a failure to
    write is reported once, and supervision goes on. `after_save` runs after every save (the run's
    journal is written then, so it never runs ahead of the saved table)."""

    def __init__(self, path: Path, warn: Callable[[str], None], after_save: Callable[[], object] = lambda: None):
        self.path, self.warn, self.after_save = path, warn, after_save
        self.saved: Optional[Table] = None
        self.failing = False

    def load(self) -> Tuple[Table, List[str]]:
        return load_table(self.path)

    def save(self, table: Table) -> None:
        if self.saved != table:
            self._write(table)
        self.after_save()

    def _write(self, table: Table) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            save_table(self.path, table)
        except OSError as exc:
            if not self.failing:
                self.warn(f"cannot save the run state ({exc}); supervision goes on")
            self.failing = True
            return
        self.saved, self.failing = table.copy(), False

    def forget(self) -> None:
        """The file was removed (an agent's `git clean`?): write it again at the next save."""
        self.saved = None


def _number(value: object, whole: bool = False) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if whole and (value < 0 or int(value) != value):
        return None
    return int(value) if whole else float(value)


def _count(value: object) -> Optional[int]:
    number = _number(value, whole=True)
    return None if number is None else int(number)


def _text(data: dict, key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _run_from(data: dict) -> RunInfo:
    texts = {k: _text(data, k) or None for k in ("integration_branch", "base")}
    return RunInfo(isolation=_text(data, "isolation"), max_restarts=_count(data.get("max_restarts")), **texts)


def _run_life_from(data: dict) -> RunLife:
    """The run's row, field by field: a damaged field gets its default. Before version 3 only the
    start and the end were saved: a run with an end is ended, any other was running."""
    ended_at = _number(data.get("ended_at"))
    try:
        state = RunState(data["state"])
    except (KeyError, ValueError, TypeError):
        state = RunState.ENDED if ended_at is not None else RunState.RUNNING
    return RunLife(state=state, started_at=_number(data.get("started_at")) or 0.0, ended_at=ended_at,
                   exit_code=_count(data.get("exit_code")), outcome=_text(data, "outcome"),
                   paused_until=_number(data.get("paused_until")), probe=data.get("probe") is True,
                   deadline=_number(data.get("deadline")), forced=data.get("forced") is True,
                   interrupted=data.get("interrupted") is True, fatal=_text(data, "fatal"), fix=_text(data, "fix"),
                   credit=_number(data.get("credit")), credit_at=_number(data.get("credit_at")) or 0.0,
                   run_id=_run_id(data.get("run_id")), capped_until=_number(data.get("capped_until")))


def _run_id(value: object) -> str:
    """A saved run id, only if it is one (it names files: a hand-edited one must not reach a path)."""
    return value if isinstance(value, str) and is_run_id(value) else ""


def _ended_from(value: object) -> Optional[Ended]:
    """A saved exit; the text of version 2 ("code 1") is not kept: it only ever informed."""
    if not isinstance(value, dict):
        return None
    code, number = (value.get(k) for k in ("exit_code", "signal"))
    whole = [v if isinstance(v, int) and not isinstance(v, bool) else None for v in (code, number)]
    return Ended(whole[0], whole[1], _text(value, "why"))


def _life_from(row: object) -> Optional[Life]:
    if not isinstance(row, dict):
        return None
    try:
        state = StreamState(row.get("state"))
        after = StreamState(row["after_stop"]) if row.get("after_stop") else None
    except ValueError:
        return None
    counts = {k: _number(row.get(k, 0), whole=True) for k in ("attempts", "failures", "turns", "tokens")}
    if None in counts.values():
        return None
    times = {k: _number(row[k]) if row.get(k) is not None else None
             for k in ("retry_at", "deadline", "complete_since")}
    texts = {k: row.get(k, "") for k in ("reason", "session_id", "commit", "diff_stat", "pull_request", "feedback")}
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
                last_exit=_ended_from(row.get("last_exit")), **counts, **times, **texts)  # type: ignore[arg-type]


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
    if state is StreamState.AWAITING_REVIEW:
        return (f"awaiting review of {life.commit[:12]}" + (f" ({life.diff_stat})" if life.diff_stat else "")
                + ": `orchestrate.py review STREAM`, then approve or reject")
    if state is StreamState.AWAITING_PR:
        return f"awaiting its pull request {life.pull_request}" if life.pull_request else state.value
    if state is StreamState.MERGING and life.commit:
        return f"merging (approved {life.commit[:12]})"
    if state is StreamState.READY and life.conflicts:
        return "ready: merge conflict handed back to its agent (" + ", ".join(life.conflicts[:5]) + ")"
    if state is StreamState.READY and life.feedback:
        return f"ready: {life.reason or REJECTED}"
    return state.value
