"""Generation 1 of Task Copilot, the MCP server: where its database is, and how to read it.

The server opens <base>/<workspace>/tasks.db, where <base> is $TASK_DB_PATH if
non-empty (used as given: no `~` expansion, relative to the server's folder) else
~/.claude/tasks, and <workspace> is $WORKSPACE_ID with whitespace trimmed, else
the first 12 hex digits of the MD5 of the server's working directory (the
project). Users set those variables in their shell or in the `env` of the
project's `.mcp.json` entry for the server, which Claude Code lays over the
inherited environment when it starts the server (and expands `${VAR}` in).

`resolve` finds the file as the user's own server would (plus the folder-name
workspace the retired orchestrator used); `server_path` predicts the file a
worker's server would open, so a worker is never pointed at another database.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from .snapshot import FINISHED_STATUSES, BadRow, TaskRef, as_bytes, chunks

SERVER_KEY = "task-copilot"
SETTINGS = ("TASK_DB_PATH", "WORKSPACE_ID")
MAX_CONFIG_BYTES = 1 << 20  # an .mcp.json is a few hundred bytes; more is not one we read
_EXPANSION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class ServerEntry:
    """The project's `.mcp.json` entry for the Task Copilot server, if any."""

    key: str  # its name under mcpServers
    env: Tuple[Tuple[str, str], ...]  # TASK_DB_PATH / WORKSPACE_ID as written (may hold ${VAR})

    def setting(self, name: str) -> Optional[str]:
        return dict(self.env).get(name)


def expand(value: str, environ: Mapping[str, str]) -> str:
    """`${VAR}` and `${VAR:-default}` as Claude Code expands them in .mcp.json."""
    return _EXPANSION.sub(lambda m: environ.get(m.group(1)) or (m.group(2) or ""), value)


def read_server_entry(project_root: Path) -> Tuple[Optional[ServerEntry], str]:
    """The task-copilot entry of <project>/.mcp.json (by key, else by an arg naming task-copilot),
    and a note for the places-tried list."""
    path = project_root / ".mcp.json"
    try:
        data = json.loads(read_config_file(path))
    except FileNotFoundError:
        return None, f"{path} (no such file)"
    except (OSError, ValueError) as exc:
        return None, f"{path} (unreadable, ignored: {exc})"
    except RecursionError:
        return None, f"{path} (nested too deeply to read, ignored)"
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        return None, f"{path} (no mcpServers)"
    chosen = None
    if isinstance(servers.get(SERVER_KEY), dict):
        chosen = SERVER_KEY
    else:
        for key, entry in servers.items():
            args = entry.get("args") if isinstance(entry, dict) else None
            if isinstance(args, list) and any(isinstance(a, str) and SERVER_KEY in a for a in args):
                chosen = key
                break
    if chosen is None:
        return None, f"{path} (no task-copilot server entry)"
    env = servers[chosen].get("env")
    env = env if isinstance(env, dict) else {}
    pairs = tuple((k, env[k]) for k in SETTINGS if isinstance(env.get(k), str))
    return ServerEntry(chosen, pairs), f"{path} (server {chosen!r})"


def read_config_file(path: Path, limit: int = MAX_CONFIG_BYTES) -> str:
    """A small configuration file's text, opened only if it is a regular file of at most `limit` bytes:
    a FIFO or a device would block every command, a huge file would fill memory. Raises OSError
    (FileNotFoundError when it is missing) or ValueError (not UTF-8)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"not a regular file (mode {stat.filemode(info.st_mode)})")
        if info.st_size > limit:
            raise OSError(f"{info.st_size} bytes, more than the {limit} a configuration file can have")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise OSError(f"more than the {limit} bytes a configuration file can have")
    return data.decode("utf-8")


def md5_workspace(folder: Path) -> str:
    """The server's default workspace: the first 12 hex digits of the MD5 of its working directory."""
    return hashlib.md5(str(folder).encode("utf-8", "surrogateescape")).hexdigest()[:12]


def server_folder(project_root: Path) -> Path:
    """What the server's process.cwd() reports in the project: the path with symlinks resolved."""
    return Path(os.path.realpath(project_root))


def home_of(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("HOME") or Path.home())


def server_path(cwd: Path, environ: Mapping[str, str], entry: Optional[ServerEntry]) -> Path:
    """The file a Task Copilot server started in `cwd` with `environ` (and the .mcp.json entry) opens."""
    env = dict(environ)
    if entry is not None:
        env.update((k, expand(v, environ)) for k, v in entry.env)
    base = env.get("TASK_DB_PATH") or str(home_of(environ) / ".claude" / "tasks")
    workspace = (env.get("WORKSPACE_ID") or "").strip() or md5_workspace(server_folder(cwd))
    return Path(os.path.normpath(server_folder(cwd) / base / workspace / "tasks.db"))


# ---------------------------------------------------------------- resolution


@dataclass(frozen=True)
class Resolution:
    """Where generation 1's database is, and the facts behind it."""

    path: Path
    base_dir: Path
    workspace_id: str
    how: str
    tried: Tuple[str, ...]
    notes: Tuple[str, ...]
    entry: Optional[ServerEntry]
    configured: bool  # the environment names a base or a workspace, or .mcp.json has the server
    refusal: Optional[str] = None


def _setting(name: str, environ: Mapping[str, str], entry: Optional[ServerEntry]) -> Tuple[str, str]:
    """(value, where from): the environment first, then the .mcp.json entry."""
    if environ.get(name):
        return environ[name], "the environment"
    if entry is not None and entry.setting(name) is not None:
        value = expand(entry.setting(name) or "", environ)
        if value:
            return value, f".mcp.json (server {entry.key!r})"
    return "", ""


def resolve(project_root: Path, db_override: Optional[str], environ: Mapping[str, str]) -> Resolution:
    """Find the database as the user's Task Copilot server does; never raises for "not found"."""
    root = Path(project_root).absolute()
    entry, mcp_note = read_server_entry(root)
    if db_override:
        return _given(Path(db_override).expanduser().absolute(), entry)
    notes: List[str] = []
    base_text, base_from = _setting("TASK_DB_PATH", environ, entry)
    workspace_text, workspace_from = _setting("WORKSPACE_ID", environ, entry)
    workspace_text = workspace_text.strip()  # the server trims it; all whitespace means unset
    if base_text.startswith("~"):
        notes.append(f"TASK_DB_PATH {base_text!r} starts with ~, which Task Copilot does not expand: "
                     "it names a folder called ~ inside the project")
    base = Path(os.path.normpath(server_folder(root) / base_text)) if base_text else home_of(environ) / ".claude" / "tasks"
    base_how = f"TASK_DB_PATH from {base_from}" if base_text else "the default base ~/.claude/tasks"
    configured = bool(base_text or workspace_text or entry is not None)
    if workspace_text:
        path = base / workspace_text / "tasks.db"
        how = f"{base_how}, WORKSPACE_ID from {workspace_from}"
        tried: Tuple[str, ...] = (f"{path} ({how})", mcp_note)
        return Resolution(path, base, workspace_text, how, tried, tuple(notes), entry, configured)
    md5 = md5_workspace(server_folder(root))
    candidates = [(md5, "the server's default workspace (MD5 of the project path)"),
                  (root.name, "the project folder's name (the retired orchestrator's default)")]
    found = [(ws, why) for ws, why in candidates if (base / ws / "tasks.db").is_file()]
    workspace, why = (found or candidates)[0]
    if len(found) > 1:
        other = found[1][0]
        notes.append(f"{base / other / 'tasks.db'} exists too; using {workspace} ({why}). To use the other, "
                     f"set WORKSPACE_ID={other} or pass --db {base / other / 'tasks.db'}")
    tried = tuple(f"{base / ws / 'tasks.db'} ({base_how}, workspace = {w})" for ws, w in candidates) + (mcp_note,)
    return Resolution(base / workspace / "tasks.db", base, workspace, f"{base_how}, workspace = {why}",
                      tried, tuple(notes), entry, configured)


def _given(path: Path, entry: Optional[ServerEntry]) -> Resolution:
    """--db: read that file; workers can be pointed at it only if it is <base>/<workspace>/tasks.db."""
    workspace = path.parent.name
    refusal = None
    if path.name != "tasks.db" or not workspace or workspace != workspace.strip():
        refusal = (f"--db {path} is not named <workspace>/tasks.db, so no TASK_DB_PATH and WORKSPACE_ID "
                   "can make a worker's Task Copilot server open it (it would create a new, empty database "
                   "instead); move or link it to <folder>/<workspace>/tasks.db and pass that")
    return Resolution(path, path.parent.parent, workspace, "given with --db", (f"{path} (given with --db)",),
                      (), entry, True, refusal)


# ---------------------------------------------------------------- reading

_SNAPSHOT_SQL = "SELECT metadata, NULL, NULL, status, COUNT(*) FROM tasks {where} GROUP BY metadata, status"


class Queries:
    """The SQL of generation 1 (tasks only; the archived column is missing before migration 6)."""

    generation = "mcp"

    def __init__(self, conn: sqlite3.Connection, tables: Dict[str, set]):
        self.has_archived = "archived" in tables["tasks"]
        self.snapshot_sql = _SNAPSHOT_SQL.format(where="WHERE COALESCE(archived, 0) = 0" if self.has_archived else "")

    def rows(self, conn: sqlite3.Connection) -> List[tuple]:
        return conn.execute(self.snapshot_sql).fetchall()

    def lookup(self, conn: sqlite3.Connection, ids: List[str]) -> Dict[str, TaskRef]:
        """Tasks named by dependency entries; an archived task counts as finished (it never will be)."""
        archived = "COALESCE(archived, 0)" if self.has_archived else "0"
        refs = {}
        for part in chunks(ids):
            sql = f"SELECT id, metadata, status, {archived} FROM tasks WHERE id IN ({','.join('?' * len(part))})"
            for task_id, metadata, status, is_archived in conn.execute(sql, list(part)):
                refs[str(task_id)] = TaskRef(metadata, None, None, bool(is_archived) or status in FINISHED_STATUSES)
        return refs

    def cross_waits(self, conn: sqlite3.Connection) -> Iterable:
        return ()

    def tasks_with(self, conn: sqlite3.Connection, texts: List[str]) -> List[BadRow]:
        """(id, title, metadata, -, -) of the live tasks whose metadata is one of these texts (compared
        as bytes: a text that is not UTF-8 must match too)."""
        archived = "AND COALESCE(archived, 0) = 0" if self.has_archived else ""
        found: List[BadRow] = []
        for part in chunks(texts):
            sql = (f"SELECT id, title, metadata, NULL, NULL FROM tasks WHERE CAST(metadata AS BLOB) IN "
                   f"({','.join('?' * len(part))}) {archived}")
            found += conn.execute(sql, [as_bytes(t) for t in part]).fetchall()
        return found

    def stream_tasks(self, conn: sqlite3.Connection, stream_id: str) -> List[Tuple[str, str, str]]:
        archived = "AND COALESCE(archived, 0) = 0" if self.has_archived else ""
        sql = ("SELECT id, title, status FROM tasks WHERE CASE WHEN json_valid(metadata) THEN "
               f"json_extract(metadata, '$.streamId') END = ? {archived} ORDER BY created_at, rowid")
        return [(str(i), title, status) for i, title, status in conn.execute(sql, (stream_id,))]


def update_instructions() -> str:
    return ("Update each task's status in Task Copilot with its task_update tool as you go: in_progress when "
            "you start it, completed when it is done, blocked with a reason if you cannot finish it.")
