"""What every tracker adapter yields: stream records folded from grouped task rows (stdlib only).

Both Task Copilot generations store stream facts in each task's metadata JSON
({"streamId", "streamName", "dependencies" / "streamDependencies", worker
options}); generation 2 also links tasks to a `streams` row. An adapter
(tracker_mcp, tracker_tc) turns its tables into rows of the same shape, and
`build_snapshot` folds them here, so nothing past the adapter sees a difference:

    grouped rows  (metadata, row name, row status, task status, count)
    references    task id -> TaskRef, for dependency entries that name no stream
    cross waits   (waiting task's TaskRef, depended-on task's TaskRef) still open

Each distinct metadata text is parsed once (`classify`).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Set, Tuple
from urllib.parse import quote

BUSY_TIMEOUT_SECONDS = 2.0
FINISHED_STATUSES = ("completed", "cancelled")
TASK_STATUSES = ("pending", "in_progress", "blocked", "completed", "cancelled")
# Task metadata keys a task may set to tune its worker; passed on raw (validated where they are used).
WORKER_OPTION_KEYS = ("maxBudgetUsd", "maxTurns", "model", "permissionMode", "allowedTools")
ARCHIVED_ROW = "archived"
PAUSED_ROW = "paused"


class DatabaseError(Exception):
    """The database is missing, unreadable, not Task Copilot's, or busy."""


class DatabaseBusy(DatabaseError):
    """A writer held the database longer than the busy timeout; try again."""


# ---------------------------------------------------------------- records


@dataclass
class StreamRecord:
    """One stream as the database describes it right now."""

    stream_id: str
    stream_name: str
    dependencies: Tuple[str, ...]  # stream ids, plus entries that name no stream or task (the graph reports them)
    counts: Dict[str, int] = field(default_factory=dict)
    malformed: int = 0  # its tasks whose other metadata is unusable (counted in `counts` too)
    task_waits: Tuple[str, ...] = ()  # unfinished tasks of other streams (or none) it waits on
    paused: bool = False  # generation 2: its `streams` row is paused (shown, not started)
    worker_options: Dict[str, object] = field(default_factory=dict)  # raw metadata values, see WORKER_OPTION_KEYS
    conflicts: Tuple[str, ...] = ()  # why its tasks' worker options cannot be reconciled
    files: Tuple[str, ...] = ()  # paths its tasks claim in their `files` metadata (Task Copilot's planner)

    # Asked several times per stream per frame (10,000 streams on a dashboard): plain lookups, no generators.
    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def finished(self) -> int:
        counts = self.counts
        return counts.get("completed", 0) + counts.get("cancelled", 0)  # FINISHED_STATUSES

    @property
    def is_complete(self) -> bool:
        finished = self.finished
        return finished > 0 and finished == self.total

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


def percentage(done: int, total: int) -> float:
    """Share of finished work, rounded to one decimal; 0 for nothing."""
    return round(100.0 * done / total, 1) if total else 0.0


def whole_percent(done: int, total: int) -> int:
    """Share of finished work as a whole number, rounded once from the counts (5/11 -> 45);
    never 100 before everything is finished."""
    if not total:
        return 0
    value = round(100.0 * done / total)
    return min(value, 99) if done < total else value


# ---------------------------------------------------------------- metadata


class Meta(NamedTuple):
    """One task's metadata text, parsed."""

    stream_id: Optional[str]
    stream_name: Optional[str]
    dependencies: Tuple[str, ...]
    options: Tuple[Tuple[str, str, object], ...]  # (key, canonical JSON, raw value)
    problem: bool  # unusable (bad JSON, bad streamId, dependencies not a list, ...)
    claims_stream: bool  # not a plain task: it has a streamId key, or is not a JSON object at all
    files: Tuple[str, ...] = ()  # its `files` metadata (text entries only; anything else is ignored)


_PLAIN = Meta(None, None, (), (), False, False)


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
    """A metadata dependency list as ids (stream or task; integer task ids become text); None when unusable."""
    if value is None:
        return []
    if not isinstance(value, list):
        return None
    out = []
    for item in value:
        if isinstance(item, int) and not isinstance(item, bool):
            out.append(str(item))
        elif isinstance(item, str) and item and _is_text(item):
            out.append(item)
        else:
            return None
    return out


def classify(text: Optional[str]) -> Meta:
    """Parse one task's metadata text; never raises."""
    if text is None or text.strip() in ("", "null"):
        return _PLAIN
    try:
        meta = json.loads(text)
    except ValueError:
        return Meta(None, None, (), (), True, True)
    if not isinstance(meta, dict):
        return Meta(None, None, (), (), True, True)
    claims = "streamId" in meta
    sid = meta.get("streamId")
    if claims and not (isinstance(sid, str) and sid and _is_text(sid)):
        return Meta(None, None, (), (), True, True)
    deps = _dependency_list(meta.get("dependencies"))
    more = _dependency_list(meta.get("streamDependencies"))
    name = meta.get("streamName")
    options = tuple((key, json.dumps(meta[key], sort_keys=True), meta[key])
                    for key in WORKER_OPTION_KEYS if key in meta)
    if deps is None or more is None or not (name is None or isinstance(name, str)):
        return Meta(sid, None, (), options, True, claims)
    files = meta.get("files")
    claimed = tuple(f for f in files if isinstance(f, str) and f and _is_text(f)) if isinstance(files, list) else ()
    return Meta(sid, name if name and _is_text(name) else None, tuple(deps) + tuple(more), options, False, claims,
                claimed)


class TaskRef(NamedTuple):
    """A task named by a dependency: which stream it is in, and whether it is finished."""

    metadata: Optional[str]
    row_name: Optional[str]
    row_status: Optional[str]
    finished: bool


_ARCHIVED = "\0archived"  # stream_of: the task is in an archived streams row, so it is ignored


def stream_of(meta: Meta, row_name: Optional[str], row_status: Optional[str]) -> Optional[str]:
    """The stream a task belongs to: its metadata streamId, else its streams row; None for neither."""
    if row_status == ARCHIVED_ROW:
        return _ARCHIVED
    return meta.stream_id or (row_name if row_name and not meta.claims_stream else None)


# ---------------------------------------------------------------- folding


class _Fold:
    """Accumulates grouped rows into stream records."""

    def __init__(self) -> None:
        self.streams: Dict[str, StreamRecord] = {}
        self.dependencies: Dict[str, Set[str]] = {}
        self.options: Dict[str, Dict[str, Tuple[str, object]]] = {}
        self.conflicts: Dict[str, List[str]] = {}
        self.files: Dict[str, Set[str]] = {}
        self.parsed: Dict[Optional[str], Meta] = {}
        self.malformed = 0

    def meta(self, text: Optional[str]) -> Meta:
        if text not in self.parsed:
            self.parsed[text] = classify(text)
        return self.parsed[text]

    def add(self, metadata: Optional[str], row_name: Optional[str], row_status: Optional[str],
            status: str, n: int) -> None:
        meta = self.meta(metadata)
        sid = stream_of(meta, row_name, row_status)
        if sid == _ARCHIVED:
            return
        if sid is None:
            if meta.problem and meta.claims_stream:
                self.malformed += n  # belongs to no stream we can name: skipped, with the warning
            return
        record = self.streams.get(sid)
        if record is None:
            record = self.streams[sid] = StreamRecord(sid, sid, ())
            self.dependencies[sid], self.options[sid] = set(), {}
        status = status if status in TASK_STATUSES else "pending"
        record.counts[status] = record.counts.get(status, 0) + n
        record.paused = record.paused or row_status == PAUSED_ROW
        name = meta.stream_name or (row_name if row_name != sid else None)
        if name and record.stream_name == sid:
            record.stream_name = name
        self._add_options(sid, meta.options)
        if meta.problem:
            record.malformed += n
            self.malformed += n
            return
        self.dependencies[sid].update(meta.dependencies)
        if meta.files:
            self.files.setdefault(sid, set()).update(meta.files)

    def _add_options(self, sid: str, options: Iterable[Tuple[str, str, object]]) -> None:
        seen = self.options[sid]
        for key, canonical, raw in options:
            if key not in seen:
                seen[key] = (canonical, raw)
            elif seen[key][0] != canonical:
                text = f"its tasks set different {key} values ({seen[key][0]} and {canonical})"
                if text not in self.conflicts.setdefault(sid, []):
                    self.conflicts[sid].append(text)


def _id_order(task_id: str) -> Tuple:
    return (0, int(task_id), "") if task_id.isdigit() else (1, 0, task_id)


def build_snapshot(
    rows: Iterable[Sequence],
    lookup: Callable[[List[str]], Dict[str, TaskRef]],
    cross_waits: Callable[[], Iterable[Tuple[str, TaskRef, TaskRef]]] = lambda: (),
) -> Snapshot:
    """Fold grouped rows into streams; resolve dependency entries into streams, task waits or unknowns.

    rows: (metadata, row name, row status, task status, count). lookup: task id -> TaskRef for
    entries that name no stream (one small query). cross_waits: (depended-on task id, waiting
    task, depended-on task) for open task-level dependencies (generation 2's task_dependencies).
    """
    fold = _Fold()
    for metadata, row_name, row_status, status, n in rows:
        fold.add(metadata, row_name, row_status, status, n)
    streams = fold.streams
    waits: Dict[str, Set[str]] = {sid: set() for sid in streams}
    unresolved = sorted({d for deps in fold.dependencies.values() for d in deps if d not in streams})
    refs = lookup(unresolved) if unresolved else {}
    for sid, deps in fold.dependencies.items():
        for dep in list(deps):
            ref = refs.get(dep) if dep not in streams else None
            if ref is None:
                continue  # a stream, or a name the graph reports as unknown
            deps.discard(dep)
            owner = stream_of(fold.meta(ref.metadata), ref.row_name, ref.row_status)
            if not ref.finished and owner not in (sid, _ARCHIVED):
                waits[sid].add(dep)
    for dep_id, waiter, target in cross_waits():
        sid = stream_of(fold.meta(waiter.metadata), waiter.row_name, waiter.row_status)
        owner = stream_of(fold.meta(target.metadata), target.row_name, target.row_status)
        if sid in streams and owner not in (sid, _ARCHIVED) and not target.finished:
            waits[sid].add(dep_id)
    for sid, record in streams.items():
        record.dependencies = tuple(sorted(fold.dependencies[sid]))
        record.task_waits = tuple(sorted(waits[sid], key=_id_order))
        record.worker_options = {key: raw for key, (_canonical, raw) in fold.options[sid].items()}
        record.conflicts = tuple(fold.conflicts.get(sid, ()))
        record.files = tuple(sorted(fold.files.get(sid, ())))
    return Snapshot({sid: streams[sid] for sid in sorted(streams)}, fold.malformed)


# ---------------------------------------------------------------- connections


def connect_readonly(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """A read-only connection that survives text that is not UTF-8."""
    conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=busy_timeout)
    conn.text_factory = _decode  # one task's bad bytes must not make the whole database unreadable
    return conn


def translate(exc: sqlite3.DatabaseError, path: Path) -> DatabaseError:
    """An sqlite3 error as one clear sentence."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return DatabaseBusy(f"Task Copilot database {path} is busy (a writer holds it); will retry")
    if "not a database" in text or "malformed" in text:
        return DatabaseError(f"{path} is not a readable SQLite database ({text})")
    if "no such function: json" in text:
        return DatabaseError("this Python's SQLite has no JSON support (SQLite 3.38+ or the JSON1 extension is needed)")
    return DatabaseError(f"cannot read Task Copilot database {path}: {text}")


def chunks(items: Sequence[str], size: int = 500) -> Iterable[Sequence[str]]:
    """Id lists cut to stay under SQLite's parameter limit."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
