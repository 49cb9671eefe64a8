"""The command line: parse, check before anything is written, dispatch, print.

`orchestrate.py` beside the package only calls `main`. Standard library only, Python 3.9+.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set, Tuple

from . import locks
from .agent.claude import preflight
from .git import merging
from .git import workspaces
from .logfiles import tail_lines
from .lifecycle import LIVE, USER_STOP, Hold, StreamState, load_table, save_table, transition
from .executor.processes import PidRecord, read_pid_dir, read_pid_file, terminate_groups
from .names import printable
from .scheduler import decide
from .settings import (
    EXIT_OK,
    EXIT_STUCK,
    EXIT_USAGE,
    Layout,
    Settings,
    UserError,
    database_lock_path,
    default_layout,
    load_settings,
)
from .status import (
    METADATA_EXAMPLE,
    board_for,
    collect_status,
    last_log_line,
    live_orchestrator,
    live_workers,
    open_database,
    policy_of,
    render_status,
    take_snapshot,
    write_orchestrator_record,
)
from .graph import Board, critical_path
from .supervisor import Reporter, Supervisor
from .trackers import DatabaseLocation
from .trackers import CHOICES as TRACKER_CHOICES

PROG = "orchestrate"
ENTRY_SCRIPT = Path(__file__).resolve().parents[1] / "orchestrate.py"  # what users and `--detach` run
LOCK_FD_ENV = "ORCHESTRATE_KIT_LOCK_FDS"  # a detached orchestrator's inherited locks
REQUEST_TIMEOUT = 10.0  # seconds a running orchestrator has to answer a request


# ================================================================ settings


def settings_from(args: argparse.Namespace, layout: Layout) -> Settings:
    settings = load_settings(layout.config_files())
    overrides = {
        "max_parallel": getattr(args, "max_parallel", None),
        "max_restarts": getattr(args, "max_restarts", None),
        "poll_interval": getattr(args, "poll_interval", None),
        "max_cost_usd": getattr(args, "max_cost_usd", None),
        "isolation": getattr(args, "isolation", None),
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


def unknown_stream_message(names: Iterable[str], known: Iterable[str]) -> str:
    known = list(known)
    parts = []
    for name in names:
        close = difflib.get_close_matches(name, known, n=3)
        parts.append(printable(name) + (f" (did you mean {', '.join(printable(c) for c in close)}?)" if close else ""))
    listed = ", ".join(printable(s) for s in known[:20]) + (", ..." if len(known) > 20 else "")
    return "unknown stream(s): " + "; ".join(parts) + (f". Known: {listed}" if known else "")


# ================================================================ start


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
            + (f" ({snapshot.warnings()[0]})" if snapshot.warnings() else ""))
    selection = set(args.streams) if args.streams else None
    unknown = sorted((selection or set()) - set(snapshot.streams))
    if unknown:
        raise UserError(unknown_stream_message(unknown, snapshot.streams))
    clashes = workspaces.name_clashes(snapshot.streams) if settings.isolation == "worktree" else []
    if clashes:
        raise UserError(clash_message(clashes))
    for line in claim_warnings(snapshot.streams):
        print(f"{PROG}: warning: {line}", file=sys.stderr)
    table, _ = load_table(layout.run_file)
    board = board_for(snapshot, table, live_workers(layout), settings, time.time())
    scope = with_dependencies(snapshot.streams, selection) if selection else set(snapshot.streams)
    bad = {s for s in scope if board.views.get(s) and board.views[s].state is StreamState.INVALID}
    if bad:
        raise UserError("the stream graph is invalid; nothing was started:\n  "
                        + "\n  ".join(printable(m) for m in board.problems.messages(bad)))
    command = settings.worker_argv()[0]
    if shutil.which(command) is None:
        raise UserError(f"worker command {command!r} was not found on PATH. Install it, or set "
                        f"worker_command in {layout.config}")
    if not args.dry_run and not args.no_preflight:
        check_worker_command(settings)
    return location, selection, board


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
    order = [s.stream_id for s in decide(board, settings, time.time(), selection).spawn]
    if order:
        print("Would start now: " + ", ".join(printable(s) for s in order))
    else:
        print("Nothing would start now.")
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


# ================================================================ requests to a running orchestrator


def post_request(layout: Layout, orchestrator: PidRecord, payload: dict) -> Path:
    """Write a request where the running orchestrator reads it (atomically: it never sees half a
    file), continue it if it was stopped, and wake it. Raises OSError when it cannot be written."""
    layout.requests.mkdir(parents=True, exist_ok=True)
    name = f"{time.time():.6f}-{secrets.token_hex(4)}"
    path = layout.requests / f"{name}.json"
    tmp = layout.requests / f".{name}.tmp"
    tmp.write_text(json.dumps(payload), encoding="utf-8")
    os.replace(tmp, path)
    os.kill(orchestrator.pid, signal.SIGCONT)
    os.kill(orchestrator.pid, signal.SIGUSR1)
    return path


def send_request(layout: Layout, orchestrator: PidRecord, payload: dict) -> str:
    """Hand a request to the running orchestrator and return its answer."""
    path = post_request(layout, orchestrator, payload)
    reply = path.with_suffix(".reply")
    deadline = time.monotonic() + REQUEST_TIMEOUT
    while time.monotonic() < deadline:
        if reply.exists():
            try:
                message = json.loads(reply.read_text(encoding="utf-8"))["message"]
            except (OSError, ValueError, KeyError, TypeError):
                time.sleep(0.05)  # written but not complete yet
                continue
            reply.unlink()
            return f"Handed to the running orchestrator (pid {orchestrator.pid}): {message}."
        if not orchestrator.is_alive():
            break
        time.sleep(0.05)
    try:
        path.unlink()
    except OSError:
        pass
    raise UserError(f"the running orchestrator (pid {orchestrator.pid}) did not answer; "
                    "see `orchestrate.py logs orchestrator`", EXIT_STUCK)


# ================================================================ status, stop, logs, plan


def cmd_status(args: argparse.Namespace, layout: Layout) -> int:
    report = collect_status(layout, args.db, args.tracker)
    if args.json:
        report.places = merging.stream_places(layout.root, report.table.run, report.board.views)
        print(json.dumps(report.to_json(), indent=2))
        return EXIT_OK
    print(render_status(report))
    return EXIT_OK


def cmd_stop(args: argparse.Namespace, layout: Layout) -> int:
    if args.stream is not None:
        return stop_stream(layout, args.stream, args.grace)
    orchestrator = live_orchestrator(layout)
    if orchestrator:
        send_shutdown(layout, orchestrator, args.grace)
    # Workers with no orchestrator (it was killed) are stopped here; stale pid
    # files name no process of ours and are only removed, never signalled.
    records = [rec for rec in read_pid_dir(layout.pids).values() if rec]
    groups = {rec.pid: rec.own_group_members for rec in records if rec.own_group_members()}
    killed = terminate_groups(groups, args.grace)
    for path, record in read_pid_dir(layout.pids).items():
        if record is None or not record.own_group_members():
            path.unlink()
    if groups:
        print(f"Stopped {len(groups)} worker group(s)" + (f", {len(killed)} with KILL" if killed else "") + ".")
    elif not orchestrator:
        print("Nothing to stop: no orchestrator or worker is running.")
    return EXIT_OK


def send_shutdown(layout: Layout, orchestrator: PidRecord, grace: float) -> None:
    """Ask the orchestrator to stop its workers with this grace, wait until it has exited, and
    fail if it did not (a stopped process is continued first, so it can act on the request)."""
    # One way to ask, not both: the request and a TERM would count as two stops, and a second stop
    # means "no more grace" (KILL at once).
    try:
        post_request(layout, orchestrator, {"action": "shutdown", "grace": grace})
    except OSError:
        os.kill(orchestrator.pid, signal.SIGCONT)
        os.kill(orchestrator.pid, signal.SIGTERM)  # it still stops on TERM, with its configured grace
    print(f"Asked the orchestrator (pid {orchestrator.pid}) to stop its workers and exit.")
    deadline = time.monotonic() + grace + 10
    while orchestrator.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if orchestrator.is_alive():
        raise UserError(f"the orchestrator (pid {orchestrator.pid}) is still running {grace + 10:g}s later; "
                        f"end it with `kill -KILL {orchestrator.pid}`, then run `orchestrate.py stop` again",
                        EXIT_STUCK)


def stop_stream(layout: Layout, stream_id: str, grace: float) -> int:
    """Stop one stream's worker and keep it from being restarted until `start STREAM`."""
    orchestrator = live_orchestrator(layout)
    if orchestrator:
        print(send_request(layout, orchestrator, {"action": "stop", "streams": [stream_id], "grace": grace}))
        return EXIT_OK
    record = read_pid_file(layout.pid_for(stream_id))
    members = record.own_group_members() if record and record.stream_id == stream_id else []
    if not members:
        known = known_streams(layout)
        if stream_id not in known:
            raise UserError(unknown_stream_message([stream_id], known), EXIT_STUCK)
        raise UserError(f"stream {printable(stream_id)} has no running worker", EXIT_STUCK)
    layout.make_dirs()
    try:
        lock = locks.acquire(layout.lock, str(layout.root))
    except locks.LockHeld:
        raise UserError("an orchestrator is starting on this project; try again in a moment", EXIT_STUCK) from None
    try:
        killed = terminate_groups({record.pid: record.own_group_members}, grace)
        hold_in_table(layout, stream_id)
    finally:
        lock.release()
    print(f"Stopped the worker of {printable(stream_id)} (pid {record.pid})" + (" with KILL" if killed else "")
          + f". It stays stopped until `orchestrate.py start {shlex.quote(printable(stream_id))}`.")
    return EXIT_OK


def hold_in_table(layout: Layout, stream_id: str) -> None:
    """Mark a stream held in the saved table (no orchestrator runs; the caller holds the lock)."""
    table, _ = load_table(layout.run_file)
    life = table.get(stream_id)
    if life.state in LIVE:
        life = replace(life, state=StreamState.WAITING)  # its worker is gone now
    policy = policy_of(load_settings(layout.config_files()))
    table.rows[stream_id] = transition(life, Hold(USER_STOP), time.time(), policy)
    save_table(layout.run_file, table)


def known_streams(layout: Layout) -> List[str]:
    """Every stream id the tracker or the saved run knows (for 'did you mean')."""
    known = set(load_table(layout.run_file)[0].rows)
    try:
        known |= set(take_snapshot(open_database(layout, None)).streams)
    except UserError:
        pass
    return sorted(known)


def cmd_logs(args: argparse.Namespace, layout: Layout) -> int:
    path = layout.orchestrator_log if args.stream == "orchestrator" else layout.log_for(args.stream)
    if not path.is_file():
        known = known_streams(layout) if args.stream != "orchestrator" else [args.stream]
        if args.stream not in known:
            raise UserError(unknown_stream_message([args.stream], known), EXIT_STUCK)
        if not args.follow:
            raise UserError(f"no log for stream {printable(args.stream)} yet (looked for {path})", EXIT_STUCK)
        print(f"{PROG}: {printable(args.stream)} has not started yet; waiting for its log (Ctrl-C ends)",
              file=sys.stderr, flush=True)
        try:
            while not path.is_file():
                time.sleep(0.2)
        except KeyboardInterrupt:
            return EXIT_OK
    for line in tail_lines(path, args.lines):
        print(printable(line))
    if not args.follow:
        return EXIT_OK
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        buffered = ""
        try:
            while True:
                chunk = handle.read().decode("utf-8", "replace")
                if not chunk:
                    time.sleep(0.2)
                    continue
                buffered += chunk
                *complete, buffered = buffered.split("\n")
                for line in complete:
                    print(printable(line), flush=True)
        except KeyboardInterrupt:
            return EXIT_OK


def cmd_preflight(args: argparse.Namespace, layout: Layout) -> int:
    """Check the worker command as `start` does before it spawns anything (`doctor` asks too)."""
    argv = load_settings(layout.config_files()).worker_argv()
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
    now = time.time()
    board = board_for(snapshot, table, live_workers(layout), settings, now)
    levels: Dict[int, List[str]] = {}
    for view in board.views.values():
        if view.level is not None:
            levels.setdefault(view.level, []).append(view.stream_id)
    path = critical_path(snapshot.streams, board.order)
    ready = [s.stream_id for s in decide(board, replace(settings, max_parallel=0), now).spawn]
    problems = board.problems.messages()
    if settings.isolation != "none" and workspaces.default_isolation(layout.root) == "worktree":
        clashes = workspaces.name_clashes(snapshot.streams)
        problems += [clash_message(clashes)] if clashes else []
    claims = claim_warnings(snapshot.streams)
    if args.json:
        print(json.dumps({
            "database": str(location.path), "tracker": location.generation, "database_found_by": location.how,
            "database_notes": list(location.notes), "task_waits": task_waits, "streams": len(board.views),
            "levels": [levels[k] for k in sorted(levels)], "critical_path": path,
            "ready": ready, "problems": problems, "warnings": snapshot.warnings() + claims,
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
        print("Would start now: " + (", ".join(printable(s) for s in ready) or "nothing"))
        for line in claims:
            print(f"warning: {line}", file=sys.stderr)
        for line in problems:
            print(f"error: {printable(line)}", file=sys.stderr)
    return EXIT_USAGE if problems or not board.views else EXIT_OK


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


# ================================================================ main


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds above 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more, got {text!r}")
    return value


def project_settings(layout: Layout) -> Settings:
    """The project's own settings for --help's defaults; built-in ones if they cannot be read."""
    try:
        return load_settings(layout.config_files())
    except UserError:
        return Settings()


def build_parser(defaults: Settings = Settings()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrate.py",
        description="Run Task Copilot streams in parallel with headless workers, each as soon as "
                    "every stream it depends on is complete.",
        epilog="Exit codes: 0 all complete; 1 stopped with failed or stuck streams; "
               "2 usage error, missing database or invalid graph.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    start = sub.add_parser("start", help="run every stream (or the named ones) as its dependencies complete")
    start.add_argument("streams", nargs="*", metavar="STREAM", help="only these streams (their incomplete dependencies are not started)")
    start.add_argument("--detach", action="store_true", help="run in the background (log: logs/orchestrator.log) and return at once")
    start.add_argument("--max-parallel", type=non_negative_int, metavar="N", help=f"most workers at once (0 = unlimited; default {defaults.max_parallel})")
    start.add_argument("--max-restarts", type=non_negative_int, metavar="N", help=f"restarts per stream before it is failed (default {defaults.max_restarts})")
    start.add_argument("--poll-interval", type=positive_float, metavar="S", help=f"seconds between database checks (default {defaults.poll_interval:g})")
    start.add_argument("--db", metavar="PATH", help="the tasks.db to use (default: from TASK_DB_PATH and WORKSPACE_ID)")
    start.add_argument("--tracker", choices=TRACKER_CHOICES,
                       help="which Task Copilot: mcp (the MCP server) or tc (the tc CLI); default: the tracker setting, auto")
    start.add_argument("--isolation", choices=("worktree", "none"),
                       help="worktree: each stream in its own git worktree, merged in dependency order; none: all "
                            f"in the project root (default: the isolation setting, {defaults.isolation})")
    start.add_argument("--dry-run", action="store_true", help="print what would start; start nothing")
    start.add_argument("--max-cost-usd", type=non_negative_float, metavar="USD",
                       help=f"stop starting workers once the run has cost this much (0 = no limit; default "
                            f"{defaults.max_cost_usd:g})")
    start.add_argument("--no-preflight", action="store_true",
                       help="skip checking that the worker command runs and is logged in (other agent CLIs)")
    start.add_argument("--retry-failed", action="store_true",
                       help="give every failed stream a fresh restart budget and carry the run on")
    start.set_defaults(handler=cmd_start)

    status = sub.add_parser("status", help="every stream's state, tasks, worker and attempts")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--db", metavar="PATH", help="the tasks.db to use")
    status.add_argument("--tracker", choices=TRACKER_CHOICES, help="which Task Copilot: mcp or tc (default: auto)")
    status.set_defaults(handler=cmd_status)

    stop = sub.add_parser("stop", help="stop the orchestrator and its workers (or one stream's worker)")
    stop.add_argument("stream", nargs="?", metavar="STREAM", help="stop only this stream's worker; it is not restarted")
    stop.add_argument("--grace", type=positive_float, default=defaults.stop_grace, metavar="S",
                      help="seconds between TERM and KILL (default %(default)g)")
    stop.set_defaults(handler=cmd_stop)

    logs = sub.add_parser("logs", help="show (or follow) one stream's log, or the orchestrator's")
    logs.add_argument("stream", metavar="STREAM", help="a stream id, or `orchestrator` for the background run's log")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C ends)")
    logs.add_argument("-n", "--lines", type=non_negative_int, default=40, metavar="N", help="lines to show (default %(default)s)")
    logs.set_defaults(handler=cmd_logs)

    check = sub.add_parser("preflight", help="check that the worker command runs, is logged in and may run as you")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(handler=cmd_preflight)

    plan = sub.add_parser("plan", help="dependency levels, the critical path, and what would start now")
    plan.add_argument("--json", action="store_true", help="machine-readable output")
    plan.add_argument("--db", metavar="PATH", help="the tasks.db to use")
    plan.add_argument("--tracker", choices=TRACKER_CHOICES, help="which Task Copilot: mcp or tc (default: auto)")
    plan.set_defaults(handler=cmd_plan)

    land = sub.add_parser("land", help="bring the finished run's integration branch into your current branch")
    land.set_defaults(handler=cmd_land)
    return parser


def ensure_standard_streams() -> Set[int]:
    """Open /dev/null on a closed stdin, stdout or stderr (`>&-`, some cron setups): otherwise the
    next file we open takes its number and worker output or a lock lands in the wrong place.
    Returns the numbers that were closed."""
    closed = set()
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.add(fd)
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")
    return closed


def main(argv: Optional[List[str]] = None, layout: Optional[Layout] = None) -> int:
    closed = ensure_standard_streams()
    argv = sys.argv[1:] if argv is None else list(argv)
    layout = layout or default_layout()
    args = build_parser(project_settings(layout)).parse_args(argv)
    args.raw_argv = argv
    args.stdout_closed = 1 in closed  # `start >&-`: its lines go to the orchestrator log, not /dev/null
    try:
        return args.handler(args, layout)
    except UserError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # a bug: one line for the user, the traceback in a file
        crash = layout.state / "crash.log"
        try:
            layout.make_dirs()
            crash.write_text(traceback.format_exc(), encoding="utf-8")
        except OSError:
            crash = Path("(could not be written)")
        print(f"{PROG}: internal error: {exc!r}; traceback written to {crash}", file=sys.stderr)
        return 70

