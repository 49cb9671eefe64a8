"""``orchestrate-kit doctor``: each check can fail, ``--fix`` repairs only the safe ones.

The database check runs the project's ``orchestrate.py plan --json``; these tests put a small
stand-in there, so they test doctor's reading of that contract, not the runtime itself.
"""

from __future__ import annotations

import os
import stat
import textwrap
from pathlib import Path

import pytest

from . import helpers
from .helpers import ANSWERS, commit_all, init_repo, run, use

RUNTIME = ".claude/orchestrator/orchestrate.py"
CHECK_STREAMS = ".claude/orchestrator/check-streams"


def plan_stub(project: Path, exit_code: int = 0, stdout: str = "", stderr: str = "") -> None:
    (project / RUNTIME).write_text(
        textwrap.dedent(
            f"""\
            import sys
            assert sys.argv[1:] == ["plan", "--json"], sys.argv
            sys.stdout.write({stdout!r})
            sys.stderr.write({stderr!r})
            sys.exit({exit_code})
            """
        )
    )


@pytest.fixture
def worker_bin(tmp_path, monkeypatch) -> Path:
    """A `fakeworker` command on PATH, to name as the worker command."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    worker = bin_dir / "fakeworker"
    worker.write_text("#!/bin/sh\nexit 0\n")
    worker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def installed_for_doctor(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Version 1.0.0 installed with `fakeworker` as the worker command and the plan stub, committed."""
    use(monkeypatch, helpers.make_version(project.parent / "pkg-1.0.0", "1.0.0"))
    init_repo(project)
    installed = helpers.call("install", "--defaults", str(project), "--data", "worker_command=fakeworker -p")
    assert installed.code == 0, installed.err
    plan_stub(project, stdout='{"db_path": "/data/tasks.db", "streams": [{"id": "A"}, {"id": "B"}, {"id": "Z"}]}')
    commit_all(project, "installed")


@pytest.fixture
def project(tmp_path, monkeypatch, fake_home, repo_template, worker_bin) -> Path:
    """The project installed_for_doctor makes (built once per test process, copied here)."""
    use(monkeypatch, repo_template)
    return helpers.prebuilt_project("doctor-project", installed_for_doctor, tmp_path / "project", fake_home)


def lines(result: helpers.Result, status: str) -> list[str]:
    return [line for line in result.out.splitlines() if line.startswith(status)]


def test_a_healthy_install(project, capsys):
    result = run(capsys, "doctor", str(project))

    assert result.code == 0, result.out + result.err
    assert lines(result, "FAIL") == []
    out = result.out
    for label in ("python3", "bash", "git", "version", "files", "run bits", "symlink ./watch-status",
                  ".gitignore", "worker command", "settings and database", "conflict markers",
                  "template source", "your settings"):
        assert f"ok    {label}" in out, label
    assert "/data/tasks.db, 3 streams, graph valid" in out
    assert "installed v1.0.0" in out


def test_broken_symlink_and_run_bits_then_fix(project, capsys):
    (project / "watch-status").unlink()
    (project / CHECK_STREAMS).chmod(0o644)

    broken = run(capsys, "doctor", str(project))
    fixed = run(capsys, "doctor", "--fix", str(project))
    after = run(capsys, "doctor", str(project))

    assert broken.code == 1
    assert any("symlink ./watch-status: missing" in line for line in lines(broken, "FAIL"))
    assert any("run bits" in line and CHECK_STREAMS in line for line in lines(broken, "FAIL"))
    assert "doctor --fix" in broken.err
    assert fixed.code == 0, fixed.out
    assert "fixed: watch-status" in fixed.out and f"fixed: {CHECK_STREAMS}" in fixed.out
    assert os.readlink(project / "watch-status") == ".claude/orchestrator/watch-status"
    assert os.stat(project / CHECK_STREAMS).st_mode & stat.S_IXUSR
    assert after.code == 0


def test_a_wrong_link_of_ours_is_repointed_but_a_users_file_is_kept(project, capsys):
    (project / "watch-status").unlink()
    (project / "watch-status").symlink_to("elsewhere")
    assert run(capsys, "doctor", "--fix", str(project)).code == 0
    assert os.readlink(project / "watch-status") == ".claude/orchestrator/watch-status"

    (project / "watch-status").unlink()
    (project / "watch-status").write_text("#!/bin/sh\necho mine\n")
    result = run(capsys, "doctor", "--fix", str(project))

    assert result.code == 0  # the user's own file is theirs: a warning, not a failure
    assert any("symlink ./watch-status" in line for line in lines(result, "warn"))
    assert (project / "watch-status").read_text() == "#!/bin/sh\necho mine\n"


def test_missing_database_is_reported_with_the_runtimes_message(project, capsys):
    plan_stub(project, exit_code=2, stderr="orchestrate: No Task Copilot database at /x/tasks.db\n")

    result = run(capsys, "doctor", str(project))

    assert result.code == 1
    assert any("settings and database" in line and "No Task Copilot database at /x/tasks.db" in line for line in lines(result, "FAIL"))


def test_invalid_graph_is_reported(project, capsys):
    plan_stub(project, exit_code=2, stderr="\norchestrate: Circular dependency detected: A -> B -> A\n")

    result = run(capsys, "doctor", str(project))

    assert result.code == 1
    assert any("Circular dependency detected" in line for line in lines(result, "FAIL"))


def test_missing_runtime_and_files(project, capsys):
    (project / RUNTIME).unlink()
    (project / ".claude/orchestrator/check_streams_data.py").unlink()

    result = run(capsys, "doctor", str(project))

    assert result.code == 1
    failed = "\n".join(lines(result, "FAIL"))
    assert "missing" in failed and "orchestrate.py" in failed and "check_streams_data.py" in failed


def test_worker_command_not_on_path(project, capsys, monkeypatch, worker_bin):
    (worker_bin / "fakeworker").unlink()

    result = run(capsys, "doctor", str(project))

    assert result.code == 1
    assert any("worker command" in line and "fakeworker is not on PATH" in line for line in lines(result, "FAIL"))


def test_gitignore_without_state_dirs(project, capsys):
    (project / ".claude/orchestrator/.gitignore").write_text("logs/\n")

    result = run(capsys, "doctor", str(project))

    assert result.code == 1
    assert any(".gitignore" in line and "pids/" in line and "state/" in line for line in lines(result, "FAIL"))


def test_an_older_install_is_a_warning(tmp_path, project, capsys, monkeypatch):
    use(monkeypatch, helpers.make_version(tmp_path / "pkg-2", "2.0.0", edit=helpers.v2_edit))

    result = run(capsys, "doctor", str(project))

    assert result.code == 0
    assert any("version" in line and "can upgrade it" in line for line in lines(result, "warn"))


def test_not_a_git_repository_is_a_warning(tmp_path, capsys, monkeypatch, repo_template, worker_bin):
    use(monkeypatch, repo_template)
    project = tmp_path / "plain"
    project.mkdir()
    assert run(capsys, "install", "--defaults", str(project), "--data", "worker_command=fakeworker").code == 0
    plan_stub(project, stdout="{}")

    result = run(capsys, "doctor", str(project))

    assert result.code == 0
    assert any("git" in line and "not a git repository" in line for line in lines(result, "warn"))


def test_not_installed(tmp_path, capsys, monkeypatch, repo_template):
    use(monkeypatch, repo_template)
    project = init_repo(tmp_path / "empty")

    result = run(capsys, "doctor", str(project))

    assert result.code == 1
    assert "not installed" in result.err and "orchestrate-kit install" in result.err


def test_quiet_prints_only_problems(project, capsys):
    (project / CHECK_STREAMS).chmod(0o644)

    result = run(capsys, "-q", "doctor", str(project))

    assert result.code == 1
    assert result.out.splitlines() == [line for line in result.out.splitlines() if line.startswith("FAIL")]
    assert CHECK_STREAMS in result.out


def test_mangled_answers_file(project, capsys):
    (project / ANSWERS).write_text("[[[")

    result = run(capsys, "doctor", str(project))

    assert result.code == 1
    assert "not valid YAML" in result.err


def test_database_check_says_which_rule_found_the_database():
    from orchestrate_kit.commands.doctor import _describe_plan

    text = _describe_plan('{"database": "/p/.copilot/tasks.db", "tracker": "tc", "database_found_by": '
                          '"found by walking up", "levels": [["A"], ["B"]]}')
    assert text == "/p/.copilot/tasks.db (tc: found by walking up), 2 streams, graph valid"


def test_conflict_markers_are_found_in_every_installed_file_with_file_and_line(project, capsys):
    sample = project / helpers.SAMPLE
    text = sample.read_text().replace("TIMEOUT = 30", "<<<<<<< before updating\nTIMEOUT = 45\n=======\n"
                                      "TIMEOUT = 60\n>>>>>>> after updating")
    sample.write_text(text)
    line = text.splitlines().index("<<<<<<< before updating") + 1
    conf = project / ".claude/orchestrator/orchestrator.conf"
    conf.write_text(conf.read_text() + "<<<<<<< before updating\nmax_parallel = 2\n=======\n"
                    "max_parallel = 5\n>>>>>>> after updating\n")
    conf_line = conf.read_text().splitlines().index("<<<<<<< before updating") + 1

    result = run(capsys, "doctor", str(project))

    assert result.code == 1
    (markers,) = [entry for entry in lines(result, "FAIL") if entry.startswith("FAIL  conflict markers")]
    assert f"{helpers.SAMPLE}:{line}" in markers and f".claude/orchestrator/orchestrator.conf:{conf_line}" in markers
    # The runtime is not blamed for something else: it is not run while markers are there.
    assert any("settings and database" in entry and "conflict markers" in entry for entry in lines(result, "FAIL"))
    assert "Everything looks right" not in result.out


def test_the_runtimes_settings_error_names_the_file_and_line(project, capsys):
    where = project / ".claude/orchestrator/orchestrator.local.conf"
    plan_stub(project, exit_code=2, stderr=f"orchestrate: {where}:4: max_parallel must be a number, got 'x'\n")

    result = run(capsys, "doctor", str(project))

    assert result.code == 1
    assert any(f"{where}:4: max_parallel must be a number" in entry for entry in lines(result, "FAIL"))


def test_a_crash_of_the_runtime_shows_its_last_line_and_where(project, capsys):
    runtime = project / RUNTIME
    runtime.write_text("import sys\nx = (\n")  # a SyntaxError, as a bad merge by hand leaves

    result = run(capsys, "doctor", str(project))

    (failed,) = [entry for entry in lines(result, "FAIL") if "settings and database" in entry]
    assert "SyntaxError" in failed and ".claude/orchestrator/orchestrate.py:" in failed
    assert "Traceback" not in failed


def test_a_missing_template_store_is_explained(project, capsys, fake_home):
    import shutil

    shutil.rmtree(helpers.store_dir(fake_home))

    result = run(capsys, "doctor", str(project))

    (warned,) = [entry for entry in lines(result, "warn") if "template source" in entry]
    assert "was missing on this machine" in warned and "Local template must be a directory" in warned
    assert (helpers.store_dir(fake_home) / ".git").is_dir()  # and it is there now


def test_a_typo_in_your_settings_is_a_warning(project, capsys):
    local = project / ".claude/orchestrator/orchestrator.local.conf"
    local.write_text(local.read_text() + "max_paralel = 3\n")
    conf = project / ".claude/orchestrator/orchestrator.conf"
    conf.write_text(conf.read_text() + "engine = ray\n")
    line = len(conf.read_text().splitlines())

    result = run(capsys, "doctor", str(project))

    assert result.code == 0
    (warned,) = [entry for entry in lines(result, "warn") if "your settings" in entry]
    assert f".claude/orchestrator/orchestrator.conf:{line}: engine is not a setting, so it changes nothing; " \
        "the settings are: worker_command, max_parallel" in warned
    assert ".claude/orchestrator/orchestrator.local.conf:4: max_paralel is not a setting, so it changes nothing; " \
        "did you mean max_parallel?" in warned


def test_doctor_runs_the_runtimes_preflight_of_a_claude_worker(tmp_path, capsys, monkeypatch, repo_template):
    """The same check `start` makes: the worker command runs, is logged in, may run as this user."""
    fake_bin = Path(__file__).resolve().parents[1] / "support" / "bin"
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("IS_SANDBOX", "1")  # CI runs as root: as in a sandbox
    use(monkeypatch, repo_template)
    path = init_repo(tmp_path / "project")
    assert run(capsys, "install", "--defaults", str(path)).code == 0

    monkeypatch.setenv("FAKE_CLAUDE_LOGGED_OUT", "1")
    result = run(capsys, "doctor", str(path))
    (failed,) = [line for line in lines(result, "FAIL") if "worker command" in line]
    assert "not logged in" in failed and "claude /login" in failed

    monkeypatch.delenv("FAKE_CLAUDE_LOGGED_OUT")
    result = run(capsys, "doctor", str(path))
    (passed,) = [line for line in result.out.splitlines() if "worker command" in line]
    assert "2.1.197 (Claude Code)" in passed and "logged in" in passed


def test_an_installed_version_the_store_lacks_says_how_to_get_it(project, capsys):
    answers = project / ANSWERS
    answers.write_text(answers.read_text().replace(installed_commit(project), "v0.9.0"))

    result = run(capsys, "doctor", str(project))

    (warned,) = [entry for entry in lines(result, "warn") if "template source" in entry]
    assert "has no v0.9.0" in warned and "@v0.9.0" in warned
    assert "uvx" not in warned  # orchestrate-kit is not on PyPI: its git tag is how to run that version


def installed_commit(project: Path) -> str:
    import yaml

    return str(yaml.safe_load((project / ANSWERS).read_text())["_commit"])
