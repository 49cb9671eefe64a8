"""The end of a run in words: its one-line outcome, and what is left and what to do next.

`outcome_of` names how the run ended (saved with the table, shown by `status`);
`closing_lines` is what the orchestrator prints as it exits: a run of the whole plan
that completed says so and how to land it; a run of some streams (`start STREAM`)
says which of them completed and what of the plan is still to run, and how; a run
where nothing more can progress names each stream left with why and the next step.
Pure: the board, the run's row and a few figures come in; nothing here reads a file
or a clock. Standard library only, Python 3.9+.
"""

from __future__ import annotations

import shlex
from typing import AbstractSet, List, Optional

from .graph import Board, StreamView
from .lifecycle import RunLife, StreamState
from .names import printable
from .scheduler import AWAITING_REVIEW, Finish
from .status import format_duration, level_order

STOPPED = "stopped by request"
ORCHESTRATE = "python3 .claude/orchestrator/orchestrate.py"
LISTED = 10  # streams named in one line before "and N more"




def outcome_of(finish: Finish, run: RunLife, spent_usd: float, max_cost_usd: float) -> str:
    """One line: "all complete", "nothing more can progress", "stopped by request", ..."""
    if finish.why == "configuration":
        return f"stopped: configuration error: {run.fatal}"
    if finish.why == "stopped":
        return STOPPED
    if finish.why == "run budget":
        return f"failed: run budget reached ({spent_usd:.2f} of {max_cost_usd:.2f} USD)"
    if finish.why == AWAITING_REVIEW:
        return "waiting for your review"
    return "all complete" if finish.why == "complete" else "nothing more can progress"


def closing_lines(finish: Finish, outcome: str, board: Optional[Board], run: RunLife,
                  targets: Optional[AbstractSet[str]], integration_branch: str = "") -> List[str]:
    """What the orchestrator says as the run ends (after the configuration error, said when seen)."""
    if finish.why == "stopped":
        return [STOPPED]
    if finish.why == "configuration":
        return []
    lines = [outcome] if finish.why == "run budget" else []
    if board is None:
        return lines
    if finish.why == "complete":
        took = format_duration((run.ended_at or 0.0) - run.started_at)
        return lines + completed(board, targets, took, integration_branch)
    if finish.why == AWAITING_REVIEW:
        return lines + ["nothing more can progress until you review:"] + stuck(board, targets)
    return lines + ["nothing more can progress:"] + stuck(board, targets)


def completed(board: Board, targets: Optional[AbstractSet[str]], took: str, integration_branch: str) -> List[str]:
    wanted = _wanted(board, targets)
    left = still_to_run(board)
    if targets is None or not left:
        lines = [f"all {len(board.views)} stream(s) complete in {took}"]
    else:
        lines = [f"the {len(wanted)} stream(s) you named complete in {took}: {_names(wanted)}",
                 f"not complete in the plan: {len(left)} of {len(board.views)} stream(s): {_names(left)}; "
                 f"run them with `{ORCHESTRATE} start` (every stream), or name them: "
                 f"`{ORCHESTRATE} start {_quoted(left)}`"]
    if integration_branch:
        lines.append(landing_hint(integration_branch, whole_plan=not left))
    return lines


def landing_hint(integration_branch: str, whole_plan: bool) -> str:
    if whole_plan:
        return (f"every stream's work is on {integration_branch}; your branch is unchanged. Bring it in with: "
                f"{ORCHESTRATE} land")
    return (f"their work is on {integration_branch}; your branch is unchanged. `{ORCHESTRATE} land` brings it "
            f"in once the plan is complete; `{ORCHESTRATE} land --partial` brings in what is merged now")


def stuck(board: Board, targets: Optional[AbstractSet[str]]) -> List[str]:
    """Each stream of the run that is not complete, with why, and the next steps."""
    lines = []
    for view in _wanted(board, targets):
        if view.state is StreamState.COMPLETE:
            continue
        text = f"  {printable(view.stream_id)}: {printable(view.describe())}"
        if view.state is StreamState.FAILED and view.reason:
            text += f" ({printable(view.reason, 300)})"
        outside = [d for d in view.waiting_on if targets is not None and d not in targets]
        if outside:
            text += " (not part of this run: " + ", ".join(printable(d) for d in outside) + ")"
        lines.append(text)
    states = {view.state for view in _wanted(board, targets)}
    if StreamState.FAILED in states:
        lines.append(f"  next: fix the cause (see `{ORCHESTRATE} logs STREAM`), then `{ORCHESTRATE} start`: a new "
                     "run tries failed streams again, with a fresh restart budget")
    if StreamState.HELD in states:
        lines.append(f"  next: `{ORCHESTRATE} start STREAM` resumes a stream you stopped")
    if StreamState.AWAITING_REVIEW in states:
        lines.append(f"  next: `{ORCHESTRATE} review STREAM` shows what its merge brings; `{ORCHESTRATE} approve "
                     f"STREAM` merges exactly that commit (at the next `{ORCHESTRATE} start`, or at once in a running "
                     f"one); `{ORCHESTRATE} reject STREAM --reason TEXT` hands it back to its agent")
    if StreamState.PR_CLOSED in states:
        lines.append(f"  next: `{ORCHESTRATE} start STREAM` hands a stream whose pull request was closed back to its "
                     "agent, told to read the pull request's comments")
    left = [view for view in still_to_run(board) if targets is not None and view.stream_id not in targets]
    if left:
        lines.append(f"  not part of this run: {_names(left)}; `{ORCHESTRATE} start` runs every stream")
    return lines


def still_to_run(board: Board) -> List[StreamView]:
    """The plan's streams that are not complete (merged, with worktrees), in dependency order."""
    return level_order(view for view in board.views.values() if view.state is not StreamState.COMPLETE)


def _wanted(board: Board, targets: Optional[AbstractSet[str]]) -> List[StreamView]:
    return level_order(view for sid, view in board.views.items() if targets is None or sid in targets)


def _names(views: List[StreamView]) -> str:
    shown = ", ".join(printable(v.stream_id) for v in views[:LISTED])
    return shown + (f" and {len(views) - LISTED} more" if len(views) > LISTED else "")


def _quoted(views: List[StreamView]) -> str:
    shown = " ".join(shlex.quote(printable(v.stream_id, 200)) for v in views[:LISTED])
    return shown + (" ..." if len(views) > LISTED else "")
