"""A simulated agent for `orchestrate-kit demo`: it stands in for `claude` and says so.

The orchestrator starts it exactly as it would start Claude Code (environment,
prompt as the last argument, output to the stream's log). It opens the Task
Copilot database the way the server does ($TASK_DB_PATH/$WORKSPACE_ID/tasks.db)
and works through its stream's tasks: in_progress, a pause, completed, with a
log line for each. Nothing else in the demo is simulated.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from pathlib import Path

from .taskdb import open_tasks, set_task_status


def database_path() -> Path:
    return Path(os.environ["TASK_DB_PATH"]) / os.environ["WORKSPACE_ID"] / "tasks.db"


def work_through_stream(stream_id: str, pause: float) -> int:
    """Complete the stream's open tasks one by one; return how many were done."""
    conn = sqlite3.connect(database_path(), timeout=30)
    try:
        tasks = open_tasks(conn, stream_id)
        for task_id, title in tasks:
            set_task_status(conn, task_id, "in_progress")
            print(f"[simulated agent] working on {task_id}: {title}", flush=True)
            time.sleep(pause)
            set_task_status(conn, task_id, "completed")
            print(f"[simulated agent] completed {task_id}", flush=True)
        return len(tasks)
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="simulated-agent", description=__doc__.splitlines()[0])
    parser.add_argument("--pause", type=float, default=0.6, help="seconds spent on each task")
    parser.add_argument("prompt", nargs="?", default="", help="the orchestrator's prompt (shown, not obeyed)")
    args = parser.parse_args(argv)
    stream_id = os.environ.get("STREAM_ID", "")
    print(f"[simulated agent] orchestrate-kit demo: no real Claude Code runs here. Stream {stream_id!r}, "
          f"attempt {os.environ.get('ORCHESTRATOR_ATTEMPT', '?')}.", flush=True)
    if args.prompt:
        print(f"[simulated agent] prompt begins: {args.prompt.splitlines()[0]}", flush=True)
    done = work_through_stream(stream_id, args.pause)
    print(f"[simulated agent] stream {stream_id!r} done ({done} task(s)).", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
