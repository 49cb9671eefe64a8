"""summary: what the orchestrator says when a run ends, from scripted boards. Pure."""

from tests.runtime.runtime_import import lifecycle as lc
from tests.runtime.runtime_import import stream_graph as sg
from tests.runtime.runtime_import import summary
from tests.runtime.runtime_import import task_copilot_client as tcc

S = lc.StreamState
DIAMOND = {"A": [], "B": ["A"], "C": ["A"], "Z": ["B", "C"]}
RUN = "python3 .claude/orchestrator/orchestrate.py"


def board(complete=(), rows=None):
    streams = {sid: tcc.StreamRecord(sid, sid, tuple(deps), {"completed" if sid in complete else "pending": 1})
               for sid, deps in DIAMOND.items()}
    return sg.build_board(streams, rows or {}, {}, 0.0, lc.Policy(max_restarts=2))


def test_the_whole_plan_complete_says_so_and_how_to_land_it():
    lines = summary.end_of_run(board(complete="ABCZ"), None, True, "all complete", "1m05s", "orchestrate/integration-1")
    assert lines == ["all 4 stream(s) complete in 1m05s",
                     f"every stream's work is on orchestrate/integration-1; your branch is unchanged. Bring it in "
                     f"with: {RUN} land"]
    assert summary.end_of_run(board(complete="ABCZ"), None, True, "all complete", "5s") == [
        "all 4 stream(s) complete in 5s"]  # no worktrees: nothing to land


def test_named_streams_complete_say_what_of_the_plan_is_still_to_run_and_land_partial():
    lines = summary.end_of_run(board(complete="A"), {"A"}, True, "all complete", "9s", "orchestrate/integration-1")
    assert lines[0] == "the 1 stream(s) you named complete in 9s: A"
    assert lines[1] == (f"not complete in the plan: 3 of 4 stream(s): B, C, Z; run them with `{RUN} start` (every "
                        f"stream), or name them: `{RUN} start B C Z`")
    assert "land --partial` brings in what is merged now" in lines[2] and "once the plan is complete" in lines[2]
    # Named streams that finish the plan (the rest was complete already): the plain landing hint.
    whole = summary.end_of_run(board(complete="ABCZ"), {"Z"}, True, "all complete", "9s", "orchestrate/integration-1")
    assert whole[0] == "all 4 stream(s) complete in 9s" and whole[1].endswith(f"{RUN} land")


def test_a_stuck_run_names_each_stream_left_with_the_next_steps():
    rows = {"B": lc.Life(state=S.FAILED, attempts=3, reason="worker exited with code 1", ran=True),
            "C": lc.Life(state=S.HELD, reason=lc.USER_STOP)}
    lines = summary.end_of_run(board(complete="A", rows=rows), None, False, "nothing more can progress", "9s")
    assert lines[0] == "nothing more can progress:"
    assert "  B: failed after 3 attempts (worker exited with code 1)" in lines
    assert any(line.startswith("  C: stopped by you") for line in lines)
    assert any(line.startswith("  Z: waiting on B, C") for line in lines)
    assert f"`{RUN} start`: a new run tries failed streams again, with a fresh restart budget" in lines[-2]
    assert lines[-1] == f"  next: `{RUN} start STREAM` resumes a stream you stopped"


def test_a_stuck_run_of_named_streams_names_the_streams_it_left_out():
    lines = summary.end_of_run(board(), {"B"}, False, "nothing more can progress", "1s")
    assert "  B: waiting on A (not part of this run: A)" in lines
    assert lines[-1] == f"  not part of this run: A, C, Z; `{RUN} start` runs every stream"


def test_a_run_budget_stop_says_so_first_and_a_stop_by_request_says_nothing_more():
    lines = summary.end_of_run(board(), None, False, "failed: run budget reached (1.00 of 1.00 USD)", "1s")
    assert lines[:2] == ["failed: run budget reached (1.00 of 1.00 USD)", "nothing more can progress:"]
    assert summary.end_of_run(board(), None, False, "stopped by request", "1s") == []
    assert summary.end_of_run(None, None, False, "nothing more can progress", "1s") == []
