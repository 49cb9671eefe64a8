"""The installer and the runtime together: an installed project runs, and running it leaves git clean."""

import json
import os
import subprocess
import sys

from tests.support import taskdb
from tests.support.project import FAKE_BIN


def run(argv, cwd, env, timeout=120):
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (argv, result.stdout, result.stderr)
    return result.stdout


def test_installed_project_runs_and_stays_clean_for_upgrades(tmp_path):
    home, project, base = tmp_path / "home", tmp_path / "app", tmp_path / "tasks"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GIT_", "XDG_", "COPIER_")) and k not in {"PYTHONDONTWRITEBYTECODE", "CLAUDECODE"}}
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", TASK_DB_PATH=str(base), WORKSPACE_ID="app",
               PATH=f"{FAKE_BIN}{os.pathsep}{env['PATH']}", FAKE_CLAUDE_DELAY="0.05",
               IS_SANDBOX="1",  # CI runs as root: as in a sandbox, where Claude Code accepts skipping permissions
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.invalid",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.invalid")
    project.mkdir()
    run(["git", "init", "-q"], project, env)
    run([sys.executable, "-m", "orchestrate_kit", "install", "--defaults", "--data", "poll_interval=0.2", "."],
        project, env)
    run(["git", "add", "-A"], project, env)
    run(["git", "commit", "-qm", "install"], project, env)
    taskdb.diamond(base / "app" / "tasks.db")

    runtime = [sys.executable, str(project / ".claude" / "orchestrator" / "orchestrate.py")]
    out = run(runtime + ["start"], project, env)
    assert "all 4 stream(s) complete" in out
    states = {s["stream_id"]: s["state"] for s in json.loads(run(runtime + ["status", "--json"], project, env))["streams"]}
    assert set(states.values()) == {"complete"}
    run([str(project / "watch-status"), "--once"], project, env)

    assert (project / ".claude" / "orchestrator" / "logs" / "Stream-Z.log").is_file()
    assert list((project / ".claude" / "orchestrator").glob("**/__pycache__/*.pyc")), "bytecode should be cached"
    assert run(["git", "status", "--porcelain", "--untracked-files=all"], project, env) == ""
    doctor = subprocess.run([sys.executable, "-m", "orchestrate_kit", "doctor", "."], cwd=project, env=env,
                            capture_output=True, text=True, timeout=120)
    assert ".gitignore" in doctor.stdout and "FAIL" not in doctor.stdout.split("database")[0]
