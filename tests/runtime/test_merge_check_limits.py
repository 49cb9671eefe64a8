"""The merge check cannot hang the run or its memory: real processes, a deadline given as a time, not waited for.

`end_overdue_check` is asked with a `now` the test chooses, so the deadline is exact and
nothing here sleeps until a timeout: a loaded machine runs these the same way.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
import tracemalloc

import pytest

from tests.runtime.test_workspaces import isolated_git, log, repo  # noqa: F401
from tests.runtime.runtime_import import processes, workspaces as ws
from tests.support.project import pid_alive

LINUX = os.path.isdir("/proc/self")


def wait_for_pid(path, timeout=60):
    """The pid a check wrote to `path`, once it has (a condition, not a timed assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(encoding="utf-8").strip() if path.exists() else ""
        if text.isdigit():
            return int(text)
        time.sleep(0.02)
    raise AssertionError(f"the check never wrote {path}")


def test_a_hanging_check_is_ended_at_its_deadline_with_its_children(repo, log, tmp_path):
    ws.start_run(repo)
    child_pid = tmp_path / "child.pid"
    check = ws.start_merge_check(repo, f"sleep 1000 & echo $! > {child_pid}; sleep 1000", log)
    child = wait_for_pid(child_pid)

    assert ws.end_overdue_check(repo, check, check.started_at + 59.9, timeout=60) is None
    assert check.process.poll() is None and pid_alive(child)  # within its time: left alone
    result = ws.end_overdue_check(repo, check, check.started_at + 60, timeout=60)

    assert result is not None and result.timed_out and not result.passed and result.returncode is None
    assert check.process.returncode is not None and not pid_alive(child)
    text = log.read_text(encoding="utf-8")
    assert "[merge check timed out after 1 min; it and every process it started were ended]" in text
    assert text.startswith("worker output before the check\n")  # the stream's earlier log is kept


def test_no_timeout_means_never_overdue_and_the_text_names_the_time():
    check = ws.RunningCheck(process=None, log=None, offset=0, started_at=100.0)  # type: ignore[arg-type]
    assert not ws.check_overdue(check, 10 ** 9, timeout=0)
    assert ws.check_overdue(check, 130.0, timeout=30) and not ws.check_overdue(check, 129.9, timeout=30)
    assert ws.check_timeout_text(30 * 60) == "timed out after 30 min"
    assert ws.check_timeout_text(0.5 * 60) == "timed out after 30 s"
    assert ws.check_timeout_text(90 * 60) == "timed out after 1.5 h"


@pytest.mark.skipif(not LINUX or shutil.which("setsid") is None,
                    reason="a process in a session of its own is found by its token through /proc")
def test_a_child_that_detached_with_setsid_is_ended_too(repo, log, tmp_path):
    ws.start_run(repo)
    child_pid = tmp_path / "daemon.pid"
    check = ws.start_merge_check(repo, f"setsid sleep 1000 & echo $! > {child_pid}; sleep 1000", log)
    daemon = wait_for_pid(child_pid)
    deadline = time.monotonic() + 60
    while os.getsid(daemon) == os.getsid(check.process.pid) and time.monotonic() < deadline:
        time.sleep(0.02)  # setsid runs just after the fork
    assert os.getsid(daemon) != os.getsid(check.process.pid)  # it really left the check's session

    result = ws.end_overdue_check(repo, check, check.started_at + 1, timeout=0.5)

    assert result is not None and result.timed_out
    assert not pid_alive(daemon)
    assert "timed out after 0.5 s" in log.read_text(encoding="utf-8")


@pytest.mark.skipif(not LINUX or shutil.which("setsid") is None, reason="as above")
def test_stopping_a_check_ends_its_detached_children_at_once(repo, log, tmp_path):
    ws.start_run(repo)
    child_pid = tmp_path / "daemon.pid"
    check = ws.start_merge_check(repo, f"(setsid sleep 1000 & echo $! > {child_pid}) ; sleep 1000", log)
    daemon = wait_for_pid(child_pid)
    ws.stop_merge_check(check)
    assert check.process.returncode is not None and not pid_alive(daemon)


def test_a_check_that_prints_megabytes_is_read_from_its_end_in_bounded_memory(repo, log):
    ws.start_run(repo)
    check = ws.start_merge_check(repo, "head -c 20000000 /dev/zero | tr '\\0' x; echo; echo THE-END", log)
    check.process.wait()
    tracemalloc.start()
    try:
        result = ws.merge_check_result(repo, check)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.passed and result.output.endswith("x\nTHE-END\n")
    assert len(result.output) == ws.CHECK_OUTPUT_LIMIT
    assert os.path.getsize(log) > 20_000_000  # it all went to the log
    assert peak < 2_000_000, f"reading the check's output took {peak} bytes"


def test_a_short_check_keeps_exactly_its_own_output(repo, log):
    ws.start_run(repo)
    check = ws.start_merge_check(repo, "printf 'ünïcode ok\\n'", log)
    check.process.wait()
    assert ws.merge_check_result(repo, check).output == "ünïcode ok\n"


@pytest.mark.skipif(not LINUX or shutil.which("setsid") is None, reason="as above")
def test_a_check_left_by_a_killed_orchestrator_is_found_and_ended_from_its_record(repo, log, tmp_path):
    ws.start_run(repo)
    child_pid = tmp_path / "daemon.pid"
    check = ws.start_merge_check(repo, f"(setsid sleep 1000 & echo $! > {child_pid}) ; sleep 1000", log)
    daemon = wait_for_pid(child_pid)
    record_file = tmp_path / "merge-check.pid"
    processes.write_pid_file(record_file, ws.merge_check_record(check))

    record = processes.read_pid_file(record_file)  # what the next start reads
    assert record.is_alive() and {check.process.pid, daemon} <= set(processes.members_of(record))
    deadline = time.monotonic() + 60
    while processes.signal_worker(record, signal.SIGKILL) and time.monotonic() < deadline:
        time.sleep(0.02)
    check.process.wait()
    assert not pid_alive(daemon) and processes.members_of(record) == []
