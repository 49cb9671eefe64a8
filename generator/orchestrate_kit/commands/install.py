"""``orchestrate-kit install [PROJECT]``: render the orchestrator into a project.

Everything is checked before the first write (a real folder, not installed yet, no files of
ours already there, answers that fit the questions); a failed render removes only what it
created. The user's own ``./watch-status`` or slash command is kept, with a warning.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from .. import copier_runner, git, output, store
from ..errors import UserError
from ..project import (
    Layout, add_run_bit, fix_link, link_problems, refuse_unwritable, scripts_without_run_bit, users_own,
)


def install(*, project: Path, data: Mapping[str, str], defaults: bool) -> int:
    """Install the orchestrator into ``project``; return the exit code."""
    template = store.packaged_template()
    answers_file = copier_runner.answers_file_name(template.root)
    answers = copier_runner.check_data(data, template.root)
    if not defaults and not sys.stdin.isatty():
        raise UserError(
            "The install questions need a terminal, and this is not one; nothing changed.",
            hint="pass --defaults, plus --data KEY=VALUE for any answer you want to change",
        )
    if (project / answers_file).exists():
        raise UserError(
            f"The orchestrator is already installed in {project} ({answers_file} exists); nothing changed.",
            hint=f"to move it to this version or change answers, run: orchestrate-kit upgrade {project}",
        )
    ref = store.sync(template)
    layout = store.layout(ref)
    own = users_own(project, layout)
    already_linked = set(layout.links) - set(link_problems(project, layout))
    clashes = [
        rel for rel in layout.modes
        if rel not in own and rel not in already_linked and os.path.lexists(project / rel)
    ]
    if clashes:
        raise UserError(
            "These files are in the way of the install, and were not written by it; nothing changed:",
            details=clashes,
            hint="move them aside (or remove them) and run the install again",
        )
    refuse_unwritable(project, [rel for rel in [*layout.modes, answers_file] if rel not in own], "install")
    for rel in own:
        output.warn(f"kept your own {rel}; the orchestrator's version was not written there")

    options = copier_runner.RunOptions(
        project=project,
        src=store.source_for_copier(store.store_path()),
        ref=ref,
        answers_file=answers_file,
        data=answers,
        defaults=defaults,
        exclude=tuple("/" + rel for rel in own),  # anchored: "watch-status" alone matches any depth
    )
    created = _not_yet_there(project, [*layout.modes, answers_file])
    try:
        copier_runner.copy(options)
    except BaseException:
        _remove(project, created)
        raise
    _repair(project, layout, skip=own)
    _print_next_steps(project, ref, layout)
    return 0


def _not_yet_there(project: Path, paths: list[str]) -> list[Path]:
    """The paths (and their parent folders) that do not exist yet, deepest first."""
    missing: set[Path] = set()
    for rel in paths:
        path = project / rel
        while path != project and not os.path.lexists(path):
            missing.add(path)
            path = path.parent
    return sorted(missing, key=lambda p: len(p.parts), reverse=True)


def _remove(project: Path, created: list[Path]) -> None:
    """Undo a failed install: remove what it created, and folders it left empty."""
    for path in created:
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _repair(project: Path, layout: Layout, skip: list[str]) -> None:
    """Make sure the root symlinks and run bits came through (some file systems drop them)."""
    for rel in link_problems(project, layout):
        if rel not in skip:
            fix_link(project, rel, layout.links[rel])
    for rel in scripts_without_run_bit(project, layout):
        add_run_bit(project, rel)


def _print_next_steps(project: Path, ref: str, layout: Layout) -> None:
    output.success(f"Installed the orchestrator {ref} into {project}")
    top = git.toplevel(project)
    if top is None:
        output.warn(
            f"{project} is not a git repository: the orchestrator works, but `orchestrate-kit upgrade` "
            "needs git to merge your edits (git init, then commit the install)"
        )
    output.info("Next steps:")
    if top is not None:
        paths = " ".join(sorted({rel.split("/")[0] for rel in layout.modes}))
        output.item(f"git add {paths} && git commit -m 'Add orchestrate-kit'   # upgrades start from a commit")
    output.item("python3 .claude/orchestrator/orchestrate.py plan    # check your Task Copilot streams")
    output.item("python3 .claude/orchestrator/orchestrate.py start --detach   # or /orchestrate start in Claude Code")
    output.item("./watch-status    # watch them run")
