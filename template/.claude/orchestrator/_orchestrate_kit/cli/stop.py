"""`stop` and `stop STREAM`: through the running orchestrator when there is one, else directly."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import time
from typing import List, Set, Tuple

from .. import locks
from ..executor import Ended, Executor, Handle, open_check_executor, open_executor
from ..executor.processes import PidRecord
from ..lifecycle import LIVE, USER_STOP, Exited, Hold, StopRequested, StreamState, load_table, save_table, transition
from ..names import printable
from ..requests import post_request, send_request
from ..settings import EXIT_OK, EXIT_STUCK, Layout, UserError, load_settings
from ..status import live_orchestrator, policy_of
from .common import known_streams, unknown_stream_message

POLL_SECONDS = 0.05
KILL_WAIT_SECONDS = 2.0  # after KILL, how long `stop` waits to see the workers gone
STOPPED_HERE = "stopped by `stop` while no orchestrator ran"


def cmd_stop(args: argparse.Namespace, layout: Layout) -> int:
    if args.stream is not None:
        return stop_stream(layout, args.stream, args.grace)
    orchestrator = live_orchestrator(layout)
    if orchestrator:
        send_shutdown(layout, orchestrator, args.grace)
    # Workers with no orchestrator (it was killed) are stopped here, as the executors' records show
    # them; records that name no process of ours are only removed, never signalled.
    executors = [opener(layout, args.grace, time.monotonic) for opener in (open_executor, open_check_executor)]
    found = [(executor, handle) for executor in executors for handle in executor.adopt().live]
    # A worker that ended while no orchestrator ran may have left processes: adopting TERMed them.
    stopped = len(found) + sum(len(executor.cleaning_up()) for executor in executors)
    killed = end_workers(executors, found, args.grace)
    if stopped:
        print(f"Stopped {stopped} worker group(s)" + (f", {killed} with KILL" if killed else "") + ".")
    elif not orchestrator:
        print("Nothing to stop: no orchestrator or worker is running.")
    return EXIT_OK


def end_workers(executors: List[Executor], found: List[Tuple[Executor, Handle]], grace: float) -> int:
    """TERM the workers found, wait up to `grace` for them and for what ended workers left, then KILL
    what is left (blocking: a command, never the loop). Returns how many had to be KILLed."""
    for executor, handle in found:
        executor.terminate(handle)
    deadline = time.monotonic() + grace
    for executor in executors:
        executor.shutdown(deadline)  # what ended workers leave is KILLed by then too
    killed: Set[str] = set()
    while True:
        for executor in executors:
            for handle in list(executor.live().values()):
                executor.poll(handle)
            executor.tick()
        left = {h.stream_id for ex, h in found if h.stream_id in ex.live()}
        left |= {sid for executor in executors for sid in executor.cleaning_up()}
        if not left or time.monotonic() > deadline + KILL_WAIT_SECONDS:
            return len(killed)
        if time.monotonic() >= deadline:  # leftovers are KILLed by the executors' own ticks
            for executor, handle in found:
                if handle.stream_id in executor.live():
                    executor.kill(handle)
            killed |= left
        time.sleep(POLL_SECONDS)


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
    executor = open_executor(layout, grace, time.monotonic)
    live = executor.adopt({stream_id}).live
    if not live:
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
        killed = end_workers([executor], [(executor, live[0])], grace)
        hold_in_table(layout, stream_id)
    finally:
        lock.release()
    print(f"Stopped the worker of {printable(stream_id)} ({live[0].where})" + (" with KILL" if killed else "")
          + f". It stays stopped until `orchestrate.py start {shlex.quote(printable(stream_id))}`.")
    return EXIT_OK


def hold_in_table(layout: Layout, stream_id: str) -> None:
    """Mark a stream held in the saved table (no orchestrator runs; the caller holds the lock): its
    worker was stopped by the user, so its row goes through `stopping` to `held` as in a run."""
    table, _ = load_table(layout.run_file)
    policy = policy_of(load_settings(layout.config_files()), table.run)
    now = time.time()
    life = table.get(stream_id)
    if life.state in LIVE:
        life = transition(life, StopRequested(StreamState.HELD, USER_STOP, now), now, policy)
        life = transition(life, Exited(Ended(why=STOPPED_HERE), complete=False), now, policy)
    table.rows[stream_id] = transition(life, Hold(USER_STOP), now, policy)
    save_table(layout.run_file, table)
