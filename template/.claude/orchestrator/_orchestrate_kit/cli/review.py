"""`review STREAM`, `approve STREAM`, `reject STREAM --reason TEXT`: the review gate (git/gates.py) on the command line.

They act on a stream the saved table shows `awaiting_review` (merge_gate = review). Each
records its step in the stream's review record first, so it holds whatever happens next:
- review prints what merging would bring and records the commit it showed;
- approve checks that the stream branch is still at that commit (else it names the new one:
  review again) and records the approval; the next `start` merges exactly that commit;
- reject records the reason and the commit; the next attempt of the stream's agent gets them.
With an orchestrator running, approve and reject then hand it the request (requests.py:
actions `approve` and `reject`), so it acts at once instead of at the next start.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
from typing import Optional, Tuple

from ..executor.processes import TOKEN_VARIABLE
from ..git import gates
from ..git.workspaces import RunInfo
from ..lifecycle import Table, load_table
from ..names import printable
from ..requests import send_request
from ..settings import EXIT_OK, EXIT_STUCK, Layout, UserError
from ..status import live_orchestrator
from .common import PROG, known_streams, unknown_stream_message

AWAITING_REVIEW = "awaiting_review"  # the lifecycle state merge_gate = review parks a finished stream in


def cmd_review(args: argparse.Namespace, layout: Layout) -> int:
    run, sid = reviewable(layout, args.stream)
    try:
        shown = gates.review(layout.root, layout.state, run, sid, layout.log_for(sid))
    except gates.GateError as exc:
        raise UserError(str(exc), EXIT_STUCK) from None
    if args.json:
        print(json.dumps(shown.as_dict(), indent=2))
    else:
        for line in review_lines(shown, with_diff=not args.stat):
            print(line)
    return EXIT_OK


def cmd_approve(args: argparse.Namespace, layout: Layout) -> int:
    if os.environ.get(TOKEN_VARIABLE):  # a speed bump, not a wall: an agent must not approve its own work
        raise UserError("approve was run by a worker (or a merge check) of this run: a stream's work is approved "
                        "by a person, from a terminal of their own", EXIT_STUCK)
    _, sid = reviewable(layout, args.stream)
    try:
        commit = gates.approve(layout.root, layout.state, sid)
    except gates.GateError as exc:
        raise UserError(str(exc), EXIT_STUCK) from None
    done = f"Approved {printable(sid)} at {commit[:12]}"
    handed = hand_over(layout, {"action": "approve", "streams": [sid], "commit": commit})
    print(handed or f"{done}: the next `orchestrate.py start` merges exactly that commit.")
    return EXIT_OK


def cmd_reject(args: argparse.Namespace, layout: Layout) -> int:
    _, sid = reviewable(layout, args.stream)
    try:
        rejected = gates.reject(layout.root, layout.state, sid, args.reason)
    except gates.GateError as exc:
        raise UserError(str(exc), EXIT_STUCK) from None
    handed = hand_over(layout, {"action": "reject", "streams": [sid], "commit": rejected.commit,
                                "reason": rejected.reason})
    print(handed or f"Rejected {printable(sid)} at {rejected.commit[:12]}: the next `orchestrate.py start` hands "
                    "it back to its agent with your reason.")
    return EXIT_OK


def hand_over(layout: Layout, payload: dict) -> Optional[str]:
    """Give a running orchestrator the request; what to print, or None when none runs (the record is enough)."""
    orchestrator = live_orchestrator(layout)
    if orchestrator is None:
        return None
    answer = send_request(layout, orchestrator, payload)
    if f"unknown request {payload['action']!r}" in answer:  # an orchestrator of a version without gates
        return (f"Recorded. The running orchestrator (pid {orchestrator.pid}) does not act on `{payload['action']}`; "
                "the next `orchestrate.py start` does.")
    return answer


def reviewable(layout: Layout, stream_id: str) -> Tuple[RunInfo, str]:
    """The run and the stream, if the saved table shows it awaiting review; else a UserError that says why."""
    table, _ = load_table(layout.run_file)
    run = table.run
    if run.isolation != "worktree" or not run.integration_branch:
        raise UserError("review, approve and reject need a run with worktree isolation (merge_gate = review), "
                        "and this project has none: start one with `orchestrate.py start --isolation worktree`",
                        EXIT_STUCK)
    state = saved_state(table, stream_id)
    if state is None:
        known = known_streams(layout)
        if stream_id not in known:
            raise UserError(unknown_stream_message([stream_id], known), EXIT_STUCK)
        raise UserError(f"stream {printable(stream_id)} has not run yet in this run, so it does not await review",
                        EXIT_STUCK)
    if state != AWAITING_REVIEW:
        raise UserError(f"stream {printable(stream_id)} is {state}, not {AWAITING_REVIEW} (with merge_gate = review "
                        "a stream waits there once its tasks are complete)", EXIT_STUCK)
    return RunInfo("worktree", run.integration_branch, run.base), stream_id


def saved_state(table: Table, stream_id: str) -> Optional[str]:
    """The stream's state name in the saved table, or None when the table has no row for it."""
    life = table.rows.get(stream_id)
    return None if life is None else life.state.value


def review_lines(shown: gates.Review, with_diff: bool = True):
    """What `review` prints: what merging brings, the worker's summary, the stat, the diff, the next step."""
    sid, quoted = printable(shown.stream_id), shlex.quote(printable(shown.stream_id))
    yield (f"Stream {sid}: {shown.branch} at {shown.commit[:12]}, {shown.commits} commit(s) that "
           f"{shown.integration_branch} does not have yet.")
    if shown.summary:
        yield "The worker's summary:"
        for line in shown.summary.splitlines():
            yield "  " + inert(line)
    if shown.uncommitted:
        yield ("Changed in its worktree but not committed (not part of this review): "
               + ", ".join(printable(f) for f in shown.uncommitted))
    yield ""
    for line in (shown.stat or " (no changes)\n").splitlines():
        yield inert(line)
    if with_diff and shown.diff:
        yield ""
        for line in shown.diff.splitlines():
            yield inert(line)
        if shown.diff_truncated:
            yield f"[the diff is longer than this; all of it: git diff {shown.base[:12]} {shown.commit[:12]}]"
    yield ""
    yield (f"Merge exactly this commit: {PROG}.py approve {quoted}    "
           f"Hand it back: {PROG}.py reject {quoted} --reason TEXT")


def inert(line: str) -> str:
    """A line of the repository's or an agent's text made safe for a terminal, tabs kept."""
    return "".join(c if c.isprintable() or c == "\t" else repr(c)[1:-1] for c in line)
