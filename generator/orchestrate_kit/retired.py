"""Template files a newer version no longer has: which of them the user edited, and where their code went.

copier's update removes every file the new version dropped, edited or not: an edit survives only in
git history, and nothing says so. So before copier runs, ``upgrade`` notes the dropped files whose
content differs from what the installed version rendered (the user's edits), and puts each back
after copier removed it, naming it with what to do. Unedited ones go, as copier intends.

The release that moved the runtime into its private package dropped 21 flat modules at once;
``MOVED`` says where each one's code lives now, for the upgrade's report and for ``doctor``, which
names any that are still lying in a project (a plain ``copier update``, or a kept edited one).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sh

from . import copier_runner, store
from .git import git, git_bytes
from .project import ANSWERS_FILE, ORCHESTRATOR_DIR

_PACKAGE = f"{ORCHESTRATOR_DIR}/_orchestrate_kit"
# The flat modules of the layout before the private package (up to 0.1.0.dev builds of 61beb0c), and
# the file of the package that holds each one's code now.
MOVED = {
    f"{ORCHESTRATOR_DIR}/{old}.py": f"{_PACKAGE}/{new}.py" for old, new in {
        "agent_events": "agent/events", "claude_command": "agent/claude", "worker_output": "agent/output",
        "executor": "executor/local", "processes": "executor/processes", "merging": "git/merging",
        "workspaces": "git/workspaces", "stream_graph": "graph", "lifecycle": "lifecycle", "locks": "locks",
        "logfiles": "logfiles", "notify": "notify", "scheduler": "scheduler", "settings": "settings",
        "status_report": "status", "supervisor": "supervisor", "trackers": "trackers/__init__",
        "tracker_mcp": "trackers/mcp", "tracker_snapshot": "trackers/snapshot", "tracker_tc": "trackers/tc",
        "worker_spec": "worker_spec",
    }.items()
}


@dataclass(frozen=True)
class Kept:
    """A dropped file the user had edited: its content and mode, to put back after copier."""

    rel: str
    content: bytes
    mode: int

    def advice(self, target: str) -> str:
        """What the report says about it."""
        home = MOVED.get(self.rel)
        where = f"its code now lives in {home}" if home else "no file of it takes its place"
        return (f"kept {self.rel}, which you had edited: {target} no longer has it ({where}); "
                f"carry your change over{' to there' if home else ''}, then delete it (git rm {self.rel})")


def edited_dropped(project: Path, installed: str, target: str, answers: Mapping[str, Any]) -> list[Kept]:
    """The files of version ``installed`` that ``target`` no longer has and the user had changed."""
    old, new = store.layout(installed), store.layout(target)
    dropped = sorted(rel for rel in old.files if rel not in new.modes and (project / rel).is_file()
                     and not (project / rel).is_symlink())
    if not dropped:
        return []
    with tempfile.TemporaryDirectory(prefix="orchestrate-kit-old.") as scratch:
        rendered = None
        if any(_is_template(installed, rel) for rel in dropped):  # only then is a render worth its time
            rendered = Path(scratch)
            _render(installed, answers, rendered)
        kept = []
        for rel in dropped:
            content = (project / rel).read_bytes()
            if content != _original(installed, rel, rendered):
                kept.append(Kept(rel, content, (project / rel).stat().st_mode & 0o7777))
    return kept


def put_back(project: Path, kept: list[Kept]) -> None:
    """Write each kept file again where copier removed it (never over anything now there)."""
    for item in kept:
        path = project / item.rel
        if os.path.lexists(path):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(item.content)
        path.chmod(item.mode)


def leftovers(project: Path, current: Mapping[str, str]) -> list[str]:
    """Old flat modules still in the project that the installed version (``current``: its files) lacks."""
    return sorted(rel for rel in MOVED if rel not in current and (project / rel).is_file())


def _is_template(ref: str, rel: str) -> bool:
    try:
        git("cat-file", "-e", f"{ref}:template/{rel}.jinja", cwd=store.store_path())
    except sh.ErrorReturnCode:
        return False
    return True


def _original(ref: str, rel: str, rendered: Path | None) -> bytes | None:
    """What version ``ref`` wrote at ``rel``: the file itself, or its rendering for a ``.jinja`` one."""
    if rendered is not None and (rendered / rel).is_file():
        return (rendered / rel).read_bytes()
    try:
        return git_bytes("show", f"{ref}:template/{rel}", cwd=store.store_path())
    except sh.ErrorReturnCode:
        return None


def _render(ref: str, answers: Mapping[str, Any], into: Path) -> None:
    """Version ``ref`` rendered with the project's answers, as copier's update renders it for its merge."""
    data = {k: v for k, v in answers.items() if not k.startswith("_")}
    copier_runner.copy(copier_runner.RunOptions(
        project=into, src=str(store.store_path()), ref=ref, answers_file=ANSWERS_FILE, data=data, defaults=True,
    ))
