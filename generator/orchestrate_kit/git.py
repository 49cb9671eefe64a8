"""The git calls the installer makes about a user's project and its template store.

Run through ``sh``: output comes back as text, never through a pager or a pseudo-terminal.
"""

from __future__ import annotations

import os
from pathlib import Path

import sh

from .errors import UserError


def git(*args: str, cwd: Path | str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    """Run ``git ARGS`` in ``cwd`` and return its stdout; ``sh.ErrorReturnCode`` on failure."""
    try:
        command = sh.Command("git")
    except sh.CommandNotFound:
        raise UserError("git is not on PATH.", hint="install git (copier needs it too)") from None
    full_env = dict(os.environ, **env) if env else None
    result = command(
        "--no-pager", *args, _cwd=str(cwd), _env=full_env, _in=stdin, _tty_out=False, _tty_in=False
    )
    return str(result)


def git_bytes(*args: str, cwd: Path | str) -> bytes:
    """Run ``git ARGS`` in ``cwd`` and return its stdout as bytes (a file's content, unchanged)."""
    try:
        command = sh.Command("git")
    except sh.CommandNotFound:
        raise UserError("git is not on PATH.", hint="install git (copier needs it too)") from None
    result = command("--no-pager", *args, _cwd=str(cwd), _tty_out=False, _tty_in=False, _return_cmd=True)
    return bytes(result.stdout)


def toplevel(path: Path) -> Path | None:
    """The root of the git work tree that holds ``path``, or None outside git."""
    try:
        return Path(git("rev-parse", "--show-toplevel", cwd=path).strip())
    except sh.ErrorReturnCode:
        return None


def _porcelain(path: Path, *extra: str) -> list[str]:
    out = git("status", "--porcelain", "-z", "--untracked-files=all", *extra, "--", ".", cwd=path)
    # -z entries are "XY path", and renames add the old path as an extra entry.
    lines, entries = [], out.split("\0")
    skip_next = False
    for entry in entries:
        if skip_next:
            skip_next = False
            continue
        if not entry:
            continue
        if entry[0] in "RC":
            skip_next = True
        lines.append(entry)
    return lines


def dirty_files(path: Path) -> list[str]:
    """``git status`` lines (``XY path``) under ``path``: what blocks a copier update."""
    return _porcelain(path)


def conflicted_files(path: Path) -> list[str]:
    """Files left with merge conflicts (copier's inline markers), relative to ``path``."""
    out = git("diff", "--name-only", "--relative", "--diff-filter=U", "-z", cwd=path)
    return sorted({name for name in out.split("\0") if name})


def changed_paths(path: Path) -> list[str]:
    """Paths that differ from HEAD (staged, unstaged or new) under ``path``."""
    return sorted({line[3:] for line in _porcelain(path)})
