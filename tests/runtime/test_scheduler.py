"""scheduler.decide with scripted snapshots and a fake clock: what starts, stops, is killed, given up, merged,
when the run is over, and when to look again."""

from dataclasses import replace

import pytest

from tests.runtime.runtime_import import executor_api as ex
from tests.runtime.runtime_import import lifecycle as lc
from tests.runtime.runtime_import import scheduler as sch
from tests.runtime.runtime_import import settings as st
from tests.runtime.runtime_import import stream_graph as sg
from tests.runtime.runtime_import import task_copilot_client as tcc

S = lc.StreamState
SETTINGS = st.Settings(max_parallel=0, max_restarts=2, restart_delay=5.0, finish_grace=30.0, stop_grace=10.0,
                       spawn_gap=0)  # the gap has its own tests


def records(spec, complete=(), tasks=None):
    """{id: deps} -> stream records; `tasks` gives some streams more pending tasks."""
    out = {}
    for sid, deps in spec.items():
        n = (tasks or {}).get(sid, 1)
        counts = {"completed": n} if sid in complete else {"pending": n}
        out[sid] = tcc.StreamRecord(sid, sid, tuple(deps), counts)
    return out


def decide(streams, rows=None, now=0.0, settings=SETTINGS, targets=None, workers=None, facts=sch.Facts(),
           run=lc.RunLife(), policy=None):
    policy = policy or lc.Policy(settings.max_restarts, settings.restart_delay)
    board = sg.build_board(streams, rows or {}, workers or {}, now, policy)
    return board, sch.decide(board, run, settings, now, facts, targets)


def spawned(decision):
    return [(s.stream_id, s.attempt) for s in decision.spawn]


def worker(sid, attempt=1):
    return ex.Handle(sid, attempt, f"key-{sid}", 0.0, f"pid {4000 + attempt}", (("pid", 4000 + attempt),))


OK, STUCK = sch.Finish(st.EXIT_OK, "complete"), sch.Finish(st.EXIT_STUCK, "stuck")


def test_every_ready_stream_starts_longest_remaining_path_first():
    streams = records({"A": [], "B": ["A"], "C": ["B"], "D": [], "E": []}, tasks={"E": 5})
    _, decision = decide(streams)
    assert spawned(decision) == [("A", 1), ("E", 1), ("D", 1)]  # A heads a chain of 3; then most tasks; then id
    assert decision.stop == [] and decision.kill == [] and decision.wake_at is None and decision.finish is None


def test_max_parallel_counts_running_workers():
    streams = records({"A": [], "B": [], "C": [], "D": []})
    settings = replace(SETTINGS, max_parallel=2)
    assert spawned(decide(streams, settings=settings)[1]) == [("A", 1), ("B", 1)]
    rows = {"A": lc.Life(state=S.RUNNING, attempts=1, ran=True)}
    assert spawned(decide(streams, rows, settings=settings)[1]) == [("B", 1)]
    rows["B"] = lc.Life(state=S.STOPPING, attempts=1, ran=True, deadline=50)  # a stopping worker still counts
    assert spawned(decide(streams, rows, settings=settings)[1]) == []


def test_a_worker_lingering_on_a_complete_stream_does_not_take_a_slot():
    streams = records({"A": [], "B": []}, complete={"A"})
    rows = {"A": lc.Life(state=S.RUNNING, attempts=1, ran=True)}
    _, decision = decide(streams, rows, now=10, settings=replace(SETTINGS, max_parallel=1))
    assert spawned(decision) == [("B", 1)]


def test_only_targets_start():
    streams = records({"A": [], "B": [], "C": ["A"]})
    _, decision = decide(streams, targets={"B"})
    assert spawned(decision) == [("B", 1)]


def test_back_off_deadline_is_respected_then_the_next_attempt_starts():
    streams = records({"A": []})
    rows = {"A": lc.Life(state=S.BACKOFF, attempts=1, failures=1, retry_at=105.0, ran=True)}
    board, decision = decide(streams, rows, now=100)
    assert spawned(decision) == [] and decision.wake_at == 105.0 and decision.finish is None
    assert board.views["A"].describe() == "restarting in 5 s (attempt 2 of 3)"
    _, decision = decide(streams, rows, now=104.999)
    assert spawned(decision) == []
    _, decision = decide(streams, rows, now=105)
    assert spawned(decision) == [("A", 2)] and decision.wake_at is None


def test_held_and_failed_streams_are_never_started_and_the_run_ends_stuck():
    streams = records({"A": [], "B": [], "C": ["A"]})
    rows = {"A": lc.Life(state=S.HELD, reason=lc.USER_STOP),
            "B": lc.Life(state=S.FAILED, attempts=3, failures=3, reason="x")}
    board, decision = decide(streams, rows, now=1e9)
    assert spawned(decision) == [] and decision.wake_at is None
    assert decision.finish == STUCK
    assert board.views["A"].describe() == "stopped by you; `start STREAM` resumes it"
    assert board.views["C"].describe() == "waiting on A"


def test_a_lingering_worker_is_stopped_after_finish_grace():
    streams = records({"A": []}, complete={"A"})
    rows = {"A": lc.Life(state=S.RUNNING, attempts=1, ran=True)}
    board, decision = decide(streams, rows, now=100)  # the board notices the completion now
    assert board.rows["A"].complete_since == 100
    assert decision.stop == [] and decision.wake_at == 130 and decision.finish is None
    _, decision = decide(streams, board.rows, now=129.9)
    assert decision.stop == [] and decision.wake_at == 130
    _, decision = decide(streams, board.rows, now=130)
    assert decision.stop == [sch.Stop("A", sch.LINGERING)]


def test_a_worker_of_a_stream_gone_from_the_database_is_stopped():
    rows = {"A": lc.Life(state=S.RUNNING, attempts=1, ran=True)}
    _, decision = decide(records({"B": []}), rows)
    assert decision.stop == [sch.Stop("A", sch.VANISHED)]


def test_a_stopping_worker_is_killed_once_its_deadline_passes():
    streams = records({"A": []})
    rows = {"A": lc.Life(state=S.STOPPING, attempts=1, ran=True, deadline=110, after_stop=S.HELD)}
    _, decision = decide(streams, rows, now=109)
    assert decision.kill == [] and decision.wake_at == 110 and decision.finish is None
    _, decision = decide(streams, rows, now=110)
    assert decision.kill == [sch.Kill("A")]
    assert decision.wake_at == 110 + sch.KILL_AGAIN_SECONDS  # not gone by then: KILLed again


def test_wake_at_is_the_earliest_thing_due():
    streams = records({"A": [], "B": [], "C": []}, complete={"C"})
    rows = {"A": lc.Life(state=S.BACKOFF, attempts=1, failures=1, retry_at=140, ran=True),
            "B": lc.Life(state=S.STOPPING, attempts=1, ran=True, deadline=120),
            "C": lc.Life(state=S.RUNNING, attempts=1, ran=True, complete_since=95)}
    _, decision = decide(streams, rows, now=100)
    assert decision.wake_at == 120


def test_how_a_running_run_ends():
    done = records({"A": [], "B": ["A"]}, complete={"A", "B"})
    assert decide(done)[1].finish == OK
    # Targets decide the outcome: B complete is enough when only B was asked for.
    partly = records({"A": [], "B": []}, complete={"B"})
    assert decide(partly, {"A": lc.Life(state=S.HELD)}, targets={"B"})[1].finish == OK
    assert decide(partly, {"A": lc.Life(state=S.HELD)})[1].finish == STUCK
    running = {"A": lc.Life(state=S.RUNNING, attempts=1, ran=True)}
    assert decide(partly, running)[1].finish is None
    backoff = {"A": lc.Life(state=S.BACKOFF, attempts=1, failures=1, retry_at=50, ran=True)}
    assert decide(partly, backoff, now=0)[1].finish is None
    invalid = records({"A": ["A"]})
    assert decide(invalid)[1].finish == STUCK and decide(invalid)[1].spawn == []


@pytest.mark.parametrize("facts", [sch.Facts(exits_pending=True), sch.Facts(fresh=False),
                                   sch.Facts(cleaning_up=frozenset({"A"})), sch.Facts(merge_busy=True)])
def test_the_run_does_not_end_on_what_it_has_not_seen_yet(facts):
    """An exit not judged yet, a stale read of the tracker, something an ended worker left still being
    ended, a merge check running: any of them may still change the outcome."""
    assert decide(records({"A": []}, complete={"A"}), facts=facts)[1].finish is None


def test_a_flapping_stream_respawns_at_most_budget_plus_one_times_with_growing_back_off():
    """Its tasks are reopened every time its worker completes them: the loop, replayed on a fake clock."""
    rows, now, spawns = {}, 0.0, []
    policy = lc.Policy(SETTINGS.max_restarts, SETTINGS.restart_delay)
    for _turn in range(50):
        board, decision = decide(records({"A": []}), rows, now=now)
        rows = dict(board.rows)  # the supervisor keeps the observed rows
        for spawn in decision.spawn:
            spawns.append(now)
            life = lc.transition(rows.get("A", lc.Life(state=S.READY)), lc.Spawning(spawn.attempt), now, policy)
            life = lc.transition(lc.transition(life, lc.Spawned(), now, policy), lc.Exited(ex.Ended(0), True), now,
                                 policy)
            rows["A"] = life  # the worker completed the stream; the next snapshot shows it reopened
        if decision.finish is not None:
            break
        now = decision.wake_at if decision.wake_at is not None else now + 1
    assert spawns == [0.0, 6.0, 17.0]  # each back-off counts from when the reopening is seen (1 s later)
    assert rows["A"].state is S.FAILED and decision.finish == STUCK


def test_a_running_stream_that_becomes_invalid_keeps_its_worker_and_is_not_restarted():
    streams = records({"A": ["B"], "B": ["A"]})
    rows = {"A": lc.Life(state=S.RUNNING, attempts=1, ran=True)}
    board, decision = decide(streams, rows, workers={"A": worker("A")})
    assert decision.stop == [] and decision.spawn == [] and decision.finish is None
    assert board.views["A"].state is S.RUNNING and board.views["A"].where == "pid 4001"
    assert board.views["B"].state is S.INVALID
    exited = lc.transition(board.rows["A"], lc.Exited(ex.Ended(1), False), 10, lc.Policy(2, 5.0))
    board, decision = decide(streams, {"A": exited}, now=1000)
    assert board.views["A"].state is S.INVALID and decision.spawn == [] and decision.finish == STUCK


def test_a_usage_limit_holds_every_spawn_until_its_reset():
    streams = records({"A": [], "B": [], "C": []})
    limited = {"A": lc.Life(state=S.RATE_LIMITED, retry_at=50.0, resume=True, session_id="s-a")}
    _, decision = decide(streams, limited, now=10.0)
    assert decision.spawn == [] and decision.held_back == "usage limit" and decision.wake_at == 50.0
    assert decision.finish is None
    _, decision = decide(streams, limited, now=50.0)
    assert spawned(decision) == [("A", 1), ("B", 1), ("C", 1)]
    paused = lc.RunLife(state=lc.RunState.PAUSED, paused_until=30.0)  # seen in a running worker's output
    _, decision = decide(streams, {}, now=10.0, run=paused)
    assert decision.spawn == [] and decision.wake_at == 30.0 and decision.finish is None


def test_after_a_limit_with_an_unknown_reset_one_worker_probes_first():
    streams = records({"A": [], "B": [], "C": []})
    probing = lc.RunLife(state=lc.RunState.PROBING, paused_until=10.0)
    _, decision = decide(streams, {}, now=10.0, run=probing)
    assert spawned(decision) == [("A", 1)]
    running = {"A": lc.Life(state=S.RUNNING, attempts=1, ran=True)}
    _, decision = decide(streams, running, now=11.0, workers={"A": worker("A")}, run=probing)
    assert decision.spawn == [] and decision.held_back == "usage limit probe"


# ---------------------------------------------------------------- pacing


def paced(n, credit=None, credit_at=0.0, now=10.0, gap=2.0):
    streams = records({f"S{i:02d}": [] for i in range(n)})
    run = lc.RunLife(credit=credit, credit_at=credit_at)
    return decide(streams, {}, now=now, settings=replace(SETTINGS, spawn_gap=gap), run=run)[1]


def test_a_lone_ready_stream_starts_at_once_even_right_after_a_burst():
    burst = paced(8)
    assert len(burst.spawn) == 8 and burst.credit is None  # the whole wave started: nobody waits for the pacing
    lone = paced(1, credit=burst.credit, credit_at=10.0, now=10.1)
    assert spawned(lone) == [("S00", 1)] and lone.wake_at is None


def test_a_burst_of_eight_starts_together_and_the_ninth_follows_a_gap_later():
    assert len(paced(8).spawn) == 8 and paced(8).credit is None  # nobody waits: the next wave gets 8 again
    decision = paced(9)
    assert len(decision.spawn) == sch.BURST == 8 and decision.held_back == "pacing"
    assert decision.credit == 0.0 and decision.wake_at == 12.0
    # The ninth, one gap later; it was the last to wait, so the bucket is full again after it.
    later = paced(1, credit=decision.credit, credit_at=10.0, now=12.0)
    assert spawned(later) == [("S00", 1)] and later.credit is None
    early = paced(1, credit=decision.credit, credit_at=10.0, now=11.0)
    assert early.spawn == [] and early.wake_at == 12.0 and early.finish is None


def test_a_large_wave_is_spaced_one_gap_apart_after_the_burst():
    starts, credit, credit_at, now, left = [], None, 0.0, 100.0, 20
    while left:
        decision = paced(left, credit, credit_at, now)
        starts += [now] * len(decision.spawn)
        left -= len(decision.spawn)
        credit, credit_at = decision.credit, now
        now = decision.wake_at if decision.wake_at is not None else now
    assert starts == [100.0] * 8 + [100.0 + 2 * i for i in range(1, 13)]


def test_no_gap_means_no_pacing_and_max_parallel_is_not_pacing():
    assert len(paced(30, gap=0).spawn) == 30
    streams = records({f"S{i}": [] for i in range(12)})
    _, decision = decide(streams, settings=replace(SETTINGS, spawn_gap=2.0, max_parallel=3))
    assert len(decision.spawn) == 3 and decision.credit is None  # the rest wait for a slot, not for the pacing


def test_first_starts_lists_every_ready_stream_for_plan_and_dry_run():
    streams = records({f"S{i:02d}": [] for i in range(10)})
    board = sg.build_board(streams, {}, {}, 0.0, lc.Policy())
    at_once, after = sch.first_starts(board, replace(SETTINGS, spawn_gap=2.0), 0.0)
    assert len(at_once) == 8 and after == ["S08", "S09"]


# ---------------------------------------------------------------- budgets


def test_the_run_budget_stops_spawns_and_ends_the_run():
    streams = records({"A": [], "B": []})
    _, decision = decide(streams, {}, now=10.0, facts=sch.Facts(budget_left=0.0))
    assert decision.spawn == [] and decision.held_back == "run budget"
    assert decision.finish == sch.Finish(st.EXIT_STUCK, "run budget")


def test_a_stream_whose_own_budget_is_spent_is_given_up_and_others_get_what_is_left():
    streams = records({"A": [], "B": [], "C": []})
    rows = {"A": lc.Life(state=S.BACKOFF, attempts=1, failures=1, retry_at=5.0, ran=True, spent_usd=2.0),
            "B": lc.Life(state=S.BACKOFF, attempts=1, failures=1, retry_at=5.0, ran=True, spent_usd=0.5)}
    facts = sch.Facts(budget_left=10.0, stream_budgets={"A": 2.0, "B": 2.0})
    _, decision = decide(streams, rows, now=10.0, facts=facts)
    assert decision.give_up == [sch.GiveUp("A", "budget: 2.00 USD spent, nothing left")]
    assert [(s.stream_id, s.budget_usd) for s in decision.spawn] == [("B", 1.5), ("C", 10.0)]
    assert decision.finish is None  # the give-up changes A's row first
    _, decision = decide(streams, rows, now=10.0, facts=replace(facts, budget_left=1.0))
    assert [(s.stream_id, s.budget_usd) for s in decision.spawn] == [("B", 1.0), ("C", 1.0)]


# ---------------------------------------------------------------- what ended workers left


def test_a_stream_whose_ended_worker_left_processes_is_neither_respawned_nor_merged():
    streams = records({"A": [], "B": []}, complete={"B"})
    rows = {"A": lc.Life(state=S.BACKOFF, attempts=1, failures=1, retry_at=5.0, ran=True),
            "B": lc.Life(state=S.MERGING, attempts=1, ran=True)}
    merge = lc.Policy(merge=True)
    facts = sch.Facts(cleaning_up=frozenset({"A", "B"}))
    _, decision = decide(streams, rows, now=10.0, facts=facts, policy=merge)
    assert decision.spawn == [] and decision.merge == [] and decision.finish is None
    _, decision = decide(streams, rows, now=10.0, policy=merge)
    assert spawned(decision) == [("A", 2)] and decision.merge == [sch.Merge("B")]


# ---------------------------------------------------------------- merges


def test_merges_go_in_critical_path_order_and_one_at_a_time_with_a_check():
    streams = records({"A": [], "B": [], "C": ["B"], "D": ["C"]}, complete={"A", "B"})
    rows = {sid: lc.Life(state=S.MERGING, attempts=1, ran=True) for sid in ("A", "B")}
    merge = lc.Policy(merge=True)
    _, decision = decide(streams, rows, policy=merge)
    assert decision.merge == [sch.Merge("B"), sch.Merge("A")]  # B unlocks a chain of two
    checked = replace(SETTINGS, merge_check="make test")
    _, decision = decide(streams, rows, settings=checked, policy=merge)
    assert decision.merge == [sch.Merge("B")]  # its check must pass before another merge
    _, decision = decide(streams, rows, settings=checked, policy=merge, facts=sch.Facts(merge_busy=True))
    assert decision.merge == [] and decision.finish is None


# ---------------------------------------------------------------- stalls


def test_a_silent_worker_is_stopped_as_a_failed_attempt_after_the_stall_timeout():
    streams = records({"A": []})
    settings = replace(SETTINGS, stall_timeout=1.0)  # minutes
    running = {"A": lc.Life(state=S.RUNNING, attempts=1, ran=True)}
    workers = {"A": worker("A")}
    _, decision = decide(streams, running, now=59.0, settings=settings, workers=workers,
                         facts=sch.Facts(last_output={"A": 0.0}))
    assert decision.stop == [] and decision.wake_at == 60.0
    _, decision = decide(streams, running, now=60.0, settings=settings, workers=workers,
                         facts=sch.Facts(last_output={"A": 0.0}))
    assert decision.stop == [sch.Stop("A", "stalled: no output for 1 min; stopping it", S.FAILED)]


# ---------------------------------------------------------------- a stopping run


def stopping(**fields):
    return lc.RunLife(state=lc.RunState.STOPPING, deadline=110.0, **fields)


def test_a_stopping_run_stops_every_worker_by_its_deadline_and_starts_nothing():
    streams = records({"A": [], "B": [], "C": []}, complete={"C"})
    rows = {"A": lc.Life(state=S.RUNNING, attempts=1, ran=True), "C": lc.Life(state=S.MERGING, attempts=1, ran=True)}
    _, decision = decide(streams, rows, now=100.0, run=stopping(), policy=lc.Policy(merge=True))
    assert decision.stop == [sch.Stop("A", sch.RUN_STOPPING, S.WAITING, 110.0)]
    assert decision.spawn == [] and decision.merge == [] and decision.shutdown == sch.Shutdown(110.0)
    assert decision.finish is None


def test_a_stopping_worker_is_killed_at_the_deadline_or_at_once_after_a_second_signal():
    streams = records({"A": []})
    rows = {"A": lc.Life(state=S.STOPPING, attempts=1, ran=True, deadline=110.0, after_stop=S.WAITING)}
    assert decide(streams, rows, now=105.0, run=stopping())[1].kill == []
    assert decide(streams, rows, now=110.0, run=stopping())[1].kill == [sch.Kill("A")]
    assert decide(streams, rows, now=105.0, run=stopping(forced=True))[1].kill == [sch.Kill("A")]


@pytest.mark.parametrize("run, complete, finish", [
    (stopping(), True, sch.Finish(st.EXIT_OK, "stopped")),
    (stopping(), False, sch.Finish(st.EXIT_STUCK, "stopped")),
    (stopping(interrupted=True), True, sch.Finish(130, "stopped")),
    (stopping(interrupted=True, fatal="Not logged in"), False, sch.Finish(st.EXIT_USAGE, "configuration")),
])
def test_a_stopped_run_ends_with_the_code_its_stop_calls_for(run, complete, finish):
    streams = records({"A": []}, complete={"A"} if complete else ())
    assert decide(streams, {}, now=100.0, run=run)[1].finish == finish
    live = {"A": lc.Life(state=S.STOPPING, attempts=1, ran=True, deadline=110.0, after_stop=S.WAITING)}
    assert decide(streams, live, now=100.0, run=run)[1].finish is None  # not before its workers are gone
    for facts in (sch.Facts(exits_pending=True), sch.Facts(cleaning_up=frozenset({"A"})), sch.Facts(merge_busy=True)):
        assert decide(streams, {}, now=100.0, run=run, facts=facts)[1].finish is None


def test_an_ended_run_decides_nothing():
    ended = lc.RunLife(state=lc.RunState.ENDED, exit_code=0)
    assert decide(records({"A": []}), run=ended)[1].actions() == []


# ---------------------------------------------------------------- the spend cap across runs


def test_at_the_spend_cap_nothing_starts_the_run_waits_for_the_window_and_never_ends_for_it():
    streams = records({"A": [], "B": []})
    _, decision = decide(streams, now=10.0, facts=sch.Facts(spend_left=0.005, spend_lifts_at=5000.0))
    assert decision.capped and spawned(decision) == [] and decision.held_back == "spend cap"
    assert decision.wake_at == 5000.0 and decision.finish is None  # waits for old spending to roll out
    _, decision = decide(streams, now=10.0, facts=sch.Facts(spend_left=0.0, spend_lifts_at=None))
    assert decision.capped and decision.finish is None and spawned(decision) == []


def test_below_the_cap_each_worker_gets_at_most_what_is_left_under_it_and_the_run_budget():
    streams = records({"A": [], "B": []})
    _, decision = decide(streams, facts=sch.Facts(spend_left=0.4))
    assert not decision.capped and [s.budget_usd for s in decision.spawn] == [0.4, 0.4]
    _, decision = decide(streams, facts=sch.Facts(spend_left=0.4, budget_left=0.25))
    assert [s.budget_usd for s in decision.spawn] == [0.25, 0.25]


def test_the_run_budget_ends_the_run_even_at_the_spend_cap():
    streams = records({"A": []})
    _, decision = decide(streams, facts=sch.Facts(budget_left=0.0, spend_left=0.0, spend_lifts_at=99.0))
    assert decision.finish == sch.Finish(st.EXIT_STUCK, "run budget")


def test_running_workers_finish_their_attempt_at_the_cap():
    streams = records({"A": [], "B": []})
    rows = {"A": lc.Life(state=S.RUNNING, attempts=1, ran=True)}
    _, decision = decide(streams, rows, workers={"A": worker("A")}, facts=sch.Facts(spend_left=0.0))
    assert decision.capped and decision.stop == [] and decision.kill == [] and spawned(decision) == []
