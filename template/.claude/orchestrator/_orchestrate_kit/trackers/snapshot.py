"""What every tracker adapter yields: stream records folded from grouped task rows (stdlib only).

Both Task Copilot generations store stream facts in each task's metadata JSON
({"streamId", "streamName", "dependencies" / "streamDependencies", worker
options}); generation 2 also links tasks to a `streams` row. An adapter
(tracker_mcp, tracker_tc) turns its tables into rows of the same shape, and
`build_snapshot` folds them here, so nothing past the adapter sees a difference:

    grouped rows  (metadata, row name, row status, task status, count)
    references    task id -> TaskRef, for dependency entries that name no stream
    cross waits   (waiting task's TaskRef, depended-on task's TaskRef) still open
    bad tasks     (id, title, metadata, row name, row status) of the tasks whose metadata text
                  is unusable: only asked for when there are some, to name each one

Each distinct metadata text is parsed once (`classify`), and says what is wrong with it.
A task with unusable metadata is reported once: inside a stream it makes that stream invalid
(`StreamRecord.bad_tasks`, reported by the graph); in no stream it is left out of the plan
(`Snapshot.bad_tasks`, a warning), and a stream only such tasks name is `unreadable`.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Set, Tuple, TypeVar
from urllib.parse import quote

BUSY_TIMEOUT_SECONDS = 2.0
_Item = TypeVar("_Item")
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
    bad_tasks: Tuple[str, ...] = ()  # its tasks whose other metadata is unusable, each named (counted in `counts` too)
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
        counts = self.counts
        finished = counts.get("completed", 0) + counts.get("cancelled", 0)  # (self.finished: one call less)
        return finished > 0 and finished == sum(counts.values())

    def count(self, status: str) -> int:
        return self.counts.get(status, 0)


@dataclass(frozen=True)
class BadTask:
    """A task whose metadata cannot be used, and what is wrong with it."""

    task_id: str
    title: str
    problem: str  # "its metadata is not valid JSON (...)", "its dependencies must be ...", ...
    stream_id: Optional[str] = None  # the stream it is counted in (it makes that stream invalid)
    names_stream: Optional[str] = None  # in no stream: the streamId its metadata seems to give

    def describe(self) -> str:
        return f"task {self.task_id} {self.title!r}: {self.problem}"


BAD_TASKS_LISTED = 20  # warning lines before "and N more"


@dataclass
class Snapshot:
    """All streams at one moment, plus the tasks left out of them (their metadata is unusable)."""

    streams: Dict[str, StreamRecord]
    bad_tasks: Tuple[BadTask, ...] = ()  # in no stream: left out of the plan
    data_version: Tuple[int, ...] = ()

    @property
    def malformed_tasks(self) -> int:
        """How many tasks were left out of every stream."""
        return len(self.bad_tasks)

    def warnings(self) -> List[str]:
        """One line per task left out, naming it and what to fix."""
        lines = []
        for task in self.bad_tasks[:BAD_TASKS_LISTED]:
            named = task.names_stream
            where = (f"it seems to belong to stream {named!r}, which is left without it" if named
                     else "it is left out of every stream")
            lines.append(f"{task.describe()}; {where}: fix its metadata in Task Copilot "
                         f"(e.g. {METADATA_SHAPE})")
        left = len(self.bad_tasks) - BAD_TASKS_LISTED
        if left > 0:
            lines.append(f"and {left} more task(s) whose metadata is not valid stream metadata")
        return lines

    def unreadable(self) -> Dict[str, Tuple[str, ...]]:
        """Streams no readable task has, named only by tasks left out: stream id -> those tasks."""
        out: Dict[str, List[str]] = {}
        for task in self.bad_tasks:
            if task.names_stream and task.names_stream not in self.streams:
                out.setdefault(task.names_stream, []).append(task.describe())
        return {sid: tuple(texts) for sid, texts in out.items()}


METADATA_SHAPE = '{"streamId": "Stream-B", "dependencies": ["Stream-A"]}'


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
    problem: str  # what makes it unusable (bad JSON, bad streamId, dependencies not a list, ...); "" if nothing
    claims_stream: bool  # not a plain task: it has a streamId key, or is not a JSON object at all
    files: Tuple[str, ...] = ()  # its `files` metadata (text entries only; anything else is ignored)
    names_stream: Optional[str] = None  # unusable metadata: the streamId it seems to give, for the messages


_PLAIN = Meta(None, None, (), (), "", False)
# A streamId in text that is not JSON (a missing comma, a stray quote elsewhere): for the message only.
_STREAM_ID_TEXT = re.compile(r'"streamId"\s*:\s*"([^"\\]{1,200})"')


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


def _dependency_list(value: object, all_text: bool = False) -> Optional[List[str]]:
    """A metadata dependency list as ids (stream or task; integer task ids become text); None when unusable.
    `all_text`: every string in the metadata is known to be valid text (see `classify`)."""
    if value is None:
        return []
    if not isinstance(value, list):
        return None
    out = []
    for item in value:
        if isinstance(item, int) and not isinstance(item, bool):
            out.append(str(item))
        elif isinstance(item, str) and item and (all_text or _is_text(item)):
            out.append(item)
        else:
            return None
    return out


def _kind(value: object) -> str:
    """A JSON value's kind, for a message: 'the number 5', 'an empty text', 'a list', ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the value {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return "an empty text" if not value else "text that is not valid UTF-8" if not _is_text(value) else "text"
    return "a list" if isinstance(value, list) else "an object" if isinstance(value, dict) else type(value).__name__


def _dependency_problem(key: str, value: object) -> str:
    if isinstance(value, list):
        bad = next(item for item in value if not (isinstance(item, int) and not isinstance(item, bool)
                                                  or isinstance(item, str) and item and _is_text(item)))
        return f'"{key}" holds {_kind(bad)}; it must hold only stream or task ids'
    return f'"{key}" is {_kind(value)}; it must be a list of stream or task ids'


def _unusable(problem: str, sid: Optional[str] = None, names: Optional[str] = None,
              options: Tuple[Tuple[str, str, object], ...] = ()) -> Meta:
    return Meta(sid, None, (), options, problem, True, (), names if names and _is_text(names) else None)


def classify(text: Optional[str]) -> Meta:
    """Parse one task's metadata text; never raises. An unusable one says what is wrong with it."""
    planned = planned_meta(text)
    return planned if planned is not None else classify_in_full(text)


_PLANNED_KEYS = frozenset(("streamId", "streamName", "dependencies"))
_DECODER = json.JSONDecoder()


def planned_meta(text: Optional[str]) -> Optional[Meta]:
    """Metadata as planners write it, read the short way: one JSON object with a streamId, at most a
    streamName and dependencies (stream or task ids as text) and nothing else, the whole text valid
    UTF-8 without \\u escapes. None for anything else, which `classify_in_full` reads (it says the
    same of these texts: the tests compare both). At 10,000 streams the checks of every key and
    value that most texts do not have were half of the snapshot's parsing."""
    if text is None or text[:1] != "{" or "\\u" in text:
        return None
    try:
        meta, end = _DECODER.raw_decode(text)  # (json.loads, without its two whitespace matches)
    except (ValueError, RecursionError):
        return None
    if end != len(text) or not meta.keys() <= _PLANNED_KEYS:
        return None
    sid, name, deps = meta.get("streamId"), meta.get("streamName"), meta.get("dependencies")
    if type(sid) is not str or not sid or not (name is None or type(name) is str):
        return None
    if not (text.isascii() or _is_text(text)):
        return None
    if deps is None:
        deps = ()
    elif type(deps) is not list:
        return None
    for dep in deps:
        if type(dep) is not str or not dep:
            return None
    return Meta(sid, name or None, tuple(deps), (), "", True)


def classify_in_full(text: Optional[str]) -> Meta:
    """`classify` for any text: every key a task's metadata may have, every way it can be wrong."""
    if text is None or (text[:1] != "{" and text.strip() in ("", "null")):
        return _PLAIN
    try:
        meta = json.loads(text)
    except ValueError as exc:
        found = _STREAM_ID_TEXT.search(text)
        where = f": {exc.msg} at character {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
        return _unusable(f"its metadata is not valid JSON{where}", names=found.group(1) if found else None)
    except RecursionError:  # nested deeper than Python's stack
        return _unusable("its metadata is nested too deeply to read")
    if not isinstance(meta, dict):
        return _unusable(f"its metadata is {_kind(meta)}, not a JSON object")
    # Text that was valid UTF-8 and escapes nothing (\\u) holds no string that is not: one check for all
    # (10,000 metadata texts on a dashboard), else each string is checked.
    all_text = "\\u" not in text and _is_text(text)
    claims = "streamId" in meta
    sid = meta.get("streamId")
    if claims and not (isinstance(sid, str) and sid and (all_text or _is_text(sid))):
        return _unusable(f'"streamId" is {_kind(sid)}; it must be a stream id (text)')
    options = tuple([(key, json.dumps(meta[key], sort_keys=True), meta[key])
                     for key in WORKER_OPTION_KEYS if key in meta])
    deps = _dependency_list(meta.get("dependencies"), all_text)
    more = _dependency_list(meta.get("streamDependencies"), all_text)
    problems = [_dependency_problem(key, meta.get(key))
                for key, listed in (("dependencies", deps), ("streamDependencies", more)) if listed is None]
    name = meta.get("streamName")
    if not (name is None or isinstance(name, str)):
        problems.append(f'"streamName" is {_kind(name)}; it must be text')
    if problems or deps is None or more is None:
        return _unusable("; ".join(problems), sid, options=options)._replace(claims_stream=claims)
    files = meta.get("files")
    claimed = tuple([f for f in files if isinstance(f, str) and f and (all_text or _is_text(f))]) \
        if isinstance(files, list) else ()
    return Meta(sid, name if name and (all_text or _is_text(name)) else None, tuple(deps + more), options, "",
                claims, claimed)


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


_UNPLACED = StreamRecord("", "", ())  # _Fold.placed: a key not seen yet (None: tasks counted nowhere)


class _Fold:
    """Accumulates grouped rows into stream records."""

    def __init__(self) -> None:
        self.streams: Dict[str, StreamRecord] = {}
        self.dependencies: Dict[str, Set[str]] = {}
        self.options: Dict[str, Dict[str, Tuple[str, object]]] = {}
        self.conflicts: Dict[str, List[str]] = {}
        self.files: Dict[str, Set[str]] = {}
        self.parsed: Dict[Optional[str], Meta] = {}
        self.bad_texts: Set[str] = set()  # unusable metadata texts of tasks we count: each task is named later
        # (metadata, row name, row status) -> the record its rows count in (None: counted nowhere). A
        # stream's tasks share one metadata text, each status a row: what the text says is folded in once.
        self.placed: Dict[Tuple[Optional[str], Optional[str], Optional[str]], Optional[StreamRecord]] = {}

    def meta(self, text: Optional[str]) -> Meta:
        if text not in self.parsed:
            self.parsed[text] = classify(text)
        return self.parsed[text]

    def add(self, metadata: Optional[str], row_name: Optional[str], row_status: Optional[str],
            status: str, n: int) -> None:
        key = (metadata, row_name, row_status)
        record = self.placed.get(key, _UNPLACED)
        if record is _UNPLACED:
            record = self.placed[key] = self._place(metadata, row_name, row_status)
        if record is not None:
            counts = record.counts
            status = status if status in TASK_STATUSES else "pending"
            counts[status] = counts.get(status, 0) + n

    def _place(self, metadata: Optional[str], row_name: Optional[str],
               row_status: Optional[str]) -> Optional[StreamRecord]:
        """The record tasks with this metadata and streams row count in, with what they say of it folded in."""
        meta = self.meta(metadata)
        sid = stream_of(meta, row_name, row_status)
        if sid == _ARCHIVED:
            return None
        if sid is None:
            if meta.problem and meta.claims_stream and metadata is not None:
                self.bad_texts.add(metadata)  # belongs to no stream we can name: left out, with a warning
            return None
        record = self.streams.get(sid)
        if record is None:
            record = self.streams[sid] = StreamRecord(sid, sid, ())
            self.dependencies[sid], self.options[sid] = set(), {}
        record.paused = record.paused or row_status == PAUSED_ROW
        name = meta.stream_name or (row_name if row_name != sid else None)
        if name and record.stream_name == sid:
            record.stream_name = name
        if meta.options:
            self._add_options(sid, meta.options)
        if meta.problem:
            if metadata is not None:
                self.bad_texts.add(metadata)  # counted in its stream, which it makes invalid
            return record
        self.dependencies[sid].update(meta.dependencies)
        if meta.files:
            self.files.setdefault(sid, set()).update(meta.files)
        return record

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


BadRow = Tuple[object, Optional[str], Optional[str], Optional[str], Optional[str]]  # id, title, metadata, row


def build_snapshot(
    rows: Iterable[Sequence],
    lookup: Callable[[List[str]], Dict[str, TaskRef]],
    cross_waits: Callable[[], Iterable[Tuple[str, TaskRef, TaskRef]]] = lambda: (),
    tasks_with: Callable[[List[str]], Iterable[BadRow]] = lambda _texts: (),
) -> Snapshot:
    """Fold grouped rows into streams; resolve dependency entries into streams, task waits or unknowns.

    rows: (metadata, row name, row status, task status, count). lookup: task id -> TaskRef for
    entries that name no stream (one small query). cross_waits: (depended-on task id, waiting
    task, depended-on task) for open task-level dependencies (generation 2's task_dependencies).
    tasks_with: (id, title, metadata, row name, row status) of the tasks with these metadata texts,
    asked only when some text is unusable, so that each such task is named.
    """
    fold = _Fold()
    add = fold.add
    for metadata, row_name, row_status, status, n in rows:
        add(metadata, row_name, row_status, status, n)
    streams = fold.streams
    waits: Dict[str, Set[str]] = {}  # only the streams that wait on a task
    unresolved = sorted({d for deps in fold.dependencies.values() for d in deps if d not in streams})
    refs = lookup(unresolved) if unresolved else {}
    for sid, deps in fold.dependencies.items() if refs else ():  # (no entry names a task: the usual plan)
        for dep in list(deps):
            ref = refs.get(dep) if dep not in streams else None
            if ref is None:
                continue  # a stream, or a name the graph reports as unknown
            deps.discard(dep)
            owner = stream_of(fold.meta(ref.metadata), ref.row_name, ref.row_status)
            if not ref.finished and owner not in (sid, _ARCHIVED):
                waits.setdefault(sid, set()).add(dep)
    for dep_id, waiter, target in cross_waits():
        waiting = stream_of(fold.meta(waiter.metadata), waiter.row_name, waiter.row_status)
        owner = stream_of(fold.meta(target.metadata), target.row_name, target.row_status)
        if waiting is not None and waiting in streams and owner not in (waiting, _ARCHIVED) and not target.finished:
            waits.setdefault(waiting, set()).add(dep_id)
    left_out, inside = _bad_tasks(fold, tasks_with(sorted(fold.bad_texts)) if fold.bad_texts else ())
    for sid, record in streams.items():  # (the usual stream has dependencies and nothing else to note)
        record.dependencies = tuple(sorted(fold.dependencies[sid]))
        if sid in waits:
            record.task_waits = tuple(sorted(waits[sid], key=_id_order))
        if fold.options[sid]:
            record.worker_options = {key: raw for key, (_canonical, raw) in fold.options[sid].items()}
        if sid in fold.conflicts:
            record.conflicts = tuple(fold.conflicts[sid])
        if sid in fold.files:
            record.files = tuple(sorted(fold.files[sid]))
        if sid in inside:
            record.bad_tasks = tuple([task.describe() for task in inside[sid]])
    return Snapshot({sid: streams[sid] for sid in sorted(streams)}, tuple(left_out))


def _bad_tasks(fold: _Fold, found: Iterable[BadRow]) -> Tuple[List[BadTask], Dict[str, List[BadTask]]]:
    """Each task with unusable metadata, once: left out of every stream, or inside its stream."""
    left_out: List[BadTask] = []
    inside: Dict[str, List[BadTask]] = {}
    for task_id, title, metadata, row_name, row_status in sorted(found, key=lambda r: _id_order(str(r[0]))):
        meta = fold.meta(metadata)
        sid = stream_of(meta, row_name, row_status)
        if not meta.problem or sid == _ARCHIVED:
            continue
        # In no stream: the stream its broken text names, or (tc) the streams row it is linked to.
        task = BadTask(str(task_id), title or "", meta.problem, sid, meta.names_stream or row_name)
        if sid in fold.streams:
            inside.setdefault(sid, []).append(task)
        elif sid is None and meta.claims_stream:
            left_out.append(task)
    return left_out, inside


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


def as_bytes(text: str) -> bytes:
    """A text read through `connect_readonly` as the bytes the database holds."""
    return text.encode("utf-8", "surrogateescape")


def chunks(items: Sequence[_Item], size: int = 500) -> Iterable[Sequence[_Item]]:
    """Id lists cut to stay under SQLite's parameter limit."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
