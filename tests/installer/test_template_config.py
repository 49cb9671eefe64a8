"""copier.yml and the template tree: the settings the design depends on."""

from __future__ import annotations

import os
import subprocess

import yaml

from orchestrate_kit import copier_runner
from orchestrate_kit.project import COMMAND_FILE, ORCHESTRATOR_DIR

from .helpers import ANSWERS, REPO

CONFIG = yaml.safe_load((REPO / "copier.yml").read_text())


def test_copier_settings():
    assert CONFIG["_subdirectory"] == "template"
    assert CONFIG["_answers_file"] == ANSWERS == copier_runner.answers_file_name(REPO)
    assert CONFIG["_preserve_symlinks"] is True
    assert CONFIG["_min_copier_version"].startswith("9.")
    # Plain copier must not need --trust.
    assert "_tasks" not in CONFIG and "_migrations" not in CONFIG and "_jinja_extensions" not in CONFIG
    for pattern in ("__pycache__", "*.py[co]", f"{ORCHESTRATOR_DIR}/logs", f"{ORCHESTRATOR_DIR}/pids",
                    f"{ORCHESTRATOR_DIR}/state"):
        assert pattern in CONFIG["_exclude"], pattern
    # Jinja comments must not start at bash's ${#array[@]}.
    assert CONFIG["_envops"]["comment_start_string"] not in "${#array[@]}"


def test_questions_defaults_and_validators():
    questions = copier_runner.questions(REPO)
    assert set(questions) == {"worker_command", "max_parallel", "max_restarts", "poll_interval", "refresh_interval",
                              "tracker"}
    assert questions["tracker"]["default"] == "auto"
    assert questions["worker_command"]["default"] == "claude --print --dangerously-skip-permissions -p"
    assert questions["max_parallel"]["default"] == 0
    assert questions["max_restarts"]["default"] == 10
    assert questions["poll_interval"]["default"] == 1 and questions["poll_interval"]["type"] == "float"
    assert questions["refresh_interval"]["default"] == 15
    for name, question in questions.items():
        assert question.get("help"), name
        assert question.get("validator"), name


def test_config_template_uses_exactly_the_questions():
    text = (REPO / "template" / ORCHESTRATOR_DIR / "orchestrator.conf.jinja").read_text()
    for name in copier_runner.questions(REPO):
        assert "{{ " + name + " }}" in text, name


def test_template_tree_in_git():
    staged = subprocess.run(
        ["git", "ls-files", "-s", "template/watch-status", f"template/{ORCHESTRATOR_DIR}/.gitignore",
         f"template/{COMMAND_FILE}"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    modes = {line.split("\t")[1]: line.split()[0] for line in staged}
    assert modes["template/watch-status"] == "120000"
    assert os.readlink(REPO / "template" / "watch-status") == f"{ORCHESTRATOR_DIR}/watch-status"
    assert f"template/{ORCHESTRATOR_DIR}/.gitignore" in modes and f"template/{COMMAND_FILE}" in modes
    ignored = (REPO / "template" / ORCHESTRATOR_DIR / ".gitignore").read_text().split()
    assert {"logs/", "pids/", "state/"} <= set(ignored)
    assert (REPO / "template" / "{{_copier_conf.answers_file}}.jinja").is_file()
