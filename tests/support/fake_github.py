"""The stand-in `gh` (tests/support/bin/gh) pointed at a real local bare remote: the test's view of "GitHub"."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Dict, List

from tests.support.project import FAKE_BIN


class FakeGitHub:
    """A state file the fake gh reads and writes, the calls it recorded, and what a person does on GitHub."""

    def __init__(self, folder: Path, remote: Path, repo: str = "octo-fake/project"):
        self.state_file = Path(folder) / "fake-github.json"
        self.argv_file = Path(folder) / "fake-gh-argv.jsonl"
        self.state_file.write_text(json.dumps({"logged_in": True, "user": "octo-fake", "host": "github.com",
                                               "repo": repo, "remote": str(remote), "next_number": 1,
                                               "pull_requests": []}), encoding="utf-8")

    def environment(self) -> Dict[str, str]:
        return {"FAKE_GH_STATE": str(self.state_file), "FAKE_GH_ARGV": str(self.argv_file),
                "PATH": f"{FAKE_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}

    def state(self) -> dict:
        return json.loads(self.state_file.read_text(encoding="utf-8"))

    def change(self, **values) -> None:
        self.state_file.write_text(json.dumps(dict(self.state(), **values)), encoding="utf-8")

    def pull_requests(self) -> List[dict]:
        return self.state()["pull_requests"]

    def calls(self, *prefix: str) -> List[List[str]]:
        """The argv of every gh call so far (those starting with `prefix`)."""
        if not self.argv_file.exists():
            return []
        rows = [json.loads(line)["argv"] for line in self.argv_file.read_text(encoding="utf-8").splitlines() if line]
        return [argv for argv in rows if argv[:len(prefix)] == list(prefix)]

    def gh(self, *args: str) -> subprocess.CompletedProcess:
        """Run the fake gh as a person at GitHub would (not counted as the orchestrator's calls)."""
        env = dict(os.environ, **self.environment())
        env.pop("FAKE_GH_ARGV")
        return subprocess.run([str(FAKE_BIN / "gh"), *args], env=env, capture_output=True, text=True, timeout=120)

    def merge(self, number: int) -> None:
        """Mark the draft ready and merge it on the remote, as a reviewer does on GitHub."""
        for args in (("pr", "ready", str(number)), ("pr", "merge", str(number), "--merge")):
            done = self.gh(*args)
            assert done.returncode == 0, done.stderr
