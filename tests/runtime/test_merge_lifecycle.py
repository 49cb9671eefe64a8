"""Merging in the lifecycle, the graph and the scheduler: pure functions, scripted events, a fake clock."""

from dataclasses import replace

from tests.runtime.runtime_import import executor_api as ex
from tests.runtime.runtime_import import lifecycle as lc
from tests.runtime.runtime_import import scheduler as sch
from tests.runtime.runtime_import import settings as st
from tests.runtime.runtime_import import stream_graph as sg
from tests.runtime.runtime_import import task_copilot_client as tcc

S = lc.StreamState
MERGE = lc.Policy(merge=True)
MANUAL = lc.Policy(merge=True, hand_back=False)
WORKER_A = ex.Handle("A", 1, "7@1", 0.0, "pid 7", (("pid", 7),))
DIAMOND = {"A": [], "B": ["A"], "C": ["A"], "Z": ["B", "C"]}


def streams(spec, complete=()):
    return {sid: tcc.StreamRecord(sid, sid, tuple(deps), {"completed" if sid in complete else "pending": 1})
            for sid, deps in spec.items()}


def running(**fields):
    return lc.Life(state=S.RUNNING, attempts=1, ran=True, **fields)


def step(life, *events, policy=MERGE, now=100.0):
    for event in events:
        life = lc.transition(life, event, now, policy)
    return life


def test_finished_work_is_merged_before_the_stream_is_complete():
    assert step(running(), lc.Exited(ex.Ended(0), True)).state is S.MERGING
    assert step(running(), lc.Exited(ex.Ended(0), True), policy=lc.Policy()).state is S.COMPLETE  # isolation none
    stopping = step(running(), lc.StopRequested(S.WAITING, "lingering", 110.0))
    assert step(stopping, lc.Exited(ex.Ended(signal=15), True)).state is S.MERGING
    merging = step(running(), lc.Exited(ex.Ended(0), True))
    assert step(merging, lc.Observed(S.COMPLETE), lc.Hold("stopped by you")).state is S.MERGING
    assert step(merging, lc.Merged()) == replace(merging, state=S.COMPLETE)
    # Finished by other hands after our worker ran: merged too; never ran by us: nothing to merge.
    assert step(lc.Life(state=S.BACKOFF, attempts=1, ran=True, retry_at=200.0), lc.Observed(S.COMPLETE)).state is S.MERGING
    assert step(lc.Life(state=S.READY), lc.Observed(S.COMPLETE)).state is S.COMPLETE


def test_a_conflict_goes_back_to_its_agent_once_then_waits_for_the_user():
    merging = step(running(), lc.Exited(ex.Ended(0), True))
    handed = step(merging, lc.MergeConflict(("a.txt",), "merge conflict in a.txt"))
    assert (handed.state, handed.conflicts, handed.handed_back) == (S.READY, ("a.txt",), True)
    assert step(handed, lc.Observed(S.COMPLETE)) == handed  # complete in the tracker, still to be resolved
    again = step(handed, lc.Spawning(2), lc.Spawned(), lc.Observed(S.COMPLETE))
    assert again.state is S.RUNNING and again.complete_since is None  # no "lingering" stop for a hand-back
    merging = step(again, lc.Exited(ex.Ended(0), True))
    assert merging.state is S.MERGING and merging.conflicts == ("a.txt",)
    parked = step(merging, lc.MergeConflict(("a.txt",), "still open"))
    assert (parked.state, parked.reason) == (S.MERGE_CONFLICT, "still open")
    assert step(parked, lc.Observed(S.COMPLETE)) == parked
    assert "still open" in lc.describe(parked, 100.0, 10)
    retried = step(parked, lc.Release())
    assert retried.state is S.MERGING and retried.conflicts == ("a.txt",)
    assert step(retried, lc.Merged()).conflicts == () and not step(retried, lc.Merged()).handed_back


def test_manual_conflicts_and_failed_checks_park_the_stream():
    merging = step(running(), lc.Exited(ex.Ended(0), True), policy=MANUAL)
    assert step(merging, lc.MergeConflict(("a.txt",), "why"), policy=MANUAL).state is S.MERGE_CONFLICT
    assert step(merging, lc.MergeConflict((), "cannot merge")).state is S.MERGE_CONFLICT  # no files: no hand-back
    failed = step(merging, lc.CheckFailed("make test failed"))
    assert (failed.state, failed.reason) == (S.CHECK_FAILED, "make test failed")
    assert step(failed, lc.Release()).state is S.MERGING


def test_the_parked_and_merging_rows_survive_a_restart(tmp_path):
    table = lc.Table(rows={"B": lc.Life(state=S.MERGE_CONFLICT, conflicts=("x/y.txt",), handed_back=True,
                                        reason="why", ran=True, attempts=2)},
                     run=lc.RunInfo(isolation="worktree", integration_branch="orchestrate/i-1",
                                    base="abc"))
    path = tmp_path / "run.json"
    lc.save_table(path, table)
    loaded, warnings = lc.load_table(path)
    assert warnings == [] and loaded.rows == table.rows and loaded.run == table.run


def test_dependents_wait_until_their_dependency_is_merged():
    rows = {"A": lc.Life(state=S.MERGING, attempts=1, ran=True)}
    board = sg.build_board(streams(DIAMOND, complete={"A"}), rows, {}, 100.0, MERGE)
    assert board.views["A"].state is S.MERGING
    assert board.views["B"].state is S.WAITING and board.views["B"].waiting_on == ("A",)
    decision = sch.decide(board, lc.RunLife(), st.Settings(spawn_gap=0), 100.0)
    assert decision.spawn == [] and decision.finish is None  # a merge in progress keeps the run going
    rows["A"] = lc.Life(state=S.COMPLETE, attempts=1, ran=True)
    board = sg.build_board(streams(DIAMOND, complete={"A"}), rows, {}, 100.0, MERGE)
    assert [s.stream_id for s in sch.decide(board, lc.RunLife(), st.Settings(spawn_gap=0), 100.0).spawn] == ["B", "C"]
    # A worker still running on a complete stream: not merged yet, so its dependents wait; without
    # worktrees they start at once, as before.
    rows["A"] = running()
    board = sg.build_board(streams(DIAMOND, complete={"A"}), rows, {"A": WORKER_A}, 100.0, MERGE)
    assert board.views["B"].waiting_on == ("A",)
    board = sg.build_board(streams(DIAMOND, complete={"A"}), rows, {"A": WORKER_A}, 100.0, lc.Policy())
    assert board.views["B"].state is S.READY


def test_a_handed_back_stream_is_started_although_its_tasks_are_complete():
    rows = {"A": lc.Life(state=S.READY, attempts=1, ran=True, conflicts=("a.txt",), handed_back=True)}
    board = sg.build_board(streams({"A": [], "B": ["A"]}, complete={"A"}), rows, {}, 100.0, MERGE)
    assert board.views["A"].state is S.READY and "handed back" in board.views["A"].describe()
    assert [s.stream_id for s in sch.decide(board, lc.RunLife(), st.Settings(spawn_gap=0), 100.0).spawn] == ["A"]
    rows["A"] = replace(rows["A"], state=S.BACKOFF, retry_at=150.0)  # its start failed: retried, not stuck
    board = sg.build_board(streams({"A": [], "B": ["A"]}, complete={"A"}), rows, {}, 100.0, MERGE)
    decision = sch.decide(board, lc.RunLife(), st.Settings(spawn_gap=0), 100.0)
    assert decision.spawn == [] and decision.finish is None and decision.wake_at == 150.0
    rows["A"] = lc.Life(state=S.MERGE_CONFLICT, attempts=2, ran=True, conflicts=("a.txt",), handed_back=True)
    board = sg.build_board(streams({"A": [], "B": ["A"]}, complete={"A"}), rows, {}, 100.0, MERGE)
    assert sch.decide(board, lc.RunLife(), st.Settings(spawn_gap=0), 100.0).finish == sch.Finish(st.EXIT_STUCK, "stuck")


def test_settings_check_the_isolation_words(tmp_path):
    conf = tmp_path / "orchestrator.conf"
    conf.write_text("isolation = worktree\nmerge_check =\nconflicts = manual\n", encoding="utf-8")
    loaded = st.load_settings([conf])
    assert (loaded.isolation, loaded.merge_check, loaded.conflicts) == ("worktree", "", "manual")
    conf.write_text("isolation = worktrees\n", encoding="utf-8")
    try:
        st.load_settings([conf])
    except st.UserError as exc:
        assert "isolation must be one of auto, worktree, none" in str(exc)
    else:
        raise AssertionError("a misspelt isolation was accepted")
