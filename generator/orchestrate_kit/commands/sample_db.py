"""``orchestrate-kit sample-db``: a small Task Copilot database of the documented diamond, to try
the orchestrator on before a real plan.

Stream-A, then Stream-B and Stream-C together, then Stream-Z: twelve pending tasks whose work is
harmless (each writes one line into ``orchestrate-kit-trial/`` of the project), so a real worker
command can run them. It is written with the real Task Copilot schema where the runtime looks
for the project's database (``$TASK_DB_PATH`` or ``~/.claude/tasks``, then ``$WORKSPACE_ID`` or
the project folder's name), or at ``--db PATH``; an existing database is never overwritten.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from .. import output, taskdb
from ..errors import UserError

TRIAL_FOLDER = "orchestrate-kit-trial"
DIAMOND = [("Stream-A", "Foundation", []), ("Stream-B", "Parallel work one", ["Stream-A"]),
           ("Stream-C", "Parallel work two", ["Stream-A"]), ("Stream-Z", "Integration", ["Stream-B", "Stream-C"])]
TASKS_PER_STREAM = 3


def default_db(project: Path) -> Path:
    """Where the runtime looks for this project's Task Copilot database, as Task Copilot does."""
    base = Path(os.environ.get("TASK_DB_PATH") or Path.home() / ".claude" / "tasks").expanduser()
    return base / (os.environ.get("WORKSPACE_ID") or project.name) / "tasks.db"


def sample_db(*, project: Path, db: Path | None) -> int:
    """Write the sample database; return the exit code."""
    path = (db or default_db(project)).expanduser().absolute()
    if path.exists():
        raise UserError(f"{path} already exists; a database is never overwritten.",
                        hint="pass --db with a new file, e.g. --db /tmp/trial/tasks.db")
    taskdb.make_db(path)
    for stream_id, name, deps in DIAMOND:
        titles = [f"Write {TRIAL_FOLDER}/{stream_id}-{n}.txt holding the line '{stream_id} task {n} done'"
                  for n in range(1, TASKS_PER_STREAM + 1)]
        taskdb.add_stream(path, stream_id, deps, titles, name)
    output.success(f"Wrote the sample plan to {path}: 4 streams, {4 * TASKS_PER_STREAM} pending tasks")
    db_flag = "" if db is None else f" --db {shlex.quote(str(path))}"
    output.info("Try it (each task writes one line into " + TRIAL_FOLDER + "/ of the project):")
    output.item(f"python3 .claude/orchestrator/orchestrate.py plan{db_flag}")
    output.item(f"python3 .claude/orchestrator/orchestrate.py start{db_flag}")
    output.item(f"./watch-status{db_flag}    # in a second terminal")
    return 0
