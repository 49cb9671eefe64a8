"""Exclusive locks that say who holds them, and notice when an agent deletes their file.

One lock per project (in its state folder) and one per database (beside it):
two checkouts sharing a workspace never both run its streams. A lock file holds
the holder's project path, so a refusal can name the other project. flock()
locks an open file, not a path: if the file is deleted (`git clean -fdx`,
`rm -rf`), a second orchestrator could lock a new file at the same path, so the
holder checks its path now and then and re-creates and re-locks it.
Standard library only, Python 3.9+.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


class LockHeld(Exception):
    """Another process holds the lock; the message names its holder when it is known."""

    def __init__(self, holder: str):
        super().__init__(holder)
        self.holder = holder


@dataclass
class Lock:
    path: Path
    fd: int
    owner: str  # what we write into the file: the project holding it

    def verify(self) -> Optional[str]:
        """None while our file is still in place; else re-create it and say what happened."""
        try:
            held, current = os.fstat(self.fd), os.stat(self.path)
            if (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
                return None
        except FileNotFoundError:
            pass
        except OSError as exc:
            return f"cannot check the lock {self.path}: {exc}"
        try:
            fresh = acquire(self.path, self.owner)
        except LockHeld as exc:
            return (f"the lock file {self.path} was deleted and another orchestrator ({exc.holder}) "
                    "took it: stop one of them")
        except OSError as exc:
            return f"the lock file {self.path} was deleted and cannot be re-created: {exc}"
        os.close(self.fd)
        self.fd = fresh.fd
        return f"the lock file {self.path} was deleted (by an agent's git clean?); re-created it"

    def release(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


def acquire(path: Path, owner: str) -> Lock:
    """Take the lock or raise LockHeld naming the holder. OSError if the file cannot be made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = _read_owner(fd)
        os.close(fd)
        raise LockHeld(holder) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, owner.encode("utf-8", "surrogateescape"), 0)
    return Lock(path, fd, owner)


def adopt(path: Path, fd: int, owner: str) -> Optional[Lock]:
    """A lock a parent process took and handed down by file descriptor, if it is still this file."""
    try:
        held, current = os.fstat(fd), os.stat(path)
        if (held.st_dev, held.st_ino) != (current.st_dev, current.st_ino):
            return None
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the same open file: already ours, succeeds at once
    except OSError:
        return None
    return Lock(path, fd, owner)


def _read_owner(fd: int) -> str:
    try:
        return os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown"
    except OSError:
        return "unknown"
