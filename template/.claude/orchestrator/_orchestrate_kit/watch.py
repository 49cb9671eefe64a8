"""What the loop watches besides its workers: the tracker's database, and its own files.

`TrackerWatch` reads the database again only when its files changed (a cheap
`stat` of the file and its WAL and the WAL's header), when asked to (a worker
ended: its last writes decide its stream), or every SAFETY_REFRESH_SECONDS, when
it also re-creates what an agent's `git clean` or `rm` took (`check_own_files`:
folders, locks, the orchestrator's record). `write_problem` tells whether workers
can write the database at all: one that became read-only mid-run fails every
worker the same way, a configuration failure of the run (exits.py). Standard
library only, Python 3.9+.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Protocol, Tuple
from urllib.parse import quote

from .locks import Lock
from .settings import Layout
from .status import write_orchestrator_record
from .trackers import DatabaseBusy, DatabaseError, Snapshot

SAFETY_REFRESH_SECONDS = 30.0  # look at the database and our files even when nothing signalled
WRITE_PROBE = "_orchestrate_kit_write_probe"  # created inside a transaction that is always rolled back
UNWRITABLE = ("readonly", "unable to open database file")  # SQLite's words for a file or folder it cannot write


class Reader(Protocol):
    """What the loop reads the tracker with (trackers.Database; a scripted one in tests)."""

    def snapshot(self) -> Snapshot: ...

    def stream_tasks(self, stream_id: str) -> List[Tuple[str, str, str]]: ...

    def close(self) -> None: ...


def database_signature(path: Path) -> tuple:
    """What changes with every commit, read cheaply: each file's inode, time and size, and the
    WAL's header. A commit right after a checkpoint rewrites the WAL from its start and can leave
    its size and (coarse) time unchanged, but never its header's salt. Only the WAL is opened:
    SQLite keeps no locks on it that closing our descriptor could drop."""
    parts: list = []
    for suffix in ("", "-wal"):
        try:
            st = os.stat(f"{path}{suffix}")
            parts.append((st.st_ino, st.st_mtime_ns, st.st_size))
        except OSError:
            parts.append(None)
    try:
        with open(f"{path}-wal", "rb") as wal:
            parts.append(wal.read(32))
    except OSError:
        parts.append(None)
    return tuple(parts)


class TrackerWatch:
    """The latest snapshot of the tracker, and whether it is current."""

    def __init__(self, reader: Reader, signature: Callable[[], tuple], say: Callable[[str], None],
                 own_files: Callable[[Callable[[str], None]], None] = lambda _warn: None, path: Optional[Path] = None):
        self.reader, self.signature, self.say = reader, signature, say
        self.own_files = own_files  # re-creates the loop's own files; called with `warn` at each safety look
        self.path = path  # the database's file, for `write_problem`
        self.snapshot: Optional[Snapshot] = None
        self.fresh = False  # the last read succeeded
        self.force = True  # read at the next look even if the files look unchanged
        self.seen: tuple = ()
        self.last_look = -SAFETY_REFRESH_SECONDS
        self.last_warning = ""

    def expect_change(self) -> None:
        """A worker ended: its last writes may be in the database; look again."""
        self.force = True

    def due_for_safety(self, now: float) -> bool:
        return now - self.last_look > SAFETY_REFRESH_SECONDS

    def look(self, now: float) -> bool:
        """Read the database if anything says it changed; True when a new snapshot was read."""
        if self.due_for_safety(now):  # what an agent's `git clean` took is put back first
            self.own_files(self.warn)
        signature = self.signature()
        changed = signature != self.seen
        if not (self.force or self.due_for_safety(now) or not self.fresh or changed):
            return False
        self.last_look = now
        try:
            snapshot = self.reader.snapshot()
        except DatabaseError as exc:
            self.fresh = False
            self.warn(str(exc) if isinstance(exc, DatabaseBusy) else f"{exc}; waiting for it to come back")
            return False
        # A commit in flight as we looked (its WAL frames written, not yet marked committed) leaves
        # no later trace in the files: after a change, read once more at the next look.
        self.seen, self.fresh, self.force = signature, True, changed
        if self.snapshot is None or snapshot.warnings() != self.snapshot.warnings():
            for line in snapshot.warnings():
                self.say(f"warning: {line}")
        self.snapshot, self.last_warning = snapshot, ""
        return True

    def stream_tasks(self, stream_id: str) -> List[Tuple[str, str, str]]:
        """A stream's tasks for its worker's prompt; none when the database cannot be read just now
        (the worker reads them itself)."""
        try:
            return self.reader.stream_tasks(stream_id)
        except DatabaseError:
            return []

    def warn(self, message: str) -> None:
        if message != self.last_warning:
            self.say(f"warning: {message}")
            self.last_warning = message

    def write_problem(self) -> Optional[Tuple[str, str]]:
        """Why workers cannot write the database, and the fix (None when they can, or it cannot be told)."""
        return database_write_problem(self.path) if self.path is not None else None

    def close(self) -> None:
        self.reader.close()


def database_write_problem(path: Path) -> Optional[Tuple[str, str]]:
    """Whether a writer can write `path` right now, asked as a writer asks: a read-write connection,
    BEGIN IMMEDIATE and one change (a table created), rolled back at once: nothing is kept. The change
    makes SQLite open its journal or WAL as a worker's first update does: a file the system refuses to
    write says "attempt to write a readonly database", a folder that refuses a new journal "unable to
    open database file". A busy database is writable (its writer is proof), and anything else is for
    the reader to report: None. Else (what is wrong, the fix)."""
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=rw", uri=True, timeout=0.2, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(f"CREATE TABLE {WRITE_PROBE}(x)")
    except sqlite3.Error as exc:
        if not any(text in str(exc) for text in UNWRITABLE):
            return None
        folder = path.parent
        return (f"Task Copilot database {path} cannot be written ({exc}): every worker fails on its first update",
                f"make {folder} and the database files in it writable again (`chmod -R u+w {folder}`; "
                f"`lsattr -d {folder}` shows an immutable flag, `chattr -i` clears it), then run `start` "
                "again: no attempt was counted")
    finally:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # no transaction was begun
        conn.close()
    return None


def keep_own_files(layout: Layout, locks: Iterable[Lock], forget_run_file: Callable[[], None]) \
        -> Callable[[Callable[[str], None]], None]:
    """What `TrackerWatch` calls at each safety look: `check_own_files`, and a run table that was
    removed (an agent's `git clean`?) is written again at the next save."""
    locks = list(locks)

    def check(warn: Callable[[str], None]) -> None:
        check_own_files(layout, locks, warn)
        if not layout.run_file.exists():
            forget_run_file()
    return check


def check_own_files(layout: Layout, locks: Iterable[Lock], warn: Callable[[str], None]) -> None:
    """Re-create what an agent's `git clean` or `rm` took: folders, locks, our own record."""
    try:
        layout.make_dirs()
    except OSError as exc:
        warn(f"cannot re-create the orchestrator's folders: {exc}")
    for lock in locks:
        problem = lock.verify()
        if problem:
            warn(problem)
    if not layout.orchestrator_pid.exists():
        try:
            write_orchestrator_record(layout)
        except OSError as exc:
            warn(f"cannot re-create {layout.orchestrator_pid}: {exc}")
