"""A throwaway project with the runtime in .claude/orchestrator/, a real database and the fake `claude`.

The runtime files are copied straight from template/ (no installer needed), with
an orchestrator.conf tuned for fast tests. Every command runs as a real process.
"""

from __future__ import annotations

import atexit
import compileall
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
# ORCHESTRATE_TEST_RUNTIME runs the real-process tests against another runtime folder, e.g. an old
# version from `git archive`, to show that a test catches what that version got wrong.
RUNTIME = Path(os.environ.get("ORCHESTRATE_TEST_RUNTIME") or REPO / "template" / ".claude" / "orchestrator")
FAKE_BIN = Path(__file__).resolve().parent / "bin"
PACKAGE = "_orchestrate_kit"  # the runtime's private package
WORKSPACE = "demo-ws"

FAST_SETTINGS = {
    "worker_command": "claude --print --dangerously-skip-permissions -p",
    "max_parallel": 0,
    "max_restarts": 10,
    "poll_interval": 0.2,
    "refresh_interval": 1,
    "restart_delay": 0.2,
    "stop_grace": 2,
    "finish_grace": 1,
    "spawn_gap": 0,
}


_COMPILED: List[Path] = []  # this process's compiled copy of the runtime, made on first use


def compiled_runtime() -> Path:
    """The runtime (not the .jinja templates) copied once per test process, with its bytecode.

    Every test project gets a fresh copy of the runtime, and each of its Python processes would
    otherwise compile the modules it imports from source: where PYTHONDONTWRITEBYTECODE is set (this
    machine sets it) in every process, elsewhere at least once per project, about 0.1 s of CPU each
    time. The copies keep their modification times, so the bytecode stays valid for them, as for an
    install whose runtime was imported once.
    """
    if not _COMPILED:
        folder = Path(tempfile.mkdtemp(prefix="runtime-compiled-")) / "orchestrator"
        folder.mkdir()
        for source in RUNTIME.iterdir():
            if source.is_file() and not source.name.endswith(".jinja"):
                shutil.copy2(source, folder / source.name)
            elif source.is_dir() and source.name == PACKAGE:
                shutil.copytree(source, folder / source.name, ignore=shutil.ignore_patterns("__pycache__"))
        compileall.compile_dir(str(folder), quiet=1)
        atexit.register(shutil.rmtree, folder.parent, True)
        _COMPILED.append(folder)
    return _COMPILED[0]


def install_runtime(home: Path, settings: Optional[Dict] = None) -> None:
    """Copy the runtime (not the .jinja templates, with its bytecode) and write its config."""
    shutil.copytree(compiled_runtime(), home, dirs_exist_ok=True)
    conf = {**FAST_SETTINGS, **(settings or {})}
    (home / "orchestrator.conf").write_text("".join(f"{k} = {v}\n" for k, v in conf.items()), encoding="utf-8")


@dataclass
class Project:
    root: Path
    base: Path  # TASK_DB_PATH
    env: Dict[str, str] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.root / ".claude" / "orchestrator"

    @property
    def db(self) -> Path:
        return self.base / WORKSPACE / "tasks.db"

    @property
    def events_file(self) -> Path:
        return self.root.parent / "fake-claude-events.jsonl"

    @property
    def plan_file(self) -> Path:
        return self.root.parent / "fake-claude-plan.json"

    @classmethod
    def create(cls, tmp: Path, settings: Optional[Dict] = None) -> "Project":
        root = tmp / "project"
        project = cls(root, tmp / "tasks")
        install_runtime(project.home, settings)
        project.env = {
            **os.environ,
            "PATH": f"{FAKE_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "TASK_DB_PATH": str(project.base),
            "WORKSPACE_ID": WORKSPACE,
            "FAKE_CLAUDE_EVENTS": str(project.events_file),
            "FAKE_CLAUDE_PLAN": str(project.plan_file),
            "FAKE_CLAUDE_DELAY": "0.05",
            "HOME": str(tmp / "home"),
            "CLAUDECODE": "1",  # as inside a Claude Code session: workers must not inherit it
            # CI runs as root: as inside a sandbox, where Claude Code accepts its permission-skipping flag
            # as root. The preflight's root check honours it; tests of that check remove it.
            "IS_SANDBOX": "1",
        }
        project.env.pop("NO_COLOR", None)
        return project

    @classmethod
    def create_git(cls, tmp: Path, settings: Optional[Dict] = None) -> "Project":
        """The same project as a git repository with one commit on `main` (worktree isolation's default)."""
        project = cls.create(tmp, settings)
        (project.root / "README.md").write_text("a project\n", encoding="utf-8")
        project.git("init", "-q", "-b", "main")
        project.git("add", "-A")
        project.git("commit", "-q", "-m", "initial")
        return project

    def git(self, *args: str, cwd: Optional[Path] = None) -> str:
        """Run git in the project (or `cwd`) with a test identity; its output."""
        identity = ["-c", "user.name=test", "-c", "user.email=test@example.invalid"]
        return subprocess.run(["git", *identity, *args], cwd=cwd or self.root, check=True, capture_output=True,
                              text=True, env=self.env).stdout

    def configure(self, **settings) -> None:
        install_runtime(self.home, settings)

    def plan(self, behaviours: Dict[str, List[str]]) -> None:
        self.plan_file.write_text(json.dumps(behaviours), encoding="utf-8")

    def command(self, *args: str) -> List[str]:
        return [sys.executable, str(self.home / "orchestrate.py"), *args]

    def orchestrate(self, *args: str, timeout: float = 90, env: Optional[Dict[str, str]] = None,
                    cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*args), env=env or self.env, cwd=cwd or self.root,
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def start_background(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(self.command("start", *args), env=self.env, cwd=self.root,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL, start_new_session=True)

    def start_and_kill_when(self, predicate, what: str, timeout: float = 60):
        """`start` in the background, SIGKILLed once `predicate()` holds, as a crash would end it (only
        the orchestrator: its workers and checks are in sessions of their own); `predicate`'s value."""
        orchestrator = self.start_background()
        try:
            return self.wait_for(predicate, timeout=timeout, what=what)
        finally:
            orchestrator.kill()  # SIGKILL; nothing when it has already exited
            orchestrator.communicate(timeout=timeout)

    def events(self, kind: Optional[str] = None) -> List[dict]:
        if not self.events_file.exists():
            return []
        text = self.events_file.read_text(encoding="utf-8")
        # A line still being appended (no newline yet) is not an event yet: a read can overlap a write.
        complete = text[:text.rfind("\n") + 1]
        rows = [json.loads(line) for line in complete.splitlines() if line]
        return [r for r in rows if kind is None or r["event"] == kind]

    def status(self) -> dict:
        result = self.orchestrate("status", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def states(self) -> Dict[str, str]:
        return {s["stream_id"]: s["state"] for s in self.status()["streams"]}

    def live_processes(self) -> List[int]:
        """Live processes of this project: started with its environment (its TASK_DB_PATH, which the
        orchestrator, its workers and what they leave carry), or working in or naming its folder."""
        marks = (f"TASK_DB_PATH={self.base}".encode(), str(self.root).encode())
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as handle:
                    environ = handle.read().split(b"\0")
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    cmdline = handle.read()
                cwd = os.readlink(f"/proc/{entry}/cwd").encode()
            except OSError:  # gone, or a zombie
                continue
            if marks[0] in environ or marks[1] in cmdline or cwd == marks[1] or cwd.startswith(marks[1] + b"/"):
                found.append(int(entry))
        return [pid for pid in found if pid_alive(pid)]

    def stop_leftovers(self) -> None:
        """After a test: `stop`, so that no worker is ever left behind, when a process of the project
        still runs. Most tests leave none, and `stop` is a Python start of the runtime (about 0.3 s of
        CPU here) that would find nothing."""
        if self.live_processes():
            self.orchestrate("stop", "--grace", "1", timeout=30)

    def wait_for(self, predicate, timeout: float = 30, interval: float = 0.1, what: str = "condition"):
        return wait_until(predicate, what, timeout, interval)


def pid_alive(pid: int) -> bool:
    """True for a live, non-zombie process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return False
    return data[data.rindex(b")") + 2:].split()[0] not in (b"Z", b"X")
