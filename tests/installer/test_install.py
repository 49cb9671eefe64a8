"""``orchestrate-kit install``: what lands in a project, and every refusal before the first write."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from orchestrate_kit import store
from orchestrate_kit.settings import LOCAL_CONF, LOCAL_HEADER

from . import helpers
from .helpers import ANSWERS, SAMPLE, commit_all, init_repo, run, snapshot, use


def installed_layout(version: str = "v1.0.0"):
    return store.layout(version)


def test_install_into_empty_git_project(tmp_path, capsys, monkeypatch, repo_template, fake_home):
    use(monkeypatch, repo_template)
    project = init_repo(tmp_path / "project")
    (project / "README.md").write_text("mine\n")
    (project / ".claude").mkdir()
    (project / ".claude" / "settings.json").write_text("{}\n")
    commit_all(project, "user's own project")

    result = run(capsys, "install", "--defaults", str(project))

    assert result.code == 0, result.err
    assert "Installed the orchestrator v1.0.0" in result.out
    layout = installed_layout()
    for rel in layout.files:
        assert (project / rel).is_file(), rel
    assert layout.scripts, "the template should have scripts"
    for rel in layout.scripts:
        assert os.access(project / rel, os.X_OK), rel
    assert (project / "watch-status").is_symlink()
    assert os.readlink(project / "watch-status") == ".claude/orchestrator/watch-status"
    assert (project / "watch-status").resolve() == (project / ".claude/orchestrator/watch-status").resolve()
    answers = yaml.safe_load((project / ANSWERS).read_text())
    assert answers["_commit"] == "v1.0.0"
    assert answers["_src_path"] == "~/.local/share/orchestrate-kit/template"
    assert answers["max_restarts"] == "10" and answers["max_parallel"] == "0"  # kept as typed
    # Nothing else touched: the user's files are as they were, and git sees only our new paths.
    assert (project / "README.md").read_text() == "mine\n"
    assert (project / ".claude" / "settings.json").read_text() == "{}\n"
    new = helpers.git(project, "status", "--porcelain", "--untracked-files=all").splitlines()
    assert all(line.startswith("?? ") for line in new)
    assert {line[3:] for line in new} == {*layout.modes, ANSWERS, LOCAL_CONF}
    assert (project / LOCAL_CONF).read_text() == LOCAL_HEADER
    assert not list(project.rglob("__pycache__"))
    assert "git add" in result.out


def test_install_leaves_bytecode_behind(tmp_path, capsys, monkeypatch, repo_template):
    """pip byte-compiles the packaged .py files; none of that may reach a project."""
    cache = repo_template.root / "template" / ".claude" / "orchestrator" / "__pycache__"
    cache.mkdir()
    (cache / "sample_module.cpython-311.pyc").write_bytes(b"\0junk")
    (repo_template.root / "template" / ".claude" / "orchestrator" / "stray.pyc").write_bytes(b"\0")
    use(monkeypatch, repo_template)
    project = tmp_path / "project"
    project.mkdir()

    assert run(capsys, "install", "--defaults", str(project)).code == 0

    assert (project / SAMPLE).is_file()
    assert not list(project.rglob("__pycache__")) and not list(project.rglob("*.pyc"))


def test_install_into_a_folder_that_is_not_git(tmp_path, capsys, monkeypatch, repo_template):
    use(monkeypatch, repo_template)
    project = tmp_path / "plain"
    project.mkdir()

    result = run(capsys, "install", "--defaults", str(project))

    assert result.code == 0, result.err
    assert "not a git repository" in result.err and "upgrade" in result.err
    assert (project / "watch-status").is_symlink()
    assert os.access(project / ".claude/orchestrator/check-streams", os.X_OK)
    assert (project / ANSWERS).is_file()
    assert not (project / ".git").exists()


def test_install_defaults_to_the_current_folder(tmp_path, capsys, monkeypatch, repo_template):
    use(monkeypatch, repo_template)
    project = init_repo(tmp_path / "here")
    monkeypatch.chdir(project)

    assert run(capsys, "install", "--defaults").code == 0
    assert (project / ANSWERS).is_file()


def test_install_twice_points_to_upgrade_and_changes_nothing(tmp_path, capsys, monkeypatch, repo_template):
    use(monkeypatch, repo_template)
    project = init_repo(tmp_path / "project")
    assert run(capsys, "install", "--defaults", str(project)).code == 0
    before = snapshot(project)

    result = run(capsys, "install", "--defaults", str(project))

    assert result.code == 1
    assert "already installed" in result.err
    assert "orchestrate-kit upgrade" in result.err
    assert snapshot(project) == before


def test_users_own_watch_status_and_command_are_kept(tmp_path, capsys, monkeypatch, repo_template):
    use(monkeypatch, repo_template)
    project = init_repo(tmp_path / "project")
    (project / "watch-status").write_text("#!/bin/sh\necho my own\n")
    (project / ".claude" / "commands").mkdir(parents=True)
    (project / ".claude/commands/orchestrate.md").write_text("my own command\n")

    result = run(capsys, "install", "--defaults", str(project))

    assert result.code == 0, result.err
    assert not (project / "watch-status").is_symlink()
    assert (project / "watch-status").read_text() == "#!/bin/sh\necho my own\n"
    assert (project / ".claude/commands/orchestrate.md").read_text() == "my own command\n"
    assert "kept your own watch-status" in result.err
    assert "kept your own .claude/commands/orchestrate.md" in result.err
    # The rest is installed, including the runtime's own watch-status (only the root one is the user's).
    assert os.access(project / ".claude/orchestrator/watch-status", os.X_OK)
    assert (project / SAMPLE).is_file()


def test_our_own_symlink_already_there_is_fine(tmp_path, capsys, monkeypatch, repo_template):
    use(monkeypatch, repo_template)
    project = init_repo(tmp_path / "project")
    (project / "watch-status").symlink_to(".claude/orchestrator/watch-status")

    result = run(capsys, "install", "--defaults", str(project))

    assert result.code == 0, result.err
    assert "kept your own" not in result.err
    assert os.readlink(project / "watch-status") == ".claude/orchestrator/watch-status"


def test_data_answers_reach_the_config(tmp_path, capsys, monkeypatch, repo_template):
    use(monkeypatch, repo_template)
    project = init_repo(tmp_path / "project")

    result = run(
        capsys, "install", "--defaults", str(project),
        "--data", "max_parallel=4", "--data", "worker_command=mycli --headless -p", "-d", "poll_interval=0.5",
    )

    assert result.code == 0, result.err
    conf = (project / ".claude/orchestrator/orchestrator.conf").read_text()
    assert "max_parallel = 4" in conf
    assert "worker_command = mycli --headless -p" in conf
    assert "poll_interval = 0.5" in conf
    answers = yaml.safe_load((project / ANSWERS).read_text())
    assert answers["max_parallel"] == "4" and answers["poll_interval"] == "0.5"


def test_files_in_the_way_are_refused_with_nothing_changed(tmp_path, capsys, monkeypatch, repo_template):
    use(monkeypatch, repo_template)
    project = init_repo(tmp_path / "project")
    (project / ".claude/orchestrator").mkdir(parents=True)
    (project / ".claude/orchestrator/.gitignore").write_text("old\n")
    before = snapshot(project)

    result = run(capsys, "install", "--defaults", str(project))

    assert result.code == 1
    assert "in the way" in result.err and ".claude/orchestrator/.gitignore" in result.err
    assert snapshot(project) == before


def test_a_failed_render_removes_only_what_it_created(tmp_path, capsys, monkeypatch, fake_home):
    def broken(template: Path) -> None:
        (template / ".claude/orchestrator/broken.txt.jinja").write_text("{% if %}\n")

    version = helpers.make_version(tmp_path / "pkg", "1.0.0", edit=broken)
    use(monkeypatch, version)
    project = init_repo(tmp_path / "project")
    (project / ".claude").mkdir()
    (project / ".claude/settings.json").write_text("{}\n")
    before = snapshot(project)

    result = run(capsys, "install", "--defaults", str(project))

    assert result.code == 1
    assert "unexpected error" in result.err
    crash_log = fake_home / ".cache/orchestrate-kit/crash.log"
    assert str(crash_log) in result.err and "Traceback" in crash_log.read_text()
    assert snapshot(project) == before


def test_unknown_data_key_changes_nothing(tmp_path, capsys, monkeypatch, repo_template):
    use(monkeypatch, repo_template)
    project = init_repo(tmp_path / "project")

    result = run(capsys, "install", "--defaults", str(project), "--data", "max_paralel=3", "--data", "colour=red")

    assert result.code == 1
    assert "Unknown --data keys: colour, max_paralel" in result.err
    assert "max_parallel" in result.err  # the hint lists the real questions
    assert snapshot(project) == {}


def test_bad_data_values_are_refused(tmp_path, capsys, monkeypatch, repo_template):
    use(monkeypatch, repo_template)
    project = init_repo(tmp_path / "project")

    not_a_number = run(capsys, "install", "--defaults", str(project), "--data", "max_parallel=lots")
    negative = run(capsys, "install", "--defaults", str(project), "--data", "max_restarts=-1")
    zero_interval = run(capsys, "install", "--defaults", str(project), "--data", "refresh_interval=0")
    no_equals = run(capsys, "install", "--defaults", str(project), "--data", "max_parallel")

    assert not_a_number.code == 1
    assert "max_parallel must be 0 (unlimited) or a positive whole number, e.g. 4, not 'lots'" in not_a_number.err
    assert negative.code == 1 and "max_restarts must be 0 or a positive whole number, e.g. 10, not '-1'" in negative.err
    assert zero_interval.code == 1 and "refresh_interval must be a number of seconds above 0" in zero_interval.err
    assert no_equals.code == 2 and "KEY=VALUE" in no_equals.err and "usage:" in no_equals.err
    assert snapshot(project) == {}


def test_questions_without_a_terminal_ask_for_defaults(tmp_path, capsys, monkeypatch, repo_template):
    use(monkeypatch, repo_template)
    project = init_repo(tmp_path / "project")

    result = run(capsys, "install", str(project))

    assert result.code == 1
    assert "--defaults" in result.err
    assert snapshot(project) == {}


def test_project_that_does_not_exist(tmp_path, capsys, monkeypatch, repo_template):
    use(monkeypatch, repo_template)
    missing = tmp_path / "nowhere"

    result = run(capsys, "install", "--defaults", str(missing))

    assert result.code == 1
    assert "does not exist" in result.err and "mkdir -p" in result.err
    assert not missing.exists()
    assert "Traceback" not in result.err


def test_project_that_is_a_file(tmp_path, capsys, monkeypatch, repo_template):
    use(monkeypatch, repo_template)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x\n")

    result = run(capsys, "install", "--defaults", str(a_file))

    assert result.code == 1
    assert "is a file" in result.err
    assert a_file.read_text() == "x\n"


def test_install_from_this_checkout(tmp_path, capsys):
    """No stand-in at all: the editable install finds the template at the repository root."""
    template = store.packaged_template()
    assert template.root == helpers.REPO and template.checkout
    project = init_repo(tmp_path / "project")

    result = run(capsys, "install", "--defaults", str(project))

    assert result.code == 0, result.err
    assert (project / "watch-status").is_symlink()
    assert (project / ".claude/commands/orchestrate.md").is_file()
    assert (project / ".claude/orchestrator/orchestrator.conf").is_file()
    # Stream worktrees never show in git status: the install ships the ignore file for them.
    assert (project / ".claude/worktrees/.gitignore").is_file()
    assert helpers.git(project, "check-ignore", ".claude/worktrees/Stream-A").strip() == ".claude/worktrees/Stream-A"
    answers = yaml.safe_load((project / ANSWERS).read_text())
    assert answers["_commit"].startswith(f"v{template.version}")


def test_bash_in_a_jinja_template_renders(tmp_path, capsys, monkeypatch):
    """_envops moves Jinja comments off `{#`, which bash uses in ${#array[@]}."""
    script = '#!/usr/bin/env bash\nitems=(a b)\necho "${#items[@]} of {{ max_parallel }}"\n'

    def with_script(template: Path) -> None:
        path = template / ".claude/orchestrator/count.sh.jinja"
        path.write_text(script)
        path.chmod(0o755)

    use(monkeypatch, helpers.make_version(tmp_path / "pkg", "1.0.0", edit=with_script))
    project = init_repo(tmp_path / "project")

    result = run(capsys, "install", "--defaults", str(project), "--data", "max_parallel=3")

    assert result.code == 0, result.err
    rendered = project / ".claude/orchestrator/count.sh"
    assert rendered.read_text() == '#!/usr/bin/env bash\nitems=(a b)\necho "${#items[@]} of 3"\n'
    assert os.access(rendered, os.X_OK)


def test_install_without_a_terminal_on_an_installed_project_points_to_upgrade(
        tmp_path, capsys, monkeypatch, repo_template):
    use(monkeypatch, repo_template)
    project = init_repo(tmp_path / "project")
    assert run(capsys, "install", "--defaults", str(project)).code == 0

    result = run(capsys, "install", str(project))  # no --defaults, and stdin is not a terminal

    assert result.code == 1 and "already installed" in result.err and "orchestrate-kit upgrade" in result.err
    assert "terminal" not in result.err


def test_from_a_subfolder_the_project_root_is_found_and_a_nested_copy_refused(
        tmp_path, capsys, monkeypatch, repo_template):
    use(monkeypatch, repo_template)
    project = init_repo(tmp_path / "project")
    sub = project / "src" / "deep"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)

    installed = run(capsys, "install", "--defaults")  # no PROJECT: the top of the git repository
    assert installed.code == 0, installed.err
    assert (project / ANSWERS).is_file() and not (sub / ".claude").exists()
    doctor = run(capsys, "doctor")
    assert f"no {ANSWERS}" not in doctor.out and "not installed" not in doctor.err
    assert "orchestrator installed" not in doctor.out

    before = snapshot(project)
    nested = run(capsys, "install", "--defaults", str(sub))
    assert nested.code == 1 and f"inside {project}" in nested.err and "--force" in nested.err
    assert snapshot(project) == before
    forced = run(capsys, "install", "--defaults", "--force", str(sub))
    assert forced.code == 0 and (sub / ANSWERS).is_file()


def test_kept_watch_status_is_not_advertised_and_the_permissions_warning_is_said_once(
        tmp_path, capsys, monkeypatch, repo_template):
    use(monkeypatch, repo_template)
    project = init_repo(tmp_path / "project")
    (project / "watch-status").write_text("#!/bin/sh\necho my own\n")

    result = run(capsys, "install", "--defaults", str(project))

    assert result.code == 0, result.err
    assert "./watch-status" not in result.out
    assert ".claude/orchestrator/watch-status    # watch them run" in result.out
    assert "git add .claude && git commit" in result.out  # not their own ./watch-status
    assert result.err.count("--dangerously-skip-permissions") == 1
    assert "--permission-mode acceptEdits" in result.err and "--allowedTools" in result.err


@pytest.mark.parametrize("choice, flags", [
    ("accept-edits", "claude --print --permission-mode acceptEdits -p"),
    ("allowed-tools", 'claude --print --allowedTools "Read Edit Write Glob Grep Bash(git:*)" -p'),
])
def test_safer_permission_answers_shape_the_worker_command(tmp_path, capsys, monkeypatch, repo_template,
                                                           choice, flags):
    use(monkeypatch, repo_template)
    project = init_repo(tmp_path / "project")

    result = run(capsys, "install", "--defaults", str(project), "--data", f"worker_permissions={choice}")

    assert result.code == 0, result.err
    assert f"worker_command = {flags}\n" in (project / ".claude/orchestrator/orchestrator.conf").read_text()
    assert "--dangerously-skip-permissions" not in result.err


def test_an_install_for_a_project_of_its_own_making_gives_no_next_steps(tmp_path, capsys, monkeypatch,
                                                                        repo_template):
    """The demo installs into its temporary project: advice about committing it would mislead."""
    from orchestrate_kit.commands.install import install

    use(monkeypatch, repo_template)
    project = init_repo(tmp_path / "project")
    capsys.readouterr()

    assert install(project=project, data={}, defaults=True, next_steps=False) == 0

    out = capsys.readouterr().out
    assert "Installed the orchestrator" in out and "Next steps" not in out and "git add" not in out
