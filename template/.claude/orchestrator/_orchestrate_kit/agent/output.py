"""What running workers say: their logs read as they grow, parsed into activity, cost and signals.

Workers write straight to their log file (so they outlive an orchestrator that
dies, with no pipe to break); the supervisor reads each log from where it last
stopped, a bounded amount per turn, never blocking. When a worker has ended, what
is left of its log is read to the end (the result with its cost, or the usage
limit, is last), in pieces. Memory stays bounded either way: a line longer than
LINE_LIMIT is skipped piece by piece, never held whole, and said once. Every line
goes through an `agent.events.AgentStream`: Claude Code's stream-json gives session,
turns, tokens, cost and the last message; text lines before the first event are
searched for the CLI's usage limits and configuration failures. What a stream
notes (values dropped, a reset clamped, a line skipped) goes to the `note`
callback with the stream's id. Log growth is the activity the stall watchdog
watches in text mode. `save_activity` writes what status and the dashboard show
(state/activity.json, strict JSON), at most every ACTIVITY_SAVE_SECONDS.
Standard library only, Python 3.9+.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from .. import atomic
from .events import AgentStream, Outcome, Signal

READ_LIMIT = 1 << 20  # bytes read from one log per turn: a chatty worker cannot starve the loop
LINE_LIMIT = 8 << 20  # a longer line is skipped: no event we read is that long, and memory stays bounded
ACTIVITY_SAVE_SECONDS = 2.0


@dataclass
class _Tail:
    path: Path
    offset: int
    started: float
    partial: bytearray = field(default_factory=bytearray)
    skipping: bool = False  # inside a line longer than LINE_LIMIT: drop bytes until its end
    agent: AgentStream = field(default_factory=AgentStream)
    grew_at: Optional[float] = None


def _no_note(_stream_id: str, _text: str) -> None:
    pass


@dataclass
class WorkerOutputs:
    tails: Dict[str, _Tail] = field(default_factory=dict)
    saved_at: float = 0.0
    changed: bool = False
    note: Callable[[str, str], None] = _no_note  # (stream id, what its output made us drop or change)

    def watch(self, stream_id: str, log_path: Path, offset: int, now: float) -> None:
        """Follow a worker's log from `offset` (just after our banner; the end of it for an adopted one)."""
        self.tails[stream_id] = _Tail(log_path, offset, now)

    def read(self, now: float) -> List[Tuple[str, Signal]]:
        """New lines of every watched log (up to READ_LIMIT bytes each), parsed; the usage limits and
        fatal failures they show."""
        return [(sid, signal) for sid in list(self.tails) for signal in self.read_stream(sid, now)]

    def read_stream(self, stream_id: str, now: float) -> List[Signal]:
        """The same for one watched log (the loop reads each under its stream's guard)."""
        tail = self.tails.get(stream_id)
        if tail is None:
            return []
        signals = []
        grew, lines = self._new_lines(tail, READ_LIMIT)
        if grew:
            tail.grew_at, self.changed = now, True
        for line in lines:
            signal = tail.agent.feed(line, now)
            if signal is not None:
                signals.append(signal)
        self._pass_notes(stream_id, tail)
        return signals

    def _new_lines(self, tail: _Tail, limit: int) -> Tuple[bool, List[str]]:
        """(whether the log grew, the whole lines among at most `limit` new bytes)."""
        try:
            size = os.stat(tail.path).st_size
            if size < tail.offset:  # rotated or truncated under us: start again at its top
                tail.offset, tail.partial, tail.skipping = 0, bytearray(), False
            if size == tail.offset:
                return False, []
            with open(tail.path, "rb") as log:
                log.seek(tail.offset)
                data = log.read(min(limit, size - tail.offset))
        except OSError:
            return False, []  # deleted (an agent's git clean?) or unreadable: nothing to parse this turn
        tail.offset += len(data)
        return bool(data), self._split(tail, data)

    def _split(self, tail: _Tail, data: bytes) -> List[str]:
        """Whole lines from `data` after what was held back; the unfinished rest is held, up to LINE_LIMIT."""
        lines = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            if tail.skipping:
                tail.skipping = False  # the end of an overlong line: the next one starts clean
            elif len(tail.partial) + end - start > LINE_LIMIT:
                self._skipped(tail)
            else:
                tail.partial += data[start:end]
                lines.append(tail.partial.decode("utf-8", "replace"))
            tail.partial = bytearray()
            start = end + 1
        if not tail.skipping:
            if len(tail.partial) + len(data) - start > LINE_LIMIT:
                tail.partial, tail.skipping = bytearray(), True
                self._skipped(tail)
            else:
                tail.partial += data[start:]
        return lines

    @staticmethod
    def _skipped(tail: _Tail) -> None:
        tail.agent.note("long line", f"skipped an output line longer than {LINE_LIMIT >> 20} MiB "
                                     "(a tool's output, most likely); what follows it is read")

    def _pass_notes(self, stream_id: str, tail: _Tail) -> None:
        for text in tail.agent.take_notes():
            self.note(stream_id, text)

    def finish(self, stream_id: str, exit_code: Optional[int], now: float) -> Optional[Tuple[Outcome, AgentStream]]:
        """Read all that is left of an ended worker's log and say how it ended; None if it was not watched.

        Read up to the size the log has now, in READ_LIMIT pieces: what a leftover child keeps
        writing after that is not this worker's end."""
        tail = self.tails.pop(stream_id, None)
        if tail is None:
            return None
        try:
            end = os.stat(tail.path).st_size
        except OSError:
            end = tail.offset
        while tail.offset < end:
            grew, lines = self._new_lines(tail, min(READ_LIMIT, end - tail.offset))
            for line in lines:
                tail.agent.feed(line, now)
            if not grew:
                break
        if tail.partial and not tail.skipping:
            tail.agent.feed(tail.partial.decode("utf-8", "replace"), now)
        self._pass_notes(stream_id, tail)
        self.changed = True
        return tail.agent.outcome(exit_code), tail.agent

    def last_output(self) -> Dict[str, float]:
        """When each watched worker last wrote anything (its start if it has not yet)."""
        return {sid: tail.grew_at or tail.started for sid, tail in self.tails.items()}

    def any_turn_since(self, moment: float) -> bool:
        """Whether a worker started after `moment` has had an answer from the model (a turn)."""
        return any(tail.agent.turns > 0 for tail in self.tails.values() if tail.started >= moment)

    def live_cost(self) -> float:
        return sum(tail.agent.cost_usd or 0.0 for tail in self.tails.values())

    def session_of(self, stream_id: str) -> str:
        tail = self.tails.get(stream_id)
        return (tail.agent.session_id or "") if tail else ""

    def save_activity(self, path: Path, spent: Dict[str, float], now: float, force: bool = False) -> None:
        """Write the running workers' activity for status and the dashboard (throttled; never raises)."""
        if not (force or (self.changed and now - self.saved_at >= ACTIVITY_SAVE_SECONDS)):
            return
        data = {}
        for sid, tail in self.tails.items():
            agent = tail.agent
            cost = _finite(spent.get(sid, 0.0) + (agent.cost_usd or 0.0))
            data[sid] = {"session_id": agent.session_id, "turns": agent.turns,
                         "tokens": agent.input_tokens + agent.output_tokens,
                         "cost_usd": None if cost is None else round(cost, 6),
                         "last_activity": _finite(tail.grew_at), "last_message": agent.last_message}
        try:
            atomic.write_text(path, json.dumps(data, allow_nan=False))
        except (OSError, ValueError):
            return
        self.saved_at, self.changed = now, False


def _finite(value: Optional[float]) -> Optional[float]:
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def load_activity(path: Path) -> Dict[str, dict]:
    """What `save_activity` wrote; empty when missing or damaged."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    # An older or damaged file may hold NaN or Infinity (json reads them): never pass them on.
    return {str(k): {key: None if isinstance(value, float) and not math.isfinite(value) else value
                     for key, value in v.items()}
            for k, v in data.items() if isinstance(v, dict)}
