"""The command line itself: usage, exit codes, the bug path, output rules, ``python -m``."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from orchestrate_kit import __version__, main as main_module, output

from .helpers import run


def test_no_command_is_a_usage_error(capsys):
    result = run(capsys)
    assert result.code == 2 and "usage:" in result.err


def test_unknown_command_and_option_are_usage_errors(capsys):
    assert run(capsys, "instal").code == 2
    assert run(capsys, "install", "--bogus").code == 2


def test_help_and_version(capsys):
    helped = run(capsys, "--help")
    assert helped.code == 0
    for name in ("install", "upgrade", "doctor", "install-command"):
        assert name in helped.out
    versioned = run(capsys, "--version")
    assert versioned.code == 0 and versioned.out.strip() == f"orchestrate-kit {__version__}"


def test_ctrl_c_is_130(capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    command = main_module.COMMANDS["doctor"]
    monkeypatch.setitem(main_module.COMMANDS, "doctor", main_module.Command(command.help, command.add_arguments, interrupted))

    result = run(capsys, "doctor")

    assert result.code == 130 and "interrupted" in result.err


def test_python_dash_m(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "orchestrate_kit", "--version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == f"orchestrate-kit {__version__}"

    missing = subprocess.run(
        [sys.executable, "-m", "orchestrate_kit", "install", "--defaults", str(tmp_path / "nope")],
        capture_output=True, text=True, check=False,
    )
    assert missing.returncode == 1
    assert missing.stderr.startswith("orchestrate-kit: ") and "Traceback" not in missing.stderr


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch):
    monkeypatch.setattr(sys, "stderr", FakeTTY())
    output.warn("careful")
    assert "\033[" in sys.stderr.getvalue()

    monkeypatch.setattr(sys, "stderr", FakeTTY())
    monkeypatch.setenv("NO_COLOR", "1")
    output.warn("careful")
    assert sys.stderr.getvalue() == "orchestrate-kit: warning: careful\n"

    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    output.warn("careful")
    assert sys.stderr.getvalue() == "orchestrate-kit: warning: careful\n"


def test_quiet_keeps_warnings_and_errors(capsys):
    output.set_quiet(True)
    try:
        output.info("progress")
        output.success("done")
        output.warn("careful")
        output.error("broken", hint="fix it")
    finally:
        output.set_quiet(False)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "careful" in captured.err and "broken" in captured.err and "hint: fix it" in captured.err


@pytest.mark.parametrize("argv", [["install", "--help"], ["upgrade", "--help"], ["doctor", "--help"]])
def test_each_command_has_help(capsys, argv):
    result = run(capsys, *argv)
    assert result.code == 0 and "PROJECT" in result.out


def test_quiet_works_before_and_after_the_command(tmp_path, capsys, monkeypatch):
    from . import helpers

    helpers.use(monkeypatch, helpers.make_version(tmp_path / "pkg", "1.0.0"))
    project = tmp_path / "project"
    project.mkdir()
    after = run(capsys, "install", "--defaults", str(project), "--quiet")
    assert after.code == 0 and after.out == ""
    before = run(capsys, "-q", "doctor", str(project))
    also = run(capsys, "doctor", "-q", str(project))
    loud = run(capsys, "doctor", str(project))
    assert before.out == also.out and "ok  " not in also.out
    assert "ok  " in loud.out


def test_a_reader_that_goes_away_is_not_an_error(tmp_path, fake_home):
    """`orchestrate-kit install --defaults | head -1`: the install completes and exits 0."""
    project = tmp_path / "project"
    project.mkdir()
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    try:
        done = subprocess.run(
            [sys.executable, "-m", "orchestrate_kit", "install", "--defaults", str(project)],
            stdout=write_end, stderr=subprocess.PIPE, text=True, check=False,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 0, done.stderr
    assert "BrokenPipe" not in done.stderr and "unexpected error" not in done.stderr
    assert (project / ".claude/orchestrator/.copier-answers.yml").is_file()


def test_a_malformed_data_pair_is_a_usage_error(capsys):
    result = run(capsys, "upgrade", "--data", "max_parallel")
    assert result.code == 2 and "usage:" in result.err and "KEY=VALUE" in result.err
