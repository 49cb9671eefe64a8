"""Worker logs: the last lines of a large log, read from its end, and rotation by size.

A worker appends to `logs/<stream>.log` across attempts and runs. Before an
attempt opens its log, `rotate_log` moves a log over `DEFAULT_MAX_BYTES` to
`<name>.1` (`.1` to `.2`, ... up to `DEFAULT_KEEP`, the oldest dropped), so a
stream keeps at most about (keep + 1) x max_bytes of log. `tail_lines` reads
only the end of a file, so `logs -n 2` costs the same on 1 KB and on 10 GB.
Standard library only.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import List, Optional

DEFAULT_MAX_BYTES = 10 * 1024 * 1024  # 10 MiB per log file
DEFAULT_KEEP = 3  # rotated files kept: <name>.1 (newest) to <name>.3 (oldest)
_BLOCK = 64 * 1024


def tail_lines(path: Path, n: int, block: int = _BLOCK, end: Optional[int] = None) -> List[str]:
    """The last `n` lines of a file, read backwards in blocks (memory: those lines plus a block);
    with `end`, of its first `end` bytes (what a follower has not yet to print).

    Lines end at "\\n"; a "\\r" before it (CRLF) is dropped, and a last line without
    a newline counts as a line. Bytes that are not UTF-8 become U+FFFD.
    Raises OSError when the file cannot be read.
    """
    if n <= 0:
        return []
    with open(path, "rb") as handle:
        position = handle.seek(0, os.SEEK_END)
        position = position if end is None else min(position, end)
        ends_with_newline = position > 0 and _byte_before(handle, position) == b"\n"
        needed = n + 1 if ends_with_newline else n  # newlines: one before the first line asked for
        chunks: List[bytes] = []
        newlines = 0
        while position > 0 and newlines < needed:
            size = min(block, position)
            position -= size
            handle.seek(position)
            chunk = handle.read(size)
            chunks.append(chunk)
            newlines += chunk.count(b"\n")
    if not chunks:
        return []  # an empty file has no lines
    lines = b"".join(reversed(chunks)).split(b"\n")
    if ends_with_newline:
        lines.pop()  # the empty text after the last newline is not a line
    if position > 0:
        lines = lines[1:]  # the first piece began before what we read
    return [_decode(line) for line in lines[-n:]]


def _byte_before(handle, position: int) -> bytes:
    handle.seek(position - 1)
    return handle.read(1)


def _decode(line: bytes) -> str:
    return (line[:-1] if line.endswith(b"\r") else line).decode("utf-8", "replace")


def rotate_log(path: Path, max_bytes: int = DEFAULT_MAX_BYTES, keep: int = DEFAULT_KEEP) -> Optional[str]:
    """Rotate `path` if it is larger than `max_bytes`: it becomes `<name>.1`, `.1` becomes `.2`,
    ... up to `.<keep>`; the oldest is dropped (with keep 0 the log is simply removed).

    Call it before an attempt opens the log. Links are never followed: a log that is a
    symbolic link is left alone, and renaming or removing a rotated file that is a link moves
    or removes the link itself. Returns None when all is well (rotated or nothing to do), else
    a one-line reason for the caller to report; it never raises OSError.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        return f"could not rotate {path.name}: {error.strerror}"
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
        return f"did not rotate {path.name}: it is not a regular file (a link or a folder?)"
    if info.st_size <= max_bytes:
        return None
    try:
        _shift(path, keep)
    except OSError as error:
        return f"could not rotate {path.name}: {error.strerror}"
    return None


def _numbered(path: Path, number: int) -> Path:
    return path.with_name(f"{path.name}.{number}")


def _shift(path: Path, keep: int) -> None:
    """Move every kept file one number up, oldest first, then the log itself to `.1`."""
    if keep <= 0:
        os.unlink(path)
        return
    for number in range(keep - 1, 0, -1):
        older = _numbered(path, number)
        if os.path.lexists(older):
            os.replace(older, _numbered(path, number + 1))  # replaces (drops) the oldest
    os.replace(path, _numbered(path, 1))
