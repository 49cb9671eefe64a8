"""Per-attempt refs on the project's git remote, and which attempt is live (fencing).

A remote worker pushes its work twice, never forced: to `stream/<name>` (a fast-forward, for
people and tools that look there) and to `refs/orchestrate/<run>/<name>/<attempt>-<token>`, a ref
only that attempt can name. When a node's Ray processes die, its job reads FAILED while its worker
may still run and push later (measured); the orchestrator has moved on to the next attempt by
then. So it accepts only the live attempt's ref, named by attempt number and token, and ignores
every other: a late push from a fenced attempt never reaches a merge. A progress ref beside it
(`refs/orchestrate-progress/...`, a commit holding `progress.jsonl`) carries the attempt's task
updates as a backstop to the log lines; it is never merged.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from typing import Dict, List, Optional

ATTEMPT_ROOT = "refs/orchestrate"
PROGRESS_ROOT = "refs/orchestrate-progress"
PROGRESS_FILE = "progress.jsonl"
_TOKEN = re.compile(r"^[0-9a-f]{8,64}$")


@dataclass(frozen=True)
class AttemptRef:
    ref: str
    commit: str
    attempt: int
    token: str


def attempt_ref(run: str, name: str, attempt: int, token: str) -> str:
    if not _TOKEN.match(token):
        raise ValueError(f"attempt token {token!r} is not hex")
    return f"{ATTEMPT_ROOT}/{run}/{name}/{int(attempt)}-{token}"


def progress_ref(run: str, name: str, attempt: int, token: str) -> str:
    return attempt_ref(run, name, attempt, token).replace(ATTEMPT_ROOT, PROGRESS_ROOT, 1)


def parse_attempt_ref(ref: str, run: str, name: str) -> Optional[tuple]:
    """(attempt, token) if `ref` is one of this run's and stream's attempt refs."""
    prefix = f"{ATTEMPT_ROOT}/{run}/{name}/"
    if not ref.startswith(prefix):
        return None
    attempt, _, token = ref[len(prefix):].partition("-")
    if not attempt.isdigit() or not _TOKEN.match(token):
        return None
    return int(attempt), token


def list_attempt_refs(remote: str, run: str, name: str, cwd: Optional[str] = None,
                      timeout: float = 120.0) -> List[AttemptRef]:
    """Every attempt ref of this stream on `remote` (a URL, path or remote name), oldest attempt first."""
    try:
        done = subprocess.run(["git", "ls-remote", remote, f"{ATTEMPT_ROOT}/{run}/{name}/*"], cwd=cwd,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, env=_git_env(),
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"git ls-remote {remote} did not answer within {timeout:g} s") from None
    if done.returncode != 0:
        raise RuntimeError(f"git ls-remote {remote} failed: {done.stderr.strip().splitlines()[-1:] or ['?']}")
    found = []
    for line in done.stdout.splitlines():
        commit, _, ref = line.partition("\t")
        parsed = parse_attempt_ref(ref.strip(), run, name)
        if parsed:
            found.append(AttemptRef(ref.strip(), commit.strip(), parsed[0], parsed[1]))
    return sorted(found, key=lambda r: (r.attempt, r.token))


def live_ref(refs: List[AttemptRef], attempt: int, token: str) -> Optional[AttemptRef]:
    """The live attempt's ref among `refs`, or None if it has not pushed (yet); every other is fenced."""
    return next((r for r in refs if r.attempt == attempt and r.token == token), None)


def fenced(refs: List[AttemptRef], attempt: int, token: str) -> List[AttemptRef]:
    """The refs the orchestrator must ignore: every attempt but the live one."""
    return [r for r in refs if not (r.attempt == attempt and r.token == token)]


def _git_env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE")}
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env
