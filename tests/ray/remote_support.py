"""A project, its bare remote and a job description, for running the remote worker in tests."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import tests.ray.conftest  # noqa: F401  (puts the runtime on sys.path)
from tests.support import taskdb
from tests.support.project import FAKE_BIN, RUNTIME
from _orchestrate_kit.executor import processes
from _orchestrate_kit.executor.ray import job as ray_job
from _orchestrate_kit.remote import protocol
from _orchestrate_kit.trackers import apply

WORKER_ARGV = ["claude", "--print", "--dangerously-skip-permissions", "-p", "Work through your stream's tasks."]


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", *args], cwd=str(cwd), env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


@dataclass
class RemoteProject:
    """A git project with a Task Copilot database, pushed to a local bare remote."""

    root: Path
    remote: Path
    db: Path
    generation: str

    @classmethod
    def create(cls, tmp: Path, generation: str = "mcp") -> "RemoteProject":
        root, remote = tmp / "project", tmp / "remote.git"
        root.mkdir()
        git(root, "init", "-q", "-b", "main")
        (root / "README.md").write_text("the project\n")
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "start")
        git(tmp, "init", "-q", "--bare", str(remote))
        git(root, "remote", "add", "origin", str(remote))
        git(root, "push", "-q", "origin", "main")
        if generation == "mcp":
            db = taskdb.diamond(tmp / "tasks" / "ws" / "tasks.db")
        else:
            db = taskdb.tc_diamond(tmp / "tcproject")
        return cls(root, remote, db, generation)

    @property
    def head(self) -> str:
        return git(self.root, "rev-parse", "HEAD")

    def describe(self, stream: str = "Stream-A", attempt: int = 1, token: Optional[str] = None, run: str = "run1",
                 grace: float = 3, argv: Optional[List[str]] = None) -> Dict:
        snapshot = apply.stream_snapshot(self.db, self.generation, stream)
        return ray_job.describe(run, stream, stream, attempt, token or secrets.token_hex(8), str(self.remote),
                                self.head, argv or WORKER_ARGV,
                                {"STREAM_ID": stream, "STREAM_NAME": "Foundation", "ORCHESTRATOR_ATTEMPT": str(attempt),
                                 "ANTHROPIC_API_KEY": "never-sent"}, self.generation, snapshot, grace)

    def applier(self, description: Dict, state: Path) -> apply.Applier:
        identity = apply.JobIdentity(description["run"], description["stream"], description["attempt"],
                                     description["token"])
        ids = frozenset(str(t["id"]) for t in description["tracker"]["snapshot"]["tasks"])
        return apply.Applier(self.db, self.generation, identity, ids, state)

    def remote_refs(self) -> Dict[str, str]:
        out = git(self.remote, "for-each-ref", "--format=%(refname) %(objectname)")
        return dict(line.split(" ", 1) for line in out.splitlines())

    def files_at(self, ref: str) -> List[str]:
        return git(self.remote, "ls-tree", "--name-only", ref).splitlines()


def worker_environment(tmp: Path, description: Dict, plan: Optional[Dict] = None, events: Optional[Path] = None
                       ) -> Dict[str, str]:
    """A node's environment: the fake claude on PATH, a HOME and a cache of its own, the job's variable."""
    home = tmp / "node-home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "FAKE_CLAUDE", "ORCHESTRATE"))}
    env.update(PATH=f"{FAKE_BIN}{os.pathsep}{os.environ['PATH']}", HOME=str(home), PYTHONPATH=str(RUNTIME),
               ORCHESTRATE_NODE_CACHE=str(tmp / "node-cache"), FAKE_CLAUDE_DELAY="0.05")
    env[protocol.JOB_VARIABLE] = protocol.encode_job(description)
    if plan is not None:
        plan_file = tmp / f"plan-{secrets.token_hex(4)}.json"
        plan_file.write_text(json.dumps(plan))
        env["FAKE_CLAUDE_PLAN"] = str(plan_file)
    if events is not None:
        env["FAKE_CLAUDE_EVENTS"] = str(events)
    return env


def start_worker(env: Dict[str, str], log: Path) -> subprocess.Popen:
    handle = open(log, "wb")
    try:
        return subprocess.Popen([sys.executable, "-m", "_orchestrate_kit.remote.worker"], env=env, stdout=handle,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        handle.close()


def carriers(token: str) -> List[int]:
    """Live processes whose environment carries this worker's token (what a node must not keep)."""
    return processes.token_carriers(token)


def result_of(log_text: str) -> Dict:
    records = [protocol.parse_line(line) for line in log_text.split("\n")]
    results = [r for r in records if r and r.get("kind") == "result"]
    assert results, f"no result line in the log:\n{log_text[-3000:]}"
    return results[-1]
