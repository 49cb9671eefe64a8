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

import yaml

from .. import copier_runner, git, output, settings, store
from ..errors import UserError
from ..project import (
    Layout, add_run_bit, fix_link, installed_above, link_problems, refuse_unwritable, scripts_without_run_bit,
    users_own,
)

SKIP_PERMISSIONS = "--dangerously-skip-permissions"


def install(
    *, project: Path, data: Mapping[str, str], defaults: bool, force: bool = False, next_steps: bool = True
) -> int:
    """Install the orchestrator into ``project``; return the exit code.

    ``force`` allows a nested copy inside a project that has one; ``next_steps`` False leaves out
    the advice (the demo installs into a project of its own making).
    """
    template = store.packaged_template()
    answers_file = copier_runner.answers_file_name(template.root)
    answers = copier_runner.check_data(data, template.root)
    if (project / answers_file).exists():
        raise UserError(
            f"The orchestrator is already installed in {project} ({answers_file} exists); nothing changed.",
            hint="to move it to this version run `orchestrate-kit upgrade`; "
            "to change a setting, `orchestrate-kit config KEY VALUE`",
        )
    outer = installed_above(project.parent, answers_file)
    if outer is not None and not force:
        raise UserError(
            f"{project} is inside {outer}, which already has the orchestrator; a second copy here would "
            "be a separate, nested install. Nothing changed.",
            hint=f"use the one in {outer} (orchestrate-kit doctor works from any subfolder), "
            "or pass --force to install a separate copy here",
        )
    if not defaults and not sys.stdin.isatty():
        raise UserError(
            "The install questions need a terminal, and this is not one; nothing changed.",
            hint="pass --defaults, plus --data KEY=VALUE for any answer you want to change",
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
    settings.ensure_local(project)
    output.success(f"Installed the orchestrator {ref} into {project}")
    _warn_about_permissions(project, answers_file)
    if next_steps:
        _print_next_steps(project, layout, own)
    return 0


def _warn_about_permissions(project: Path, answers_file: str) -> None:
    """Say once, at install, what the default worker command lets agents do, and what is safer."""
    command = str(yaml.safe_load((project / answers_file).read_text()).get("worker_command", ""))
    if SKIP_PERMISSIONS in command:
        output.warn(
            f"worker_command runs agents with {SKIP_PERMISSIONS}: they run any command without asking. "
            "Safer: `orchestrate-kit config worker_command \"claude --print --permission-mode acceptEdits -p\"` "
            "(file edits only), or add `--allowedTools \"Edit Write Bash(git:*)\"` with your list in place of it"
        )


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


def _print_next_steps(project: Path, layout: Layout, own: list[str]) -> None:
    top = git.toplevel(project)
    if top is None:
        output.warn(
            f"{project} is not a git repository: the orchestrator works, but `orchestrate-kit upgrade` "
            "needs git to merge your edits (git init, then commit the install)"
        )
    output.info("Next steps:")
    if top is not None:
        paths = " ".join(sorted({rel.split("/")[0] for rel in layout.modes if rel not in own}))
        output.item(f"git add {paths} && git commit -m 'Add orchestrate-kit'   # upgrades start from a commit")
    output.item("python3 .claude/orchestrator/orchestrate.py plan    # check your Task Copilot streams")
    output.item("python3 .claude/orchestrator/orchestrate.py start --detach   # or /orchestrate start in Claude Code")
    dashboard = "./watch-status" if "watch-status" not in own else ".claude/orchestrator/watch-status"
    output.item(f"{dashboard}    # watch them run")
