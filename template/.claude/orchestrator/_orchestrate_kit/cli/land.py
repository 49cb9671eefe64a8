"""`land [--partial] [--push]`: bring the run's integration branch into the user's current branch.

A run is landed once the whole plan is complete (every stream merged); `--partial` lands what is
merged now and leaves the other streams' branches and worktrees for the next run. `--push` then
pushes the landed branch to push_remote (never forced, with the user's own pre-push hook); a
refused push leaves the landing as it is and says why (exit 1)."""

from __future__ import annotations

import argparse
import time
from typing import Dict

from .. import locks
from ..git import merging, remote
from ..executor import read_workers
from ..lifecycle import StreamState, Table, load_table, save_table
from ..names import printable
from ..settings import EXIT_OK, EXIT_STUCK, Layout, UserError, load_settings
from ..status import as_it_ended, board_for, live_orchestrator, open_database, take_snapshot
from ..summary import ORCHESTRATE, still_to_run

LISTED = 10


def cmd_land(args: argparse.Namespace, layout: Layout) -> int:
    """Bring the run's integration branch into the user's current branch, then tidy the run's branches."""
    if live_orchestrator(layout):
        raise UserError("the orchestrator is still running; wait for the run to end (or `orchestrate.py stop` it), "
                        "then land", EXIT_STUCK)
    layout.make_dirs()
    try:
        lock = locks.acquire(layout.lock, str(layout.root))
    except locks.LockHeld:
        raise UserError("an orchestrator is starting on this project; try again once it has ended",
                        EXIT_STUCK) from None
    try:
        table, _ = load_table(layout.run_file)
        missing = not_complete(layout, table, args.partial)
        if missing and not args.partial:
            raise UserError(refusal(missing), EXIT_STUCK)
        landed = [sid for sid, life in table.rows.items() if life.state is StreamState.COMPLETE]
        for line in merging.land_run(layout.root, table.run, landed, missing):
            print(line)
        table.run.integration_branch = table.run.base = None  # the next start begins a new run
        save_table(layout.run_file, table)
    finally:
        lock.release()
    return push_landed(layout) if getattr(args, "push", False) else EXIT_OK


def push_landed(layout: Layout) -> int:
    """`land --push`: the branch just landed on, to push_remote."""
    where = load_settings(layout.config_files()).push_remote
    pushed = remote.push_landed(layout.root, where)
    if pushed.ok:
        state = "already up to date there" if pushed.status == "up_to_date" else f"at {pushed.commit[:12]}"
        print(f"Pushed {printable(pushed.branch)} to {printable(where)} ({state}).")
        return EXIT_OK
    raise UserError(f"landed, but {printable(pushed.branch)} was not pushed to {printable(where)}: "
                    f"{printable(pushed.reason, 500)}", EXIT_STUCK)


def not_complete(layout: Layout, table: Table, partial: bool) -> Dict[str, str]:
    """The plan's streams that are not complete and merged, with their state, as the tracker and the
    saved run say (the tracker may be unreadable: `--partial` lands without it)."""
    if not table.run.integration_branch:
        return {}  # nothing to land: land_run says so
    try:
        snapshot = take_snapshot(open_database(layout, None))
    except UserError as exc:
        if partial:
            return {sid: life.state.value for sid, life in table.rows.items()
                    if life.state is not StreamState.COMPLETE and life.ran}
        raise UserError(f"cannot tell whether the run is complete: {exc}; `{ORCHESTRATE} land --partial` lands what "
                        "is merged without asking the tracker", EXIT_STUCK) from None
    board = board_for(snapshot, as_it_ended(table), read_workers(layout), load_settings(layout.config_files()),
                      time.time())
    return {view.stream_id: view.describe() for view in still_to_run(board)}


def refusal(missing: Dict[str, str]) -> str:
    listed = "; ".join(f"{printable(sid)} ({printable(state, 120)})" for sid, state in list(missing.items())[:LISTED])
    more = f"; and {len(missing) - LISTED} more" if len(missing) > LISTED else ""
    return (f"the run is not complete, so nothing was landed: {len(missing)} stream(s) of the plan are not merged: "
            f"{listed}{more}. Finish them (`{ORCHESTRATE} start`), or land what is merged now with "
            f"`{ORCHESTRATE} land --partial` (their branches and worktrees stay for the next run)")
