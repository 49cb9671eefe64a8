"""All user-facing text goes through here.

Results go to stdout, warnings and errors to stderr. Colour only when the stream is a terminal
and ``NO_COLOR`` is unset (https://no-color.org); ``--quiet`` silences everything but warnings
and errors. The streams are looked up at each call, so tests that swap ``sys.stdout`` see it all.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

PROG = "orchestrate-kit"

_RESET = "\033[0m"
_COLOURS = {"bold": "\033[1m", "green": "\033[32m", "yellow": "\033[33m", "red": "\033[31m", "dim": "\033[2m"}

_quiet = False


def set_quiet(quiet: bool) -> None:
    """Silence ``info``/``success``/``item`` output (warnings and errors still print)."""
    global _quiet
    _quiet = quiet


def _use_colour(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _paint(text: str, colour: str, stream: TextIO) -> str:
    return f"{_COLOURS[colour]}{text}{_RESET}" if _use_colour(stream) else text


_silenced: set[int] = set()  # ids of streams whose reader went away


def _write(stream: TextIO, line: str) -> None:
    if id(stream) in _silenced:
        return
    try:
        stream.write(line + "\n")
        stream.flush()
    except BrokenPipeError:  # `orchestrate-kit install | head -1`: the command goes on, unheard
        _silence(stream)


def _silence(stream: TextIO) -> None:
    """Drop what is still to be written to ``stream``, including Python's flush at exit."""
    _silenced.add(id(stream))
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (a test's StringIO)
        pass


def silence_stdout() -> None:
    """The reader of stdout went away: print nothing more there (see ``_write``)."""
    _silence(sys.stdout)


def info(message: str) -> None:
    """A plain line of progress or result, on stdout."""
    if not _quiet:
        _write(sys.stdout, message)


def success(message: str) -> None:
    """A line saying something worked, on stdout."""
    if not _quiet:
        _write(sys.stdout, _paint(message, "green", sys.stdout))


def item(text: str, indent: int = 2) -> None:
    """One entry of a list (files changed, next steps), on stdout."""
    if not _quiet:
        _write(sys.stdout, " " * indent + text)


def check(status: str, label: str, detail: str = "") -> None:
    """One doctor line: ``ok``, ``warn`` or ``FAIL``, then what was checked; quiet shows only problems."""
    if status == "ok" and _quiet:
        return
    stream = sys.stdout
    colour = {"ok": "green", "warn": "yellow"}.get(status, "red")
    mark = _paint(f"{status:<4}", colour, stream)
    _write(stream, f"{mark}  {label}" + (f": {detail}" if detail else ""))


def warn(message: str) -> None:
    """Something the user should know; the command goes on. On stderr."""
    _write(sys.stderr, _paint(f"{PROG}: warning: {message}", "yellow", sys.stderr))


def error(message: str, hint: str | None = None, details: list[str] | None = None) -> None:
    """Why a command stopped, the lines that explain it, and what to run next. On stderr."""
    _write(sys.stderr, _paint(f"{PROG}: {message}", "red", sys.stderr))
    for line in details or []:
        _write(sys.stderr, f"  {line}")
    if hint:
        _write(sys.stderr, f"hint: {hint}")
