"""The settings `orchestrate-kit install --defaults` writes, for every benchmark's project.

Benchmarks measure what users get: a git project (so worktree isolation, the default there), the
installed orchestrator.conf as it is (pacing, agent events, the preflight of `start`), and the
runtime's own defaults for everything the conf leaves out (spawn_gap, restart_delay ...). A row
that changes a setting passes it here and says so in its name.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.interpreter import path_with_interpreter  # noqa: E402
from tests.support.project import Project  # noqa: E402

# The fake claude's `python3`, as in the tests: the interpreter itself, not pyenv's shim (its 0.1 s
# start-up would count in the preflight, which runs the fake claude twice before any stream starts).
_INTERPRETER = tempfile.TemporaryDirectory(prefix="bench-interpreter.")  # removed when the bench exits
os.environ["PATH"] = path_with_interpreter(Path(_INTERPRETER.name))

CONF = ".claude/orchestrator/orchestrator.conf"


@functools.lru_cache(maxsize=None)
def default_conf() -> str:
    """orchestrator.conf exactly as `orchestrate-kit install --defaults` writes it (this checkout's installer,
    in a throwaway HOME and git project)."""
    with tempfile.TemporaryDirectory(prefix="bench-install.") as tmp:
        home, project = Path(tmp) / "home", Path(tmp) / "project"
        home.mkdir()
        (home / ".gitconfig").write_text("[user]\n\tname = Bench\n\temail = bench@example.invalid\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "XDG_", "COPIER_"))}
        env.update(HOME=str(home), GIT_CONFIG_GLOBAL=str(home / ".gitconfig"), GIT_CONFIG_NOSYSTEM="1",
                   PYTHONPATH=str(REPO / "generator"), NO_COLOR="1")
        subprocess.run(["git", "init", "--quiet", str(project)], check=True, env=env)
        subprocess.run([sys.executable, "-m", "orchestrate_kit", "install", "--defaults", "--quiet", str(project)],
                       check=True, env=env, capture_output=True, stdin=subprocess.DEVNULL)
        return (project / CONF).read_text(encoding="utf-8")


def installed_project(tmp: Path, **changed: object) -> Project:
    """A git project with the runtime, the installed settings and the fake `claude`; `changed` are the
    settings the row changes, written after the installed ones (the runtime's later lines win)."""
    project = Project.create_git(tmp)
    write_conf(project, changed)
    project.git("add", "-A")
    project.git("commit", "--quiet", "--allow-empty", "-m", "installed settings")
    return project


def write_conf(project: Project, changed: Dict[str, object]) -> None:
    extra = "".join(f"{key} = {value}\n" for key, value in changed.items())
    (project.home / "orchestrator.conf").write_text(default_conf() + extra, encoding="utf-8")


def changes(**changed: object) -> str:
    """How a row names the settings it changes: '' for none."""
    return "".join(f", {key} = {value}" for key, value in changed.items())
