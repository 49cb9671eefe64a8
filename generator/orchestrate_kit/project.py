"""What an installed orchestrator looks like inside a user's project.

The layout facts the commands share: where the answers file and the runtime live, which paths
are the user's own once they exist, and the two repairs that are always safe (the root symlink
and the run bits of scripts), worked out from the template's own git tree.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .git import toplevel

ORCHESTRATOR_DIR = ".claude/orchestrator"
# copier.yml's _answers_file (a test holds them equal): what marks an installed project.
ANSWERS_FILE = f"{ORCHESTRATOR_DIR}/.copier-answers.yml"
# The slash command: a user's own file there is kept, never overwritten.
COMMAND_FILE = ".claude/commands/orchestrate.md"
# Runtime state: ignored by git, never written or removed by install or upgrade.
STATE_DIRS = ("logs", "pids", "state")
EXECUTABLE = "100755"
SYMLINK = "120000"


def resolve_project(argument: str | None) -> Path:
    """The project folder named on the command line (default: here), checked."""
    path = Path(argument or ".").expanduser()
    if not path.exists():
        raise UserError(
            f"The project folder {argument} does not exist.",
            hint=f"check the path, or create it first: mkdir -p {argument}",
        )
    if not path.is_dir():
        raise UserError(f"{argument} is a file, not a project folder.", hint="give the folder of your project")
    return path.resolve()


def installed_above(start: Path, answers_file: str) -> Path | None:
    """The nearest folder at or above ``start`` with the orchestrator installed (its answers file)."""
    for folder in (start, *start.parents):
        if (folder / answers_file).is_file():
            return folder
    return None


def find_root(start: Path, answers_file: str) -> Path:
    """The project that ``start`` belongs to: the nearest folder with the orchestrator installed,
    else the top of the git work tree, else ``start`` itself. Works from any subfolder."""
    installed = installed_above(start, answers_file)
    if installed is not None:
        return installed
    return toplevel(start) or start


@dataclass(frozen=True)
class Layout:
    """The files one template version renders: path in the project -> git mode."""

    modes: dict[str, str]
    links: dict[str, str]  # symlink path -> target

    @property
    def scripts(self) -> list[str]:
        return sorted(p for p, mode in self.modes.items() if mode == EXECUTABLE)

    @property
    def files(self) -> list[str]:
        return sorted(p for p, mode in self.modes.items() if mode != SYMLINK)

    def protected(self) -> list[str]:
        """Paths that a user may own: the root symlinks and the slash command."""
        return sorted([*self.links, COMMAND_FILE] if COMMAND_FILE in self.modes else self.links)


def users_own(project: Path, layout: Layout) -> list[str]:
    """Protected paths the user already has something of their own at."""
    own = []
    for rel in layout.protected():
        path = project / rel
        if not os.path.lexists(path):
            continue
        if rel in layout.links and path.is_symlink() and os.readlink(path) == layout.links[rel]:
            continue  # already our link
        own.append(rel)
    return own


def unwritable(project: Path, rels: list[str]) -> list[str]:
    """The project folder, and those of ``rels`` (files or the folders they go in) that exist
    but cannot be written: checked before the first write (a read-only mount shows here too)."""
    blocked = [] if os.access(project, os.W_OK) else ["."]
    seen: set[Path] = set()
    for rel in rels:
        path = project / rel
        for candidate in (path, *path.parents):
            if candidate in seen or candidate == project or project not in candidate.parents:
                continue
            seen.add(candidate)
            if candidate.exists() and not candidate.is_symlink() and not os.access(candidate, os.W_OK):
                blocked.append(str(candidate.relative_to(project)))
    return sorted(blocked)


def refuse_unwritable(project: Path, rels: list[str], command: str) -> None:
    """Stop ``command`` (install, upgrade) before its first write when it could not finish."""
    blocked = unwritable(project, rels)
    if blocked:
        raise UserError(f"Cannot write to {project}: these are read-only for you; nothing changed:",
                        details=blocked, hint=f"make them writable (chmod -R u+w), or {command} as their owner")


def link_problems(project: Path, layout: Layout) -> dict[str, str]:
    """Template symlinks that are missing or point elsewhere: path -> what is wrong."""
    problems = {}
    for rel, target in layout.links.items():
        path = project / rel
        if path.is_symlink():
            if os.readlink(path) != target:
                problems[rel] = f"points to {os.readlink(path)}, not {target}"
        elif os.path.lexists(path):
            problems[rel] = f"is a file of your own, not a link to {target}"
        else:
            problems[rel] = f"missing (should link to {target})"
    return problems


def fix_link(project: Path, rel: str, target: str) -> bool:
    """Create the symlink if nothing is there, or re-point our own wrong link; never replace a file."""
    path = project / rel
    if path.is_symlink():
        path.unlink()
    elif os.path.lexists(path):
        return False
    path.symlink_to(target)
    return True


def scripts_without_run_bit(project: Path, layout: Layout) -> list[str]:
    """Scripts of the template that exist in the project but cannot be run."""
    return [rel for rel in layout.scripts if (project / rel).is_file() and not os.access(project / rel, os.X_OK)]


def add_run_bit(project: Path, rel: str) -> None:
    """chmod +x, for whoever may read the file."""
    path = project / rel
    mode = path.stat().st_mode
    path.chmod(mode | ((mode & 0o444) >> 2) | stat.S_IXUSR)
