"""Task updates made on a cluster node, applied to the real database (the orchestrator is its only writer).

A node cannot reach the orchestrator's SQLite file (and SQLite over a network share is unsafe), so
a Ray job carries a read-only snapshot of its stream's tasks (`stream_snapshot`), the node's `tc`
shim or MCP stand-in answers from it, and each update comes back as a structured line in the job's
log (`remote/protocol.py`). `Applier.feed` takes every line of that log as it arrives and writes
each update the way that tracker writes it:
- generation 1 (the MCP server's `task_update`): status, assigned_agent, notes, blocked_reason,
  metadata merged into the stored object; updated_at as the server's `toISOString()`; an archived
  task is refused, as the server refuses it;
- generation 2 (`tc task update`): status, agent, description, priority, title, metadata merged;
  updated_at = datetime('now'); an `agent_log` row when a task with an agent becomes completed.

An agent can print anything, so a line is applied only if it names this job's run, stream, attempt
and token, a task of this stream (from the snapshot the job was given), fields that tracker accepts
(never the plan's stream keys), and a sequence number past the last one applied: a line seen twice
(the tail and the progress ref's backstop replay both carry every update) is applied once, and an
old line never undoes a newer one. The last applied number is saved per job. Done still means the
tracker says so: the scheduler reads the database these updates land in, as for a local worker.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Mapping, Optional

from .. import atomic
from ..remote.protocol import ProtocolError, parse_line
from ..remote.tasks import TaskError, check_update
from . import tc as tracker_tc
from .snapshot import BUSY_TIMEOUT_SECONDS, connect_readonly

KIND = "task_update"
OTHER_KINDS = ("ending", "result")  # structured lines for the executor, not the tracker (protocol.WORKER_KINDS)
_MCP_COLUMNS = {"status": "status", "assignedAgent": "assigned_agent", "notes": "notes",
                "blockedReason": "blocked_reason", "metadata": "metadata"}


# ---------------------------------------------------------------- the snapshot a job carries


def stream_snapshot(db_path: Path, generation: str, stream_id: str) -> Dict[str, Any]:
    """{"generation", "stream", "tasks"}: the stream's tasks in that tracker's own answer shape."""
    conn = connect_readonly(Path(db_path), BUSY_TIMEOUT_SECONDS)
    conn.row_factory = sqlite3.Row
    try:
        if generation == "mcp":
            columns = {row[1] for row in conn.execute("PRAGMA table_info(tasks)")}
            archived = "AND COALESCE(archived, 0) = 0" if "archived" in columns else ""
            rows = conn.execute(
                "SELECT * FROM tasks WHERE CASE WHEN json_valid(metadata) THEN json_extract(metadata, '$.streamId') "
                f"END = ? {archived} ORDER BY created_at, rowid", (stream_id,)).fetchall()
            tasks = [_mcp_task(row) for row in rows]
        else:
            rows = conn.execute(
                f"SELECT t.* FROM tasks t LEFT JOIN streams s ON s.id = t.stream_id WHERE {tracker_tc._STREAM_OF_TASK} "
                "= ? AND COALESCE(s.status, '') != 'archived' ORDER BY t.priority, t.id", (stream_id,)).fetchall()
            tasks = []
            for row in rows:
                task = dict(row)
                task["dependencies"] = [r[0] for r in conn.execute(
                    "SELECT depends_on FROM task_dependencies WHERE task_id = ? ORDER BY depends_on", (row["id"],))]
                tasks.append(task)
    finally:
        conn.close()
    return {"generation": generation, "stream": stream_id, "tasks": tasks}


def _mcp_task(row: sqlite3.Row) -> Dict[str, Any]:
    """A row as the MCP server's task_get answers it."""
    try:
        metadata = json.loads(row["metadata"] or "{}")
    except ValueError:
        metadata = {}
    return {"id": row["id"], "prdId": row["prd_id"], "parentId": row["parent_id"], "title": row["title"],
            "description": row["description"], "assignedAgent": row["assigned_agent"], "status": row["status"],
            "blockedReason": row["blocked_reason"], "notes": row["notes"], "metadata": metadata,
            "createdAt": row["created_at"], "updatedAt": row["updated_at"]}


# ---------------------------------------------------------------- applying


@dataclass(frozen=True)
class JobIdentity:
    """Whose lines a job's log may carry."""

    run: str
    stream: str
    attempt: int
    token: str


@dataclass(frozen=True)
class Outcome:
    status: str  # "applied", "duplicate" (seen before) or "rejected"
    reason: str = ""
    task: str = ""


class Applier:
    """Applies one job's update lines to the real database, once each, in order."""

    def __init__(self, db_path: Path, generation: str, identity: JobIdentity, task_ids: FrozenSet[str],
                 state_path: Path, busy_timeout: float = BUSY_TIMEOUT_SECONDS):
        self.db_path = Path(db_path)
        self.generation = generation
        self.identity = identity
        self.task_ids = frozenset(str(t) for t in task_ids)
        self.state_path = Path(state_path)
        self.busy_timeout = busy_timeout
        self.last_seq = self._load()

    def _load(self) -> int:
        try:
            return int(json.loads(self.state_path.read_text(encoding="utf-8"))["seq"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def _save(self) -> None:
        atomic.write_text(self.state_path, json.dumps({"seq": self.last_seq}))

    def feed_text(self, text: str) -> List[Outcome]:
        """Every structured line of `text` (a log chunk, or a progress file replayed), in order."""
        return [o for o in (self.feed(line) for line in text.split("\n")) if o is not None]

    def feed(self, line: str) -> Optional[Outcome]:
        """One log line: None if it is not a structured line, else what became of it."""
        try:
            record = parse_line(line)
        except ProtocolError as error:
            return Outcome("rejected", str(error))
        if record is None or record.get("kind") in OTHER_KINDS:
            return None
        problem = self._foreign(record)
        if problem:
            return Outcome("rejected", problem, str(record.get("task", "")))
        seq, task_id = record["seq"], str(record["task"])
        if seq <= self.last_seq:
            return Outcome("duplicate", f"update {seq} was applied already", task_id)
        try:
            self._write(task_id, record["fields"])
        except TaskError as error:
            outcome = Outcome("rejected", str(error), task_id)
        else:
            outcome = Outcome("applied", "", task_id)
        self.last_seq = seq  # a refused update is not retried: the tracker would refuse it again
        self._save()
        return outcome

    def _foreign(self, record: Mapping[str, Any]) -> str:
        """Why this line is not this job's to apply, or ''."""
        me = self.identity
        if record.get("kind") != KIND:
            return f"not a task update ({record.get('kind')!r})"
        claimed = (record.get("run"), record.get("stream"), record.get("attempt"), record.get("token"))
        if claimed != (me.run, me.stream, me.attempt, me.token):
            return "the line names another run, stream or attempt"
        if not isinstance(record.get("seq"), int) or isinstance(record.get("seq"), bool) or record["seq"] < 1:
            return "the line has no sequence number"
        if str(record.get("task")) not in self.task_ids:
            return f"task {str(record.get('task'))[:80]!r} is not one of stream {me.stream!r}'s tasks"
        if not isinstance(record.get("fields"), dict) or not record["fields"]:
            return "the line changes nothing"
        return ""

    def _write(self, task_id: str, fields: Mapping[str, Any]) -> None:
        conn = sqlite3.connect(str(self.db_path), timeout=self.busy_timeout, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT * FROM tasks WHERE id = ?", (_key(self.generation, task_id),)).fetchone()
                if row is None:
                    raise TaskError(f"task {task_id} is no longer in the database")
                current = dict(row)
                clean = check_update(self.generation, current, fields)
                if self.generation == "mcp":
                    self._write_mcp(conn, current, clean)
                else:
                    self._write_tc(conn, current, clean)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as error:
            raise TaskError(f"the database refused the update: {error}") from None
        finally:
            conn.close()

    @staticmethod
    def _write_mcp(conn: sqlite3.Connection, row: Dict[str, Any], fields: Mapping[str, Any]) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".%03dZ" % (int(time.time() * 1000) % 1000)
        sets, values = ["updated_at = ?"], [now]
        for name, value in fields.items():
            if name == "metadata":
                merged = {**_loads(row.get("metadata")), **value}
                value = json.dumps(merged, separators=(",", ":"), ensure_ascii=False)  # JSON.stringify's form
            sets.append(f"{_MCP_COLUMNS[name]} = ?")
            values.append(value)
        conn.execute(f"UPDATE tasks SET {', '.join(sets)} WHERE id = ?", values + [row["id"]])

    @staticmethod
    def _write_tc(conn: sqlite3.Connection, row: Dict[str, Any], fields: Mapping[str, Any]) -> None:
        sets, values = [], []
        for name, value in fields.items():
            if name == "metadata":
                value = json.dumps({**_loads(row.get("metadata")), **value})  # tc's json.dumps
            sets.append(f"{name} = ?")
            values.append(value)
        sets.append("updated_at = datetime('now')")
        conn.execute(f"UPDATE tasks SET {', '.join(sets)} WHERE id = ?", values + [row["id"]])
        if fields.get("status") == "completed" and row.get("agent"):
            conn.execute("INSERT INTO agent_log (agent, stream_id, task_id, action, details) VALUES (?, ?, ?, ?, ?)",
                         (row["agent"], row["stream_id"], row["id"], "completed", None))


def _key(generation: str, task_id: str) -> Any:
    return int(task_id) if generation == "tc" and task_id.isdigit() else task_id


def _loads(text: Any) -> Dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) and text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
