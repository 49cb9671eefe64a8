"""`stop` and `stop STREAM`: through the running orchestrator when there is one, else directly."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import time
from dataclasses import replace

from .. import locks
from ..executor.processes import PidRecord, read_pid_dir, read_pid_file, terminate_groups
from ..lifecycle import LIVE, USER_STOP, Hold, StreamState, load_table, save_table, transition
from ..names import printable
from ..requests import post_request, send_request
from ..settings import EXIT_OK, EXIT_STUCK, Layout, UserError, load_settings
from ..status import live_orchestrator, policy_of
from .common import known_streams, unknown_stream_message

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
