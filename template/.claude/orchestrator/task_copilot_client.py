"""Read-only access to the Task Copilot database (standard library only).

The database lives at <base>/<workspace>/tasks.db, where <base> is $TASK_DB_PATH
(a directory) or ~/.claude/tasks, and <workspace> is $WORKSPACE_ID or the
project folder's name. Streams are described in each task's metadata JSON:
{"streamId": "...", "streamName": "...", "dependencies": ["..."]}.

Everything here is served from one grouped query per snapshot (`read_snapshot`);
the documented client calls (`stream_list`, `stream_get`, `progress_summary`)
are thin views over that snapshot, so scripts and the orchestrator never
disagree.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple
from urllib.parse import quote

DEFAULT_BASE = Path("~/.claude/tasks")
BUSY_TIMEOUT_SECONDS = 2.0
FINISHED_STATUSES = ("completed", "cancelled")
TASK_STATUSES = ("pending", "in_progress", "blocked", "completed", "cancelled")


class DatabaseError(Exception):
    """The database is missing, unreadable, not Task Copilot's, or busy."""


class DatabaseBusy(DatabaseError):
    """A writer held the database longer than the busy timeout; try again."""


# ---------------------------------------------------------------- location


@dataclass(frozen=True)
class DatabaseLocation:
    """Where the database is, and why we looked there (for error messages)."""

    path: Path
    workspace_id: str
    base_dir: Path
    how: str  # human sentence: which settings produced this path

    def missing_message(self) -> str:
        return (
            f"No Task Copilot database at {self.path} ({self.how}). "
            "Point at yours with TASK_DB_PATH (the base directory that holds "
            "<workspace>/tasks.db) and WORKSPACE_ID, or pass --db PATH."
        )


def locate_database(
    project_root: Path,
    db_path: Optional[os.PathLike] = None,
    environ: Optional[Dict[str, str]] = None,
) -> DatabaseLocation:
    """Resolve the database path exactly as the Task Copilot server does."""
    env = os.environ if environ is None else environ
    if db_path:
        path = Path(db_path).expanduser().absolute()
        return DatabaseLocation(path, path.parent.name, path.parent.parent, "given with --db")
    base_setting = env.get("TASK_DB_PATH", "")
    workspace_setting = env.get("WORKSPACE_ID", "")
    base = Path(base_setting or DEFAULT_BASE).expanduser().absolute()
    workspace = workspace_setting or Path(project_root).absolute().name
    how = "base from TASK_DB_PATH" if base_setting else "default base ~/.claude/tasks"
    how += ", workspace from WORKSPACE_ID" if workspace_setting else ", workspace = project folder name"
    return DatabaseLocation(base / workspace / "tasks.db", workspace, base, how)


# ---------------------------------------------------------------- snapshot


@dataclass
class StreamRecord:
    """One stream as the database describes it right now."""

    stream_id: str
    stream_name: str
    dependencies: Tuple[str, ...]
    counts: Dict[str, int] = field(default_factory=dict)
    malformed: int = 0  # its tasks whose other metadata is unusable (counted in `counts` too)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def finished(self) -> int:
        return sum(self.counts.get(s, 0) for s in FINISHED_STATUSES)

    @property
    def is_complete(self) -> bool:
        return self.total > 0 and self.finished == self.total

    def count(self, status: str) -> int:
        return self.counts.get(status, 0)


@dataclass
class Snapshot:
    """All streams at one moment, plus what was skipped on the way."""

    streams: Dict[str, StreamRecord]
    malformed_tasks: int = 0
    data_version: Tuple[int, ...] = ()

    def warnings(self) -> List[str]:
        if not self.malformed_tasks:
            return []
        return [
            f"skipped {self.malformed_tasks} task(s) whose metadata is not valid stream "
            "metadata (needs a JSON object with a string streamId and list dependencies)"
        ]


# One grouped query: tasks with the same metadata text and status are counted
# together in SQL, so a snapshot is one statement whatever the number of streams,
# and each distinct metadata text is parsed once in Python (`_classify`).
_SNAPSHOT_SQL = "SELECT metadata, status, COUNT(*) FROM tasks {archived_filter} GROUP BY metadata, status"

_NO_STREAM = ("none", None, None, ())


def _decode(raw: bytes) -> str:
    """SQLite text as str; bytes that are not UTF-8 survive as surrogates (see `_is_text`)."""
    return raw.decode("utf-8", "surrogateescape")


def _is_text(value: str) -> bool:
    """False for text that was not valid UTF-8 in the database (or a JSON lone surrogate)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _dependency_list(value: object) -> Optional[List[str]]:
    """A metadata dependency list as stream ids; None when it is not a list of strings."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v and _is_text(v) for v in value):
        return None
    return value


def _classify(text: Optional[str]) -> Tuple[str, Optional[str], Optional[str], Tuple[str, ...]]:
    """(kind, stream id, stream name, dependencies) of one task's metadata text.

    kind is 'ok', 'none' (not a stream task: skipped silently) or 'bad'. A bad
    task that still names its stream (a string streamId) keeps that id, so its
    stream is neither taken for complete nor run on guessed dependencies.
    """
    if text is None or text.strip() in ("", "null"):
        return _NO_STREAM
    try:
        meta = json.loads(text)
    except ValueError:
        return ("bad", None, None, ())
    if not isinstance(meta, dict):
        return ("bad", None, None, ())
    if "streamId" not in meta:
        return _NO_STREAM
    sid = meta["streamId"]
    if not isinstance(sid, str) or not sid or not _is_text(sid):
        return ("bad", None, None, ())
    deps = _dependency_list(meta.get("dependencies"))
    more = _dependency_list(meta.get("streamDependencies"))
    name = meta.get("streamName")
    if deps is None or more is None or not (name is None or isinstance(name, str)):
        return ("bad", sid, None, ())
    return ("ok", sid, name if name and _is_text(name) else None, tuple(deps) + tuple(more))


def _rows_to_snapshot(rows) -> Snapshot:
    """Fold grouped rows into streams: dependencies are the union over all tasks."""
    streams: Dict[str, StreamRecord] = {}
    dependencies: Dict[str, set] = {}
    parsed: Dict[Optional[str], Tuple] = {}
    malformed = 0
    for metadata, status, n in rows:
        if metadata not in parsed:
            parsed[metadata] = _classify(metadata)
        kind, sid, name, deps = parsed[metadata]
        if kind == "none":
            continue
        if kind == "bad":
            malformed += n
            if sid is None:
                continue  # belongs to no stream we can name: skipped, with the warning
        record = streams.get(sid)
        if record is None:
            record = streams[sid] = StreamRecord(sid, sid, ())
            dependencies[sid] = set()
        status = status if status in TASK_STATUSES else "pending"
        record.counts[status] = record.counts.get(status, 0) + n
        if kind == "bad":
            record.malformed += n
            continue
        if name and record.stream_name == sid:
            record.stream_name = name
        dependencies[sid].update(deps)
    for sid, record in streams.items():
        record.dependencies = tuple(sorted(dependencies[sid]))
    ordered = {sid: streams[sid] for sid in sorted(streams)}
    return Snapshot(ordered, malformed)


class Database:
    """A read-only connection to one tasks.db, reopened if the file is replaced."""

    def __init__(self, path: Path, busy_timeout: float = BUSY_TIMEOUT_SECONDS):
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._conn: Optional[sqlite3.Connection] = None
        self._sql = ""
        self._inode: Optional[int] = None
        self._has_archived = True

    def _archived_filter(self, keyword: str) -> str:
        return f"{keyword} COALESCE(archived, 0) = 0" if self._has_archived else ""

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connect(self) -> sqlite3.Connection:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self.close()
            raise DatabaseError(f"No Task Copilot database at {self.path}") from None
        if self._conn is not None and stat.st_ino == self._inode:
            return self._conn
        self.close()
        uri = f"file:{quote(str(self.path))}?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=self.busy_timeout)
            conn.text_factory = _decode  # one task's bad bytes must not make the whole database unreadable
            columns = {row[1] for row in conn.execute("PRAGMA table_info(tasks)")}
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, self.path) from None
        if not columns:
            conn.close()
            raise DatabaseError(f"{self.path} is not a Task Copilot database (it has no tasks table)")
        # Databases from before the server's migration 6 have no archived column.
        self._has_archived = "archived" in columns
        self._sql = _SNAPSHOT_SQL.format(archived_filter=self._archived_filter("WHERE"))
        self._conn, self._inode = conn, stat.st_ino
        return conn

    def snapshot(self) -> Snapshot:
        """All streams and their task counts, in one query."""
        conn = self._connect()
        try:
            rows = conn.execute(self._sql).fetchall()
            version = conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            self.close()
            raise _translate(exc, self.path) from None
        snap = _rows_to_snapshot(rows)
        snap.data_version = (self._inode or 0, version)
        return snap


    def stream_tasks(self, stream_id: str) -> List[Tuple[str, str, str]]:
        """(id, title, status) of one stream's tasks, oldest first: for a worker's prompt."""
        conn = self._connect()
        archived = self._archived_filter("AND")
        sql = (
            "SELECT id, title, status FROM tasks WHERE CASE WHEN json_valid(metadata) THEN "
            "json_extract(metadata, '$.streamId') END = ? " + archived + " ORDER BY created_at, id"
        )
        try:
            return [tuple(row) for row in conn.execute(sql, (stream_id,))]
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, self.path) from None


def _translate(exc: sqlite3.DatabaseError, path: Path) -> DatabaseError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return DatabaseBusy(f"Task Copilot database {path} is busy (a writer holds it); will retry")
    if "not a database" in text or "malformed" in text:
        return DatabaseError(f"{path} is not a readable SQLite database ({text})")
    if "no such function: json" in text:
        return DatabaseError("this Python's SQLite has no JSON support (SQLite 3.38+ or the JSON1 extension is needed)")
    return DatabaseError(f"cannot read Task Copilot database {path}: {text}")


def read_snapshot(path: Path, busy_timeout: float = BUSY_TIMEOUT_SECONDS) -> Snapshot:
    """One snapshot through a short-lived connection."""
    db = Database(path, busy_timeout)
    try:
        return db.snapshot()
    finally:
        db.close()


# ---------------------------------------------------------------- documented client API


@dataclass(frozen=True)
class StreamInfo:
    """A stream's identity and what it depends on."""

    stream_id: str
    stream_name: str
    dependencies: List[str]


@dataclass(frozen=True)
class TaskCounts:
    """Task counts by status, and the share finished (completed or cancelled)."""

    total_tasks: int
    completed_tasks: int
    in_progress_tasks: int
    pending_tasks: int
    blocked_tasks: int
    cancelled_tasks: int
    completion_percentage: float


@dataclass(frozen=True)
class StreamProgress(TaskCounts):
    """Task counts of one stream."""

    stream_id: str
    stream_name: str
    dependencies: List[str]
    is_complete: bool


@dataclass(frozen=True)
class ProgressSummary(TaskCounts):
    """Task and stream counts over the whole workspace."""

    total_streams: int
    completed_streams: int


def percentage(done: int, total: int) -> float:
    """Share of finished work, rounded to one decimal; 0 for nothing."""
    return round(100.0 * done / total, 1) if total else 0.0


def _task_counts(records: List[StreamRecord]) -> Dict[str, object]:
    """The TaskCounts fields, summed over records."""
    total = sum(r.total for r in records)
    counts: Dict[str, object] = {"total_tasks": total}
    for status in TASK_STATUSES:
        counts[f"{status}_tasks"] = sum(r.count(status) for r in records)
    counts["completion_percentage"] = percentage(sum(r.finished for r in records), total)
    return counts


def stream_progress(record: StreamRecord) -> StreamProgress:
    return StreamProgress(
        stream_id=record.stream_id,
        stream_name=record.stream_name,
        dependencies=list(record.dependencies),
        is_complete=record.is_complete,
        **_task_counts([record]),
    )


def progress_summary_of(snapshot: Snapshot) -> ProgressSummary:
    records = list(snapshot.streams.values())
    return ProgressSummary(
        total_streams=len(records),
        completed_streams=sum(1 for r in records if r.is_complete),
        **_task_counts(records),
    )


class TaskCopilotClient:
    """The client scripts use: `TaskCopilotClient(workspace_id).stream_list()` etc.

    `workspace_id` defaults to $WORKSPACE_ID, then the current folder's name;
    `db_path` bypasses the lookup. Each call reads one fresh snapshot.
    """

    def __init__(self, workspace_id: Optional[str] = None, db_path: Optional[os.PathLike] = None):
        env = dict(os.environ)
        if workspace_id:
            env["WORKSPACE_ID"] = workspace_id
        self.location = locate_database(Path.cwd(), db_path, env)
        self.workspace_id = self.location.workspace_id
        self.db_path = self.location.path

    def snapshot(self) -> Snapshot:
        if not self.db_path.exists():
            raise DatabaseError(self.location.missing_message())
        return read_snapshot(self.db_path)

    def stream_list(self) -> List[StreamInfo]:
        return [
            StreamInfo(r.stream_id, r.stream_name, list(r.dependencies))
            for r in self.snapshot().streams.values()
        ]

    def stream_get(self, stream_id: str) -> Optional[StreamProgress]:
        record = self.snapshot().streams.get(stream_id)
        return stream_progress(record) if record else None

    def progress_summary(self) -> ProgressSummary:
        return progress_summary_of(self.snapshot())
