"""Wall time of `orchestrate-kit install` and `orchestrate-kit upgrade`, as a user runs them.

Each figure is the median of several runs of the real command in a new process (Python start,
imports, template store, copier, git), in a throwaway HOME. Two copies of this checkout's
template and installer stand for version 1 and version 2 (version 2 changes one file and adds
one), so the upgrade is a real three-way update with a change to merge.
Targets (issue 3): install under 1.5 s, upgrade under 2.5 s on the 2-core machine.
Run alone: `.venv/bin/python bench/bench_install.py`.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.installer import helpers  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
INSTALL_TARGET, UPGRADE_TARGET = 1.5, 2.5


def _checkout_copy(dest: Path, edit: bool) -> Path:
    """A checkout-like folder: template plus the installer package, which finds the template there."""
    helpers.copy_template(dest)
    if edit:
        helpers.v2_edit(dest / "template")
    shutil.copytree(
        REPO / "generator" / "orchestrate_kit", dest / "generator" / "orchestrate_kit",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.bundle"),
    )
    return dest


def _environment(scratch: Path, installer: Path) -> dict[str, str]:
    home = scratch / "home"
    home.mkdir(exist_ok=True)
    (home / ".gitconfig").write_text("[user]\n\tname = Bench\n\temail = bench@example.invalid\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "XDG_", "COPIER_"))}
    env.update(
        HOME=str(home), GIT_CONFIG_GLOBAL=str(home / ".gitconfig"), GIT_CONFIG_NOSYSTEM="1",
        PYTHONPATH=str(installer / "generator"), NO_COLOR="1",
    )
    return env


def _timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return elapsed


def _git(path: Path, *args: str, env: dict[str, str]) -> None:
    subprocess.run(["git", *args], cwd=path, env=env, check=True, capture_output=True)


def measure(rounds: int = ROUNDS) -> dict[str, list[float]]:
    """Seconds per run: the first install (empty store), later installs, and upgrades."""
    cli = [sys.executable, "-m", "orchestrate_kit", "--quiet"]
    times: dict[str, list[float]] = {"first": [], "install": [], "upgrade": []}
    with tempfile.TemporaryDirectory(prefix="bench-install.") as tmp:
        scratch = Path(tmp)
        v1 = _checkout_copy(scratch / "v1", edit=False)
        v2 = _checkout_copy(scratch / "v2", edit=True)
        env1, env2 = _environment(scratch, v1), _environment(scratch, v2)
        for i in range(rounds + 1):
            project = scratch / f"project-{i}"
            project.mkdir()
            _git(project, "init", "--quiet", env=env1)
            seconds = _timed([*cli, "install", "--defaults", str(project)], env1, scratch)
            times["first" if i == 0 else "install"].append(seconds)
            _git(project, "add", "-A", env=env1)
            _git(project, "commit", "--quiet", "-m", "install", env=env1)
            times["upgrade"].append(_timed([*cli, "upgrade", str(project)], env2, scratch))
    return times


def run() -> list[tuple[str, str]]:
    """Rows for bench/run.py: (label, figure)."""
    times = measure()
    install, upgrade = statistics.median(times["install"]), statistics.median(times["upgrade"])
    return [
        ("install, first run on a machine (empty template store)", f"{times['first'][0]:.2f} s"),
        (f"install, median of {len(times['install'])} (target < {INSTALL_TARGET} s)", f"{install:.2f} s"),
        (f"upgrade v1 -> v2, median of {len(times['upgrade'])} (target < {UPGRADE_TARGET} s)", f"{upgrade:.2f} s"),
    ]


if __name__ == "__main__":
    for label, figure in run():
        print(f"{label:62} {figure}")
