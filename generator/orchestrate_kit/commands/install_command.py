"""``orchestrate-kit install-command [--user]``: the ``/orchestrate`` slash command for every project.

Copies the template's ``.claude/commands/orchestrate.md`` into ``~/.claude/commands/``. The same
file serves as a project command and a user command: in a project without the orchestrator,
``/orchestrate start`` installs it with this CLI (never a downloaded one) before starting.
A command file of the user's own there is never replaced unless ``--force`` says so.
"""

from __future__ import annotations

from pathlib import Path

from .. import output, store
from ..errors import UserError
from ..project import COMMAND_FILE

# Every file we write carries this; a file without it is the user's own.
MARK = "Written by orchestrate-kit"


def user_commands_dir() -> Path:
    """Claude Code's folder of the user's own slash commands."""
    return Path.home() / ".claude" / "commands"


def install_command(*, force: bool) -> int:
    """Install or refresh ``~/.claude/commands/orchestrate.md``; return the exit code."""
    source = store.packaged_template().root / "template" / COMMAND_FILE
    text = source.read_text()
    target = user_commands_dir() / Path(COMMAND_FILE).name
    if target.is_file() or target.is_symlink():
        current = target.read_text() if target.is_file() else ""
        if current == text:
            output.info(f"{target} is already up to date.")
            return 0
        if MARK not in current and not force:
            raise UserError(
                f"{target} exists and is not orchestrate-kit's; it was left as it is.",
                hint="move it aside, or run `orchestrate-kit install-command --force` to replace it",
            )
    elif target.exists():
        raise UserError(f"{target} exists and is not a file.", hint="move it aside and run this again")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(target)
    output.success(f"Installed the /orchestrate command: {target}")
    output.info("In Claude Code, in any project: /orchestrate start   (installs the orchestrator on first use)")
    return 0
