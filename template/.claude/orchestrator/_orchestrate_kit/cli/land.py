"""`land`: bring the finished run's integration branch into the user's current branch."""

from __future__ import annotations

import argparse

from .. import locks
from ..git import merging
from ..lifecycle import StreamState, load_table, save_table
from ..names import printable
from ..settings import EXIT_OK, EXIT_STUCK, Layout, UserError
from ..status import live_orchestrator

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
        unfinished = sorted(sid for sid, life in table.rows.items()
                            if life.state is not StreamState.COMPLETE and life.ran)
        for line in merging.land_run(layout.root, table.run, table.rows):
            print(line)
        if unfinished:
            print("Not landed (not complete): " + ", ".join(printable(s) for s in unfinished)
                  + "; their work stays on their stream branches")
        table.run.integration_branch = table.run.base = None  # the next start begins a new run
        save_table(layout.run_file, table)
    finally:
        lock.release()
    return EXIT_OK
