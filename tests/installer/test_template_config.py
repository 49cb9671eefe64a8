"""copier.yml and the template tree: the settings the design depends on."""

from __future__ import annotations

import os
import subprocess

import copier
import pytest
import yaml

from orchestrate_kit import copier_runner, settings
from orchestrate_kit.project import COMMAND_FILE, ORCHESTRATOR_DIR

from . import helpers
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
    assert {"worker_permissions", "allowed_tools", "worker_command", "max_parallel", "max_restarts",
            "poll_interval", "refresh_interval", "tracker"} <= set(questions)
    assert questions["worker_permissions"]["default"] == "skip"
    assert set(questions["worker_permissions"]["choices"].values()) == {"skip", "accept-edits", "allowed-tools"}
    assert "--dangerously-skip-permissions" in questions["worker_command"]["default"]
    # Numbers are text checked by validators: copier's own cast would say only "Invalid input".
    assert questions["max_parallel"]["default"] == "0" and questions["max_parallel"]["type"] == "str"
    assert questions["max_restarts"]["default"] == "10"
    assert questions["poll_interval"]["default"] == "1"
    assert questions["refresh_interval"]["default"] == "15"
    assert questions["tracker"]["default"] == "auto"
    for name, question in questions.items():
        assert question.get("help"), name
        assert question.get("validator") or question.get("choices"), name


def test_config_template_holds_the_settings_questions():
    text = (REPO / "template" / ORCHESTRATOR_DIR / "orchestrator.conf.jinja").read_text()
    questions = copier_runner.questions(REPO)
    known = settings.known(REPO, questions)
    for name in questions:
        if name not in {"worker_permissions", "allowed_tools"}:  # they only shape worker_command's default
            assert "{{ " + name + " }}" in text, name
            assert name in known, name
    assert "worker_permissions" not in known and "restart_delay" in known


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


def test_plain_copier_keeps_numbers_as_typed(tmp_path):
    repo = helpers.tagged_template_repo(tmp_path / "template", [("v1.0.0", None)])
    copier.run_copy(str(repo), tmp_path / "project", data={"poll_interval": "1", "max_parallel": "3"},
                    defaults=True, quiet=True, vcs_ref="v1.0.0")
    conf = (tmp_path / "project" / ORCHESTRATOR_DIR / "orchestrator.conf").read_text()
    assert "poll_interval = 1\n" in conf and "max_parallel = 3\n" in conf
