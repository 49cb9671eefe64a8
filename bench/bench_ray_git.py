"""The git either side of a Ray attempt, without Ray: the node's checkout and the orchestrator's fetch.

Real git, local bare remotes, the runtime under bench (BENCH_RUNTIME, default this tree's). Two
repositories: a small one (one file) and one of 3,000 files (about 12 MB checked out). Figures:
the node's `prepare_checkout` for a job whose start commit the node's mirror already has (a level's
second job on a node) and for one whose start is new (the first after a merge), the time the node's
lock is held in each, and the orchestrator's `bring_back` of an ended attempt's work (with the
worker's result line when the runtime takes it). Wall and CPU seconds (this process and its
children) per call, medians of BENCH_ROUNDS (default 7).
"""

from __future__ import annotations

import fcntl
import inspect
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, Tuple

HERE = Path(__file__).resolve().parents[1]
RUNTIME = Path(os.environ.get("BENCH_RUNTIME") or HERE / "template" / ".claude" / "orchestrator")
sys.path.insert(0, str(RUNTIME))
sys.path.insert(0, str(HERE))

from _orchestrate_kit.executor.ray import collect  # noqa: E402
from _orchestrate_kit.executor.ray.records import JobRecord  # noqa: E402
from _orchestrate_kit.remote import refs, worker  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))
ENV = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b",
       "GIT_COMMITTER_EMAIL": "b@x"}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=str(cwd), env=ENV, check=True, capture_output=True, text=True).stdout.strip()


def project(tmp: Path, files: int) -> Tuple[Path, Path]:
    root, remote = tmp / "project", tmp / "remote.git"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    for i in range(files):
        folder = root / f"d{i % 50}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{i}.txt").write_text(f"file {i}\n" * 100)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "start")
    git(tmp, "init", "-q", "--bare", str(remote))
    git(root, "remote", "add", "origin", str(remote))
    git(root, "push", "-q", "origin", "main")
    return root, remote


def new_commit(root: Path, n: int) -> str:
    (root / f"change-{n}.txt").write_text(f"{n}\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", f"change {n}")
    git(root, "push", "-q", "origin", "main")
    return git(root, "rev-parse", "HEAD")


def cpu() -> float:
    own, children = os.times()[0:2], os.times()[2:4]
    return sum(own) + sum(children)


def timed(call: Callable[[], object]) -> Tuple[float, float]:
    wall, used = time.monotonic(), cpu()
    call()
    return time.monotonic() - wall, cpu() - used


def checkout(cache: Path, remote: Path, start: str, target: Path, branch: str) -> None:
    kwargs = {"start_branch": "main"} if "start_branch" in inspect.signature(worker.prepare_checkout).parameters else {}
    worker.prepare_checkout(cache, str(remote), start, target, branch, **kwargs)


def lock_held(cache: Path, remote: Path, start: str, target: Path, branch: str) -> float:
    """The seconds the node's lock is held during one checkout (another thread waits on it, timing)."""
    lock_path = next((cache / "mirrors").glob("*.git.lock"))
    began = threading.Event()
    box: Dict[str, float] = {}

    def run() -> None:
        began.set()
        checkout(cache, remote, start, target, branch)
        box["done"] = time.monotonic()

    thread = threading.Thread(target=run)
    thread.start()
    began.wait()
    # Wait until the checkout has the lock (its holder writes nothing: poll a non-blocking try).
    with open(lock_path, "a") as handle:
        start_at = time.monotonic()
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(handle, fcntl.LOCK_UN)
            except OSError:
                break
            if box.get("done") or time.monotonic() - start_at > 10:
                thread.join()
                return 0.0
            time.sleep(0.0005)
        taken = time.monotonic()
        fcntl.flock(handle, fcntl.LOCK_EX)
        released = time.monotonic()
        fcntl.flock(handle, fcntl.LOCK_UN)
    thread.join()
    return released - taken


def bench_checkout(files: int) -> Iterator[Tuple[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        root, remote = project(Path(tmp), files)
        cache = Path(tmp) / "cache"
        start = git(root, "rev-parse", "HEAD")
        checkout(cache, remote, start, cache / "w-first", "b-first")  # the mirror exists
        known, fresh, held_known, held_fresh = [], [], [], []
        for n in range(ROUNDS):
            known.append(timed(lambda: checkout(cache, remote, start, cache / f"k{n}", f"k{n}")))
            sha = new_commit(root, n)
            fresh.append(timed(lambda: checkout(cache, remote, sha, cache / f"f{n}", f"f{n}")))
            held_known.append(lock_held(cache, remote, sha, cache / f"hk{n}", f"hk{n}"))
            held_fresh.append(lock_held(cache, remote, new_commit(root, 100 + n), cache / f"hf{n}", f"hf{n}"))
        label = f"{files} file{'s' if files > 1 else ''}"
        for name, rows, held in (("start commit already there", known, held_known),
                                 ("start commit new", fresh, held_fresh)):
            yield (f"node checkout, {label}, {name}: wall / CPU / node lock held",
                   f"{statistics.median(r[0] for r in rows):.3f} s / {statistics.median(r[1] for r in rows):.3f} s / "
                   f"{statistics.median(held):.3f} s")


def bench_collect() -> Iterator[Tuple[str, str]]:
    takes_result = "result" in inspect.signature(collect.bring_back).parameters
    with tempfile.TemporaryDirectory() as tmp:
        root, remote = project(Path(tmp), 1)
        rows = []
        parent = git(root, "rev-parse", "HEAD")
        for n in range(ROUNDS):
            token = secrets.token_hex(8)
            ref, progress = refs.attempt_ref("run", "S", n + 1, token), refs.progress_ref("run", "S", n + 1, token)
            sha = parent = git(root, "commit-tree", "HEAD^{tree}", "-p", parent, "-m", f"attempt {n + 1}")
            git(root, "push", "-q", "origin", f"{sha}:{ref}", f"{sha}:{progress}")
            record = JobRecord(f"run-S-{n + 1}", "run", "S", "S", n + 1, token, time.time(), "", "mcp", ())
            result = {"pushed": True, "updates": 1, "commit": sha}
            kwargs = {"result": result} if takes_result else {}
            rows.append(timed(lambda: collect.bring_back(root, "origin", record, None, **kwargs)))
        yield ("orchestrator fetch of an ended attempt's work: wall / CPU",
               f"{statistics.median(r[0] for r in rows):.3f} s / {statistics.median(r[1] for r in rows):.3f} s")


def run() -> Iterator[Tuple[str, str]]:
    yield from bench_checkout(1)
    yield from bench_checkout(3000)
    yield from bench_collect()


if __name__ == "__main__":
    print(f"runtime {RUNTIME}; load average {os.getloadavg()[0]:.1f}")
    for label, figure in run():
        print(f"  {label:78} {figure}", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f}")
