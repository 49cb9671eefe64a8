"""What running workers say: their logs read as they grow, parsed into activity, cost and signals.

Workers write straight to their log file (so they outlive an orchestrator that
dies, with no pipe to break); the supervisor reads each log from where it last
stopped, a bounded amount per turn, never blocking. Every line goes through an
`agent_events.AgentStream`: Claude Code's stream-json gives session, turns,
tokens, cost and the last message; plain text is still searched for usage
limits and configuration failures. Log growth is the activity the stall
watchdog watches in text mode. `save_activity` writes what status and the
dashboard show (state/activity.json), at most every ACTIVITY_SAVE_SECONDS.
Standard library only, Python 3.9+.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .. import atomic
from .events import AgentStream, Outcome, Signal

READ_LIMIT = 1 << 20  # bytes read from one log per turn: a chatty worker cannot starve the loop
ACTIVITY_SAVE_SECONDS = 2.0


@dataclass
class _Tail:
    path: Path
    offset: int
    started: float
    partial: bytes = b""
    agent: AgentStream = field(default_factory=AgentStream)
    grew_at: Optional[float] = None


@dataclass
class WorkerOutputs:
    tails: Dict[str, _Tail] = field(default_factory=dict)
    saved_at: float = 0.0
    changed: bool = False

    def watch(self, stream_id: str, log_path: Path, offset: int, now: float) -> None:
        """Follow a worker's log from `offset` (just after our banner; the end of it for an adopted one)."""
        self.tails[stream_id] = _Tail(log_path, offset, now)

    def read(self, now: float) -> List[Tuple[str, Signal]]:
        """New lines of every watched log, parsed; the usage limits and fatal failures they show."""
        signals = []
        for sid, tail in self.tails.items():
            for line in self._new_lines(tail):
                tail.grew_at = now
                self.changed = True
                signal = tail.agent.feed(line, now)
                if signal is not None:
                    signals.append((sid, signal))
        return signals

    def _new_lines(self, tail: _Tail) -> List[str]:
        try:
            size = os.stat(tail.path).st_size
            if size < tail.offset:  # rotated or truncated under us: start again at its top
                tail.offset, tail.partial = 0, b""
            if size == tail.offset:
                return []
            with open(tail.path, "rb") as log:
                log.seek(tail.offset)
                data = log.read(READ_LIMIT)
        except OSError:
            return []  # deleted (an agent's git clean?) or unreadable: nothing to parse this turn
        tail.offset += len(data)
        *lines, tail.partial = (tail.partial + data).split(b"\n")
        return [line.decode("utf-8", "replace") for line in lines]

    def finish(self, stream_id: str, exit_code: Optional[int], now: float) -> Optional[Tuple[Outcome, AgentStream]]:
        """Read what is left of an ended worker's log and say how it ended; None if it was not watched."""
        tail = self.tails.pop(stream_id, None)
        if tail is None:
            return None
        lines = self._new_lines(tail)
        if tail.partial:
            lines.append(tail.partial.decode("utf-8", "replace"))
        for line in lines:
            tail.agent.feed(line, now)
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
            data[sid] = {"session_id": agent.session_id, "turns": agent.turns,
                         "tokens": agent.input_tokens + agent.output_tokens,
                         "cost_usd": round(spent.get(sid, 0.0) + (agent.cost_usd or 0.0), 6),
                         "last_activity": tail.grew_at, "last_message": agent.last_message}
        try:
            atomic.write_text(path, json.dumps(data))
        except OSError:
            return
        self.saved_at, self.changed = now, False


def load_activity(path: Path) -> Dict[str, dict]:
    """What `save_activity` wrote; empty when missing or damaged."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}
