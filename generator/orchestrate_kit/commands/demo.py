"""`orchestrate-kit demo`: the real product on a built-in example, end to end.

It makes a fresh git project in a temporary folder, writes a Task Copilot
database with the documented example (Stream-A; then B and C in parallel; then
Z), installs the orchestrator with the real installer, and runs it while the
real dashboard draws frames. Only the agent is simulated (simulated_agent.py);
the database lives inside the demo folder, never in the user's ~/.claude.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .. import output, settings, taskdb
from ..errors import UserError
from ..git import git
from .install import install

WORKSPACE = "orchestrate-kit-demo"
EXAMPLE = [  # (stream id, name, dependencies, task titles): the graph the user guide documents
    ("Stream-A", "Foundation", [], ["Set up project structure and tooling", "Define shared data models",
                                    "Add database migrations"]),
    ("Stream-B", "API Implementation", ["Stream-A"], ["Implement REST endpoints for tasks",
                                                      "Add request validation", "Write API integration tests"]),
    ("Stream-C", "UI Components", ["Stream-A"], ["Build the task list component", "Build the task editor form",
                                                 "Add component tests"]),
    ("Stream-Z", "Integration", ["Stream-B", "Stream-C"], ["Wire the UI to the API",
                                                           "End-to-end test of the main flow",
                                                           "Write the release notes"]),
]


def demo(*, directory: Path | None, keep: bool, pause: float, refresh: float) -> int:
    """Run the demo; return the orchestrator's exit code."""
    root = _demo_folder(directory)
    try:
        project, env = _set_up(root, pause)
        code = _run(project, env, refresh, keep)
        _print_epilogue(root, project, code, keep)
        return code
    finally:
        if not keep:
            _stop_everything(root)
            shutil.rmtree(root, ignore_errors=True)


def _demo_folder(directory: Path | None) -> Path:
    if directory is None:
        return Path(tempfile.mkdtemp(prefix="orchestrate-kit-demo-"))
    directory = directory.expanduser().absolute()
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise UserError(f"{directory} exists and is not an empty folder; the demo needs a folder of its own.",
                        hint="pass --dir with a new or empty folder, or leave --dir out to use a temporary one")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _set_up(root: Path, pause: float) -> tuple[Path, dict[str, str]]:
    """A git project, its Task Copilot database, and the orchestrator installed into it."""
    project = root / "demo-project"
    project.mkdir()
    (project / "README.md").write_text("# Demo project\n\nMade by `orchestrate-kit demo`.\n", encoding="utf-8")
    git("init", "-q", cwd=project)
    git("-c", "user.name=orchestrate-kit demo", "-c", "user.email=demo@orchestrate-kit.invalid",
        "add", "README.md", cwd=project)
    git("-c", "user.name=orchestrate-kit demo", "-c", "user.email=demo@orchestrate-kit.invalid",
        "commit", "-q", "-m", "Demo project", cwd=project)

    base = root / "task-copilot"
    db = taskdb.make_db(base / WORKSPACE / "tasks.db")
    for stream_id, name, deps, titles in EXAMPLE:
        taskdb.add_stream(db, stream_id, deps, titles, name)
    output.info(f"Demo project: {project}")
    output.info(f"Task Copilot database: {db} (4 streams, {sum(len(e[3]) for e in EXAMPLE)} tasks)")

    agent = f"{shlex.quote(sys.executable)} -m orchestrate_kit.simulated_agent --pause {pause:g}"
    install(project=project, data={"worker_command": agent, "poll_interval": "0.5", "refresh_interval": "1"},
            defaults=True, next_steps=False)
    settings.set_value(project, "spawn_gap", "0")  # the simulated agent calls no API: show B and C start together
    env = {**os.environ, "TASK_DB_PATH": str(base), "WORKSPACE_ID": WORKSPACE}
    env.pop("CLAUDECODE", None)
    return project, env


LAND_COMMAND = "orchestrate.py land"  # in the orchestrator's last line: how to bring the run's work in


def _run(project: Path, env: dict[str, str], refresh: float, keep: bool) -> int:
    """Run the orchestrator in the foreground of the demo, drawing dashboard frames meanwhile."""
    runtime = project / ".claude" / "orchestrator"
    log = project.parent / "orchestrator-output.log"
    output.info("\nStarting the orchestrator (simulated agents; the orchestrator and dashboard are real).\n")
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(runtime / "orchestrate.py"), "start"], cwd=project, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    frames = _Frames(runtime, project, env)
    try:
        while proc.poll() is None:
            frames.draw()
            time.sleep(refresh)
    except KeyboardInterrupt:
        os.kill(proc.pid, signal.SIGTERM)  # the orchestrator stops its workers, then exits
        proc.wait()
        raise
    frames.draw(final=True)
    output.info("\nWhat the orchestrator said:")
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if keep or LAND_COMMAND not in line:  # without --keep the project is removed: there is nothing to land
            output.item(line)
    return proc.returncode


class _Frames:
    """Dashboard frames: redrawn in place on a terminal; elsewhere one per change of stream states."""

    def __init__(self, runtime: Path, project: Path, env: dict[str, str]):
        self.runtime, self.project, self.env = runtime, project, env
        self.tty = sys.stdout.isatty()
        self.last_states: str | None = None
        self.drawn = 0

    def draw(self, final: bool = False) -> None:
        if not self.tty and not final:  # off a terminal, a frame only when some stream changed state
            states = self._states()
            if states == self.last_states:
                return
            self.last_states = states
        frame = subprocess.run([str(self.runtime / "check-streams")], cwd=self.project, env=self.env,
                               capture_output=True, text=True).stdout
        if self.tty:  # redraw in place: home and clear below; a full clear only the first time
            sys.stdout.write("\033[H\033[J" if self.drawn else "\033[2J\033[H")
        sys.stdout.write(frame if frame.endswith("\n") else frame + "\n")
        if not self.tty:
            sys.stdout.write("\n")
        sys.stdout.flush()
        self.drawn += 1

    def _states(self) -> str:
        result = subprocess.run([sys.executable, str(self.runtime / "orchestrate.py"), "status", "--json"],
                                cwd=self.project, env=self.env, capture_output=True, text=True)
        try:
            streams = json.loads(result.stdout)["streams"]
        except (ValueError, KeyError):
            return result.stderr
        return " ".join(f"{s['stream_id']}={s['state']}" for s in streams)


def _print_epilogue(root: Path, project: Path, code: int, keep: bool) -> None:
    verdict = "every stream complete" if code == 0 else "not every stream completed"
    output.info(f"\nThe orchestrator exited with code {code} ({verdict}).")
    if keep:
        output.info("The demo folder is kept for you to explore:")
        output.item(f"project:   {project}")
        output.item(f"logs:      {project / '.claude' / 'orchestrator' / 'logs'}")
        output.item(f"database:  {root / 'task-copilot' / WORKSPACE / 'tasks.db'}")
        output.item(f"try:       cd {shlex.quote(str(project))} && TASK_DB_PATH={shlex.quote(str(root / 'task-copilot'))} "
                    f"WORKSPACE_ID={WORKSPACE} ./watch-status --once")
        if code == 0:
            output.item(f"land:      cd {shlex.quote(str(project))} && python3 .claude/orchestrator/{LAND_COMMAND}"
                        "   # the streams' work onto the demo project's own branch")
    else:
        output.info("The demo folder was removed (run `orchestrate-kit demo --keep` to explore it).")
    output.info("\nOn a real project:")
    output.item("orchestrate-kit install            # in your project's folder")
    output.item("orchestrate-kit install-command    # adds /orchestrate to Claude Code")
    output.item("then /orchestrate start in Claude Code, and ./watch-status in a second terminal")


def _stop_everything(root: Path) -> None:
    """Leave no process behind when the demo folder goes (e.g. after Ctrl-C)."""
    runtime = root / "demo-project" / ".claude" / "orchestrator" / "orchestrate.py"
    if runtime.is_file():
        subprocess.run([sys.executable, str(runtime), "stop", "--grace", "2"], capture_output=True)
