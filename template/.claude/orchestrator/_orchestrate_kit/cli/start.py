"""`start`: the checks before anything is written, then the supervisor (or a background one)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set, Tuple

from .. import locks
from ..executor import read_workers
from ..executor.processes import read_pid_file
from ..agent.claude import preflight
from ..git import gating, merging, workspaces
from ..graph import Board
from ..lifecycle import StreamState, carried_rows, load_table
from ..names import printable
from ..requests import send_request
from ..scheduler import first_starts
from ..settings import (EXIT_OK, EXIT_STUCK, Layout, Settings, UserError, database_lock_path, load_settings,
                        setting_warnings)
from ..status import (
    METADATA_EXAMPLE,
    board_for,
    last_log_line,
    live_orchestrator,
    open_database,
    take_snapshot,
    write_orchestrator_record,
)
from ..announce import Reporter
from ..trackers import DatabaseLocation
from .common import PROG, unknown_stream_message

ENTRY_SCRIPT = Path(__file__).resolve().parents[2] / "orchestrate.py"  # what users and `--detach` run
LOCK_FD_ENV = "ORCHESTRATE_KIT_LOCK_FDS"  # a detached orchestrator's inherited locks


def settings_from(args: argparse.Namespace, layout: Layout) -> Settings:
    settings = load_settings(layout.config_files())
    overrides = {
        "max_parallel": getattr(args, "max_parallel", None),
        "max_restarts": getattr(args, "max_restarts", None),
        "poll_interval": getattr(args, "poll_interval", None),
        "max_cost_usd": getattr(args, "max_cost_usd", None),
        "isolation": getattr(args, "isolation", None),
        "executor": getattr(args, "executor", None),
    }
    return replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def with_dependencies(streams: Dict, selection: Iterable[str]) -> Set[str]:
    """The selected streams and everything they depend on, transitively."""
    seen: Set[str] = set()
    todo = list(selection)
    while todo:
        sid = todo.pop()
        if sid in seen:
            continue
        seen.add(sid)
        if sid in streams:
            todo.extend(streams[sid].dependencies)
    return seen


def check_before_start(layout: Layout, settings: Settings, args: argparse.Namespace) -> Tuple[DatabaseLocation, Optional[Set[str]], Board]:
    """Everything `start` checks before it writes or spawns anything; each failure says how to fix it."""
    location = open_database(layout, args.db, args.tracker)
    refusal = location.worker_refusal()
    if refusal:
        raise UserError(f"no worker could open the database this run reads, so nothing was started: {refusal}")
    snapshot = take_snapshot(location)
    if not snapshot.streams:
        raise UserError(
            f"No streams found in Task Copilot database {location.path}. A task belongs to a stream "
            f"when its metadata has a streamId, e.g. {METADATA_EXAMPLE}"
            + "".join(f"\n  {printable(line)}" for line in snapshot.warnings()))
    selection = set(args.streams) if args.streams else None
    unknown = sorted((selection or set()) - set(snapshot.streams))
    if unknown:
        raise UserError(unknown_stream_message(unknown, snapshot.streams))
    clashes = workspaces.name_clashes(snapshot.streams) if settings.isolation == "worktree" else []
    if clashes:
        raise UserError(clash_message(clashes))
    for line in claim_warnings(snapshot.streams) + setting_warnings(layout.config_files()):
        print(f"{PROG}: warning: {line}", file=sys.stderr)
    if args.detach or args.dry_run:  # a foreground run says them itself, in its log lines
        for line in snapshot.warnings():
            print(f"{PROG}: warning: {printable(line)}", file=sys.stderr)
    table, _ = load_table(layout.run_file)
    table.rows = carried_rows(table)  # what this start goes on with (a new run after one that ended)
    board = board_for(snapshot, table, read_workers(layout), settings, time.time())
    scope = with_dependencies(snapshot.streams, selection) if selection else set(snapshot.streams)
    bad = {s for s in scope if board.views.get(s) and board.views[s].state is StreamState.INVALID}
    if bad:
        raise UserError("the stream graph is invalid; nothing was started:\n  "
                        + "\n  ".join(printable(m) for m in board.problems.messages(bad)
                                       + ([] if args.detach or args.dry_run else snapshot.warnings())))
    if settings.executor == "ray":  # workers run on the cluster's nodes: their worker command is checked there
        if not args.dry_run:
            check_cluster(layout, settings, probe=not args.no_preflight)
        return location, selection, board
    command = settings.worker_argv()[0]
    if shutil.which(command) is None:
        raise UserError(f"worker command {command!r} was not found on PATH. Install it, or set another with "
                        "`orchestrate-kit config worker_command '...'`")
    if not args.dry_run and not args.no_preflight:
        check_worker_command(settings)
    refused = None if args.dry_run else gating.refusal(layout.root, settings, settings.isolation)
    if refused:  # merge_gate = pr without gh or its login, a push remote that is missing, ...
        raise UserError(f"{printable(refused, 600)}; nothing was started")
    return location, selection, board


def check_cluster(layout: Layout, settings: Settings, probe: bool) -> None:
    """executor = ray: the cluster, the git remote the nodes use, and the worker command on a node."""
    from ..executor.ray.cluster import NotReady, refuse_unless_ready

    try:
        refuse_unless_ready(layout, settings, probe, lambda line: print(f"{PROG}: {line}", file=sys.stderr))
    except NotReady as exc:
        text = str(exc)
        raise UserError(text if "nothing was started" in text else f"{text}; nothing was started") from None


def check_worker_command(settings: Settings) -> None:
    """The worker command runs, is logged in and may run as this user: else refuse, with the fix."""
    result = preflight(settings.worker_argv())
    if result.problems:
        raise UserError("the worker command is not ready, so nothing was started:\n  "
                        + "\n  ".join(f"{p.message}\n    fix: {p.fix}" for p in result.problems)
                        + "\n  (--no-preflight skips these checks)")


def clash_message(clashes: List[Tuple[str, ...]]) -> str:
    groups = "; ".join(" and ".join(printable(s) for s in group) for group in clashes)
    return (f"stream ids that differ only in case would share one worktree and branch ({groups}); rename "
            "one of each in Task Copilot, or use --isolation none")


def claim_warnings(streams: Dict) -> List[str]:
    """Streams that may run at the same time and claim the same files in their tasks' metadata."""
    claims = {sid: rec.files for sid, rec in streams.items() if rec.files}
    if len(claims) < 2:
        return []
    pairs = workspaces.concurrent_pairs({sid: [d for d in rec.dependencies if d in streams]
                                         for sid, rec in streams.items()})
    return [f"{printable(a)} and {printable(b)} may run at the same time and both claim "
            + ", ".join(printable(f) for f in files) + " (expect a merge conflict)"
            for a, b, files in workspaces.overlapping_claims(claims, pairs)]


def cmd_start(args: argparse.Namespace, layout: Layout) -> int:
    settings = settings_from(args, layout)
    settings = replace(settings, isolation=merging.resolve_isolation(settings, layout.root))
    location, selection, board = check_before_start(layout, settings, args)
    if args.dry_run:
        return dry_run(board, settings, selection, args.retry_failed)
    running = live_orchestrator(layout)
    if running and (selection or args.retry_failed):
        payload = {"action": "start", "streams": sorted(selection)} if selection else {"action": "retry_failed"}
        print(send_request(layout, running, payload))
        return EXIT_OK
    if args.detach:
        held = take_locks(layout, location)  # taken here, so a refusal is reported here; the child inherits them
        try:
            return detach(args, layout, held)
        finally:
            for lock in held:
                lock.release()
    held = inherited_locks(layout, location) or take_locks(layout, location)
    try:
        write_orchestrator_record(layout)
        reporter = Reporter(None if getattr(args, "stdout_closed", False) else sys.stdout, layout.orchestrator_log)
        total = len(selection) if selection else len(board.views)
        reporter.say(f"orchestrating {total} stream(s) from {location.path} "
                     f"(workspace {printable(location.workspace_id)}); stop with Ctrl-C or `orchestrate.py stop`")
        for line in (f"database {location.how} (tracker {location.generation})",) + tuple(location.notes):
            reporter.say(printable(line))
        if selection:
            for sid in sorted(selection):
                outside = [d for d in board.views[sid].waiting_on if d not in selection]
                if outside:
                    reporter.say(f"{printable(sid)} waits on " + ", ".join(printable(d) for d in outside)
                                 + ", which this run will not start")
        from ..supervisor import Supervisor  # the loop and everything it drives: only when a run starts

        supervisor = Supervisor(layout, settings, location, selection, reporter, release=selection or set(),
                                retry_failed=args.retry_failed, locks=held)
        return supervisor.run()
    finally:
        current = read_pid_file(layout.orchestrator_pid)
        if current is not None and current.pid == os.getpid():
            layout.orchestrator_pid.unlink()
        for lock in held:
            lock.release()


def take_locks(layout: Layout, location: DatabaseLocation) -> List[locks.Lock]:
    """One orchestrator per project and one per database, or a refusal that names the other one."""
    layout.make_dirs()
    owner = str(layout.root)
    try:
        project = locks.acquire(layout.lock, owner)
    except locks.LockHeld:
        other = live_orchestrator(layout)
        who = f" (pid {other.pid})" if other else ""
        raise UserError(f"an orchestrator is already running on this project{who}. "
                        "See `orchestrate.py status`, or `orchestrate.py stop` it first.", EXIT_STUCK) from None
    db_lock_path = database_lock_path(location.path)
    try:
        database = locks.acquire(db_lock_path, owner)
    except locks.LockHeld as exc:
        project.release()
        raise UserError(f"another orchestrator, for the project {exc.holder}, is running the streams of "
                        f"{location.path}. Two projects must not share one Task Copilot workspace: give this "
                        "one its own WORKSPACE_ID, or stop the other orchestrator first.", EXIT_STUCK) from None
    except OSError as exc:
        project.release()
        raise UserError(f"cannot create the database lock {db_lock_path}: {exc}") from None
    return [project, database]


def inherited_locks(layout: Layout, location: DatabaseLocation) -> List[locks.Lock]:
    """The locks a `start --detach` took and handed down to us (see `detach`), if any."""
    text = os.environ.pop(LOCK_FD_ENV, "")  # popped: workers must not see it
    fds = [int(part) for part in text.split(",") if part.isdigit()]
    if len(fds) != 2:
        return []
    owner = str(layout.root)
    held = [locks.adopt(layout.lock, fds[0], owner), locks.adopt(database_lock_path(location.path), fds[1], owner)]
    return [lock for lock in held if lock is not None] if all(held) else []


def dry_run(board: Board, settings: Settings, selection: Optional[Set[str]], retry_failed: bool) -> int:
    at_once, paced = first_starts(board, settings, time.time(), selection)
    order = at_once + paced
    if order:
        print("Would start now: " + ", ".join(printable(s) for s in at_once))
    else:
        print("Nothing would start now.")
    if paced:
        print(f"Then, one every {settings.spawn_gap:g} s (spawn_gap): " + ", ".join(printable(s) for s in paced))
    for view in board.views.values():
        if (selection is None or view.stream_id in selection) and view.stream_id not in order:
            print(f"  {printable(view.stream_id)}: {printable(view.describe())}")
    if retry_failed and board.in_state(StreamState.FAILED):
        print("With --retry-failed, these failed streams get a fresh budget: "
              + ", ".join(printable(v.stream_id) for v in board.in_state(StreamState.FAILED)))
    return EXIT_OK


def detach(args: argparse.Namespace, layout: Layout, held: List[locks.Lock]) -> int:
    """Start the orchestrator in the background and return once it has taken over.

    The caller holds the locks and the child inherits them, so of several `start --detach`
    at once exactly one gets them and the others are refused in the foreground, with the
    reason. The child runs in the caller's folder, so relative paths mean the same to it.
    """
    argv = [sys.executable, str(ENTRY_SCRIPT)] + [a for a in args.raw_argv if a != "--detach"]
    if not args.no_preflight:
        argv.append("--no-preflight")  # checked here already: the child need not ask the worker command again
    fds = [lock.fd for lock in held]
    env = dict(os.environ, **{LOCK_FD_ENV: ",".join(str(fd) for fd in fds)})
    with open(layout.orchestrator_log, "ab") as log:
        child = subprocess.Popen(argv, cwd=os.getcwd(), stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True, env=env, pass_fds=tuple(fds))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        record = live_orchestrator(layout)
        if record and record.pid == child.pid:
            log_rel = os.path.relpath(layout.orchestrator_log, Path.cwd())
            print(f"Orchestrator started in the background (pid {child.pid}); log: {log_rel}\n"
                  "Watch it with ./watch-status, or `orchestrate.py status`.")
            return EXIT_OK
        code = child.poll()
        if code is not None:
            print(f"{PROG}: the background orchestrator exited at once (code {code}); "
                  f"see {layout.orchestrator_log}:\n  {printable(last_log_line(layout.orchestrator_log))}",
                  file=sys.stderr)
            return code or EXIT_STUCK
        time.sleep(0.05)
    print(f"{PROG}: the background orchestrator (pid {child.pid}) did not report in; see {layout.orchestrator_log}",
          file=sys.stderr)
    return EXIT_STUCK
