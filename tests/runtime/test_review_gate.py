"""merge_gate = review: the lifecycle's gate states, the scheduler's gate steps (pure, scripted), and the
real supervisor loop over scripted histories (loop_harness), decisions read from real review records."""

from dataclasses import replace

from tests.runtime.runtime_import import executor_api as ex
from tests.runtime.runtime_import import lifecycle as lc
from tests.runtime.runtime_import import scheduler as sch
from tests.runtime.runtime_import import settings as st
from tests.runtime.runtime_import import stream_graph as sg
from tests.runtime.runtime_import import task_copilot_client as tcc
from tests.support.loop_harness import FakeMerger, Harness
from _orchestrate_kit.git import gates

S = lc.StreamState
MERGE = lc.Policy(merge=True)
REVIEW = st.Settings(merge_gate="review", spawn_gap=0, agent_events=False)
COMMIT = "a" * 40
DIAMOND = {"A": [], "B": ["A"], "C": ["A"], "Z": ["B", "C"]}


def step(life, *events, now=100.0):
    for event in events:
        life = lc.transition(life, event, now, MERGE)
    return life


def merging():
    return step(lc.Life(state=S.RUNNING, attempts=1, ran=True, session_id="s-1"), lc.Exited(ex.Ended(0), True))


# ---------------------------------------------------------------- the lifecycle


def test_a_finished_stream_waits_for_review_and_an_approval_merges_that_commit():
    waiting = step(merging(), lc.AwaitReview(COMMIT, "1 file changed, 2 insertions(+)"))
    assert (waiting.state, waiting.commit, waiting.diff_stat) == (S.AWAITING_REVIEW, COMMIT, "1 file changed, 2 insertions(+)")
    assert step(waiting, lc.Observed(S.COMPLETE), lc.Hold("stopped by you")) == waiting  # only a person moves it
    assert "awaiting review of aaaaaaaaaaaa (1 file changed" in lc.describe(waiting, 100.0, 2)
    approved = step(waiting, lc.Approved(COMMIT))
    assert (approved.state, approved.commit) == (S.MERGING, COMMIT)
    done = step(approved, lc.Merged())
    assert (done.state, done.commit, done.diff_stat) == (S.COMPLETE, "", "")


def test_a_rejection_goes_back_to_its_agent_and_its_next_work_is_reviewed_again():
    rejected = step(merging(), lc.AwaitReview(COMMIT), lc.Rejected("A reviewer ... add the tests"))
    assert (rejected.state, rejected.commit, rejected.resume) == (S.READY, "", True)
    assert rejected.feedback == "A reviewer ... add the tests" and lc.handed_back(rejected)
    assert step(rejected, lc.Observed(S.COMPLETE)) == rejected  # complete in the tracker, yet work to do
    again = step(rejected, lc.Spawning(2, "s-1"), lc.Spawned(), lc.Observed(S.COMPLETE))
    assert again.complete_since is None  # not "complete but still running": it works on the reason
    finished = step(again, lc.Exited(ex.Ended(0), True))
    assert finished.state is S.MERGING and sch.needs_gate(finished, "review")  # no approval carried over
    reviewed = step(finished, lc.AwaitReview("b" * 40))
    assert (reviewed.feedback, reviewed.commit) == ("", "b" * 40)


def test_an_approval_ends_with_a_conflict_or_a_failed_check_and_what_fixes_it_is_reviewed_again():
    approved = step(merging(), lc.AwaitReview(COMMIT), lc.Approved(COMMIT))
    conflict = step(approved, lc.MergeConflict(("a.txt",), "merge conflict in a.txt"))
    assert conflict.commit == "" and conflict.state is S.READY
    failed = step(approved, lc.CheckFailed("the check failed"))
    assert failed.commit == "" and sch.needs_gate(step(failed, lc.Release()), "review")


def test_the_gate_rows_survive_a_restart(tmp_path):
    table = lc.Table()
    table.rows["A"] = step(merging(), lc.AwaitReview(COMMIT, "1 file changed"))
    table.rows["B"] = step(merging(), lc.AwaitReview(COMMIT), lc.Rejected("fix it"))
    lc.save_table(tmp_path / "run.json", table)
    loaded, warnings = lc.load_table(tmp_path / "run.json")
    assert warnings == [] and loaded.rows == table.rows
    loaded.run_life = replace(loaded.run_life, ended_at=200.0)  # a new run carries what is owed
    carried = lc.carried_rows(loaded)
    assert carried["A"].state is S.AWAITING_REVIEW and carried["A"].commit == COMMIT
    assert carried["B"].state is S.READY and carried["B"].feedback == "fix it"


# ---------------------------------------------------------------- the scheduler


def board(rows, complete=()):
    streams = {sid: tcc.StreamRecord(sid, sid, tuple(deps), {"completed" if sid in complete else "pending": 1})
               for sid, deps in DIAMOND.items()}
    return sg.build_board(streams, rows, {}, 100.0, MERGE)


def test_decide_takes_a_finished_stream_to_its_gate_and_merges_only_an_approved_one():
    rows = {"A": merging()}
    decision = sch.decide(board(rows, complete="A"), lc.RunLife(), REVIEW, 100.0, sch.Facts())
    assert decision.gate == [sch.Gate("A")] and decision.merge == [] and decision.spawn == []
    rows = {"A": step(merging(), lc.AwaitReview(COMMIT), lc.Approved(COMMIT))}
    decision = sch.decide(board(rows, complete="A"), lc.RunLife(), REVIEW, 100.0, sch.Facts())
    assert decision.merge == [sch.Merge("A")] and decision.gate == []
    auto = sch.decide(board({"A": merging()}, complete="A"), lc.RunLife(), replace(REVIEW, merge_gate="auto"), 100.0,
                      sch.Facts())
    assert auto.merge == [sch.Merge("A")] and auto.gate == []


def test_the_run_ends_while_a_review_waits_only_when_nothing_else_can_progress():
    waiting = step(merging(), lc.AwaitReview(COMMIT))
    decision = sch.decide(board({"A": waiting}, complete="A"), lc.RunLife(), REVIEW, 100.0, sch.Facts())
    assert decision.spawn == [] and decision.finish == sch.Finish(st.EXIT_STUCK, sch.AWAITING_REVIEW)
    other = {"A": waiting, "X": lc.Life(state=S.RUNNING, attempts=1, ran=True)}
    assert sch.decide(board(other, complete="A"), lc.RunLife(), REVIEW, 100.0, sch.Facts()).finish is None


# ---------------------------------------------------------------- the loop


def decide_on(h, sid, decision, commit, reason=""):
    """What `approve` / `reject` leave in the stream's review record, then the request that wakes the loop."""
    record = gates.ReviewRecord(sid, f"stream/{sid}", commit, "orchestrate/test", 1.0, decision, reason, 2.0)
    gates._save(h.layout.state, record)
    return h.request({"action": "approve" if decision == "approved" else "reject", "streams": [sid],
                      "commit": commit, "reason": reason})


def test_the_diamond_waits_for_review_and_an_approval_starts_the_dependents(tmp_path):
    merger = FakeMerger()
    h = Harness(tmp_path, {**DIAMOND, "X": []}, merger=merger, merge_gate="review")  # X runs on meanwhile
    h.settle()
    assert h.finish("A") is None
    assert merger.gated == ["A"] and merger.merged == [] and h.state("A") is S.AWAITING_REVIEW
    assert sorted(h.executor.spawns()) == [("A", 1), ("X", 1)]  # B and C wait: A is not merged
    commit = h.row("A").commit

    reply = decide_on(h, "A", "approved", commit)

    assert "merges exactly the approved commit of A" in reply
    assert merger.merged == ["A"] and merger.commits == [commit] and h.state("A") is S.COMPLETE
    assert sorted(h.executor.spawns()[2:]) == [("B", 1), ("C", 1)]
    assert h.lines("A: approved at c0ffee01")


def test_a_rejection_reaches_the_agents_next_prompt_and_its_new_work_is_reviewed(tmp_path):
    merger = FakeMerger()
    h = Harness(tmp_path, {"A": [], "X": []}, merger=merger, merge_gate="review")
    h.settle()
    h.finish("A")
    first = h.row("A").commit

    reply = decide_on(h, "A", "rejected", first, "the tests are missing")

    assert "hands A back to its agent" in reply
    assert h.executor.spawns()[-1] == ("A", 2) and merger.merged == []
    prompt = " ".join(h.executor.specs["A"].argv)
    assert "did not merge it. Their reason:\nthe tests are missing" in prompt and first[:12] in prompt
    h.executor.exit("A")  # the tracker still says complete: its work on the reason is done
    h.settle()
    assert merger.gated == ["A", "A"] and h.state("A") is S.AWAITING_REVIEW and h.row("A").commit != first
    assert merger.merged == []  # the rejected commit's decision does not judge the new work


def test_with_only_a_review_left_the_run_ends_and_says_how_to_approve(tmp_path):
    merger = FakeMerger()
    h = Harness(tmp_path, {"A": [], "B": ["A"]}, merger=merger, merge_gate="review")
    h.settle()
    assert h.finish("A") == 1
    assert h.run.outcome == "waiting for your review"
    assert h.lines("nothing more can progress until you review")
    assert any("awaiting review of c0ffee01" in line for line in h.lines("A:"))
    assert h.lines("orchestrate.py approve STREAM` merges exactly that commit")


def test_an_approval_made_while_no_orchestrator_ran_is_merged_at_the_next_start(tmp_path):
    merger = FakeMerger()
    h = Harness(tmp_path, {"A": [], "B": ["A"]}, merger=merger, merge_gate="review")
    h.settle()
    h.finish("A")
    commit = h.row("A").commit
    record = gates.ReviewRecord("A", "stream/A", commit, "orchestrate/test", 1.0, "approved", "", 2.0)
    gates._save(h.layout.state, record)
    again = FakeMerger()
    h2 = Harness(tmp_path, {"A": [], "B": ["A"]}, merger=again, merge_gate="review")
    h2.tracker.complete("A")
    h2.settle()
    assert again.merged == ["A"] and again.commits == [commit] and h2.executor.spawns() == [("B", 1)]


# ---------------------------------------------------------------- merge_gate = pr (pure)

PR = replace(REVIEW, merge_gate="pr", pr_poll_interval=30.0)
URL = "https://github.com/o/r/pull/7"


def test_a_pull_request_is_awaited_then_merged_or_closed_and_handed_back():
    opened = step(merging(), lc.PullRequestOpened(URL, COMMIT))
    assert (opened.state, opened.pull_request, opened.commit) == (S.AWAITING_PR, URL, COMMIT)
    assert lc.describe(opened, 100.0, 2) == f"awaiting its pull request {URL}"
    assert step(opened, lc.Merged()).state is S.COMPLETE and step(opened, lc.Merged()).pull_request == URL
    closed = step(opened, lc.PullRequestClosed(URL))
    assert closed.state is S.PR_CLOSED and "closed without merging" in closed.reason
    back = step(closed, lc.Release())
    assert back.state is S.READY and back.resume and "gh pr view https://github.com/o/r/pull/7 --comments" in back.feedback


def test_decide_polls_pull_requests_at_the_interval_and_the_run_waits_for_them():
    rows = {"A": step(merging(), lc.PullRequestOpened(URL, COMMIT))}
    first = sch.decide(board(rows, complete="A"), lc.RunLife(), PR, 100.0, sch.Facts())
    assert first.poll == sch.PollPullRequests() and first.finish is None  # an open pull request may merge
    later = sch.decide(board(rows, complete="A"), lc.RunLife(), PR, 110.0, sch.Facts(polled_at=100.0))
    assert later.poll is None and later.wake_at == 130.0
    running = sch.decide(board(rows, complete="A"), lc.RunLife(), PR, 140.0, sch.Facts(polled_at=100.0, polling=True))
    assert running.poll is None
    gated = sch.decide(board({"A": merging()}, complete="A"), lc.RunLife(), PR, 100.0, sch.Facts())
    assert gated.gate == [sch.Gate("A")]
    stepping = sch.decide(board({"A": merging()}, complete="A"), lc.RunLife(), PR, 100.0,
                          sch.Facts(stepping=frozenset({"A"}), step_deadline=700.0))
    assert stepping.gate == [] and stepping.finish is None and stepping.wake_at == 700.0
