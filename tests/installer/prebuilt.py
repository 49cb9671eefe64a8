"""What many installer tests start from, built once per test process and copied into each test.

Making a packaged template version (a copy of the template, a git repository, a bundle) and
installing it with copier take most of the installer tests' CPU, while most tests only start from
them: their subject is what comes after (doctor, config, an upgrade). A build runs the first time a
test process needs it, in a folder of its own, exactly as a test would make it; each test then gets
a copy (`shutil.copytree`: links, modes and times kept). pytest-xdist workers are separate
processes, so each builds its own: nothing is shared between them and nothing needs a lock.
Tests whose subject is copier (install, upgrade, plain copier) still run it themselves.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

_shelf: Path | None = None  # the session's folder of builds (tests/installer/conftest.py's `prebuilt`)

# A record of the last fetch (git writes the bundle's path there); nothing reads it.
_NAMES_ITS_SOURCE = {"FETCH_HEAD"}


@contextmanager
def shelf(root: Path) -> Iterator[None]:
    """Keep this session's builds in ``root``."""
    global _shelf
    outer, _shelf = _shelf, root
    try:
        yield
    finally:
        _shelf = outer


def built(name: str, build: Callable[[Path], None]) -> Path | None:
    """The folder ``build`` filled for ``name``, built the first time; None outside a session's shelf."""
    if _shelf is None:
        return None
    made = _shelf / name
    if not made.is_dir():
        scratch = made.with_name(name + ".building")
        shutil.rmtree(scratch, ignore_errors=True)  # a build that failed part-way in an earlier test
        scratch.mkdir(parents=True)
        build(scratch)
        # A copy elsewhere would still point here: every path in it must be relative.
        naming = files_naming(scratch, str(scratch))
        assert not naming, f"{name}: built files name the folder they were built in, so a copy cannot stand alone: {naming}"
        scratch.rename(made)
    return made


def copy(source: Path, dest: Path) -> None:
    """``source``'s tree into ``dest`` (which may exist), links as links."""
    shutil.copytree(source, dest, symlinks=True, dirs_exist_ok=True)


def files_naming(root: Path, text: str) -> list[str]:
    """Files under ``root`` whose bytes (or link target) hold ``text``."""
    found, needle = [], text.encode()
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath, name)
            if name in _NAMES_ITS_SOURCE:
                continue
            content = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
            if needle in content:
                found.append(str(path.relative_to(root)))
    return found
