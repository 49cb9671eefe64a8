"""Real-schema Task Copilot databases for tests, benchmarks and the bats suite.

The building blocks live in the package (orchestrate_kit.taskdb); this adds test
shapes. Also a command for bash fixtures:  python3 tests/support/taskdb.py PATH SPEC.json
where SPEC is {"streams": [{"id", "name", "deps", "tasks", "statuses", "deps_key"}],
"raw": [[status, metadata], ...], "wal": true, "archived_column": true}.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "generator"))

from orchestrate_kit.taskdb import add_stream, add_task, make_db, schema_sql  # noqa: E402,F401
from orchestrate_kit.taskdb import (  # noqa: E402,F401  (generation 2, the tc CLI)
    add_tc_dependency,
    add_tc_stream,
    add_tc_stream_row,
    add_tc_task,
    make_tc_db,
    tc_stream_condition,
)


def set_stream_status(path: Path, stream_id: str, status: str) -> None:
    conn = sqlite3.connect(path, timeout=10)
    with conn:
        conn.execute(
            "UPDATE tasks SET status = ? WHERE CASE WHEN json_valid(metadata) THEN "
            "json_extract(metadata, '$.streamId') END = ?", (status, stream_id))
    conn.close()


def diamond(path: Path, tasks: int = 2) -> Path:
    """The documented example: A; then B and C in parallel; then Z."""
    make_db(path)
    add_stream(path, "Stream-A", [], tasks, "Foundation")
    add_stream(path, "Stream-B", ["Stream-A"], tasks, "API Implementation")
    add_stream(path, "Stream-C", ["Stream-A"], tasks, "UI Components")
    add_stream(path, "Stream-Z", ["Stream-B", "Stream-C"], tasks, "Integration")
    return path


def set_tc_stream_status(path: Path, stream_id: str, status: str) -> None:
    """Set every task of a tc stream (metadata streamId, else row name) to one status."""
    conn = sqlite3.connect(path, timeout=10)
    with conn:
        conn.execute(f"UPDATE tasks SET status = ? WHERE id IN (SELECT t.id FROM tasks t LEFT JOIN streams s "
                     f"ON s.id = t.stream_id WHERE {tc_stream_condition()} = ?)", (status, stream_id))
    conn.close()


def tc_diamond(project: Path, tasks: int = 2) -> Path:
    """The documented example in a tc database at <project>/.copilot/tasks.db."""
    path = make_tc_db(project)
    add_tc_stream(path, "Stream-A", [], tasks, "Foundation")
    add_tc_stream(path, "Stream-B", ["Stream-A"], tasks, "API Implementation")
    add_tc_stream(path, "Stream-C", ["Stream-A"], tasks, "UI Components")
    add_tc_stream(path, "Stream-Z", ["Stream-B", "Stream-C"], tasks, "Integration")
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
