"""Which Task Copilot the project uses, where its database is, and one reader for it (stdlib only).

`locate_tracker` looks for both generations the way each finds its own
database (tracker_mcp: --db, environment, .mcp.json, the server's default;
tracker_tc: walking up to .copilot/tasks.db) and returns a `TrackerLocation`
that says which one it chose, by which rule, what else it tried, and what a
worker needs so that ITS Task Copilot opens the same file. `Database` reads
either generation into the same `Snapshot`: past this module nothing branches
on the generation except the prompt's "how to update a task" sentence.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

from ..settings import CHOICES as SETTING_CHOICES
from . import mcp as tracker_mcp
from . import tc as tracker_tc
from .snapshot import (  # noqa: F401  (the names the rest of the runtime imports from here)
    BUSY_TIMEOUT_SECONDS,
    FINISHED_STATUSES,
    BadTask,
    TASK_STATUSES,
    WORKER_OPTION_KEYS,
    DatabaseBusy,
    DatabaseError,
    Snapshot,
    StreamRecord,
    build_snapshot,
    connect_readonly,
    percentage,
    translate,
    whole_percent,
)

GENERATIONS = ("mcp", "tc")
CHOICES = SETTING_CHOICES["tracker"]  # auto, then each generation
_QUERIES = {"mcp": tracker_mcp.Queries, "tc": tracker_tc.Queries}


@dataclass(frozen=True)
class TrackerLocation:
    """Where the tracker's database is, which rule found it, and how workers reach the same file."""

    path: Path
    generation: str  # "mcp" (the MCP server, generation 1) or "tc" (the tc CLI, generation 2)
    how: str  # the rule that found it, one sentence
    tried: Tuple[str, ...]  # every place looked at
    workspace_id: str  # generation 1's workspace; for tc the name of the folder holding .copilot
    project_root: Path
    base_dir: Optional[Path] = None  # generation 1: the folder holding <workspace>/tasks.db
    notes: Tuple[str, ...] = ()  # choices made that the user may want to change
    server_entry: Optional[tracker_mcp.ServerEntry] = None
    inherited: Tuple[Tuple[str, str], ...] = ()  # environment a worker inherits that its server reads
    refusal: Optional[str] = None
    configured: bool = False  # generation 1: the environment or .mcp.json names the server or its settings

    @property
    def exists(self) -> bool:
        return self.path.is_file()

    @property
    def project_name(self) -> str:
        """What to call these streams' project in a title: the workspace, except for the MCP
        server's default workspace, a hash of the folder, where the folder's name says more."""
        if self.generation == "mcp" and self.workspace_id == tracker_mcp.md5_workspace(
                tracker_mcp.server_folder(self.project_root)):
            return self.project_root.name
        return self.workspace_id

    def missing_message(self) -> str:
        """Why no database was found: every place tried, and how to point at one."""
        base = self.base_dir
        if self.generation == "mcp" and base is not None and (base.is_file() or base.suffix == ".db"):
            return (f"No Task Copilot database found: TASK_DB_PATH names the file {base}, but it must be the "
                    "folder that holds <workspace>/tasks.db (the server opens $TASK_DB_PATH/$WORKSPACE_ID/tasks.db)."
                    f" For that file set TASK_DB_PATH={base.parent.parent} and WORKSPACE_ID={base.parent.name}, "
                    f"or pass --db {base}. Looked at: {'; '.join(self.tried)}")
        return (f"No Task Copilot database found. Looked at: {'; '.join(self.tried)}. Point at yours with "
                "--db PATH; for the Task Copilot MCP server with TASK_DB_PATH (the folder that holds "
                "<workspace>/tasks.db) and WORKSPACE_ID, in the environment or .mcp.json; for tc, run "
                "`tc init` in the project (or --tracker to choose a generation).")

    def worker_environment(self) -> Dict[str, str]:
        """What a worker's environment must hold so that its own tracker opens this file."""
        if self.generation == "mcp":
            return {"TASK_DB_PATH": str(self.base_dir), "WORKSPACE_ID": self.workspace_id}
        return {}  # tc has no settings: it walks up from the worker's folder (see worker_refusal)

    def worker_refusal(self, cwd: Optional[Path] = None) -> Optional[str]:
        """Why no worker started in `cwd` (default: the project) would open this file; None if one would."""
        if self.refusal:
            return self.refusal
        folder = Path(cwd or self.project_root)
        if self.generation == "tc":
            found = tracker_tc.finds_from(folder)
            if found is not None and _same_file(found, self.path):
                return None
            return (f"tc run in {folder} would use {found or 'no database'}, not {self.path}, and tc has no "
                    "setting to point it elsewhere; run the orchestrator in the project that holds "
                    f"{self.path.parent}")
        environ = {**dict(self.inherited), **self.worker_environment()}
        opened = tracker_mcp.server_path(folder, environ, self.server_entry)
        if _same_file(opened, self.path):
            return None
        entry = self.server_entry
        overrides = ", ".join(f"{k}={v}" for k, v in entry.env) if entry else ""
        why = (f": the .mcp.json entry {entry.key!r} sets {overrides}, which Claude Code applies over the worker's "
               "environment; make it name this database (or remove it and set the variables in your shell)"
               if overrides else "")
        return f"a worker's Task Copilot server in {folder} would open {opened}, not {self.path}{why}"

    def update_instructions(self) -> str:
        """The prompt sentence that tells an agent how to update a task in this tracker."""
        return (tracker_mcp if self.generation == "mcp" else tracker_tc).update_instructions()

    def open(self, busy_timeout: float = BUSY_TIMEOUT_SECONDS) -> "Database":
        return Database(self.path, busy_timeout, self.generation)


def _same_file(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


# ---------------------------------------------------------------- locating


def locate_tracker(
    project_root: Path,
    db_override: Optional[str] = None,
    choice: Optional[str] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> TrackerLocation:
    """Find the tracker's database; never raises for "not found" (the location says so)."""
    env = os.environ if environ is None else environ
    root = Path(project_root).absolute()
    choice = None if choice in (None, "", "auto") else choice
    if choice not in (None,) + GENERATIONS:
        raise ValueError(f"tracker must be one of {', '.join(CHOICES)}, not {choice!r}")
    if db_override:
        path = Path(db_override).expanduser().absolute()
        if (choice or ("tc" if tracker_tc.looks_like_tc(path) else "mcp")) == "tc":
            return _tc_location(root, path, "given with --db")
        return _mcp_location(root, db_override, env)
    if choice == "mcp":
        return _mcp_location(root, None, env)
    found = tracker_tc.finds_from(root)
    if choice == "tc":
        return _tc_location(root, found, "found by walking up from the project folder to .copilot/tasks.db, as tc does")
    return _either(_mcp_location(root, None, env), _tc_location(
        root, found, "found by walking up from the project folder to .copilot/tasks.db, as tc does"))


def _either(mcp: TrackerLocation, tc: TrackerLocation) -> TrackerLocation:
    """Both generations looked for: the one that exists; if both do, the one the configuration names."""
    tried = mcp.tried + tc.tried
    pointed = mcp.configured
    if not (mcp.exists and tc.exists):
        chosen = tc if tc.exists else mcp
        notes = chosen.notes
        if tc.exists and pointed:
            notes += (f"the MCP server's settings name {mcp.path}, which does not exist; using tc's database",)
        return replace(chosen, tried=tried, notes=notes)
    chosen, other = (mcp, tc) if pointed else (tc, mcp)
    why = ("the environment or .mcp.json points at it" if pointed
           else "nothing in the environment or .mcp.json points at the MCP server's database")
    note = (f"both Task Copilot generations have a database here; using {chosen.generation} at {chosen.path} "
            f"({why}); --tracker {other.generation} (or tracker = {other.generation} in orchestrator.conf) "
            f"uses {other.path}")
    return replace(chosen, tried=tried, notes=chosen.notes + (note,))


def _mcp_location(root: Path, db_override: Optional[str], environ: Mapping[str, str]) -> TrackerLocation:
    found = tracker_mcp.resolve(root, db_override, environ)
    names = {"HOME"}
    if found.entry is not None:
        names |= {m.group(1) for _k, v in found.entry.env for m in tracker_mcp._EXPANSION.finditer(v)}
    inherited = tuple((k, environ[k]) for k in sorted(names) if k in environ)
    return TrackerLocation(found.path, "mcp", found.how, found.tried, found.workspace_id, root, found.base_dir,
                           found.notes, found.entry, inherited, found.refusal, found.configured)


def _tc_location(root: Path, path: Optional[Path], how: str) -> TrackerLocation:
    tried = (f"{root.joinpath(*tracker_tc.DB_PARTS)} and the same in every parent folder (as tc looks)",)
    if path is None:
        path = root.joinpath(*tracker_tc.DB_PARTS)
        how = "tc's database would be in the project folder"
    elif how.startswith("given"):
        tried = (f"{path} (given with --db)",)
    return TrackerLocation(Path(path).absolute(), "tc", how, tried, Path(path).absolute().parent.parent.name, root)


# ---------------------------------------------------------------- reading


class Database:
    """A read-only connection to one tracker database, reopened if the file is replaced.

    The generation is the location's, or (for a bare path) told by the tables: tc's has `streams`
    and `task_dependencies`. Each snapshot is one grouped query, plus a small one for task ids
    named in dependencies and, for tc, one for open task-level dependencies.
    """

    def __init__(self, path: Path, busy_timeout: float = BUSY_TIMEOUT_SECONDS, generation: Optional[str] = None):
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.generation = generation
        self._conn: Optional[sqlite3.Connection] = None
        self._queries = None
        self._inode: Optional[int] = None

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
        conn = None
        try:
            conn = connect_readonly(self.path, self.busy_timeout)
            tables: Dict[str, set] = {
                row[0]: set() for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "tasks" not in tables:
                raise DatabaseError(f"{self.path} is not a Task Copilot database (it has no tasks table)")
            tables["tasks"] = {row[1] for row in conn.execute("PRAGMA table_info(tasks)")}
            generation = self.generation or ("tc" if {"streams", "task_dependencies"} <= set(tables) else "mcp")
            self._queries = _QUERIES[generation](conn, tables)
        except (sqlite3.DatabaseError, DatabaseError) as exc:
            if conn is not None:
                conn.close()
            raise exc if isinstance(exc, DatabaseError) else translate(exc, self.path) from None
        self._conn, self._inode = conn, stat.st_ino
        return conn

    def snapshot(self) -> Snapshot:
        """All streams, their task counts and what they wait on, read in one transaction."""
        conn = self._connect()
        queries = self._queries
        try:
            conn.execute("BEGIN")
            try:
                snap = build_snapshot(queries.rows(conn), lambda ids: queries.lookup(conn, ids),
                                      lambda: queries.cross_waits(conn), lambda texts: queries.tasks_with(conn, texts))
                version = conn.execute("PRAGMA data_version").fetchone()[0]
            finally:
                conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self.close()
            raise translate(exc, self.path) from None
        snap.data_version = (self._inode or 0, version)
        return snap

    def stream_tasks(self, stream_id: str) -> List[Tuple[str, str, str]]:
        """(id, title, status) of one stream's tasks in insertion order: for a worker's prompt."""
        conn = self._connect()
        try:
            return self._queries.stream_tasks(conn, stream_id)
        except sqlite3.DatabaseError as exc:
            raise translate(exc, self.path) from None


def read_snapshot(path: Path, busy_timeout: float = BUSY_TIMEOUT_SECONDS, generation: Optional[str] = None) -> Snapshot:
    """One snapshot through a short-lived connection."""
    db = Database(path, busy_timeout, generation)
    try:
        return db.snapshot()
    finally:
        db.close()


DatabaseLocation = TrackerLocation  # the name before both generations were read
