"""The merge gate in the loop (merge_gate = review): a finished stream waits for a person before it merges.

The Merger (merging.py) hands these the scheduler's gate steps; every state change goes
through lifecycle.transition (the `apply` the supervisor gives):

    gate(stream, ...)    a `Gate` action: commit what its worker left, then `AwaitReview` with the
                         stream branch's commit and its diff stat (`awaiting_review`; on_event
                         `needs_review`)
    poll(rows, ...)      each turn: a decision recorded for a stream awaiting review (git/gates.py's
                         record, written by `approve` / `reject`, with or without a running
                         orchestrator) becomes `Approved` (it merges exactly the reviewed commit)
                         or `Rejected` (back to its agent, the reason in its next prompt)
    merged(stream)       once merged: its review record is done with

The record is read again each turn for the streams awaiting review (one small file each, only
while some do), so a request only needs to wake the loop and nothing is missed between two
turns. A record is cleared when its stream next goes to review (a stale decision never judges
new work) and once it is merged, never before its transition is saved: a kill in between
leaves the decision to be read again. Standard library only, Python 3.9+.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

from . import bounded, gates, workspaces
from ..lifecycle import Approved, AwaitReview, Event, Life, MergeConflict, Merged, Rejected, StreamState
from ..names import printable
from .workspaces import RunInfo, WorkspaceError

Apply = Callable[[str, Event, float], Life]
Notify = Callable[..., None]
ORCHESTRATE = "orchestrate.py"


class Gating:
    """The review gate's steps for one run's integration branch."""

    def __init__(self, root: Path, state: Path, say: Callable[[str], None], notify: Notify):
        self.root, self.state, self.say, self.notify = Path(root), Path(state), say, notify

    def gate(self, sid: str, run: RunInfo, apply: Apply, now: float) -> None:
        """Take a finished stream (in `merging`, no approval yet) to review: its work committed first."""
        gates.clear(self.state, sid)  # a decision about earlier work does not judge this work
        try:
            committed = workspaces.commit_leftovers(self.root, sid)
        except WorkspaceError as exc:
            apply(sid, MergeConflict((), f"its work could not be taken to review: {exc}; fix it in its worktree "
                                         f"and commit, then run `{ORCHESTRATE} start {printable(sid)}`"), now)
            self.say(f"{printable(sid)}: its work could not be taken to review: {printable(str(exc), 500)}")
            return
        commit = bounded.rev(self.root, "refs/heads/" + workspaces.stream_branch(sid))
        if not commit:  # it never had a branch (complete before the run began): nothing of ours to review
            apply(sid, Merged(), now)
            return
        try:
            stat = gates.shortstat(self.root, run, sid)
        except gates.GateError:
            stat = ""
        apply(sid, AwaitReview(commit, stat), now)
        left = "committed what its worker left uncommitted; " if committed else ""
        self.say(f"{printable(sid)}: {left}awaiting review of {commit[:12]} ({stat or 'no changes'}): "
                 f"`{ORCHESTRATE} review {printable(sid)}`, then approve or reject")
        self.notify("needs_review", stream_id=sid, commit=commit, diff_stat=stat)

    def poll(self, rows: Mapping[str, Life], apply: Apply, now: float) -> None:
        """Act on the decisions recorded for streams awaiting review."""
        for sid, life in list(rows.items()):
            if life.state is not StreamState.AWAITING_REVIEW:
                continue
            record = gates.read_record(self.state, sid)
            if record is None or not record.decision:
                continue
            if record.decision == "approved":
                apply(sid, Approved(record.commit), now)
                self.say(f"{printable(sid)}: approved at {record.commit[:12]}; merging exactly that commit")
            else:
                apply(sid, Rejected(gates.review_feedback_text(record.reason, record.commit)), now)
                self.say(f"{printable(sid)}: rejected in review ({printable(record.reason, 300)}); "
                         "handing it back to its agent")

    def merged(self, sid: str) -> None:
        gates.clear(self.state, sid)
