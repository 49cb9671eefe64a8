"""Build real Task Copilot databases (the shared schema) for tests, benchmarks and the bats suite.

Usable as a module (`make_db`, `add_stream`, `set_status`) and as a command for
bash fixtures:  python3 tests/support/taskdb.py PATH SPEC.json
where SPEC is {"streams": [{"id": ..., "name": ..., "deps": [...], "tasks": N,
"statuses": [...], "deps_key": "dependencies"}], "raw": [[status, metadata], ...]}.
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
from itertools import count
from pathlib import Path
from typing import Iterable, Optional, Sequence

# A verbatim copy of ../shared/task-copilot-schema.sql (a test checks they agree),
# so the suite runs on a machine that has only this repository.
SCHEMA_FILE = Path(__file__).with_name("task-copilot-schema.sql")
_ids = count(1)
NOW = "2026-11-23T00:00:00Z"


def schema_sql() -> str:
    return SCHEMA_FILE.read_text(encoding="utf-8")


def make_db(path: Path, wal: bool = True, archived_column: bool = True) -> Path:
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
    return path


def add_task(path: Path, metadata, status: str = "pending", title: Optional[str] = None,
             archived: int = 0) -> str:
    """Insert one task; `metadata` is a dict (dumped as JSON) or raw text."""
    task_id = f"TASK-{next(_ids):05d}"
    text = metadata if isinstance(metadata, str) or metadata is None else json.dumps(metadata)
    with sqlite3.connect(path, timeout=10) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(tasks)")}
        if "archived" in columns:
            conn.execute(
                "INSERT INTO tasks (id, title, status, metadata, created_at, updated_at, archived) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (task_id, title or task_id, status, text, NOW, NOW, archived))
        else:
            conn.execute(
                "INSERT INTO tasks (id, title, status, metadata, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (task_id, title or task_id, status, text, NOW, NOW))
    return task_id


def add_stream(path: Path, stream_id: str, deps: Sequence[str] = (), tasks: int = 2,
               name: Optional[str] = None, statuses: Iterable[str] = (), deps_key: str = "dependencies") -> list:
    statuses = list(statuses)
    ids = []
    for i in range(tasks):
        meta = {"streamId": stream_id, deps_key: list(deps)}
        if name:
            meta["streamName"] = name
        status = statuses[i] if i < len(statuses) else "pending"
        ids.append(add_task(path, meta, status, title=f"{stream_id} task {i + 1}"))
    return ids


def set_stream_status(path: Path, stream_id: str, status: str) -> None:
    with sqlite3.connect(path, timeout=10) as conn:
        conn.execute(
            "UPDATE tasks SET status = ? WHERE CASE WHEN json_valid(metadata) THEN "
            "json_extract(metadata, '$.streamId') END = ?", (status, stream_id))


def diamond(path: Path, tasks: int = 2) -> Path:
    """The documented example: A; then B and C in parallel; then Z."""
    make_db(path)
    add_stream(path, "Stream-A", [], tasks, "Foundation")
    add_stream(path, "Stream-B", ["Stream-A"], tasks, "API Implementation")
    add_stream(path, "Stream-C", ["Stream-A"], tasks, "UI Components")
    add_stream(path, "Stream-Z", ["Stream-B", "Stream-C"], tasks, "Integration")
    return path


def build_from_spec(path: Path, spec: dict) -> Path:
    make_db(path, wal=spec.get("wal", True), archived_column=spec.get("archived_column", True))
    for stream in spec.get("streams", []):
        add_stream(path, stream["id"], stream.get("deps", []), stream.get("tasks", 2), stream.get("name"),
                   stream.get("statuses", []), stream.get("deps_key", "dependencies"))
    for status, metadata in spec.get("raw", []):
        add_task(path, metadata, status)
    return path


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    build_from_spec(Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text(encoding="utf-8")))
