"""Fixtures for the bats suite that bash cannot make well: databases, workers' files, measurements.

    fixture.py db DBPATH < SPEC.json          a real-schema database (tests/support/taskdb.py's spec)
    fixture.py set-status DBPATH STREAM STATUS every task of STREAM to STATUS
    fixture.py worker HOME STREAM PID ATTEMPT TOKEN  a pid file saying the live process PID works on STREAM
    fixture.py failed HOME STREAM ATTEMPTS REASON  run.json: STREAM given up on after ATTEMPTS
    fixture.py states < STATUS.json            "stream<TAB>state" lines from `orchestrate.py status --json`
    fixture.py columns < TEXT                  the widest line in terminal columns (escapes removed)

HOME is a project's .claude/orchestrator. The workers' files are written with
the runtime's own functions, so they are exactly what the supervisor writes.
"""

from __future__ import annotations

import json
import re
import sys
import time
import unicodedata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support import taskdb  # noqa: E402

CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def runtime(home: str):
    """The project's runtime modules (a copy of template/), imported from HOME, and its layout."""
    sys.path.insert(0, home)
    from _orchestrate_kit import lifecycle, settings  # noqa: E402
    from _orchestrate_kit.executor import processes  # noqa: E402

    layout = settings.layout_for(Path(home))
    layout.make_dirs()
    return layout, lifecycle, processes


def cmd_db(path: str) -> None:
    taskdb.build_from_spec(Path(path), json.load(sys.stdin))


def cmd_set_status(path: str, stream: str, status: str) -> None:
    taskdb.set_stream_status(Path(path), stream, status)


def cmd_worker(home: str, stream: str, pid: str, attempt: str, token: str) -> None:
    layout, _, processes = runtime(home)
    start = processes.process_start_time(int(pid))
    if start is None:
        sys.exit(f"fixture.py: process {pid} is not alive")
    record = processes.PidRecord(int(pid), start, stream, int(attempt), time.time() - 75, token)
    processes.write_pid_file(layout.pid_for(stream), record)


def cmd_failed(home: str, stream: str, attempts: str, reason: str) -> None:
    layout, lifecycle, _ = runtime(home)
    table, _ = lifecycle.load_table(layout.run_file)
    count = int(attempts)
    table.rows[stream] = lifecycle.Life(state=lifecycle.StreamState.FAILED, attempts=count, failures=count,
                                        reason=reason, ran=True)
    lifecycle.save_table(layout.run_file, table)


def cmd_states() -> None:
    for stream in json.load(sys.stdin)["streams"]:
        print(f"{stream['stream_id']}\t{stream['state']}")


def columns(line: str) -> int:
    """Terminal columns of a line: double-width characters count two, combining marks none."""
    width = 0
    for char in line:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in "WF" else 1
    return width


def cmd_columns() -> None:
    text = CSI.sub("", sys.stdin.buffer.read().decode("utf-8", "replace"))
    print(max((columns(line) for line in text.split("\n")), default=0))


COMMANDS = {"db": cmd_db, "set-status": cmd_set_status, "worker": cmd_worker, "failed": cmd_failed,
            "states": cmd_states, "columns": cmd_columns}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    COMMANDS[sys.argv[1]](*sys.argv[2:])
