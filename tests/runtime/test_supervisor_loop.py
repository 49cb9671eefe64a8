"""The supervisor's loop as scripted histories: worker exits, tracker changes, requests, signals and time go
in through the in-memory executor and a fake clock; transitions, actions and the exit code come out."""

import json
import signal

import pytest

from tests.runtime.runtime_import import lifecycle as lc
from tests.runtime.runtime_import import scheduler as sch
from tests.runtime.runtime_import import supervisor as sv
from tests.runtime.runtime_import import task_copilot_client as tcc
from tests.support.loop_harness import START, FakeMerger, Harness

S = lc.StreamState
R = lc.RunState
CHAIN = {"A": [], "B": ["A"]}
DIAMOND = {"A": [], "B": ["A"], "C": ["A"], "Z": ["B", "C"]}


def assistant_turn(text="working on it"):
    return json.dumps({"type": "assistant", "session_id": "s1", "message": {
        "id": "m1", "role": "assistant", "content": [{"type": "text", "text": text}],
        "usage": {"input_tokens": 1, "output_tokens": 1}}})


def result_event(cost, is_error=True):
    return json.dumps({"type": "result", "subtype": "error_during_execution" if is_error else "success",
                       "is_error": is_error, "num_turns": 1, "result": "stopped", "session_id": "s1",
                       "total_cost_usd": cost, "terminal_reason": "completed"})


# ---------------------------------------------------------------- spawn, exit, complete


def test_a_chain_runs_each_stream_as_its_dependency_completes_and_ends_with_0(tmp_path):
    h = Harness(tmp_path, CHAIN)
    assert h.settle() is None
    assert h.executor.spawns() == [("A", 1)] and h.states() == {"A": "running", "B": "waiting"}
    assert h.lines("started A (attempt 1, fake worker 1)")
    assert h.finish("A") is None
    assert h.executor.spawns() == [("A", 1), ("B", 1)]  # in the turn that saw A complete: no wait
    assert h.states() == {"A": "complete", "B": "running"}
    assert h.finish("B") == 0
    assert h.run.state is R.ENDED and h.run.exit_code == 0 and h.run.outcome == "all complete"
    assert h.lines("all 2 stream(s) complete")
    assert h.saved().run_life == h.run  # the end is saved with the table


def test_the_diamond_starts_b_and_c_together_then_z(tmp_path):
    h = Harness(tmp_path, DIAMOND)
    h.settle()
    h.finish("A")
    assert h.executor.spawns()[1:] == [("B", 1), ("C", 1)]
    h.finish("B")
    assert h.state("Z") is S.WAITING
    assert h.finish("C") is None and h.executor.spawns()[-1] == ("Z", 1)
    assert h.finish("Z") == 0


def test_an_exit_is_judged_against_the_tracker_read_after_it(tmp_path):
    """The worker's last write and its exit arrive together: the stream completed, it did not fail."""
    h = Harness(tmp_path, {"A": []})
    h.settle()
    reads = h.tracker.reads
    assert h.finish("A") == 0
    assert h.tracker.reads > reads and h.row("A").failures == 0 and h.row("A").last_exit.exit_code == 0


# ---------------------------------------------------------------- failures, back-off, budgets


def test_a_failed_attempt_backs_off_then_the_next_one_starts_on_time(tmp_path):
    h = Harness(tmp_path, {"A": []})
    h.settle()
    h.executor.exit("A", 1)
    h.settle()
    row = h.row("A")
    assert (row.state, row.failures, row.retry_at) == (S.BACKOFF, 1, START + 5.0)
    assert row.last_exit.exit_code == 1 and row.reason.startswith("worker exited with code 1 with 0/1 tasks done")
    assert h.lines("restart 1 of 2 in 5s")
    assert h.supervisor.sleep_time() == 1.0  # the poll interval: nothing is due sooner
    h.wait(4.0)
    assert h.executor.spawns() == [("A", 1)]
    h.wait(1.0)
    assert h.executor.spawns() == [("A", 1), ("A", 2)] and h.clock.now == START + 5.0


def test_after_its_restart_budget_a_stream_fails_and_the_run_ends_with_1(tmp_path):
    h = Harness(tmp_path, {"A": [], "B": ["A"]}, restart_delay=1.0)
    h.settle()
    code = None
    for _ in range(3):  # max_restarts 2: three attempts in all
        h.executor.die("A", 9)
        code = h.settle()
        while code is None and h.state("A") is S.BACKOFF:
            code = h.wait()
    assert code == 1 and h.executor.spawns() == [("A", 1), ("A", 2), ("A", 3)]
    assert h.state("A") is S.FAILED and h.row("A").last_exit.signal == 9
    assert h.run.outcome == "nothing more can progress"
    assert h.lines("A failed after 3 attempt(s)") and h.lines("a new run tries failed streams again")


def test_a_stream_whose_own_budget_is_spent_is_given_up_not_respawned(tmp_path):
    h = Harness(tmp_path, {"A": []}, agent_events=True)
    h.tracker.options("A", maxBudgetUsd=1.0)
    h.settle()
    h.executor.say("A", result_event(1.0))
    h.executor.exit("A", 1)
    h.settle()
    assert h.row("A").state is S.BACKOFF and h.row("A").spent_usd == 1.0
    assert h.wait(5.0) == 1  # its retry is due: decide gives it up instead of spawning it
    assert h.executor.spawns() == [("A", 1)]
    assert (h.state("A"), h.row("A").reason) == (S.FAILED, "budget: 1.00 USD spent, nothing left")
    assert h.lines("A failed: its budget is spent")


def test_the_run_budget_holds_every_spawn_and_ends_the_run(tmp_path):
    h = Harness(tmp_path, {"A": [], "B": ["A"]}, agent_events=True, max_cost_usd=0.5)
    h.settle()
    h.executor.say("A", result_event(0.5, is_error=False))
    h.tracker.complete("A")
    h.executor.exit("A", 0)
    assert h.settle() == 1
    assert h.executor.spawns() == [("A", 1)] and h.state("B") is S.READY
    assert h.run.outcome == "failed: run budget reached (0.50 of 0.50 USD)"


def test_a_worker_that_cannot_start_is_a_failed_attempt_and_is_retried(tmp_path):
    h = Harness(tmp_path, {"A": []})
    h.executor.refuse = OSError(28, "No space left on device")
    h.settle()
    assert h.state("A") is S.BACKOFF and "No space left on device" in h.row("A").reason
    assert h.lines("its worker could not be started") and h.lines("will retry")
    h.wait(5.0)
    assert h.executor.spawns() == [("A", 2)]


# ---------------------------------------------------------------- usage limits


def test_a_usage_limit_pauses_every_spawn_until_its_reset_then_the_streams_resume(tmp_path):
    reset = int(START) + 400
    h = Harness(tmp_path, {"A": [], "B": [], "C": ["B"]}, max_parallel=1)
    h.settle()
    assert h.executor.spawns() == [("B", 1)]  # B heads the longer path
    h.executor.say("B", f"Claude AI usage limit reached|{reset}")
    h.settle()
    assert (h.run.state, h.run.paused_until) == (R.PAUSED, reset)
    assert h.lines("usage limit hit by B's worker")
    h.executor.exit("B", 1)
    h.settle()
    row = h.row("B")
    assert (row.state, row.retry_at, row.failures, row.attempts) == (S.RATE_LIMITED, reset, 0, 0)
    assert h.executor.spawns() == [("B", 1)]  # A is ready and a slot is free, but the account is limited
    h.wait(399.0)
    assert h.executor.spawns() == [("B", 1)]
    h.wait(1.0)
    assert h.run.state is R.RUNNING and h.executor.spawns() == [("B", 1), ("B", 1)]  # the same attempt again


def test_a_limit_seen_in_the_output_and_again_at_an_exit_after_its_reset_is_said_once(tmp_path):
    # On Ray the job's end can come after the reset: its exit shows the same limit a second time.
    reset = int(START) + 10
    h = Harness(tmp_path, {"B": []})
    h.settle()
    h.executor.say("B", f"Claude AI usage limit reached|{reset}")
    h.settle()
    assert h.run.state is R.PAUSED and len(h.lines("usage limit hit by B's worker")) == 1
    h.wait(11.0)  # the reset passes while B's job is still ending
    h.executor.exit("B", 1)
    h.settle()
    assert len(h.lines("usage limit hit")) == 1


def test_after_an_unknown_reset_one_worker_probes_and_the_rest_follow_its_first_answer(tmp_path):
    h = Harness(tmp_path, {"A": [], "B": [], "C": []}, agent_events=True)
    h.settle()
    assert len(h.executor.spawns()) == 3
    for sid in ("A", "B", "C"):
        h.executor.say(sid, 'API Error: 429 {"error":{"type":"rate_limit_error"}}')
        h.executor.exit(sid, 1)
    h.settle()
    assert h.run.state is R.PAUSED and h.run.probe and h.run.paused_until == START + 15 * 60
    assert {h.state(s) for s in "ABC"} == {S.RATE_LIMITED} and h.row("A").attempts == 0
    assert len(h.lines("usage limit hit")) == 1 and h.lines("reset time unknown")
    h.wait(15 * 60.0)
    assert h.run.state is R.PROBING and len(h.executor.spawns()) == 4  # one probe
    h.wait(5.0)
    assert len(h.executor.spawns()) == 4  # the others wait for its answer
    probe = h.executor.spawns()[-1][0]
    h.executor.say(probe, assistant_turn())
    h.settle()
    assert h.run.state is R.RUNNING and len(h.executor.spawns()) == 6


# ---------------------------------------------------------------- configuration failures


def test_a_configuration_failure_stops_the_run_with_exit_2_and_spends_no_attempt(tmp_path):
    h = Harness(tmp_path, {"A": [], "B": []})
    h.settle()
    h.executor.deaf.add("B")
    h.executor.say("A", "Not logged in · Please run /login")
    h.settle()
    assert h.run.state is R.STOPPING and h.run.fatal.startswith("Not logged in")
    assert sorted(h.executor.sent("terminate")) == ["A", "B"]
    assert h.lines("configuration error, seen in A's worker") and h.lines("fix: log the worker's account in")
    h.executor.exit("B", 0)
    code = h.settle()
    assert code == 2 and h.run.outcome.startswith("stopped: configuration error: Not logged in")
    assert h.row("A").attempts == 0 and h.row("A").failures == 0  # not its fault: no attempt spent
    assert h.executor.spawns() == [("A", 1), ("B", 1)]


# ---------------------------------------------------------------- the user's stop and start


def test_a_user_stop_holds_a_stream_and_start_releases_it(tmp_path):
    h = Harness(tmp_path, {"A": [], "B": []})
    h.settle()
    reply = h.request({"action": "stop", "streams": ["A"], "grace": 3})
    assert reply.startswith("stopping A") and h.executor.sent("terminate") == ["A"]
    assert h.row("A").state is S.HELD  # it ended on TERM in the same turn: held, not failed
    assert (h.row("A").failures, h.row("A").reason) == (0, lc.USER_STOP)
    h.wait(60.0)
    assert h.executor.spawns() == [("A", 1), ("B", 1)]  # never restarted by the loop
    reply = h.request({"action": "start", "streams": ["A"]})
    assert "lifted any stop on A" in reply and h.executor.spawns()[-1] == ("A", 1)


def test_a_worker_deaf_to_term_delays_nothing_and_is_killed_at_its_deadline(tmp_path):
    h = Harness(tmp_path, {"A": [], "B": [], "C": ["B"]})
    h.settle()
    h.executor.deaf.add("A")
    h.request({"action": "stop", "streams": ["A"], "grace": 10})
    assert h.row("A").state is S.STOPPING and h.row("A").deadline == START + 10
    h.clock.now += 1
    h.finish("B")
    assert h.executor.spawns()[-1] == ("C", 1)  # nobody waits for A
    h.wait(8.0)
    assert h.executor.sent("kill") == []
    h.wait(1.0)
    assert h.executor.sent("kill") == ["A"] and h.clock.now == START + 10
    assert h.lines("A did not end after TERM within its grace; killed it")
    assert (h.row("A").state, h.row("A").failures, h.row("A").last_exit.signal) == (S.HELD, 0, 9)


def test_unknown_streams_in_a_request_are_named(tmp_path):
    h = Harness(tmp_path, {"A": []})
    h.settle()
    assert h.request({"action": "stop", "streams": ["Nope"]}) == "unknown stream(s): Nope"
    assert h.request({"action": "sideways"}) == "unknown request 'sideways'"


# ---------------------------------------------------------------- shutting down


def test_a_stop_signal_ends_every_worker_by_its_deadline_and_the_run_with_1(tmp_path):
    h = Harness(tmp_path, {"A": [], "B": []})
    h.settle()
    h.executor.deaf.add("B")
    assert h.signal(signal.SIGTERM) is None
    assert h.run.state is R.STOPPING and h.run.deadline == START + 10
    assert sorted(h.executor.sent("terminate")) == ["A", "B"] and h.lines("stopping 2 worker(s)")
    assert ("shutdown", START + 10) in h.executor.calls
    assert h.state("A") is S.READY and h.state("B") is S.STOPPING  # a shutdown's stop is no failure
    code = h.wait_until(lambda: h.executor.sent("kill"))  # KILLed, it ends, and so does the run
    assert code == 1 and h.executor.sent("kill") == ["B"] and h.clock.now == START + 10  # at the deadline
    assert h.lines("stopped by request")
    assert h.run.outcome == "stopped by request" and h.row("B").failures == 0


def test_a_stop_when_everything_is_complete_ends_with_0(tmp_path):
    h = Harness(tmp_path, {"A": [], "B": []})
    h.settle()
    h.tracker.complete("A", "B")
    assert h.signal() == 0  # both stopped on TERM with their streams complete


def test_a_second_ctrl_c_kills_at_once_and_the_run_ends_with_130(tmp_path):
    h = Harness(tmp_path, {"A": []})
    h.settle()
    h.executor.deaf.add("A")
    h.signal(signal.SIGINT)
    assert h.executor.sent("kill") == [] and h.run.interrupted
    h.clock.now += 1
    assert h.signal(signal.SIGINT) == 130
    assert h.executor.sent("kill") == ["A"] and ("shutdown", START + 1) in h.executor.calls


def test_a_stop_request_in_the_same_turn_as_a_term_is_one_stop_with_its_grace(tmp_path):
    """`stop --grace 1`: the grace of the request, not the configured one, sets the stopping deadlines,
    and the two together count as one stop, not as the second one that KILLs at once."""
    h = Harness(tmp_path, {"A": []})
    h.settle()
    h.executor.deaf.add("A")
    h.supervisor.inbox.stop(signal.SIGTERM)
    assert h.request({"action": "shutdown", "grace": 1}) == "stopping"
    assert (h.row("A").state, h.row("A").deadline) == (S.STOPPING, START + 1)
    assert not h.run.forced and h.executor.sent("kill") == []


# ---------------------------------------------------------------- what ended workers leave


def test_a_stream_is_not_respawned_while_what_its_last_worker_left_is_being_ended(tmp_path):
    h = Harness(tmp_path, {"A": []})
    h.settle()
    h.executor.leave_behind("A")
    h.executor.exit("A", 1)
    h.settle()
    h.wait(5.0)  # its back-off has passed ...
    h.wait(30.0)
    assert h.executor.spawns() == [("A", 1)]  # ... but something of its last attempt still runs
    h.executor.left_gone("A")
    h.settle()
    assert h.executor.spawns() == [("A", 1), ("A", 2)]  # at once, without waiting for a poll


def test_a_run_does_not_end_before_what_its_workers_left_is_gone(tmp_path):
    h = Harness(tmp_path, {"A": []})
    h.settle()
    h.executor.leave_behind("A")
    assert h.finish("A") is None and h.state("A") is S.COMPLETE
    h.executor.left_gone("A")
    assert h.settle() == 0


def test_at_shutdown_leftovers_are_ended_by_the_run_deadline(tmp_path):
    h = Harness(tmp_path, {"A": []})
    h.settle()
    h.executor.leave_behind("A")
    h.signal()
    assert h.codes == [] and h.executor.cleaning_up() == {"A"}
    assert h.wait_until(lambda: False) == 1 and h.clock.now == START + 10


# ---------------------------------------------------------------- merges


def test_merges_go_critical_path_first_one_at_a_time_while_a_check_runs(tmp_path):
    merger = FakeMerger(checks=True)
    h = Harness(tmp_path, {"A": [], "B": [], "C": ["B"], "D": ["A"], "E": ["D"]}, merger=merger,
                merge_check="make test")
    h.settle()
    h.tracker.complete("A", "B")
    h.executor.exit("A")
    h.executor.exit("B")
    h.settle()
    assert merger.merged == ["A"]  # A heads the longer chain (A, D, E): its dependents unlock more
    assert (h.state("A"), h.state("B")) == (S.MERGING, S.MERGING)
    assert h.state("D") is S.WAITING  # complete in the tracker is not enough: it must be merged
    merger.check_done(passed=True)
    h.settle()
    assert merger.merged == ["A", "B"] and h.state("A") is S.COMPLETE
    assert h.executor.spawns()[-1] == ("D", 1)  # in the turn its dependency merged
    merger.check_done(passed=True)
    h.settle()
    assert h.executor.spawns()[-1] == ("C", 1)


def test_a_failed_check_parks_the_stream_and_the_run_ends_stuck(tmp_path):
    merger = FakeMerger(checks=True)
    h = Harness(tmp_path, {"A": [], "B": ["A"]}, merger=merger, merge_check="make test")
    h.settle()
    h.finish("A")
    merger.check_done(passed=False)
    assert h.settle() == 1 and h.state("A") is S.CHECK_FAILED and h.state("B") is S.WAITING


def test_a_shutdown_stops_a_running_check(tmp_path):
    merger = FakeMerger(checks=True)
    h = Harness(tmp_path, {"A": []}, merger=merger, merge_check="make test")
    h.settle()
    h.finish("A")
    assert merger.busy
    assert h.signal() == 1 and merger.stopped >= 1 and h.state("A") is S.MERGING  # merged again next start


# ---------------------------------------------------------------- pacing


def test_pacing_a_lone_stream_and_a_burst_of_eight_start_at_once_the_ninth_a_gap_later(tmp_path):
    wave = {f"W{i}": ["A"] for i in range(9)}
    h = Harness(tmp_path, {"A": [], **wave}, spawn_gap=2.0)
    h.settle()
    assert h.executor.spawns() == [("A", 1)]
    h.finish("A")
    assert len(h.executor.spawns()) == 1 + 8 and h.clock.now == START  # the burst: together, at once
    assert h.supervisor.sleep_time() == 1.0  # next due: the ninth, one gap later; the poll comes first
    h.wait(1.0)
    assert len(h.executor.spawns()) == 9
    h.wait(1.0)
    assert len(h.executor.spawns()) == 10 and h.clock.now == START + 2.0


# ---------------------------------------------------------------- a restart


def test_a_restarted_orchestrator_adopts_live_workers_and_judges_those_that_ended(tmp_path):
    table = lc.Table(rows={"A": lc.Life(state=S.RUNNING, attempts=2, ran=True),
                           "B": lc.Life(state=S.RUNNING, attempts=1, ran=True),
                           "C": lc.Life(state=S.RUNNING, attempts=1, ran=True)},
                     run_life=lc.RunLife(started_at=START - 60))
    # A still runs; B ended while no orchestrator ran; C's record was lost.
    h = Harness(tmp_path, {"A": [], "B": [], "C": []}, table=table, records=[("A", 2, True), ("B", 1, False)])
    assert h.lines("adopted running worker of A")
    h.settle()
    assert h.executor.spawns() == []  # nothing started yet: B and C back off first
    assert h.state("A") is S.RUNNING and h.row("A").attempts == 2
    assert (h.state("B"), h.state("C")) == (S.BACKOFF, S.BACKOFF)
    assert "unknown code (ended while no orchestrator ran)" in h.row("B").reason
    assert "unknown code (its worker record was lost)" in h.row("C").reason
    assert h.run.started_at == START - 60 and h.run.state is R.RUNNING  # the same run, continued


# ---------------------------------------------------------------- the loop never spins


@pytest.mark.parametrize("graph", [{"A": []}, DIAMOND])
def test_an_idle_loop_sleeps_for_the_poll_interval_and_decides_nothing_new(tmp_path, graph):
    h = Harness(tmp_path, graph)
    h.settle()
    calls = list(h.executor.calls)
    for _ in range(5):
        assert h.supervisor.sleep_time() == 1.0
        h.wait()
    assert h.executor.calls == calls
    assert sch.BURST == 8


def test_the_supervisor_stays_readable_in_one_sitting():
    """The loop keeps I/O handles and the loop itself: what is not the loop lives in its own module."""
    import ast
    from pathlib import Path

    source = Path(sv.__file__).read_text(encoding="utf-8")
    cls = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "Supervisor")
    attributes = {t.attr for node in ast.walk(cls) if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign))
                  for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
                  for t in ast.walk(target) if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
                  and t.value.id == "self"}
    assert len(attributes) <= 20, sorted(attributes)
    assert len(source.splitlines()) <= 350


def test_ctrl_c_ends_the_run_even_while_the_database_cannot_be_read(tmp_path):
    """Exits are judged without the tracker once the run is stopping: nothing waits for it to come back."""
    table = lc.Table(rows={"A": lc.Life(state=S.RUNNING, attempts=1, ran=True)})
    h = Harness(tmp_path, {"A": []}, table=table, records=[("A", 1, False)])
    h.tracker.broken = tcc.DatabaseError("the database is gone")
    assert h.settle() is None and h.executor.spawns() == []
    assert h.lines("warning: the database is gone; waiting for it to come back")
    assert h.signal(signal.SIGINT) == 130
    assert h.lines("A worker exited with unknown code (ended while no orchestrator ran) "
                   "(the database cannot be read now)")
