"""How a worker's end is judged: its exit, what the tracker shows, and what its own output said.

A worker's exit alone says little: whether its stream is complete comes from a
fresh read of the tracker, and an agent's output can explain the end (a usage
limit, a spent budget, a configuration failure, a lost session) so that it is
not counted as a failed attempt. A failed attempt while the tracker's database
cannot be written at all (made read-only mid-run: every worker fails on its
first update) is the run's configuration failure too, asked of the database
itself, never read from what an agent printed. `judge_exit` turns all of that
into the stream's `Exited` event, plus the limit or the failure the run must act
on. Pure but for the write check it is handed. Standard library only, Python 3.9+.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Optional, Tuple

from .agent.events import DEFAULT_LIMIT_WAIT, AgentStream, EndKind, Fatal, FatalKind, Outcome
from .executor import Ended
from .lifecycle import Exited, LimitHit
from .names import printable
from .trackers import StreamRecord

# What an agent's own account of its end means for the stream (lifecycle.Exited.ending).
ENDINGS = {EndKind.USAGE_LIMIT: "usage_limit", EndKind.BUDGET_EXHAUSTED: "budget", EndKind.FATAL: "fatal",
           EndKind.SESSION_NOT_FOUND: "fresh"}


@dataclass(frozen=True)
class Verdict:
    """A judged exit: the stream's event, and what it means for the whole run."""

    exited: Exited
    limit: Optional[LimitHit] = None  # the account's usage limit: the run pauses
    limit_message: str = ""
    fatal: Optional[Fatal] = None  # a configuration failure: the run stops
    agent: Optional[AgentStream] = None  # its output's own account (tokens, result), for the journal


def limit_until(resume_at: Optional[float], now: float) -> LimitHit:
    """When a usage limit resets: the time its message gave, else the documented default wait."""
    return LimitHit(resume_at if resume_at is not None else now + DEFAULT_LIMIT_WAIT, resume_at is not None)


def judge_exit(ended: Ended, stream: Optional[StreamRecord], agent_end: Optional[Tuple[Outcome, AgentStream]],
               last_log_line: str, now: float,
               write_problem: Callable[[], Optional[Tuple[str, str]]] = lambda: None) -> Verdict:
    """`agent_end`: how its output says it ended (None when its output was not read); `write_problem`:
    why the tracker's database cannot be written and the fix (None if it can), asked only of a
    failed attempt."""
    verdict = _judged(ended, stream, agent_end, last_log_line, now)
    if verdict.exited.complete or verdict.exited.ending not in ("exit", "fresh"):
        return verdict
    problem = write_problem()
    if problem is None:
        return verdict
    message, fix = problem
    return Verdict(replace(verdict.exited, ending="fatal", detail=message),
                   fatal=Fatal(FatalKind.DATABASE_READ_ONLY, message, fix))


def _judged(ended: Ended, stream: Optional[StreamRecord], agent_end: Optional[Tuple[Outcome, AgentStream]],
            last_log_line: str, now: float) -> Verdict:
    complete = stream is not None and stream.is_complete
    progress = f"with {stream.finished}/{stream.total} tasks done" if stream is not None else ""
    if agent_end is None or (agent_end[1].events == 0 and agent_end[0].kind is EndKind.CRASH):
        tail = printable(last_log_line, 200)
        detail = progress + (f"; last log line: {tail}" if tail else "")
        return Verdict(Exited(ended, complete, detail if not complete else ""))
    outcome, agent = agent_end
    detail = "" if complete else f"{progress}; {printable(outcome.reason, 200)}"
    ending, limit, fatal = ENDINGS.get(outcome.kind, "exit"), None, None
    if outcome.kind is EndKind.USAGE_LIMIT:
        limit = limit_until(outcome.resume_at, now)
        detail = printable(outcome.reason, 200)
    elif outcome.kind is EndKind.FATAL:
        fatal = outcome.fatal
    exited = Exited(ended, complete, detail, ending, limit.until if limit else None, agent.cost_usd or 0.0,
                    agent.session_id or "", agent.turns, agent.input_tokens + agent.output_tokens)
    return Verdict(exited, limit, outcome.reason if limit else "", fatal, agent)
