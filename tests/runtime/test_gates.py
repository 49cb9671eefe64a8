"""git/gates.py with real git: a review shows what a merge would bring, and an approval merges exactly that commit.

The stream's "worker" is the test committing in its worktree; its log is built from the real
Claude Code CLI's stream-json sample (tests/support/claude-samples/) with junk around it.
"""

from __future__ import annotations

import json

import pytest

from tests.runtime.test_workspaces import commit_all, git, isolated_git, repo  # noqa: F401
from tests.runtime.runtime_import import workspaces as ws
from tests.support.project import REPO
from _orchestrate_kit.git import gates

SAMPLE = REPO / "tests" / "support" / "claude-samples" / "not-logged-in.stream-json"


@pytest.fixture
def state(tmp_path):
    return tmp_path / "state"


def work(root, run, sid, files, message=None):
    """The stream's worker writes files in its worktree and commits them (or leaves them, message=None)."""
    space = ws.prepare_workspace(root, run, sid)
    for name, text in files.items():
        (space.cwd / name).write_text(text, encoding="utf-8")
    if message:
        commit_all(space.cwd, message)
    return space


def result_line(text):
    """A result event exactly as the real CLI prints it, with `text` as its result."""
    sample = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line]
    result = next(event for event in sample if event["type"] == "result")
    return json.dumps(dict(result, result=text, is_error=False, subtype="success"), separators=(",", ":"))


# ---------------------------------------------------------------- review


def test_a_review_shows_what_a_merge_would_bring_and_records_the_commit(repo, state):
    run = ws.start_run(repo)
    work(repo, run, "A", {"a.txt": "from A\n"}, "A's work")
    work(repo, run, "B", {"b.txt": "from B\n"}, "B's work")
    assert ws.merge_stream(repo, run, "B").outcome is ws.MergeOutcome.MERGED  # the integration branch moves on

    shown = gates.review(repo, state, run, "A")

    assert shown.commit == git(repo, "rev-parse", "stream/A") and shown.commits == 1
    assert shown.base == run.base  # from the merge base: B's work is not part of what A brings
    assert "a.txt" in shown.stat and "b.txt" not in shown.stat
    assert "+from A" in shown.diff and "from B" not in shown.diff and not shown.diff_truncated
    assert shown.summary is None and shown.uncommitted == ()
    recorded = gates.read_record(state, "A")
    assert recorded.commit == shown.commit and recorded.decision == "" and recorded.integration_branch == run.integration_branch
    assert json.loads(json.dumps(shown.as_dict()))["commit"] == shown.commit  # JSON-able, for --json and a child process
    assert gates.shortstat(repo, run, "A") == "1 file changed, 1 insertion(+)"


def test_a_review_names_what_is_left_uncommitted_and_cuts_a_huge_diff_at_a_line(repo, state):
    run = ws.start_run(repo)
    work(repo, run, "A", {"big.txt": "".join(f"line {n}\n" for n in range(20000))}, "a big change")
    work(repo, run, "A", {"later.txt": "not committed\n"})
    shown = gates.review(repo, state, run, "A", diff_limit=10_000)
    assert shown.diff_truncated and len(shown.diff.encode()) <= 10_000 and shown.diff.endswith("\n")
    assert shown.uncommitted == ("later.txt",)


def test_review_errors_are_one_clear_line(repo, state):
    with pytest.raises(gates.GateError, match="worktree isolation"):
        gates.review(repo, state, ws.RunInfo("none"), "A")
    run = ws.start_run(repo)
    with pytest.raises(gates.GateError, match="has no branch stream/never-started"):
        gates.review(repo, state, run, "never-started")


def test_hostile_stream_ids_get_their_own_record_inside_the_folder(repo, state):
    run = ws.start_run(repo)
    for sid in ["../x", "a\nb", "$(touch pwned)"]:
        work(repo, run, sid, {"f.txt": sid}, "work")
        gates.review(repo, state, run, sid)
        assert gates.read_record(state, sid).stream_id == sid
    assert sorted(p.parent for p in state.rglob("*.json")) == [state / "reviews"] * 3


# ---------------------------------------------------------------- the worker's summary


def test_the_summary_is_the_last_result_event_whatever_surrounds_it(tmp_path):
    log = tmp_path / "A.log"
    sample = SAMPLE.read_text(encoding="utf-8")
    log.write_text("\n=== orchestrate-kit: 'A' attempt 1 ===\n" + sample + result_line("first attempt") + "\n"
                   "plain text from a worker\n{not json\n"
                   + "\n=== orchestrate-kit: 'A' attempt 2 ===\n" + result_line("Added a.txt; all tasks done.")
                   + "\n=== orchestrate-kit: merge check `make test` ===\nok\n" + '{"type":"result","res', encoding="utf-8")
    assert gates.last_result_text(log) == "Added a.txt; all tasks done."


def test_the_summary_is_found_across_blocks_bounded_and_only_within_the_scan(tmp_path):
    log = tmp_path / "A.log"
    long_summary = "x" * 200_000  # one line longer than a block
    log.write_text(result_line(long_summary) + "\n", encoding="utf-8")
    found = gates.last_result_text(log)
    assert len(found) == gates.SUMMARY_LIMIT and found.endswith("…")
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(("junk line\n" * 1000) * 100)  # about 1 MB after it
    assert gates.last_result_text(log, scan=500_000) is None  # never reads more than it is allowed
    assert gates.last_result_text(log) is not None
    assert gates.last_result_text(tmp_path / "missing.log") is None


# ---------------------------------------------------------------- approve


def test_an_approval_is_bound_to_the_reviewed_commit(repo, state):
    run = ws.start_run(repo)
    work(repo, run, "A", {"a.txt": "v1\n"}, "v1")
    shown = gates.review(repo, state, run, "A")
    work(repo, run, "A", {"a.txt": "v2\n"}, "v2 after the review")
    moved = git(repo, "rev-parse", "stream/A")

    with pytest.raises(gates.GateError) as refused:
        gates.approve(repo, state, "A")

    message = str(refused.value)
    assert f"the review showed {shown.commit[:12]}, the branch is at {moved[:12]} now" in message
    assert "Review again" in message and "\n" not in message
    assert gates.approved_commit(state, "A") is None
    again = gates.review(repo, state, run, "A")
    assert gates.approve(repo, state, "A") == again.commit == moved
    assert gates.approved_commit(state, "A") == moved  # read back from disk, as after a restart


def test_approve_without_a_review_or_with_a_damaged_record_says_review_first(repo, state):
    run = ws.start_run(repo)
    work(repo, run, "A", {"a.txt": "v1\n"}, "v1")
    with pytest.raises(gates.GateError, match="has not been reviewed"):
        gates.approve(repo, state, "A")
    gates.review(repo, state, run, "A")
    (state / "reviews" / "A.json").write_text("{half a rec", encoding="utf-8")
    with pytest.raises(gates.GateError, match="has not been reviewed"):
        gates.approve(repo, state, "A")


def test_the_merge_takes_exactly_the_approved_commit_not_what_came_after(repo, state):
    run = ws.start_run(repo)
    work(repo, run, "A", {"approved.txt": "reviewed\n"}, "reviewed work")
    gates.review(repo, state, run, "A")
    commit = gates.approve(repo, state, "A")
    work(repo, run, "A", {"later.txt": "nobody reviewed this\n"}, "after the approval")
    work(repo, run, "A", {"left.txt": "uncommitted\n"})

    result = ws.merge_stream(repo, run, "A", commit=commit)

    assert result.outcome is ws.MergeOutcome.MERGED and not result.committed_leftovers
    assert git(repo, "rev-parse", f"{run.integration_branch}^2") == commit
    files = git(repo, "ls-tree", "--name-only", run.integration_branch).split()
    assert "approved.txt" in files and "later.txt" not in files and "left.txt" not in files
    assert (ws.worktree_path(repo, "A") / "left.txt").is_file()  # the worker's leftovers are untouched
    again = ws.merge_stream(repo, run, "A", commit=commit)  # after a restart: merged already, same "before"
    assert again.outcome is ws.MergeOutcome.MERGED and (again.before, again.tip) == (result.before, result.tip)


def test_a_commit_that_is_not_on_the_stream_branch_is_never_merged(repo, state):
    run = ws.start_run(repo)
    work(repo, run, "A", {"a.txt": "a\n"}, "a")
    work(repo, run, "B", {"b.txt": "b\n"}, "b")
    with pytest.raises(ws.WorkspaceError, match="is not on stream/A"):
        ws.merge_stream(repo, run, "A", commit=git(repo, "rev-parse", "stream/B"))
    with pytest.raises(ws.WorkspaceError, match="is not on stream/A"):
        ws.merge_stream(repo, run, "A", commit="0123456789abcdef")
    with pytest.raises(ws.WorkspaceError, match="no longer exists"):
        ws.merge_stream(repo, run, "gone", commit=git(repo, "rev-parse", "stream/A"))
    assert git(repo, "rev-parse", run.integration_branch) == run.base


# ---------------------------------------------------------------- reject


def test_a_rejection_records_the_reason_and_the_commit_for_the_next_prompt(repo, state):
    run = ws.start_run(repo)
    work(repo, run, "A", {"a.txt": "v1\n"}, "v1")
    shown = gates.review(repo, state, run, "A")
    rejected = gates.reject(repo, state, "A", "  the tests\nare missing  ")
    assert (rejected.decision, rejected.reason, rejected.commit) == ("rejected", "the tests are missing", shown.commit)
    pending = gates.pending_rejection(state, "A")
    text = gates.review_feedback_text(pending.reason, pending.commit)
    assert "the tests are missing" in text and shown.commit[:12] in text and "reviewed again" in text
    assert gates.approved_commit(state, "A") is None
    gates.clear(state, "A")
    assert gates.read_record(state, "A") is None and gates.pending_rejection(state, "A") is None
    gates.clear(state, "A")  # clearing twice is fine


def test_a_rejection_without_a_review_names_the_tip_and_needs_a_reason(repo, state):
    run = ws.start_run(repo)
    work(repo, run, "A", {"a.txt": "v1\n"}, "v1")
    with pytest.raises(gates.GateError, match="--reason"):
        gates.reject(repo, state, "A", " \n ")
    rejected = gates.reject(repo, state, "A", "r" * 10_000)
    assert rejected.commit == git(repo, "rev-parse", "stream/A") and len(rejected.reason) == gates.REASON_LIMIT
    with pytest.raises(gates.GateError, match="has no branch"):
        gates.reject(repo, state, "never-started", "no")
