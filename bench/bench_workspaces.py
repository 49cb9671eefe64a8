"""Worktree isolation cost: from a dependency's completion to its dependent's worktree being ready.

"Ready" = commit the finished stream's leftovers + merge it (--no-ff) into the
integration branch + `git worktree add` of the dependent from the new tip (what
git/workspaces.py does between a stream completing and its dependent's worker
starting, with no merge check). Compared with a plain `git worktree add` of the
same repository. Medians of several rounds, on a small repository and on one
with 10,000 files.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.runtime.runtime_import import workspaces as ws  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))


@contextmanager
def _isolated_git(tmp: Path) -> Iterator[None]:
    """A git configuration of our own (identity, no hooks) so the user's does not skew figures."""
    config = tmp / "gitconfig"
    config.write_text("[user]\n\tname = Bench\n\temail = bench@example.com\n[init]\n\tdefaultBranch = main\n",
                      encoding="utf-8")
    saved = {k: os.environ.get(k) for k in ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM")}
    os.environ.update(GIT_CONFIG_GLOBAL=str(config), GIT_CONFIG_NOSYSTEM="1")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _project(root: Path, files: int) -> Path:
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    for i in range(files):
        path = root / f"src/d{i % 100:02d}/f{i:05d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"file {i}\n" * 4, encoding="utf-8")
    ignore = root / ".claude" / "worktrees" / ".gitignore"
    ignore.parent.mkdir(parents=True)
    ignore.write_text("*\n!.gitignore\n", encoding="utf-8")
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "initial"], cwd=root, check=True)
    return root


def _plain_add(project: Path, run: ws.RunInfo, n: int) -> float:
    plain = project / ".claude" / "worktrees" / f"plain-{n}"
    os.sync()
    started = time.perf_counter()
    subprocess.run(["git", "worktree", "add", "-q", "-b", f"plain-{n}", str(plain), str(run.integration_branch)],
                   cwd=project, check=True)
    took = time.perf_counter() - started
    subprocess.run(["git", "worktree", "remove", str(plain)], cwd=project, check=True)
    return took


def _round(project: Path, run: ws.RunInfo, n: int, spares: bool) -> Dict[str, float]:
    """One dependency completes and its dependent gets a worktree; a plain add next to it.

    The plain add runs before ours in even rounds and after it in odd ones, so a machine
    whose load drifts (it is shared) does not favour either; ratios are taken per round,
    and writes still queued from setting up a round are flushed before each timing.
    """
    plain_first = _plain_add(project, run, n) if n % 2 == 0 else None
    done = ws.prepare_workspace(project, run, f"dep-{n}")
    if not spares:
        ws.remove_spares(project)  # the dependent gets a new worktree
    (done.cwd / f"work-{n}.txt").write_text("left uncommitted by the worker\n", encoding="utf-8")
    (done.cwd / "src" / "d00" / "f00000.txt").write_text(f"edited in round {n}\n", encoding="utf-8")
    os.sync()  # neither side pays for the other's queued writes and deletions
    started = time.perf_counter()
    ws.merge_stream(project, run, f"dep-{n}")
    merged = time.perf_counter()
    nxt = ws.prepare_workspace(project, run, f"next-{n}")
    ready = time.perf_counter()
    ws.remove_workspace(project, f"dep-{n}")
    removed = time.perf_counter()
    assert (nxt.cwd / f"work-{n}.txt").exists()
    ws.remove_workspace(project, f"next-{n}")
    plain = plain_first if plain_first is not None else _plain_add(project, run, n)
    return {"commit+merge": merged - started, "ready": ready - started, "remove": removed - ready,
            "plain add": plain, "ratio": (ready - started) / plain}


def _measure(files: int, spares: bool) -> Dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, _isolated_git(Path(tmp)):
        project = _project(Path(tmp) / "project", files)
        run = ws.start_run(project)
        _round(project, run, 0, spares)  # warm the file cache (and park the first spares)
        rounds = [_round(project, run, n, spares) for n in range(1, ROUNDS + 1)]
        return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


def run() -> List[Tuple[str, str]]:
    rows = []
    for label, files in (("small repo (20 files)", 20), ("large repo (10,000 files)", 10_000)):
        goal = "goal < 1 s" if files < 1000 else "goal < 1.5x plain add"
        for how, spares in (("new worktree", False), ("parked worktree reused", True)):
            m = _measure(files, spares)
            rows.append((f"{label}, {how}: completion -> dependent ready",
                         f"{m['ready'] * 1000:.0f} ms = {m['ratio']:.2f}x plain add ({goal}; median of {ROUNDS})"))
            rows.append((f"{label}, {how}:   of which commit + merge", f"{m['commit+merge'] * 1000:.0f} ms"))
            rows.append((f"{label}, {how}:   plain git worktree add", f"{m['plain add'] * 1000:.0f} ms"))
            rows.append((f"{label}, {how}:   then parking/removing the finished one",
                         f"{m['remove'] * 1000:.0f} ms"))
    return rows


if __name__ == "__main__":
    for row_label, figure in run():
        print(f"{row_label:62} {figure}")
