"""`python3` on PATH as the interpreter that runs the tests and benchmarks, not a version manager's shim.

pyenv's `python3` is a bash script that looks up which version to run: about 0.1 s of CPU before
Python starts, in each of the thousands of Python processes the suite starts (the runtime's
commands, the fake claude). The folder made here holds `python3` and `python` linked to the base
interpreter and goes first on PATH. Its `pyvenv.cfg` makes it an empty virtual environment: none
of the test venv's packages and none of the base interpreter's site-packages either (the runtime
must run on the standard library alone), and no `.pth` file of theirs runs at each start (one that
imports certifi costs about 0.06 s of CPU per process on this machine).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Optional


def interpreter_folder(parent: Optional[Path] = None) -> Path:
    """A new folder whose `python3` and `python` are the base interpreter running this process."""
    folder = Path(tempfile.mkdtemp(prefix="interpreter-", dir=parent))
    base = Path(getattr(sys, "_base_executable", "") or sys.executable).resolve()
    for name in ("python3", "python"):
        (folder / name).symlink_to(base)
    version = ".".join(map(str, sys.version_info[:3]))
    (folder / "pyvenv.cfg").write_text(f"home = {base.parent}\ninclude-system-site-packages = false\n"
                                       f"version = {version}\n", encoding="utf-8")
    return folder


def path_with_interpreter(parent: Optional[Path] = None) -> str:
    """PATH with that folder first."""
    return f"{interpreter_folder(parent)}{os.pathsep}{os.environ.get('PATH', '')}"
