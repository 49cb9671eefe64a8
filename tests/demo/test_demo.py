"""`orchestrate-kit demo` runs the real product end to end and finishes with every stream complete."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def demo_env(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GIT_", "XDG_", "COPIER_")) and k not in {"TASK_DB_PATH", "WORKSPACE_ID", "CLAUDECODE"}}
    env["HOME"] = str(tmp_path / "home")
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    return env


def run_demo(env, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "orchestrate_kit", "demo", "--pause", "0.2", "--refresh", "0.2", *args],
                          env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def orchestrator_lines(stdout):
    return [line.strip() for line in stdout.split("What the orchestrator said:")[1].splitlines() if "] " in line]


def test_demo_runs_the_documented_example_to_completion(demo_env, tmp_path):
    folder = tmp_path / "demo"
    result = run_demo(demo_env, "--dir", str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "exited with code 0 (every stream complete)" in out
    assert "All 4 stream(s) complete" in out  # the dashboard's final frame
    lines = orchestrator_lines(out)

    def at(text):
        return next(i for i, line in enumerate(lines) if text in line)

    assert at("Stream-A complete") < at("started Stream-B") and at("Stream-A complete") < at("started Stream-C")
    assert max(at("started Stream-B"), at("started Stream-C")) < min(at("Stream-B complete"), at("Stream-C complete"))
    assert at("started Stream-Z") > max(at("Stream-B complete"), at("Stream-C complete"))
    # Frames were drawn while it ran: the first one, drawn as the orchestrator starts, has Stream-Z
    # waiting for its dependencies. (Which running states a frame catches depends on the machine's
    # speed: frames are drawn every --refresh, off a terminal only when a state changed.)
    before_the_end = out.split("All 4 stream(s) complete")[0]
    assert re.search(r"WAIT .*Stream-Z", before_the_end), out
    assert not folder.exists()  # cleaned up without --keep
    assert "orchestrate.py land" not in out  # the project is removed: there is nothing to land
    assert not (Path(demo_env["HOME"]) / ".claude" / "tasks").exists()  # never in the user's own ~/.claude


def test_demo_keep_leaves_project_logs_and_database(demo_env, tmp_path):
    folder = tmp_path / "kept"
    result = run_demo(demo_env, "--dir", str(folder), "--keep")
    assert result.returncode == 0, result.stdout + result.stderr
    project = folder / "demo-project"
    logs = project / ".claude" / "orchestrator" / "logs"
    assert sorted(p.name for p in logs.glob("Stream-*.log")) == [f"Stream-{s}.log" for s in "ABCZ"]
    assert "no real Claude Code runs here" in (logs / "Stream-B.log").read_text()
    assert (folder / "task-copilot" / "orchestrate-kit-demo" / "tasks.db").is_file()
    assert (project / "watch-status").is_symlink()
    land = next(line for line in result.stdout.splitlines() if "land:" in line)
    assert f"cd {project} && python3 .claude/orchestrator/orchestrate.py land" in land
    assert (project / ".claude" / "orchestrator" / ".copier-answers.yml").is_file()
    assert str(project) in result.stdout


def test_demo_refuses_a_folder_that_is_in_use(demo_env, tmp_path):
    folder = tmp_path / "busy"
    folder.mkdir()
    (folder / "precious.txt").write_text("keep me")
    result = run_demo(demo_env, "--dir", str(folder))
    assert result.returncode == 1
    assert "not an empty folder" in result.stderr and "Traceback" not in result.stderr
    assert (folder / "precious.txt").read_text() == "keep me"
