"""``orchestrate-kit install-command``: the /orchestrate slash command in ~/.claude/commands/."""

from __future__ import annotations

from . import helpers
from .helpers import run

COMMAND = helpers.REPO / "template" / ".claude" / "commands" / "orchestrate.md"


def test_installs_the_templates_command_for_the_user(capsys, fake_home):
    result = run(capsys, "install-command", "--user")

    target = fake_home / ".claude" / "commands" / "orchestrate.md"
    assert result.code == 0, result.err
    assert target.read_text() == COMMAND.read_text()
    assert str(target) in result.out

    again = run(capsys, "install-command")
    assert again.code == 0 and "already up to date" in again.out


def test_an_older_copy_of_ours_is_refreshed(capsys, fake_home):
    target = fake_home / ".claude" / "commands" / "orchestrate.md"
    target.parent.mkdir(parents=True)
    target.write_text("<!-- Written by orchestrate-kit. --> an older version\n")

    assert run(capsys, "install-command").code == 0
    assert target.read_text() == COMMAND.read_text()


def test_the_users_own_command_is_kept_unless_forced(capsys, fake_home):
    target = fake_home / ".claude" / "commands" / "orchestrate.md"
    target.parent.mkdir(parents=True)
    target.write_text("my own /orchestrate\n")

    refused = run(capsys, "install-command")
    assert refused.code == 1 and "--force" in refused.err
    assert target.read_text() == "my own /orchestrate\n"

    forced = run(capsys, "install-command", "--force")
    assert forced.code == 0
    assert target.read_text() == COMMAND.read_text()


def test_the_command_maps_to_the_runtime_cli():
    """The slash command's text: what Claude runs for each subcommand, and the bootstrap."""
    text = COMMAND.read_text()
    assert text.startswith("---\n") and "description:" in text and "argument-hint:" in text
    assert "$ARGUMENTS" in text
    for line in (
        "python3 .claude/orchestrator/orchestrate.py start --detach [STREAM...]",
        "python3 .claude/orchestrator/orchestrate.py status",
        "python3 .claude/orchestrator/orchestrate.py stop [STREAM]",
        "python3 .claude/orchestrator/orchestrate.py logs STREAM",
        "python3 .claude/orchestrator/orchestrate.py plan",
        "./watch-status",
        "orchestrate-kit install --defaults .",
        "orchestrate-kit doctor .",
    ):
        assert line in text, line


def frontmatter(text: str) -> dict[str, str]:
    head = text.split("---\n")[1]
    return dict(line.split(": ", 1) for line in head.splitlines() if line.strip())


def allowed_tools(text: str) -> list[str]:
    """The `allowed-tools` entries, split at the commas between them (never inside parentheses)."""
    entries, depth, current = [], 0, ""
    for char in frontmatter(text)["allowed-tools"]:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            entries.append(current.strip())
            current = ""
        else:
            current += char
    return entries + [current.strip()]


DOWNLOADERS = ("uvx", "pipx", "pip", "npx", "npm", "curl", "wget", "uv ", "python3 -m pip")


def test_only_the_installed_command_and_the_runtime_are_pre_approved():
    """Nothing that downloads runs unasked: `orchestrate-kit` is not a published name anyone else can claim
    through this file, and every pre-approved Bash rule is the installed CLI or the runtime's own script."""
    text = COMMAND.read_text()
    tools = allowed_tools(text)
    assert tools == ["Bash(python3 .claude/orchestrator/orchestrate.py:*)", "Bash(orchestrate-kit:*)",
                     "Bash(command -v orchestrate-kit)", "Bash(test -f .claude/orchestrator/orchestrate.py)"]
    for tool in tools:
        rule = tool[len("Bash("):-1]
        assert not rule.startswith(DOWNLOADERS), tool
    body = text.split("---\n", 2)[2]
    for downloader in ("uvx orchestrate-kit", "pipx run orchestrate-kit", "pip install"):
        assert f"`{downloader}" not in body, downloader  # never a command Claude is told to run
    assert "do not install or download anything yourself" in body
