"""The merge check's limits: reading the output of a check that printed a lot, and ending one at its deadline.

A check prints 300 MB (BENCH_CHECK_MB) into the stream's log; its result is read back the way
git/workspaces.py reads it now (the log's last CHECK_OUTPUT_LIMIT characters) and the way it
did before (everything after the check's start, then the last characters kept). Peak Python
memory (tracemalloc) and wall time, medians of BENCH_ROUNDS. Then a hanging check with a child
that left its session (`setsid`) is ended at its deadline: the time from the call to nothing
of it being left.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Callable, Iterator, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.runtime.runtime_import import workspaces as ws  # noqa: E402
from tests.support.project import pid_alive  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
CHECK_MB = int(os.environ.get("BENCH_CHECK_MB", "300"))


def _read_everything(path: Path, offset: int, limit: int) -> str:
    """How merge_check_result read a check's output before: all of it, then the end kept."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read().decode("utf-8", "replace")[-limit:]


def _measured(read: Callable[[Path, int, int], str], log: Path, offset: int) -> Tuple[float, float]:
    tracemalloc.start()
    started = time.perf_counter()
    read(log, offset, ws.CHECK_OUTPUT_LIMIT)
    took = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return took, peak


def _project(tmp: Path) -> Path:
    """A one-commit repository with a run started (the user's git configuration left out)."""
    root = tmp / "project"
    root.mkdir()
    (tmp / "gitconfig").write_text("[user]\n\tname = Bench\n\temail = bench@example.com\n", encoding="utf-8")
    for args in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "initial"]):
        subprocess.run(["git", *args], cwd=root, check=True)
    ws.start_run(root)
    return root


def run() -> Iterator[Tuple[str, str]]:
    saved = {k: os.environ.get(k) for k in ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM")}
    try:
        with tempfile.TemporaryDirectory() as folder:
            os.environ.update(GIT_CONFIG_GLOBAL=str(Path(folder) / "gitconfig"), GIT_CONFIG_NOSYSTEM="1")
            yield from _figures(Path(folder))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _figures(tmp: Path) -> Iterator[Tuple[str, str]]:
    project = _project(tmp)
    log = tmp / "stream.log"
    log.write_text("worker output\n", encoding="utf-8")
    check = ws.start_merge_check(project, f"head -c {CHECK_MB * 1000 * 1000} /dev/zero | tr '\\0' x; echo end", log)
    check.process.wait()
    for name, read in (("now (the log's end)", ws._log_tail), ("before (all of it)", _read_everything)):
        times: List[float] = []
        peaks: List[float] = []
        for _ in range(ROUNDS):
            took, peak = _measured(read, log, check.offset)
            times.append(took)
            peaks.append(peak)
        yield (f"{CHECK_MB} MB of check output read, {name}",
               f"{statistics.median(times) * 1000:.1f} ms, peak {statistics.median(peaks) / 1e6:.2f} MB")
    log.unlink()
    if shutil.which("setsid") and os.path.isdir("/proc/self"):
        ended: List[float] = []
        for n in range(ROUNDS):
            marker = tmp / f"daemon-{n}.pid"
            hung = ws.start_merge_check(project, f"setsid sleep 1000 & echo $! > {marker}; sleep 1000", log)
            while not marker.exists() or not marker.read_text().strip():
                time.sleep(0.01)
            daemon = int(marker.read_text())
            started = time.perf_counter()
            ws.end_overdue_check(project, hung, hung.started_at + 60, timeout=60)
            ended.append(time.perf_counter() - started)
            assert not pid_alive(daemon)
        yield ("a hanging check (and its setsid child) ended at its deadline",
               f"{statistics.median(ended) * 1000:.0f} ms")
