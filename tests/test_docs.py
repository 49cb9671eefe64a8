"""Docs cannot drift silently: every command and flag the README and the guide mention must exist."""

import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNTIME = REPO / "template" / ".claude" / "orchestrator"
DOCS = [REPO / "README.md", RUNTIME / "ORCHESTRATION_GUIDE.md", REPO / "docs" / "INSTALL.md",
        REPO / "template" / ".claude" / "commands" / "orchestrate.md"]
RUNTIME_COMMANDS = ["start", "status", "stop", "logs", "plan", "land", "review", "approve", "reject", "report",
                    "history"]
INSTALLER_COMMANDS = ["install", "upgrade", "doctor", "config", "sample-db", "install-command", "demo"]


def run_help(argv):
    result = subprocess.run(argv + ["--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, (argv, result.stderr)
    return result.stdout


@lru_cache(maxsize=None)
def runtime_help(command=None):
    return run_help([sys.executable, str(RUNTIME / "orchestrate.py")] + ([command] if command else []))


@lru_cache(maxsize=None)
def installer_help(command=None):
    return run_help([sys.executable, "-m", "orchestrate_kit"] + ([command] if command else []))


@lru_cache(maxsize=None)
def all_help():
    texts = [runtime_help(), installer_help()]
    texts += [runtime_help(c) for c in RUNTIME_COMMANDS] + [installer_help(c) for c in INSTALLER_COMMANDS]
    texts += [run_help([str(RUNTIME / "check-streams")]), run_help([str(RUNTIME / "watch-status")])]
    texts += [run_help([sys.executable, str(hook)]) for hook in sorted((RUNTIME / "hooks").glob("*.py"))]
    return "\n".join(texts)


def doc_text(path):
    return path.read_text(encoding="utf-8")


def code_text(path):
    """Only what the docs show as code: fenced blocks and `inline spans` (prose may say anything)."""
    text = doc_text(path)
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", text, flags=re.M | re.S))
    return "\n".join(blocks + spans)


def mentions(pattern, commands):
    """(doc, command, flags) for every `PATTERN command ...flags` in the docs."""
    found = []
    for doc in DOCS:
        for match in re.finditer(r"(?<![\w/.-])" + pattern + r"[ \t]+([a-z][a-z-]*(?:\|[a-z][a-z-]*)*)([^`\n|#]*)",
                                 code_text(doc)):
            for command in match.group(1).split("|"):
                if command in commands or not command.isalpha() or command in {"and", "or", "is"}:
                    unquoted = re.sub(r"\"[^\"]*\"|'[^']*'", "", match.group(2))
                    flags = re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-[a-zA-Z])\b", unquoted)
                    found.append((doc.name, command, tuple(flags)))
                else:
                    found.append((doc.name, command, ()))
    return found


def test_docs_exist():
    for doc in DOCS:
        assert doc.is_file(), doc


TOOLS = {"orchestrate.py": (RUNTIME_COMMANDS, runtime_help), "orchestrate-kit": (INSTALLER_COMMANDS, installer_help)}
MENTIONS = [(tool, *m) for tool, (commands, _) in TOOLS.items() for m in mentions(re.escape(tool), commands)]


@pytest.mark.parametrize("tool, doc, command, flags", MENTIONS)
def test_commands_and_flags_in_docs_exist(tool, doc, command, flags):
    commands, help_of = TOOLS[tool]
    assert command in commands, f"{doc} mentions `{tool} {command}`, which does not exist"
    for flag in flags:
        assert re.search(rf"(?<![\w-]){re.escape(flag)}\b", help_of(command)), (
            f"{doc}: `{tool} {command} {flag}` is not in its --help")


def test_every_long_flag_in_the_docs_exists_somewhere():
    helps = all_help()
    allowed = {"--print", "--dangerously-skip-permissions", "--permission-mode", "--allowedTools", "--trust",
               "--UNSAFE", "--hard", "--defaults", "--diff-filter", "--name-only", "--no-index", "--strict",
               "--status",  # --status: `tc task update`
               "--output-format", "--verbose", "--max-budget-usd", "--max-turns", "--model", "--resume",  # Claude Code's
               "--fallback-model", "--name"}
    for doc in DOCS:
        for flag in set(re.findall(r"(?<![\w-])--[a-zA-Z][a-zA-Z-]*", doc_text(doc))):
            if flag in allowed and flag not in helps:
                continue  # flags of claude, copier, git and tc quoted in the docs
            assert flag in helps, f"{doc.name} mentions {flag}, which no command's --help lists"


def test_slash_command_subcommands_match_the_runtime():
    text = doc_text(DOCS[3])
    for command in RUNTIME_COMMANDS:
        assert f"orchestrate.py {command}" in text
    for doc in DOCS[:2]:
        for command in re.findall(r"^\s*/orchestrate ([a-z]+)", code_text(doc), flags=re.M):
            assert command in RUNTIME_COMMANDS, f"{doc.name}: /orchestrate {command}"


def test_install_answers_documented_are_the_real_questions():
    copier_yml = doc_text(REPO / "copier.yml")
    questions = re.findall(r"^([a-z][a-z_]*):", copier_yml, flags=re.M)
    readme = doc_text(DOCS[0])
    for question in questions:
        assert f"`{question}`" in readme, f"install answer {question} is not documented in the README"
    conf_keys = re.findall(r"^([a-z_]+) = ", doc_text(RUNTIME / "orchestrator.conf.jinja"), flags=re.M)
    guide = doc_text(DOCS[1])
    for key in conf_keys + ["restart_delay", "stop_grace", "finish_grace"]:
        assert f"`{key}`" in guide, f"orchestrator.conf key {key} is not in the guide"


REPO_DIRS = ("template/", "generator/", "tests/", "bats/", "bench/", "tools/", "docs/", ".ci/")


def referenced_paths(text):
    """Repository paths the text names: Markdown link targets and `spans` under a top-level folder."""
    links = re.findall(r"\]\(([^)#\s]+)\)", text)
    spans = re.findall(r"`([^`\s]+)`", text)
    return {p.rstrip("/.,") for p in links + spans if p.startswith(REPO_DIRS) and "<" not in p and "*" not in p}


@pytest.mark.parametrize("doc", [REPO / "README.md", REPO / "docs" / "INSTALL.md", REPO / "docs" / "RELIABILITY.md",
                                 REPO / "bench" / "README.md", REPO / "Makefile", REPO / "pyproject.toml"],
                         ids=lambda p: p.name)
def test_docs_refer_only_to_files_in_the_repository(doc):
    missing = sorted(p for p in referenced_paths(doc_text(doc)) if not (REPO / p).exists())
    assert not missing, f"{doc.name} refers to paths that are not in the repository: {missing}"
