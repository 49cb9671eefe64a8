"""`python3` on PATH as the interpreter that runs the tests and benchmarks, not a version manager's shim.

pyenv's `python3` is a bash script that looks up which version to run: about 0.1 s of CPU before
Python starts, in each of the thousands of Python processes the suite starts (the runtime's
commands, the fake claude). The folder made here holds `python3` and `python` linked to the base
interpreter (no venv, so none of the test venv's packages: the runtime must run on the standard
library alone), and goes first on PATH.
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
    return folder


def path_with_interpreter(parent: Optional[Path] = None) -> str:
    """PATH with that folder first."""
    return f"{interpreter_folder(parent)}{os.pathsep}{os.environ.get('PATH', '')}"
