"""Generation 2 of Task Copilot, the `tc` CLI: where its database is, and how to read it.

`tc` opens the first `.copilot/tasks.db` it finds walking up from the current
folder; it has no environment settings. A worker running in the project, or in
a worktree under `<project>/.claude/worktrees/<name>`, finds the project's file
by the same walk, unless a `.copilot/tasks.db` sits closer (for instance one
committed to git and checked out in the worktree): `finds_from` tells.

Tables read: `tasks` (integer ids, `stream_id` -> `streams.id`, metadata JSON),
`streams` (`name`, `status` active / paused / completed / archived) and
`task_dependencies` (`task_id` waits for `depends_on`). A task's stream is its
metadata streamId, else its streams row's name; archived rows are ignored.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from .snapshot import FINISHED_STATUSES, BadRow, TaskRef, as_bytes, chunks, connect_readonly

DB_PARTS = (".copilot", "tasks.db")
REQUIRED_TABLES = ("tasks", "streams", "task_dependencies")


def finds_from(folder: Path) -> Optional[Path]:
    """The database `tc` run in `folder` uses: the nearest .copilot/tasks.db walking up."""
    current = Path(folder).absolute()
    while True:
        candidate = current.joinpath(*DB_PARTS)
        if candidate.exists():
            return candidate
        if current.parent == current:
            return None
        current = current.parent


def looks_like_tc(path: Path) -> bool:
    """True for a file named .copilot/tasks.db, or one with tc's tables."""
    if path.parts[-2:] == DB_PARTS:
        return True
    try:
        conn = connect_readonly(path, 0.5)
        try:
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return False
    return set(REQUIRED_TABLES) <= names


# ---------------------------------------------------------------- reading

# Grouped by metadata text, streams row and status: one statement whatever the number of streams.
_SNAPSHOT_SQL = ("SELECT t.metadata, s.name, s.status, t.status, COUNT(*) FROM tasks t "
                 "LEFT JOIN streams s ON s.id = t.stream_id GROUP BY t.metadata, t.stream_id, t.status")

# Open task-level dependencies only: a finished task waits for nothing, a finished one is waited for by nobody.
_OPEN = "NOT IN ('completed', 'cancelled')"
_CROSS_WAITS_SQL = (
    "SELECT d.id, t.metadata, ts.name, ts.status, d.metadata, ds.name, ds.status FROM task_dependencies td "
    "JOIN tasks t ON t.id = td.task_id JOIN tasks d ON d.id = td.depends_on "
    "LEFT JOIN streams ts ON ts.id = t.stream_id LEFT JOIN streams ds ON ds.id = d.stream_id "
    f"WHERE t.status {_OPEN} AND d.status {_OPEN}"
)

# The stream of a task in SQL, as `tracker_snapshot.stream_of` decides it in Python.
_STREAM_OF_TASK = (
    "CASE WHEN t.metadata IS NULL OR trim(t.metadata) IN ('', 'null') THEN s.name "
    "WHEN json_valid(t.metadata) AND json_type(t.metadata) = 'object' THEN "
    "CASE WHEN json_type(t.metadata, '$.streamId') IS NULL THEN s.name "
    "ELSE json_extract(t.metadata, '$.streamId') END END"
)


class Queries:
    """The SQL of generation 2."""

    generation = "tc"

    def __init__(self, conn: sqlite3.Connection, tables: Dict[str, set]):
        missing = [t for t in REQUIRED_TABLES if t not in tables]
        if missing:
            raise sqlite3.DatabaseError(f"not a tc database: no {', '.join(missing)} table")

    def rows(self, conn: sqlite3.Connection) -> List[tuple]:
        return conn.execute(_SNAPSHOT_SQL).fetchall()

    def lookup(self, conn: sqlite3.Connection, ids: List[str]) -> Dict[str, TaskRef]:
        """Tasks named by metadata dependency entries (task ids are integers here)."""
        numbers = [int(i) for i in ids if i.isdigit()]
        refs = {}
        for part in chunks(numbers):
            sql = ("SELECT t.id, t.metadata, s.name, s.status, t.status FROM tasks t LEFT JOIN streams s "
                   f"ON s.id = t.stream_id WHERE t.id IN ({','.join('?' * len(part))})")
            for task_id, metadata, name, row_status, status in conn.execute(sql, list(part)):
                refs[str(task_id)] = TaskRef(metadata, name, row_status, status in FINISHED_STATUSES)
        return refs

    def cross_waits(self, conn: sqlite3.Connection) -> Iterable[Tuple[str, TaskRef, TaskRef]]:
        return [(str(dep_id), TaskRef(t_meta, t_name, t_status, False), TaskRef(d_meta, d_name, d_status, False))
                for dep_id, t_meta, t_name, t_status, d_meta, d_name, d_status in conn.execute(_CROSS_WAITS_SQL)]

    def tasks_with(self, conn: sqlite3.Connection, texts: List[str]) -> List[BadRow]:
        """(id, title, metadata, streams row name, its status) of the tasks whose metadata is one of these."""
        found: List[BadRow] = []
        for part in chunks(texts):
            sql = ("SELECT t.id, t.title, t.metadata, s.name, s.status FROM tasks t LEFT JOIN streams s "
                   f"ON s.id = t.stream_id WHERE CAST(t.metadata AS BLOB) IN ({','.join('?' * len(part))})")
            found += conn.execute(sql, [as_bytes(t) for t in part]).fetchall()
        return found

    def stream_tasks(self, conn: sqlite3.Connection, stream_id: str) -> List[Tuple[str, str, str]]:
        sql = (f"SELECT t.id, t.title, t.status FROM tasks t LEFT JOIN streams s ON s.id = t.stream_id "
               f"WHERE {_STREAM_OF_TASK} = ? AND COALESCE(s.status, '') != 'archived' ORDER BY t.created_at, t.rowid")
        return [(str(i), title, status) for i, title, status in conn.execute(sql, (stream_id,))]


def update_instructions() -> str:
    return ("Update each task with the tc CLI as you go (run it in your working folder; it finds this project's "
            ".copilot/tasks.db): `tc task update <id> --status in_progress` when you start it, "
            "`tc task update <id> --status completed` when it is done, `tc task update <id> --status blocked` if "
            "you cannot finish it; `tc task get <id> --json` and `tc task list --stream <stream number> --json` "
            "show them.")
