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


ASKED = ["worker_permissions", "allowed_tools", "max_parallel", "max_cost_usd", "merge_check"]


def test_a_first_install_asks_few_questions_and_each_fits_a_terminal():
    questions = copier_runner.questions(REPO)
    asked = [name for name, question in questions.items() if question.get("ask", True) is not False]
    assert asked == ASKED  # allowed_tools only for allowed-tools (its `when`)
    assert "allowed-tools" in questions["allowed_tools"]["when"]
    for name, question in questions.items():
        assert len(question["help"]) <= 100, name  # copier prints it on one line; 110 columns cut it
        labels = question.get("choices") or {}
        assert all(len(label) <= 100 for label in labels), name


def test_every_answer_is_recorded_so_an_upgrade_keeps_it(tmp_path, capsys, monkeypatch, repo_template):
    helpers.use(monkeypatch, repo_template)
    project = helpers.init_repo(tmp_path / "project")
    assert helpers.run(capsys, "install", "--defaults", "--data", "poll_interval=3", str(project)).code == 0
    answers = yaml.safe_load((project / ANSWERS).read_text())
    settings_asked_or_not = set(copier_runner.questions(REPO)) - {"allowed_tools"}  # not asked for `skip`
    assert settings_asked_or_not <= set(answers)
    assert answers["poll_interval"] == "3"  # a setting that is never asked is still an answer


def test_the_answers_header_names_the_tool_that_wrote_it(tmp_path, capsys, monkeypatch, repo_template):
    repo = helpers.tagged_template_repo(tmp_path / "template", [("v1.0.0", None)])
    plain = tmp_path / "plain"
    copier.run_copy(str(repo), plain, defaults=True, quiet=True, vcs_ref="v1.0.0")
    header = (plain / ANSWERS).read_text().split("\n_commit:")[0]
    assert "copier update -a .claude/orchestrator/.copier-answers.yml --defaults" in header
    assert "orchestrate-kit" not in header

    helpers.use(monkeypatch, repo_template)
    ours = helpers.init_repo(tmp_path / "ours")
    assert helpers.run(capsys, "install", "--defaults", str(ours)).code == 0
    header = (ours / ANSWERS).read_text().split("\n_commit:")[0]
    assert "`orchestrate-kit upgrade` reads _commit" in header and "copier update" not in header
