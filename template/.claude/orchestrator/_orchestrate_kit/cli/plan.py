"""`plan` (levels, critical path, what would start) and `preflight` (the worker command's check)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from typing import Dict, List

from ..agent.claude import preflight
from ..git import workspaces
from ..graph import critical_path
from ..lifecycle import carried_rows, load_table
from ..names import printable
from ..executor import read_workers
from ..scheduler import first_starts
from ..settings import EXIT_OK, EXIT_STUCK, EXIT_USAGE, Layout, load_settings, setting_warnings
from ..status import board_for, open_database, take_snapshot
from .start import claim_warnings, clash_message

def cmd_preflight(args: argparse.Namespace, layout: Layout) -> int:
    """Check the worker command as `start` does before it spawns anything (`doctor` asks too)."""
    settings = load_settings(layout.config_files())
    if settings.executor == "ray":  # the workers run on the cluster's nodes: the cluster is what to check here
        from ..executor.ray.cluster import print_checks

        return EXIT_OK if print_checks(layout, settings, args.json) else EXIT_STUCK
    argv = settings.worker_argv()
    result = preflight(argv)
    if args.json:
        print(json.dumps({"command": argv[0], "version": result.version, "logged_in": result.logged_in,
                          "problems": [{"check": p.check, "message": p.message, "fix": p.fix}
                                       for p in result.problems]}, indent=2))
    else:
        login = {True: "logged in", False: "not logged in", None: "login state unknown"}[result.logged_in]
        print(f"worker command: {argv[0]} {result.version or '(version unknown)'}; {login}")
        for problem in result.problems:
            print(f"problem: {problem.message}\n  fix: {problem.fix}")
    return EXIT_OK if not result.problems else EXIT_STUCK


def cmd_plan(args: argparse.Namespace, layout: Layout) -> int:
    location = open_database(layout, args.db, args.tracker)
    snapshot = take_snapshot(location)
    task_waits = {sid: list(rec.task_waits) for sid, rec in snapshot.streams.items() if rec.task_waits}
    settings = load_settings(layout.config_files())
    table, _ = load_table(layout.run_file)
    table.rows = carried_rows(table)  # what the next `start` would go on with
    now = time.time()
    board = board_for(snapshot, table, read_workers(layout), settings, now)
    levels: Dict[int, List[str]] = {}
    for view in board.views.values():
        if view.level is not None:
            levels.setdefault(view.level, []).append(view.stream_id)
    path = critical_path(snapshot.streams, board.order)
    at_once, paced = first_starts(board, replace(settings, max_parallel=0), now)  # every ready stream
    ready = at_once + paced
    problems = board.problems.messages()
    if settings.isolation != "none" and workspaces.default_isolation(layout.root) == "worktree":
        clashes = workspaces.name_clashes(snapshot.streams)
        problems += [clash_message(clashes)] if clashes else []
    claims = claim_warnings(snapshot.streams) + setting_warnings(layout.config_files())
    if args.json:
        print(json.dumps({
            "database": str(location.path), "tracker": location.generation, "database_found_by": location.how,
            "database_notes": list(location.notes), "task_waits": task_waits, "streams": len(board.views),
            "levels": [levels[k] for k in sorted(levels)], "critical_path": path,
            "ready": ready, "paced": paced, "problems": problems, "warnings": snapshot.warnings() + claims,
        }, indent=2))
    else:
        print(f"Database: {location.path} (tracker {location.generation}, {printable(location.how)})")
        for note in location.notes:
            print(f"note: {printable(note)}")
        if not board.views:
            print(f"No streams found in Task Copilot database {location.path}.")
        for level in sorted(levels):
            print(f"Level {level}: " + ", ".join(printable(s) for s in levels[level]))
        for sid, waits in task_waits.items():
            print(f"{printable(sid)} waits on task(s): " + ", ".join(printable(t) for t in waits))
        if path:
            print(f"Critical path ({len(path)} stream(s) to go): " + " -> ".join(printable(s) for s in path))
        print("Would start now: " + (", ".join(printable(s) for s in ready) or "nothing")
              + (f" (the first {len(at_once)} at once, then one every {settings.spawn_gap:g} s)" if paced else ""))
        for line in snapshot.warnings() + claims:
            print(f"warning: {printable(line)}", file=sys.stderr)
        for line in problems:
            print(f"error: {printable(line)}", file=sys.stderr)
    return EXIT_USAGE if problems or not board.views else EXIT_OK
