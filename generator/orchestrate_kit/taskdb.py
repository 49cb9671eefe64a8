"""Write Task Copilot databases with the real schema: for the demo, the tests and the benchmarks.

The schema in data/task-copilot-schema.sql is a verbatim copy of the one the Task Copilot
server creates (tests/test_schema_copy.py compares them when the server's schema is at hand).
Only sample-db, the demo and the tests write databases; the runtime only ever reads them.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Sequence
from itertools import count
from pathlib import Path

_ids = count(1)
NOW = "2026-11-23T00:00:00Z"


def _data_text(name: str) -> str:
    """A file of the package's data/ folder. importlib.resources is imported here, not above: the
    tests' fake `claude` imports this module in each of its starts and never reads a schema."""
    from importlib import resources

    return (resources.files("orchestrate_kit") / "data" / name).read_text(encoding="utf-8")


def schema_sql() -> str:
    return _data_text("task-copilot-schema.sql")


def make_db(path: Path, wal: bool = True, archived_column: bool = True) -> Path:
    """Create an empty database; WAL mode like the server, or an old one without `archived`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sql = schema_sql()
    if not archived_column:  # a database from before the server's migration 6
        sql = "\n".join(line for line in sql.splitlines() if "archiv" not in line)
        sql = re.sub(r",\s*\)", "\n)", sql)
    with sqlite3.connect(path) as conn:
        if wal:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(sql)
    conn.close()
    return path


def add_task(path: Path, metadata, status: str = "pending", title: str | None = None,
             archived: int = 0, description: str | None = None) -> str:
    """Insert one task; `metadata` is a dict (stored as JSON) or raw text (stored as is)."""
    task_id = f"TASK-{next(_ids):05d}"
    text = metadata if isinstance(metadata, str) or metadata is None else json.dumps(metadata)
    conn = sqlite3.connect(path, timeout=10)
    with conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(tasks)")}
        names = ["id", "title", "description", "status", "metadata", "created_at", "updated_at"]
        values: list[object] = [task_id, title or task_id, description, status, text, NOW, NOW]
        if "archived" in columns:
            names.append("archived")
            values.append(archived)
        conn.execute(f"INSERT INTO tasks ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", values)
    conn.close()
    return task_id


def add_stream(path: Path, stream_id: str, deps: Sequence[str] = (), tasks: int | Sequence[str] = 2,
               name: str | None = None, statuses: Iterable[str] = (), deps_key: str = "dependencies") -> list[str]:
    """Insert a stream's tasks: `tasks` is a count or a list of titles."""
    titles = [f"{stream_id} task {i + 1}" for i in range(tasks)] if isinstance(tasks, int) else list(tasks)
    statuses = list(statuses)
    metadata = {"streamId": stream_id, deps_key: list(deps)}
    if name:
        metadata["streamName"] = name
    return [add_task(path, metadata, statuses[i] if i < len(statuses) else "pending", title)
            for i, title in enumerate(titles)]


def open_tasks(conn: sqlite3.Connection, stream_id: str) -> list[tuple[str, str]]:
    """(id, title) of a stream's unfinished tasks, in order."""
    return [tuple(row) for row in conn.execute(
        "SELECT id, title FROM tasks WHERE CASE WHEN json_valid(metadata) THEN "
        "json_extract(metadata, '$.streamId') END = ? AND status NOT IN ('completed', 'cancelled') "
        "ORDER BY created_at, id", (stream_id,))]


def set_task_status(conn: sqlite3.Connection, task_id: str, status: str) -> None:
    with conn:
        conn.execute("UPDATE tasks SET status = ?, updated_at = datetime('now') WHERE id = ?", (status, task_id))


# ---------------------------------------------------------------- generation 2 (the tc CLI)


def tc_schema_sql() -> str:
    return _data_text("tc-schema.sql")


def make_tc_db(project: Path) -> Path:
    """Create <project>/.copilot/tasks.db as `tc init` does (WAL, tc's tables); returns its path."""
    path = Path(project) / ".copilot" / "tasks.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(tc_schema_sql())
    conn.close()
    return path


def _tc_write(path: Path, sql: str, values: Sequence[object]) -> int:
    conn = sqlite3.connect(path, timeout=10)
    try:
        with conn:
            conn.execute("PRAGMA foreign_keys = ON")
            return int(conn.execute(sql, list(values)).lastrowid or 0)
    finally:
        conn.close()


def add_tc_stream_row(path: Path, name: str, status: str = "active") -> int:
    """A `streams` row (as `tc stream create --name`); returns its integer id."""
    return _tc_write(path, "INSERT INTO streams (name, status) VALUES (?, ?)", (name, status))


def add_tc_task(path: Path, title: str, stream_row: int | None = None, metadata=None, status: str = "pending",
                created_at: str = NOW) -> int:
    """A task (as `tc task create --stream N --metadata JSON`); returns its integer id."""
    text = metadata if isinstance(metadata, str) or metadata is None else json.dumps(metadata)
    return _tc_write(path, "INSERT INTO tasks (title, stream_id, metadata, status, created_at, updated_at) "
                           "VALUES (?, ?, ?, ?, ?, ?)", (title, stream_row, text, status, created_at, created_at))


def add_tc_dependency(path: Path, task_id: int, depends_on: int) -> None:
    """`tc task depend <task> --depends-on <other>`: task_id waits for depends_on."""
    _tc_write(path, "INSERT INTO task_dependencies (task_id, depends_on) VALUES (?, ?)", (task_id, depends_on))


def add_tc_stream(path: Path, stream_id: str, deps: Sequence[str] = (), tasks: int = 2, name: str | None = None,
                  statuses: Iterable[str] = (), row_status: str = "active") -> list[int]:
    """A stream as upstream's planning step writes it: a streams row named by streamName, and tasks
    linked to it whose metadata holds streamId, streamName and dependencies (stream ids)."""
    row = add_tc_stream_row(path, name or stream_id, row_status)
    statuses = list(statuses)
    metadata = {"streamId": stream_id, "streamName": name or stream_id, "dependencies": list(deps)}
    return [add_tc_task(path, f"{stream_id} task {i + 1}", row, metadata,
                        statuses[i] if i < len(statuses) else "pending") for i in range(tasks)]


def tc_stream_condition(alias: str = "t", rows: str = "s") -> str:
    """SQL for "the task's stream", as tc users' agents see it: metadata streamId, else its row's name."""
    return (f"COALESCE(CASE WHEN json_valid({alias}.metadata) THEN json_extract({alias}.metadata, '$.streamId') END, "
            f"{rows}.name)")


def open_tc_tasks(conn: sqlite3.Connection, stream_id: str) -> list[tuple[int, str]]:
    """(id, title) of a tc stream's unfinished tasks, in order (what `tc task list --stream` shows)."""
    return [tuple(row) for row in conn.execute(
        f"SELECT t.id, t.title FROM tasks t LEFT JOIN streams s ON s.id = t.stream_id "
        f"WHERE {tc_stream_condition()} = ? AND t.status NOT IN ('completed', 'cancelled') "
        "ORDER BY t.created_at, t.id", (stream_id,))]


def set_tc_task_status(conn: sqlite3.Connection, task_id: int, status: str) -> None:
    """What `tc task update <id> --status S` writes."""
    with conn:
        conn.execute("UPDATE tasks SET status = ?, updated_at = datetime('now') WHERE id = ?", (status, task_id))
