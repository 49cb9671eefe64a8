"""The end of a run in words: its one-line outcome, and what is left and what to do next.

`outcome_of` names how the run ended (saved with the table, shown by `status`);
`closing_lines` is what the orchestrator prints as it exits. Pure: the board,
the run's row and a few figures come in. Standard library only, Python 3.9+.
"""

from __future__ import annotations

from typing import AbstractSet, List, Optional

from .graph import Board
from .lifecycle import RunLife, StreamState
from .names import printable
from .scheduler import Finish
from .status import format_duration

STOPPED = "stopped by request"


def outcome_of(finish: Finish, run: RunLife, spent_usd: float, max_cost_usd: float) -> str:
    """One line: "all complete", "nothing more can progress", "stopped by request", ..."""
    if finish.why == "configuration":
        return f"stopped: configuration error: {run.fatal}"
    if finish.why == "stopped":
        return STOPPED
    if finish.why == "run budget":
        return f"failed: run budget reached ({spent_usd:.2f} of {max_cost_usd:.2f} USD)"
    return "all complete" if finish.why == "complete" else "nothing more can progress"


def closing_lines(finish: Finish, outcome: str, board: Optional[Board], run: RunLife,
                  targets: Optional[AbstractSet[str]], landing_hint: Optional[str]) -> List[str]:
    """What the orchestrator says as the run ends (after the configuration error, said when seen)."""
    if finish.why == "stopped":
        return [STOPPED]
    if finish.why == "configuration":
        return []
    lines = [outcome] if finish.why == "run budget" else []
    if board is None:
        return lines
    if finish.why == "complete":
        count = sum(1 for v in board.views.values() if targets is None or v.stream_id in targets)
        lines.append(f"all {count} stream(s) complete in {format_duration((run.ended_at or 0.0) - run.started_at)}")
        return lines + ([landing_hint] if landing_hint else [])
    return lines + ["nothing more can progress:"] + _what_is_left(board, targets)


def _what_is_left(board: Board, targets: Optional[AbstractSet[str]]) -> List[str]:
    lines = []
    failed = held = False
    for view in board.views.values():
        if targets is not None and view.stream_id not in targets or view.state is StreamState.COMPLETE:
            continue
        text = f"  {printable(view.stream_id)}: {printable(view.describe())}"
        if view.state is StreamState.FAILED and view.reason:
            text += f" ({printable(view.reason, 300)})"
        failed |= view.state is StreamState.FAILED
        held |= view.state is StreamState.HELD
        outside = [d for d in view.waiting_on if targets is not None and d not in targets]
        if outside:
            text += " (not part of this run: " + ", ".join(printable(d) for d in outside) + ")"
        lines.append(text)
    if failed:
        lines.append("  next: fix the cause (see `orchestrate.py logs STREAM`), then "
                     "`orchestrate.py start --retry-failed`")
    if held:
        lines.append("  next: `orchestrate.py start STREAM` resumes a stream you stopped")
    return lines
