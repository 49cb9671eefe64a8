"""The merge check's limits: reading the output of a check that printed a lot, and ending one at its deadline.

Each check runs as the loop runs it (git/merging.py): `merging.check_spec` started by the check
executor (`executor.open_check_executor`). One prints 300 MB (BENCH_CHECK_MB) into the stream's
log; its output is read back the way `workspaces.check_result_of` reads it (the log's last
CHECK_OUTPUT_LIMIT characters) and the way it did before (everything after the check's start, then
the last characters kept). Peak Python memory (tracemalloc) and wall time, medians of BENCH_ROUNDS.
Then a hanging check with a child that left its session (`setsid`) is ended as the loop ends it at
its deadline (the executor's KILL, then polled, its leftovers swept each turn): the time from the
KILL to nothing of it being left.
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

from tests.runtime.runtime_import import executor_api, settings, workspaces as ws  # noqa: E402
from tests.support.project import pid_alive  # noqa: E402
from tests.support.waiting import wait_until  # noqa: E402
from _orchestrate_kit.executor import Executor, Handle, Output  # noqa: E402
from _orchestrate_kit.git import check_record, merging  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
CHECK_MB = int(os.environ.get("BENCH_CHECK_MB", "300"))
SID = "S"


def _read_everything(path: Path, offset: int, limit: int) -> str:
    """How a check's output was read before: all of it, then the end kept."""
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


def _start_check(project: Path, layout: settings.Layout, checks: Executor, command: str) -> Tuple[Handle, Output]:
    """A merge check started as the loop starts one: its handle, and where its output starts in the log."""
    spec = merging.check_spec(project, layout.state, SID, command, layout.log_for(SID),
                              "orchestrate/integration-bench", check_record.new_nonce())
    handle = checks.spawn(spec, before_go=lambda _handle: None)
    return handle, checks.output(handle)


def _figures(tmp: Path) -> Iterator[Tuple[str, str]]:
    project = _project(tmp)
    layout = settings.Layout(tmp / "runtime" / ".claude" / "orchestrator", tmp / "state-root")
    layout.make_dirs()
    log = layout.log_for(SID)
    log.write_text("worker output\n", encoding="utf-8")
    checks = executor_api.open_check_executor(layout, 5.0, time.time)
    loud, output = _start_check(project, layout, checks,
                                f"head -c {CHECK_MB * 1000 * 1000} /dev/zero | tr '\\0' x; echo end")
    wait_until(lambda: checks.poll(loud), "the loud check to end", timeout=600)
    for name, read in (("now (the log's end)", ws._log_tail), ("before (all of it)", _read_everything)):
        times: List[float] = []
        peaks: List[float] = []
        for _ in range(ROUNDS):
            took, peak = _measured(read, log, output.offset)
            times.append(took)
            peaks.append(peak)
        yield (f"{CHECK_MB} MB of check output read, {name}",
               f"{statistics.median(times) * 1000:.3g} ms, peak {statistics.median(peaks) / 1e6:.2f} MB")
    log.unlink()
    if shutil.which("setsid") and os.path.isdir("/proc/self"):
        ended: List[float] = []
        for n in range(ROUNDS):
            marker = tmp / f"daemon-{n}.pid"
            hung, _output = _start_check(project, layout, checks, f"setsid sleep 1000 & echo $! > {marker}; sleep 1000")
            daemon = int(wait_until(lambda: marker.exists() and marker.read_text().strip(), "the child's pid",
                                  timeout=60, interval=0.01))
            wait_until(lambda: os.getsid(daemon) != os.getsid(hung.detail("pid")), "the child's setsid",
                     timeout=60, interval=0.01)
            started = time.perf_counter()
            checks.kill(hung)  # what the loop does once merging.check_overdue says so
            while checks.poll(hung) is None or checks.cleaning_up() or pid_alive(daemon):
                checks.tick()
                time.sleep(0.001)
            ended.append(time.perf_counter() - started)
        yield ("a hanging check (and its setsid child) ended at its deadline",
               f"{statistics.median(ended) * 1000:.0f} ms")
