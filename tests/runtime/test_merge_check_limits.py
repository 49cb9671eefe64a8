"""The merge check's limits on the path the loop runs it (git/merging.py): started as `merging.check_spec`
says by the check executor (`executor.open_check_executor`), its verdict read by `workspaces.check_result_of`.
Real processes and git. Its output is read from the log's end in bounded memory however much it printed, and
is exactly its own; what it changed in tracked files is restored. When it is overdue is asked with a time the
test chooses, so the deadline is exact and nothing here waits for a timeout.

In a real run (test_merge_check_run.py): a check past its timeout ended with the child that left its session,
and a check a killed orchestrator left ended by the next start.
"""

from __future__ import annotations

import os
import time
import tracemalloc

import pytest

from tests.runtime.runtime_import import executor_api, settings as st, workspaces as ws
from tests.runtime.test_workspaces import git, isolated_git, repo  # noqa: F401
from tests.support.waiting import wait_until
from _orchestrate_kit.git import check_record, merging

SID = "S"
EARLIER = "worker output before the check\n"


@pytest.fixture
def checks(repo, tmp_path):
    """A run's integration worktree, the check executor the loop opens, and the stream's log with its
    worker's output in it."""
    ws.start_run(repo)
    layout = st.Layout(tmp_path / "runtime" / ".claude" / "orchestrator", tmp_path / "state-root")
    layout.make_dirs()
    layout.log_for(SID).write_text(EARLIER, encoding="utf-8")
    executor = executor_api.open_check_executor(layout, 5.0, time.time)
    yield layout, executor
    for handle in executor.live().values():  # never leave a check behind
        executor.kill(handle)
    executor.shutdown(0.0)


def run_check(repo, checks, command):
    """Run `command` as the loop runs a merge check, to its end: its result as the loop reads it, and where
    its output is (the log, and the offset the loop keeps with the check)."""
    layout, executor = checks
    spec = merging.check_spec(repo, layout.state, SID, command, layout.log_for(SID), "orchestrate/integration-x",
                              check_record.new_nonce())
    handle = executor.spawn(spec, before_go=lambda _handle: None)
    output = executor.output(handle)
    ended = wait_until(lambda: executor.poll(handle), "the check to end")
    return ws.check_result_of(repo, output.path, output.offset, ended.returncode), output


def test_a_check_that_prints_hundreds_of_megabytes_is_read_from_its_end_in_bounded_memory(repo, checks):
    """Before: the whole output was read to keep its last 64 kB (the orchestrator grew to 613 MB)."""
    result, output = run_check(repo, checks, "head -c 300000000 /dev/zero | tr '\\0' x; echo; echo the last line")
    tracemalloc.start()
    try:  # the loop's very call again, measured
        again = ws.check_result_of(repo, output.path, output.offset, 0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.passed and result.output.endswith("x\nthe last line\n")
    assert len(result.output) == ws.CHECK_OUTPUT_LIMIT and again == result
    assert os.path.getsize(output.path) > 300_000_000  # it all went to the log
    assert peak < 20 * ws.CHECK_OUTPUT_LIMIT, f"reading the check's output took {peak} bytes"


def test_a_check_keeps_exactly_its_own_output_after_the_streams_log(repo, checks):
    layout, _executor = checks
    result, _output = run_check(repo, checks, "printf 'ünïcode ok\\n'; echo on stderr >&2; exit 3")
    assert not result.passed and result.returncode == 3 and not result.timed_out
    assert result.output == "ünïcode ok\non stderr\n"
    log = layout.log_for(SID).read_text(encoding="utf-8")
    assert log.startswith(EARLIER + "\n=== orchestrate-kit: merge check `printf")  # appended: nothing rotated away
    assert log.endswith("===\nünïcode ok\non stderr\n")


def test_tracked_files_a_check_changed_are_restored(repo, checks):
    integration = ws.integration_path(repo)
    result, _output = run_check(repo, checks, "test -f shared.txt && echo scribble >> README.md && echo built > out.o")
    assert result.passed  # it ran in the integration worktree: the project's files are there
    assert (integration / "README.md").read_text(encoding="utf-8") == "hello\n"
    assert git(integration, "status", "--porcelain") == "?? out.o"  # what it built stays


def test_a_check_is_overdue_from_its_timeout_on_and_never_without_one():
    assert not merging.check_overdue(100.0, 159.9, timeout=60) and merging.check_overdue(100.0, 160.0, timeout=60)
    assert not merging.check_overdue(100.0, 10.0 ** 9, timeout=0)
    assert ws.check_timeout_text(30 * 60) == "timed out after 30 min"
    assert ws.check_timeout_text(0.5 * 60) == "timed out after 30 s"
    assert ws.check_timeout_text(90 * 60) == "timed out after 1.5 h"
