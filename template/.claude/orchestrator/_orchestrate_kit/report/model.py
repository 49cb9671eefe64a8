"""A run's report as data: from its journal's events (and the saved table's final states) to a `RunReport`. Pure.

Times in the report are seconds since the run started. Within one orchestrator process they come
from its monotonic clock (a wall clock that jumps moves nothing); each `run_started` (the run's
start, or its continuation after the orchestrator died) re-anchors them on the wall clock. A
stream's wall time is split by the state it was in: running (a worker or a merge is busy),
waiting (on dependencies, a back-off, the usage limit) and parked (held by you, a merge conflict,
a failed check). The critical path "as it ran" is the chain of dependencies that set the run's
length: from the stream that completed last, back through the dependency each one waited for
longest. Nothing here reads a file or the clock. Standard library only, Python 3.9+.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

RUNNING = frozenset({"starting", "running", "stopping", "merging"})
WAITING = frozenset({"waiting", "ready", "backoff", "rate_limited"})
PARKED = frozenset({"held", "merge_conflict", "check_failed"})
UNFINISHED = frozenset({"failed", "merge_conflict", "check_failed", "held", "invalid"})  # listed as failures
SHOWN_RESULT = 2000  # characters of a worker's final result the page shows (the JSON has all the journal kept)


@dataclass
class Span:
    """One bar in a stream's lane of the timeline."""

    kind: str  # attempt, backoff, usage_limit, merge, check, review, parked
    start: float
    end: float
    label: str
    outcome: str = ""  # complete, failed, paused, conflict, passed, approved, ...


@dataclass
class Attempt:
    number: int
    started: float
    ended: Optional[float] = None
    where: str = ""
    session_id: str = ""
    resumed_session: bool = False
    exit_code: Optional[int] = None
    signal: Optional[int] = None
    ending: str = ""
    complete: bool = False
    reason: str = ""
    cost_usd: float = 0.0
    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    result: str = ""

    @property
    def outcome(self) -> str:
        if self.ended is None:
            return "running"
        if self.complete:
            return "complete"
        return {"usage_limit": "paused", "fresh": "restarted", "fatal": "configuration error",
                "budget": "budget spent", "stopped": "stopped"}.get(self.ending, "failed")


@dataclass
class StreamReport:
    stream_id: str
    name: str
    dependencies: List[str]
    level: Optional[int]
    planned_state: str
    final_state: str
    reason: str = ""
    attempts: List[Attempt] = field(default_factory=list)
    spans: List[Span] = field(default_factory=list)
    cost_usd: float = 0.0
    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    running_s: float = 0.0
    waiting_s: float = 0.0
    parked_s: float = 0.0
    completed_at: Optional[float] = None
    result: str = ""
    branch: str = ""
    merge_commit: str = ""
    pr_url: str = ""
    critical_planned: bool = False
    critical_ran: bool = False


@dataclass
class Failure:
    stream_id: str
    state: str
    reason: str
    next_step: str
    log_tail: List[str] = field(default_factory=list)


@dataclass
class Totals:
    cost_usd: float = 0.0
    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    attempts: int = 0
    failed_attempts: int = 0
    running_s: float = 0.0
    waiting_s: float = 0.0
    parked_s: float = 0.0


@dataclass
class RunReport:
    run_id: str
    started_at: Optional[float]  # unix seconds
    ended_at: Optional[float]
    duration_s: float
    finished: bool
    exit_code: Optional[int] = None
    outcome: str = ""
    settings: Dict[str, object] = field(default_factory=dict)
    targets: Optional[List[str]] = None
    tracker: str = ""
    isolation: str = ""
    integration_branch: str = ""
    resumes: int = 0  # times the run continued after its orchestrator died
    levels: List[List[str]] = field(default_factory=list)
    critical_path_planned: List[str] = field(default_factory=list)
    critical_path_ran: List[str] = field(default_factory=list)
    streams: List[StreamReport] = field(default_factory=list)
    pauses: List[Span] = field(default_factory=list)  # the account's usage limit: no worker started anywhere
    spend_cap: Dict[str, object] = field(default_factory=dict)
    totals: Totals = field(default_factory=Totals)
    failures: List[Failure] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)


# ---------------------------------------------------------------- building it


class _Clock:
    """Report time (seconds since the run's start) of each event, from its writer's monotonic clock
    anchored on the wall clock at every run_started."""

    def __init__(self) -> None:
        self.start: Optional[float] = None
        self.anchor: Optional[Tuple[float, float]] = None  # (wall, mono) of the segment's first event

    def at(self, event: Mapping[str, object]) -> float:
        wall = float(event["t"])  # type: ignore[arg-type]
        mono = _number(event.get("mono"))
        if self.start is None:
            self.start = wall
        if event.get("kind") == "run_started" or self.anchor is None or mono is None or mono < self.anchor[1]:
            self.anchor = (wall, mono) if mono is not None else None
            return wall - self.start
        return self.anchor[0] + mono - self.anchor[1] - self.start


class _Builder:
    def __init__(self, run_id: str) -> None:
        self.report = RunReport(run_id, None, None, 0.0, False)
        self.clock = _Clock()
        self.streams: Dict[str, StreamReport] = {}
        self.state_since: Dict[str, Tuple[str, float]] = {}
        self.open: Dict[Tuple[str, str], Tuple[float, str]] = {}  # (stream, kind) -> (start, label) of a span
        self.pause: Optional[Tuple[float, float, str]] = None  # (start, planned end, message)
        self.started = False  # a run_started was seen
        self.now = 0.0

    def stream(self, sid: str) -> StreamReport:
        found = self.streams.get(sid)
        if found is None:
            found = self.streams[sid] = StreamReport(sid, sid, [], None, "waiting", "waiting")
            self.state_since[sid] = ("waiting", self.now)
        return found

    def feed(self, event: Mapping[str, object]) -> None:
        self.now = at = max(self.clock.at(event), self.now)
        if self.report.started_at is None:
            self.report.started_at = float(event["t"])  # type: ignore[arg-type]
        if not self.report.run_id and isinstance(event.get("run"), str):
            self.report.run_id = str(event["run"])
        kind = event["kind"]
        handler = getattr(self, f"_{kind}", None)
        if handler is not None:
            sid = event.get("stream")
            handler(event, at, self.stream(str(sid)) if isinstance(sid, str) else None)

    # -- the run

    def _run_started(self, event, at, _stream) -> None:
        report = self.report
        if self.started:  # a continuation after the orchestrator died; the plan stays the first one
            report.resumes += 1
            return
        self.started = True
        report.settings = dict(_mapping(event.get("settings")))
        targets = event.get("targets")
        report.targets = [str(t) for t in targets] if isinstance(targets, list) else None
        report.tracker, report.isolation = _text(event.get("tracker")), _text(event.get("isolation"))
        report.integration_branch = _text(event.get("integration_branch"))
        plan = _mapping(event.get("plan"))
        report.levels = [[str(s) for s in _list(level)] for level in _list(plan.get("levels"))]
        report.critical_path_planned = [str(s) for s in _list(plan.get("critical_path"))]
        for sid, info in _mapping(plan.get("streams")).items():
            info = _mapping(info)
            stream = self.stream(str(sid))
            stream.name = _text(info.get("name")) or stream.stream_id
            stream.dependencies = [str(d) for d in _list(info.get("dependencies"))]
            level = info.get("level")
            stream.level = level if isinstance(level, int) and not isinstance(level, bool) else None
            stream.planned_state = stream.final_state = _text(info.get("state")) or "waiting"
            self.state_since[stream.stream_id] = (stream.planned_state, at)

    def _run_finished(self, event, at, _stream) -> None:
        report = self.report
        report.finished = True
        code = event.get("exit_code")
        report.exit_code = code if isinstance(code, int) and not isinstance(code, bool) else None
        report.outcome = _text(event.get("outcome"))
        report.ended_at = float(event["t"])

    def _usage_limit(self, event, at, _stream) -> None:
        until = _number(event.get("until"))
        end = at if until is None else max(at, at + until - float(event["t"]))
        if self.pause is not None and at > self.pause[1]:  # the last pause ran out unannounced: a new one
            self.report.pauses.append(Span("usage_limit", self.pause[0], self.pause[1], "usage limit", self.pause[2]))
            self.pause = None
        if self.pause is None:
            self.pause = (at, end, _text(event.get("message")))
        else:
            self.pause = (self.pause[0], max(self.pause[1], end), self.pause[2])

    def _usage_limit_resumed(self, event, at, _stream) -> None:
        if self.pause is not None:
            self.report.pauses.append(Span("usage_limit", self.pause[0], at, "usage limit", self.pause[2]))
            self.pause = None

    def _spend_cap_reached(self, event, at, _stream) -> None:
        self.report.spend_cap = {"spent_usd": _number(event.get("spent_usd")), "cap_usd": _number(event.get("cap_usd")),
                                 "period": _text(event.get("period")), "at": at}

    # -- a stream's states

    def _transition(self, event, at, stream) -> None:
        if stream is None:
            return
        after = _text(event.get("after")) or stream.final_state
        self._close_state(stream, at)
        self.state_since[stream.stream_id] = (after, at)
        stream.final_state = after
        reason = _text(event.get("reason"))
        if after in UNFINISHED or after == "backoff":
            stream.reason = reason or stream.reason
        if after == "complete":
            stream.completed_at = at
            stream.reason = ""
        if after in PARKED or after in ("backoff", "rate_limited"):
            label = {"backoff": "back-off", "rate_limited": "usage limit"}.get(after, after.replace("_", " "))
            self.open[(stream.stream_id, "state")] = (at, label)

    def _close_state(self, stream: StreamReport, at: float) -> None:
        state, since = self.state_since.get(stream.stream_id, (stream.final_state, at))
        spent = max(at - since, 0.0)
        if state in RUNNING:
            stream.running_s += spent
        elif state in WAITING:
            stream.waiting_s += spent
        elif state in PARKED:
            stream.parked_s += spent
        opened = self.open.pop((stream.stream_id, "state"), None)
        if opened is not None:
            kind = "backoff" if state == "backoff" else "usage_limit" if state == "rate_limited" else "parked"
            stream.spans.append(Span(kind, opened[0], at, opened[1], state))

    def _backoff(self, event, at, stream) -> None:
        return None  # the back-off's span comes from its transition; `until` is in the journal for scripts

    # -- attempts

    def _attempt_started(self, event, at, stream) -> None:
        if stream is None:
            return
        number = _whole(event.get("attempt")) or len(stream.attempts) + 1
        stream.attempts.append(Attempt(number, at, where=_text(event.get("where")),
                                       session_id=_text(event.get("session_id")),
                                       resumed_session=event.get("resume") is True))

    def _attempt_ended(self, event, at, stream) -> None:
        if stream is None:
            return
        number = _whole(event.get("attempt"))
        attempt = next((a for a in reversed(stream.attempts) if a.ended is None and number in (None, a.number)), None)
        if attempt is None:  # its start was lost (a full disk, a torn line): the end still counts
            attempt = Attempt(number or len(stream.attempts) + 1, at)
            stream.attempts.append(attempt)
        attempt.ended = at
        attempt.exit_code, attempt.signal = _whole(event.get("exit_code"), signed=True), _whole(event.get("signal"))
        attempt.ending, attempt.complete = _text(event.get("ending")), event.get("complete") is True
        attempt.reason, attempt.result = _text(event.get("reason")), _text(event.get("result"))
        attempt.cost_usd = _number(event.get("cost_usd")) or 0.0
        attempt.turns = _whole(event.get("turns")) or 0
        attempt.input_tokens = _whole(event.get("input_tokens")) or 0
        attempt.output_tokens = _whole(event.get("output_tokens")) or 0
        attempt.session_id = _text(event.get("session_id")) or attempt.session_id
        if attempt.result:
            stream.result = attempt.result

    # -- merges, checks, reviews, pull requests

    def _merge_started(self, event, at, stream) -> None:
        if stream is not None:
            stream.branch = _text(event.get("branch")) or stream.branch
            self.open[(stream.stream_id, "merge")] = (at, "merge")

    def _merged(self, event, at, stream) -> None:
        if stream is not None:
            stream.merge_commit = _text(event.get("commit"))
            stream.branch = _text(event.get("branch")) or stream.branch
            self._end_span(stream, "merge", at, "merged")

    def _merge_conflict(self, event, at, stream) -> None:
        if stream is not None:
            files = [str(f) for f in _list(event.get("files"))]
            stream.reason = _text(event.get("reason")) or ("conflict in " + ", ".join(files[:5]) if files else "")
            self._end_span(stream, "merge", at, "conflict")

    def _check_started(self, event, at, stream) -> None:
        if stream is not None:
            self.open[(stream.stream_id, "check")] = (at, "check")

    def _check_passed(self, event, at, stream) -> None:
        if stream is not None:
            self._end_span(stream, "check", at, "passed")

    def _check_failed(self, event, at, stream) -> None:
        if stream is not None:
            stream.reason = _text(event.get("reason")) or stream.reason
            self._end_span(stream, "check", at, "failed")

    def _check_timed_out(self, event, at, stream) -> None:
        if stream is not None:
            self._end_span(stream, "check", at, "timed out")

    def _review_requested(self, event, at, stream) -> None:
        if stream is not None:
            self.open[(stream.stream_id, "review")] = (at, "review")

    def _approved(self, event, at, stream) -> None:
        if stream is not None:
            self._end_span(stream, "review", at, "approved")

    def _rejected(self, event, at, stream) -> None:
        if stream is not None:
            stream.reason = _text(event.get("reason")) or stream.reason
            self._end_span(stream, "review", at, "rejected")

    def _pushed(self, event, at, stream) -> None:
        if stream is not None:
            stream.branch = _text(event.get("branch")) or stream.branch

    def _pr_opened(self, event, at, stream) -> None:
        if stream is not None:
            stream.pr_url = _text(event.get("url"))

    def _pr_merged(self, event, at, stream) -> None:
        if stream is not None:
            stream.pr_url = _text(event.get("url")) or stream.pr_url
            stream.merge_commit = _text(event.get("commit")) or stream.merge_commit

    def _end_span(self, stream: StreamReport, kind: str, at: float, outcome: str) -> None:
        opened = self.open.pop((stream.stream_id, kind), None)
        start, label = opened if opened is not None else (at, kind)
        stream.spans.append(Span(kind, start, at, label, outcome))

    # -- the end

    def finish(self, final_states: Mapping[str, str], log_tails: Mapping[str, Sequence[str]]) -> RunReport:
        report, end = self.report, self.now
        report.duration_s = end
        if self.pause is not None:
            report.pauses.append(Span("usage_limit", self.pause[0], max(min(self.pause[1], end), self.pause[0]),
                                      "usage limit", self.pause[2]))
        for sid, stream in self.streams.items():
            self._close_state(stream, end)
            for (owner, kind), (start, label) in list(self.open.items()):
                if owner == sid:
                    stream.spans.append(Span(kind, start, end, label, "unfinished"))
                    del self.open[(owner, kind)]
            for attempt in stream.attempts:
                stream.spans.append(Span("attempt", attempt.started, attempt.ended if attempt.ended is not None else end,
                                         f"attempt {attempt.number}", attempt.outcome))
            stream.spans.sort(key=lambda span: (span.start, span.kind))
            if sid in final_states:
                stream.final_state = final_states[sid]
            _sum_stream(stream)
        report.streams = _in_level_order(self.streams, report.levels)
        report.critical_path_ran = path_as_ran(self.streams)
        planned, ran = set(report.critical_path_planned), set(report.critical_path_ran)
        for stream in report.streams:
            stream.critical_planned, stream.critical_ran = stream.stream_id in planned, stream.stream_id in ran
        report.totals = _totals(report.streams)
        report.failures = [Failure(s.stream_id, s.final_state, s.reason or _last_reason(s), next_step(s),
                                   list(log_tails.get(s.stream_id, ()))) for s in report.streams
                           if s.final_state in UNFINISHED]
        return report


def build_report(events: Iterable[Mapping[str, object]], run_id: str = "",
                 final_states: Mapping[str, str] = {},  # noqa: B006 (never mutated)
                 log_tails: Mapping[str, Sequence[str]] = {},  # noqa: B006 (never mutated)
                 warnings: Sequence[str] = ()) -> RunReport:
    """The report of one run from its journal's events, in order. `final_states` (the saved table's,
    when it is this run's) wins over the last transition seen; `log_tails` are the last lines of the
    logs of the streams that did not complete."""
    builder = _Builder(run_id)
    for event in events:
        builder.feed(event)
    report = builder.finish(final_states, log_tails)
    report.warnings = list(warnings)
    return report


def path_as_ran(streams: Mapping[str, StreamReport]) -> List[str]:
    """The chain that set the run's length: from the stream that finished last (completed, or its
    last bar ended, for one that ran but did not complete), back through the dependency that
    finished last (the one it waited for) to a stream that waited on none."""
    finished = {sid: end for sid, end in ((sid, _finished_at(s)) for sid, s in streams.items()) if end is not None}
    if not finished:
        return []
    node: Optional[str] = max(finished, key=lambda sid: (finished[sid], sid))
    chain: List[str] = []
    while node is not None and node not in chain:
        chain.append(node)
        deps = [d for d in streams[node].dependencies if d in finished]
        node = max(deps, key=lambda d: (finished[d], d)) if deps else None
    return list(reversed(chain))


def _finished_at(stream: StreamReport) -> Optional[float]:
    if stream.completed_at is not None:
        return stream.completed_at
    return max((span.end for span in stream.spans), default=None)


def next_step(stream: StreamReport) -> str:
    """What to do about a stream that did not complete, as a command to run."""
    sid = shlex.quote(stream.stream_id)
    branch = stream.branch or "its stream branch"
    steps = {
        "failed": f"fix the cause (see `orchestrate.py logs {sid}`), then `orchestrate.py start --retry-failed`",
        "merge_conflict": f"resolve the conflict on {branch} (its worktree is kept) and commit, then "
                          f"`orchestrate.py start {sid}`",
        "check_failed": f"fix what the merge check found on {branch}, then `orchestrate.py start {sid}`",
        "held": f"`orchestrate.py start {sid}` resumes it",
        "invalid": "fix its task metadata in Task Copilot (`orchestrate.py plan` names the problem), then start again",
    }
    return steps.get(stream.final_state, f"`orchestrate.py start {sid}`")


def _sum_stream(stream: StreamReport) -> None:
    stream.cost_usd = sum(a.cost_usd for a in stream.attempts)
    stream.turns = sum(a.turns for a in stream.attempts)
    stream.input_tokens = sum(a.input_tokens for a in stream.attempts)
    stream.output_tokens = sum(a.output_tokens for a in stream.attempts)


def _totals(streams: Sequence[StreamReport]) -> Totals:
    totals = Totals()
    for s in streams:
        totals.cost_usd += s.cost_usd
        totals.turns += s.turns
        totals.input_tokens += s.input_tokens
        totals.output_tokens += s.output_tokens
        totals.attempts += len(s.attempts)
        totals.failed_attempts += sum(1 for a in s.attempts if a.outcome == "failed")
        totals.running_s += s.running_s
        totals.waiting_s += s.waiting_s
        totals.parked_s += s.parked_s
    return totals


def _last_reason(stream: StreamReport) -> str:
    return next((a.reason for a in reversed(stream.attempts) if a.reason), "")


def _in_level_order(streams: Mapping[str, StreamReport], levels: Sequence[Sequence[str]]) -> List[StreamReport]:
    """Streams by level (as planned), then any the plan did not list, by id."""
    seen, ordered = set(), []
    for level in levels:
        for sid in level:
            if sid in streams and sid not in seen:
                seen.add(sid)
                ordered.append(streams[sid])
    ordered += [streams[sid] for sid in sorted(streams) if sid not in seen]
    return ordered


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> List[object]:
    return value if isinstance(value, list) else []


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _number(value: object) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (
            float("inf"), float("-inf")):
        return None
    return float(value)


def _whole(value: object, signed: bool = False) -> Optional[int]:
    if isinstance(value, bool) or not isinstance(value, int) or (value < 0 and not signed):
        return None
    return value
