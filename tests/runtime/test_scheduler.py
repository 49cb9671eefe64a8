"""scheduler.decide with scripted snapshots and a fake clock: what starts, stops, is killed, and when to look again."""

from dataclasses import replace

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


def decide(streams, rows=None, now=0.0, settings=SETTINGS, targets=None, workers=None, pace=sch.Pace()):
    policy = lc.Policy(settings.max_restarts, settings.restart_delay)
    board = sg.build_board(streams, rows or {}, workers or {}, now, policy)
    return board, sch.decide(board, settings, now, targets, pace)


def spawned(decision):
    return [(s.stream_id, s.attempt) for s in decision.spawn]


def test_every_ready_stream_starts_longest_remaining_path_first():
    streams = records({"A": [], "B": ["A"], "C": ["B"], "D": [], "E": []}, tasks={"E": 5})
    _, decision = decide(streams)
    assert spawned(decision) == [("A", 1), ("E", 1), ("D", 1)]  # A heads a chain of 3; then most tasks; then id
    assert decision.stop == [] and decision.kill == [] and decision.wake_at is None and decision.outcome is None


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
    assert spawned(decision) == [] and decision.wake_at == 105.0 and decision.outcome is None
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
    assert decision.outcome == st.EXIT_STUCK
    assert board.views["A"].describe() == "stopped by you; `start STREAM` resumes it"
    assert board.views["C"].describe() == "waiting on A"


def test_a_lingering_worker_is_stopped_after_finish_grace():
    streams = records({"A": []}, complete={"A"})
    rows = {"A": lc.Life(state=S.RUNNING, attempts=1, ran=True)}
    board, decision = decide(streams, rows, now=100)  # the board notices the completion now
    assert board.rows["A"].complete_since == 100
    assert decision.stop == [] and decision.wake_at == 130 and decision.outcome is None
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
    assert decision.kill == [] and decision.wake_at == 110 and decision.outcome is None
    _, decision = decide(streams, rows, now=110)
    assert decision.kill == ["A"]


def test_wake_at_is_the_earliest_thing_due():
    streams = records({"A": [], "B": [], "C": []}, complete={"C"})
    rows = {"A": lc.Life(state=S.BACKOFF, attempts=1, failures=1, retry_at=140, ran=True),
            "B": lc.Life(state=S.STOPPING, attempts=1, ran=True, deadline=120),
            "C": lc.Life(state=S.RUNNING, attempts=1, ran=True, complete_since=95)}
    _, decision = decide(streams, rows, now=100)
    assert decision.wake_at == 120


def test_outcome_codes():
    done = records({"A": [], "B": ["A"]}, complete={"A", "B"})
    assert decide(done)[1].outcome == st.EXIT_OK
    # Targets decide the outcome: B complete is enough when only B was asked for.
    partly = records({"A": [], "B": []}, complete={"B"})
    assert decide(partly, {"A": lc.Life(state=S.HELD)}, targets={"B"})[1].outcome == st.EXIT_OK
    assert decide(partly, {"A": lc.Life(state=S.HELD)})[1].outcome == st.EXIT_STUCK
    running = {"A": lc.Life(state=S.RUNNING, attempts=1, ran=True)}
    assert decide(partly, running)[1].outcome is None
    backoff = {"A": lc.Life(state=S.BACKOFF, attempts=1, failures=1, retry_at=50, ran=True)}
    assert decide(partly, backoff, now=0)[1].outcome is None
    invalid = records({"A": ["A"]})
    assert decide(invalid)[1].outcome == st.EXIT_STUCK and decide(invalid)[1].spawn == []


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
            life = lc.transition(lc.transition(life, lc.Spawned(), now, policy), lc.Exited("code 0", True), now, policy)
            rows["A"] = life  # the worker completed the stream; the next snapshot shows it reopened
        if decision.outcome is not None:
            break
        now = decision.wake_at if decision.wake_at is not None else now + 1
    assert spawns == [0.0, 6.0, 17.0]  # each back-off counts from when the reopening is seen (1 s later)
    assert rows["A"].state is S.FAILED and decision.outcome == st.EXIT_STUCK


def test_a_running_stream_that_becomes_invalid_keeps_its_worker_and_is_not_restarted():
    streams = records({"A": ["B"], "B": ["A"]})
    rows = {"A": lc.Life(state=S.RUNNING, attempts=1, ran=True)}
    board, decision = decide(streams, rows, workers={"A": sg.WorkerFacts(pid=4242, attempt=1)})
    assert decision.stop == [] and decision.spawn == [] and decision.outcome is None
    assert board.views["A"].state is S.RUNNING
    assert board.views["B"].state is S.INVALID
    exited = lc.transition(board.rows["A"], lc.Exited("code 1", False), 10, lc.Policy(2, 5.0))
    board, decision = decide(streams, {"A": exited}, now=1000)
    assert board.views["A"].state is S.INVALID and decision.spawn == [] and decision.outcome == st.EXIT_STUCK


def test_a_usage_limit_holds_every_spawn_until_its_reset():
    streams = records({"A": [], "B": [], "C": []})
    limited = {"A": lc.Life(state=S.RATE_LIMITED, retry_at=50.0, resume=True, session_id="s-a")}
    _, decision = decide(streams, limited, now=10.0)
    assert decision.spawn == [] and decision.held_back == "usage limit" and decision.wake_at == 50.0
    assert decision.outcome is None
    _, decision = decide(streams, limited, now=50.0)
    assert spawned(decision) == [("A", 1), ("B", 1), ("C", 1)]
    _, decision = decide(streams, {}, now=10.0, pace=sch.Pace(paused_until=30.0))  # seen in a running worker
    assert decision.spawn == [] and decision.wake_at == 30.0


def test_after_a_limit_with_an_unknown_reset_one_worker_probes_first():
    streams = records({"A": [], "B": [], "C": []})
    _, decision = decide(streams, {}, now=10.0, pace=sch.Pace(probing=True))
    assert spawned(decision) == [("A", 1)]
    running = {"A": lc.Life(state=S.RUNNING, attempts=1, ran=True)}
    _, decision = decide(streams, running, now=11.0, workers={"A": sg.WorkerFacts(pid=42)},
                         pace=sch.Pace(probing=True))
    assert decision.spawn == [] and decision.held_back == "usage limit probe"


def test_the_spawn_gap_staggers_a_wave_of_ready_streams():
    streams = records({"A": [], "B": [], "C": []})
    gap = replace(SETTINGS, spawn_gap=2.0)
    _, decision = decide(streams, {}, now=10.0, settings=gap)
    assert spawned(decision) == [("A", 1)]
    _, decision = decide(streams, {}, now=11.0, settings=gap, pace=sch.Pace(last_spawn_at=10.0))
    assert decision.spawn == [] and decision.wake_at == 12.0 and decision.outcome is None


def test_the_run_budget_stops_spawns_and_ends_the_run():
    streams = records({"A": [], "B": []})
    _, decision = decide(streams, {}, now=10.0, pace=sch.Pace(budget_left=0.0))
    assert decision.spawn == [] and decision.held_back == "run budget" and decision.outcome == 1


def test_a_silent_worker_is_stopped_as_a_failed_attempt_after_the_stall_timeout():
    streams = records({"A": []})
    settings = replace(SETTINGS, stall_timeout=1.0)  # minutes
    running = {"A": lc.Life(state=S.RUNNING, attempts=1, ran=True)}
    workers = {"A": sg.WorkerFacts(pid=42)}
    _, decision = decide(streams, running, now=59.0, settings=settings, workers=workers,
                         pace=sch.Pace(last_output={"A": 0.0}))
    assert decision.stop == [] and decision.wake_at == 60.0
    _, decision = decide(streams, running, now=60.0, settings=settings, workers=workers,
                         pace=sch.Pace(last_output={"A": 0.0}))
    assert decision.stop == [sch.Stop("A", "stalled: no output for 1 min; stopping it", S.FAILED)]
