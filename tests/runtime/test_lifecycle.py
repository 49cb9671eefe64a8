"""lifecycle: every transition, back-off and budgets, holds, adoption, and the saved table. Pure, fake clock."""

import json
from dataclasses import replace

import pytest

from tests.runtime.runtime_import import executor_api as ex
from tests.runtime.runtime_import import lifecycle as lc

S = lc.StreamState
POLICY = lc.Policy(max_restarts=2, restart_delay=5.0)


def step(life, event, now=100.0, policy=POLICY):
    return lc.transition(life, event, now, policy)


def running(attempt=1, **extra):
    return lc.Life(state=S.RUNNING, attempts=attempt, ran=True, **extra)


def test_passive_states_follow_what_is_observed():
    life = lc.Life()
    assert life.state is S.WAITING
    for seen in (S.READY, S.WAITING, S.INVALID, S.READY, S.COMPLETE):
        life = step(life, lc.Observed(seen))
        assert life.state is seen
    assert life == lc.Life(state=S.COMPLETE)  # nothing else changed


def test_spawn_runs_and_completes():
    life = step(lc.Life(state=S.READY), lc.Spawning(1), now=10)
    assert life == lc.Life(state=S.STARTING, attempts=1, ran=True)
    life = step(life, lc.Spawned())
    assert life.state is S.RUNNING
    life = step(life, lc.Exited(ex.Ended(0), complete=True), now=20)
    assert life == lc.Life(state=S.COMPLETE, attempts=1, ran=True, last_exit=ex.Ended(0))


@pytest.mark.parametrize("state", [S.COMPLETE, S.INVALID, S.RUNNING, S.HELD, S.FAILED, S.STOPPING])
def test_spawning_is_refused_where_no_worker_may_start(state):
    with pytest.raises(lc.TransitionError):
        step(lc.Life(state=state), lc.Spawning(1))


def test_spawned_and_spawn_failed_need_a_starting_stream():
    with pytest.raises(lc.TransitionError):
        step(lc.Life(state=S.READY), lc.Spawned())
    with pytest.raises(lc.TransitionError):
        step(running(), lc.SpawnFailed("x"))


def test_a_worker_that_could_not_start_is_a_failed_attempt_with_its_reason():
    life = step(step(lc.Life(state=S.READY), lc.Spawning(1)), lc.SpawnFailed("log unusable"), now=50)
    assert (life.state, life.failures, life.retry_at, life.reason) == (S.BACKOFF, 1, 55.0, "log unusable")


def test_back_off_grows_5_10_20_and_is_capped():
    policy = lc.Policy(max_restarts=100, restart_delay=5.0)
    assert [policy.backoff(n) for n in range(1, 9)] == [5, 10, 20, 40, 80, 120, 120, 120]
    life, delays = lc.Life(state=S.READY), []
    for attempt in range(1, 9):
        life = step(step(step(life, lc.Spawning(attempt), policy=policy), lc.Spawned(), policy=policy),
                    lc.Exited(ex.Ended(1), complete=False, detail="with 0/1 tasks done"), now=1000, policy=policy)
        delays.append(life.retry_at - 1000)
        assert life.state is S.BACKOFF and life.failures == attempt
    assert delays == [5, 10, 20, 40, 80, 120, 120, 120]
    assert life.reason == "worker exited with code 1 with 0/1 tasks done"
    assert life.last_exit == ex.Ended(1) and life.last_exit.describe() == "code 1"


def test_the_budget_runs_out_into_failed():
    life = lc.Life(state=S.READY)
    states = []
    for attempt in (1, 2, 3):
        life = step(step(step(life, lc.Spawning(attempt)), lc.Spawned()), lc.Exited(ex.Ended(signal=9), False))
        states.append(life.state)
    assert states == [S.BACKOFF, S.BACKOFF, S.FAILED]  # max_restarts 2: three attempts in all
    assert life.retry_at is None and life.attempts == 3 and life.failures == 3
    assert lc.describe(life, 0, 2) == "failed after 3 attempts"


def test_back_off_ends_when_the_stream_is_completed_or_becomes_invalid_by_other_hands():
    backoff = lc.Life(state=S.BACKOFF, attempts=1, failures=1, retry_at=105, ran=True, reason="x")
    done = step(backoff, lc.Observed(S.COMPLETE))
    assert (done.state, done.retry_at, done.reason) == (S.COMPLETE, None, "")
    assert step(backoff, lc.Observed(S.INVALID)).state is S.INVALID
    assert step(backoff, lc.Observed(S.READY)) == backoff  # still waits for its deadline


def test_held_and_failed_stay_put_unless_completed():
    for state in (S.HELD, S.FAILED):
        life = lc.Life(state=state, reason="why")
        assert step(life, lc.Observed(S.READY)) == life
        assert step(life, lc.Observed(S.INVALID)) == life
        assert step(life, lc.Observed(S.COMPLETE)).state is S.COMPLETE


def test_a_user_stop_holds_the_stream_and_is_not_a_failure():
    life = running(attempt=2, failures=1)
    life = step(life, lc.StopRequested(S.HELD, lc.USER_STOP, deadline=110), now=100)
    assert (life.state, life.deadline, life.after_stop) == (S.STOPPING, 110, S.HELD)
    life = step(life, lc.Exited(ex.Ended(signal=15), complete=False), now=101)
    assert (life.state, life.failures, life.attempts, life.reason) == (S.HELD, 1, 2, lc.USER_STOP)
    assert life.deadline is None and life.after_stop is None
    assert lc.describe(life, 0, 10) == "stopped by you; `start STREAM` resumes it"


def test_a_user_stop_of_an_idle_stream_holds_it_at_once():
    for event in (lc.StopRequested(S.HELD, lc.USER_STOP, 1), lc.Hold(lc.USER_STOP)):
        life = step(lc.Life(state=S.BACKOFF, retry_at=200, failures=1), event)
        assert (life.state, life.retry_at, life.failures) == (S.HELD, None, 1)
    assert step(lc.Life(state=S.COMPLETE), lc.Hold(lc.USER_STOP)).state is S.COMPLETE
    with pytest.raises(lc.TransitionError):
        step(running(), lc.Hold(lc.USER_STOP))


def test_a_shutdown_stop_leaves_the_stream_passive():
    life = step(running(), lc.StopRequested(S.WAITING, "the run is stopping", deadline=110))
    life = step(life, lc.Exited(ex.Ended(signal=15), complete=False))
    assert (life.state, life.failures, life.reason) == (S.WAITING, 0, "")
    assert step(life, lc.Observed(S.READY)).state is S.READY


def test_a_stop_that_fails_the_stream_is_a_failed_attempt():
    life = step(running(), lc.StopRequested(S.FAILED, "stalled", deadline=110))
    life = step(life, lc.Exited(ex.Ended(signal=9), complete=False), now=120)
    assert (life.state, life.failures, life.retry_at, life.reason) == (S.BACKOFF, 1, 125, "stalled")


def test_a_worker_stopped_after_completing_its_stream_is_complete():
    life = step(running(complete_since=90.0), lc.StopRequested(S.WAITING, "lingering", deadline=110))
    assert step(life, lc.Exited(ex.Ended(signal=15), complete=True)).state is S.COMPLETE


def test_a_second_stop_keeps_the_earlier_deadline_and_a_shorter_one_wins():
    life = step(running(), lc.StopRequested(S.HELD, "a", deadline=110))
    assert step(life, lc.StopRequested(S.HELD, "b", deadline=130)).deadline == 110
    assert step(life, lc.StopRequested(S.HELD, "b", deadline=105)).deadline == 105


def test_release_gives_a_fresh_budget():
    for state in (S.HELD, S.FAILED, S.BACKOFF):
        life = step(lc.Life(state=state, attempts=3, failures=3, retry_at=500, reason="x"), lc.Release())
        assert (life.state, life.attempts, life.failures, life.retry_at, life.reason) == (S.WAITING, 0, 0, None, "")
    live = step(running(attempt=3, failures=2), lc.Release())
    assert (live.state, live.attempts, live.failures) == (S.RUNNING, 0, 0)


def test_completion_seen_while_the_worker_runs_is_remembered_once():
    life = step(running(), lc.Observed(S.COMPLETE), now=100)
    assert (life.state, life.complete_since) == (S.RUNNING, 100)
    assert step(life, lc.Observed(S.COMPLETE), now=150).complete_since == 100
    assert step(life, lc.Observed(S.READY), now=150).complete_since is None  # reopened meanwhile


def test_a_reopened_stream_counts_as_an_attempt_with_back_off_and_fails_after_the_budget():
    life, now, states = lc.Life(state=S.READY), 0.0, []
    for attempt in (1, 2, 3):
        life = step(step(step(life, lc.Spawning(attempt), now), lc.Spawned(), now), lc.Exited(ex.Ended(0), True), now)
        assert life.state is S.COMPLETE
        life = step(life, lc.Observed(S.READY), now=now)  # its tasks were reopened
        states.append((life.state, life.retry_at and life.retry_at - now))
        now = life.retry_at or now
    assert states == [(S.BACKOFF, 5.0), (S.BACKOFF, 10.0), (S.FAILED, None)]
    assert life.reason == "its tasks were reopened after it completed"


def test_a_stream_completed_by_other_hands_may_be_reopened_freely():
    life = step(lc.Life(state=S.COMPLETE), lc.Observed(S.READY))
    assert life == lc.Life(state=S.READY)


def test_adoption_makes_a_passive_stream_running_and_keeps_the_larger_attempt():
    life = step(lc.Life(state=S.READY, attempts=1), lc.Adopted(3))
    assert (life.state, life.attempts, life.ran) == (S.RUNNING, 3, True)
    assert step(lc.Life(state=S.BACKOFF, attempts=4, retry_at=3), lc.Adopted(2)).attempts == 4
    stopping = step(running(attempt=2), lc.StopRequested(S.HELD, "x", 9))
    assert step(stopping, lc.Adopted(1)) == stopping  # already live: only the count may grow


def test_an_exit_in_a_passive_state_is_a_bug_of_the_caller():
    with pytest.raises(lc.TransitionError):
        step(lc.Life(state=S.READY), lc.Exited(ex.Ended(0), True))


def test_describe_backoff_and_waiting():
    life = lc.Life(state=S.BACKOFF, attempts=2, retry_at=112.2)
    assert lc.describe(life, 100, 10) == "restarting in 13 s (attempt 3 of 11)"
    assert lc.describe(lc.Life(), 0, 10, ("A", "B")) == "waiting on A, B"


# ---------------------------------------------------------------- the saved table


def test_the_saved_table_round_trips(tmp_path):
    table = lc.Table(run=lc.RunInfo(isolation="worktree", integration_branch="orchestrate/x", base="abc",
                                    max_restarts=4),
                     run_life=lc.RunLife(state=lc.RunState.ENDED, started_at=1.5, ended_at=9.0, exit_code=1,
                                         outcome="nothing more can progress", credit=2.5, credit_at=8.0))
    table.rows = {
        "A": lc.Life(state=S.BACKOFF, attempts=2, failures=2, retry_at=12.5, reason="worker exited",
                     last_exit=ex.Ended(1), ran=True),
        "K": lc.Life(state=S.BACKOFF, attempts=1, failures=1, retry_at=2.0, last_exit=ex.Ended(signal=9)),
        "U": lc.Life(state=S.WAITING, last_exit=ex.Ended(why="ended while no orchestrator ran")),
        "B": lc.Life(state=S.STOPPING, attempts=1, deadline=20.0, after_stop=S.HELD, reason=lc.USER_STOP, ran=True,
                     complete_since=3.0),
        "sp ace/\u00e9": lc.Life(state=S.HELD, reason=lc.USER_STOP),
        "F": lc.Life(state=S.FAILED, attempts=3, failures=3, reason="why"),
    }
    path = tmp_path / "run.json"
    lc.save_table(path, table)
    loaded, warnings = lc.load_table(path)
    assert warnings == []
    assert loaded == table
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temporary file left


def test_a_missing_table_is_empty_without_a_warning(tmp_path):
    assert lc.load_table(tmp_path / "run.json") == (lc.Table(), [])


@pytest.mark.parametrize("content", ["null", "[]", "\"x\"", '{"streams": null}', '{"streams": []}',
                                     "{not json", "\xff\xfe", ""])
def test_a_damaged_table_is_reported_and_replaced_by_a_fresh_one(tmp_path, content):
    path = tmp_path / "run.json"
    path.write_bytes(content.encode("latin-1"))
    table, warnings = lc.load_table(path)
    assert table.rows == {}
    assert len(warnings) == 1 and "starting afresh" in warnings[0]


@pytest.mark.parametrize("row", [
    {"state": "running", "attempts": "3"},
    {"state": "running", "attempts": None},
    {"state": "running", "attempts": 1.5},
    {"state": "running", "attempts": -1},
    {"state": "running", "attempts": True},
    {"state": "running", "failures": float("nan")},
    {"state": "exploded"},
    {"state": None},
    {"state": "held", "after_stop": "sideways"},
    {"state": "held", "reason": 5},
    "running",
    None,
])
def test_a_damaged_row_is_dropped_with_a_warning_and_the_others_kept(tmp_path, row):
    path = tmp_path / "run.json"
    good = {"state": "failed", "attempts": 3, "failures": 3, "reason": "x"}
    path.write_text(json.dumps({"version": 2, "streams": {"bad": row, "good": good}}))
    table, warnings = lc.load_table(path)
    assert list(table.rows) == ["good"]
    assert table.rows["good"] == lc.Life(state=S.FAILED, attempts=3, failures=3, reason="x")
    assert warnings == ["ignored the saved state of stream 'bad' (damaged)"]


def test_damaged_run_info_is_replaced_field_by_field(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"run": {"started_at": "soon", "ended_at": [1], "exit_code": 1.5, "outcome": None},
                                "streams": {}}))
    table, warnings = lc.load_table(path)
    assert table.run == lc.RunInfo() and table.run_life == lc.RunLife() and warnings == []


# ---------------------------------------------------------------- how an agent's output says it ended


def test_a_usage_limit_parks_the_stream_without_spending_an_attempt_and_resumes_its_session():
    life = step(running(attempt=2, spent_usd=0.5), lc.Exited(ex.Ended(1), False, "You've hit your limit", "usage_limit",
                                                            resume_at=400.0, cost_usd=0.25, session_id="s-1"))
    assert life.state is S.RATE_LIMITED and life.retry_at == 400.0
    assert life.attempts == 1 and life.failures == 0  # the next attempt is attempt 2 again
    assert life.resume and life.session_id == "s-1" and life.spent_usd == 0.75
    again = step(life, lc.Spawning(2), now=400.0)
    assert again.state is S.STARTING and again.attempts == 2
    assert step(life, lc.Observed(S.COMPLETE)).state is S.COMPLETE  # finished by other hands meanwhile


def test_a_spent_budget_fails_the_stream_without_a_retry():
    life = step(running(attempt=1), lc.Exited(ex.Ended(1), False, "--max-budget-usd reached", "budget", cost_usd=1.0))
    assert life.state is S.FAILED and life.reason.startswith("budget") and life.spent_usd == 1.0
    assert step(lc.Life(state=S.READY), lc.GiveUp("budget: 1.00 USD spent")).state is S.FAILED


def test_a_fatal_configuration_error_spends_no_attempt_and_a_lost_session_starts_over():
    fatal = step(running(attempt=3, failures=2), lc.Exited(ex.Ended(1), False, "Not logged in", "fatal"))
    assert fatal.state is S.WAITING and fatal.attempts == 2 and fatal.failures == 2
    fresh = step(running(attempt=1, session_id="gone", resume=True), lc.Exited(ex.Ended(1), False, "", "fresh"))
    assert fresh.state is S.WAITING and fresh.session_id == "" and not fresh.resume and fresh.attempts == 0


def test_the_agent_fields_survive_the_saved_table(tmp_path):
    table = lc.Table(rows={"A": lc.Life(state=S.RATE_LIMITED, retry_at=400.0, spent_usd=1.25, session_id="s-1",
                                        resume=True)})
    path = tmp_path / "run.json"
    lc.save_table(path, table)
    loaded, warnings = lc.load_table(path)
    assert warnings == [] and loaded.rows == table.rows


def test_the_session_chosen_at_spawn_is_resumed_even_if_the_worker_never_announced_it():
    life = step(lc.Life(state=S.READY), lc.Spawning(1, "chosen-id"))
    life = step(step(life, lc.Spawned()), lc.Exited(ex.Ended(1), False, "usage limit", "usage_limit", resume_at=500.0))
    assert life.state is S.RATE_LIMITED and life.resume and life.session_id == "chosen-id"
    resumed = step(life, lc.Spawning(1, "chosen-id"), now=500.0)
    assert resumed.session_id == "chosen-id" and resumed.attempts == 1


def test_a_fatal_error_seen_while_the_run_was_already_stopping_the_worker_spends_no_attempt():
    """The supervisor sees "Not logged in" in the output and stops the run before the worker exits:
    the exit then arrives in `stopping`, and must still not count as an attempt."""
    stopping = step(running(attempt=1), lc.StopRequested(S.WAITING, "the run is stopping", deadline=110.0))
    life = step(stopping, lc.Exited(ex.Ended(1), False, "Not logged in", "fatal"))
    assert life.state is S.WAITING and life.attempts == 0
    limited = step(stopping, lc.Exited(ex.Ended(1), False, "limit", "usage_limit", resume_at=500.0))
    assert limited.state is S.RATE_LIMITED and limited.attempts == 0
    held = step(step(running(attempt=1), lc.StopRequested(S.HELD, lc.USER_STOP, deadline=110.0)),
                lc.Exited(ex.Ended(1), False, "Not logged in", "fatal"))
    assert held.state is S.HELD  # your stop still holds


def test_each_attempt_adds_its_turns_and_tokens_to_the_row_and_they_survive_the_saved_table(tmp_path):
    life = step(running(), lc.Exited(ex.Ended(1), False, "", cost_usd=0.1, turns=3, tokens=1500), now=10)
    life = step(step(step(life, lc.Spawning(2), now=20), lc.Spawned()), lc.Exited(ex.Ended(0), True, turns=4, tokens=900))
    assert (life.turns, life.tokens, round(life.spent_usd, 6)) == (7, 2400, 0.1)
    path = tmp_path / "run.json"
    lc.save_table(path, lc.Table(rows={"A": life}))
    assert lc.load_table(path)[0].rows["A"] == life


# ---------------------------------------------------------------- one run after another

ENDED = lc.RunLife(state=lc.RunState.ENDED, started_at=1.0, ended_at=9.0, exit_code=1,
                   outcome="nothing more can progress")


def test_a_run_cut_short_is_continued_with_its_counts():
    """No end was saved (the orchestrator was killed): the next start goes on exactly where it was."""
    rows = {"A": lc.Life(state=S.BACKOFF, attempts=2, failures=2, retry_at=12.0, ran=True),
            "B": lc.Life(state=S.FAILED, attempts=3, failures=3, reason="why", ran=True)}
    assert lc.carried_rows(lc.Table(rows=dict(rows), run_life=lc.RunLife(started_at=1.0))) == rows


def test_after_a_run_that_ended_a_new_run_starts_every_count_afresh():
    rows = {
        "done": lc.Life(state=S.COMPLETE, attempts=2, failures=1, ran=True, spent_usd=0.5, turns=6, tokens=900),
        "failed": lc.Life(state=S.FAILED, attempts=3, failures=3, reason="worker exited with code 1", ran=True),
        "retrying": lc.Life(state=S.BACKOFF, attempts=1, failures=1, retry_at=50.0, ran=True),
        "waiting": lc.Life(state=S.WAITING, attempts=1, ran=True, last_exit="signal 15"),  # stopped by `stop`
    }
    assert lc.carried_rows(lc.Table(rows=rows, run_life=ENDED)) == {}  # fresh rows: the tracker says the rest


def test_a_new_run_keeps_holds_and_the_merges_still_owed_with_fresh_counts():
    conflict = ("shared.txt",)
    rows = {
        "held": lc.Life(state=S.HELD, attempts=2, failures=1, reason=lc.USER_STOP, ran=True, spent_usd=1.0),
        "merging": lc.Life(state=S.MERGING, attempts=1, ran=True),
        "parked": lc.Life(state=S.MERGE_CONFLICT, attempts=2, ran=True, reason="merge conflict in shared.txt",
                          conflicts=conflict, handed_back=True),
        "handed back": lc.Life(state=S.READY, attempts=1, ran=True, conflicts=conflict, handed_back=True,
                               reason="merge conflict handed back to its agent"),
        "its agent failed it": lc.Life(state=S.FAILED, attempts=3, failures=2, ran=True, conflicts=conflict,
                                       handed_back=True, reason="worker exited with code 1"),
        "limited": lc.Life(state=S.RATE_LIMITED, attempts=1, retry_at=80.0, ran=True, session_id="s-1", resume=True),
    }
    carried = lc.carried_rows(lc.Table(rows=rows, run_life=ENDED))
    assert carried["held"] == lc.Life(state=S.HELD, reason=lc.USER_STOP, ran=True)  # held until `start STREAM`
    assert carried["merging"] == lc.Life(state=S.MERGING, ran=True)
    assert carried["parked"] == replace(rows["parked"], attempts=0)  # the user resolves it, then `start STREAM`
    assert carried["handed back"] == replace(rows["handed back"], attempts=0)  # its agent's turn comes again
    assert carried["its agent failed it"] == lc.Life(state=S.MERGING, ran=True, conflicts=conflict,
                                                     handed_back=True)  # merged again: resolved since, or parked
    assert carried["limited"] == lc.Life(session_id="s-1", resume=True)  # its session continues, a first attempt
# ---------------------------------------------------------------- the run's own row

R = lc.RunState


def run_step(run, *events, now=100.0):
    for event in events:
        run = lc.transition_run(run, event, now)
    return run


def test_a_run_begins_running_and_a_continued_one_keeps_its_start():
    run = run_step(lc.RunLife(), lc.RunBegins(), now=50.0)
    assert (run.state, run.started_at) == (R.RUNNING, 50.0)
    assert run_step(run, lc.RunBegins(), now=80.0).started_at == 50.0  # its orchestrator died; this one continues
    ended = run_step(run, lc.RunEnds(1, "nothing more can progress"), now=90.0)
    assert (ended.state, ended.ended_at, ended.exit_code) == (R.ENDED, 90.0, 1)
    again = run_step(ended, lc.RunBegins(), now=120.0)
    assert again == lc.RunLife(started_at=120.0)  # a new run: the last one's end is forgotten


def test_a_usage_limit_pauses_the_run_until_its_reset_and_a_later_reset_extends_it():
    run = run_step(lc.RunLife(), lc.LimitHit(400.0))
    assert (run.state, run.paused_until, run.probe) == (R.PAUSED, 400.0, False)
    assert run_step(run, lc.LimitHit(300.0)).paused_until == 400.0
    assert run_step(run, lc.LimitHit(500.0)).paused_until == 500.0
    assert run_step(run, lc.Tick(), now=399.0) == run
    resumed = run_step(run, lc.Tick(), now=400.0)
    assert (resumed.state, resumed.paused_until) == (R.RUNNING, None)


def test_after_an_unknown_reset_one_worker_probes_until_it_gets_an_answer():
    run = run_step(lc.RunLife(), lc.LimitHit(1000.0, known=False))
    assert run.state is R.PAUSED and run.probe
    probing = run_step(run, lc.Tick(), now=1000.0)
    assert (probing.state, probing.paused_until) == (R.PROBING, 1000.0)  # workers started after it are the probe
    assert run_step(probing, lc.LimitLifted()).state is R.RUNNING
    again = run_step(probing, lc.LimitHit(1900.0, known=False))  # the probe hit the limit again
    assert (again.state, again.paused_until, again.probe) == (R.PAUSED, 1900.0, True)
    assert run_step(lc.RunLife(), lc.LimitLifted()).state is R.RUNNING  # nothing to lift


def test_a_stop_signal_stops_with_a_deadline_and_a_second_one_forces():
    run = run_step(lc.RunLife(), lc.StopSignal(10.0), now=100.0)
    assert (run.state, run.deadline, run.forced, run.interrupted) == (R.STOPPING, 110.0, False, False)
    forced = run_step(run, lc.StopSignal(10.0, interrupt=True), now=102.0)
    assert (forced.deadline, forced.forced, forced.interrupted) == (102.0, True, True)
    assert run_step(lc.RunLife(), lc.StopSignal(10.0, interrupt=True)).interrupted


def test_a_stop_request_after_a_signal_shortens_the_grace_and_does_not_force():
    """`stop --grace 1` may arrive in the same turn as a TERM: one stop, with the shorter grace."""
    run = run_step(lc.RunLife(), lc.StopSignal(10.0), lc.StopAsked(1.0), now=100.0)
    assert (run.state, run.deadline, run.forced) == (R.STOPPING, 101.0, False)
    assert run_step(lc.RunLife(), lc.StopAsked(5.0)).deadline == 105.0
    assert run_step(run, lc.StopAsked(30.0)).deadline == 101.0  # a longer grace never lengthens the stop


def test_a_configuration_failure_stops_the_run_and_the_first_one_is_kept():
    run = run_step(lc.RunLife(state=R.PAUSED, paused_until=500.0), lc.FatalSeen("Not logged in", "log in", 10.0))
    assert (run.state, run.deadline, run.fatal, run.fix, run.paused_until) == (
        R.STOPPING, 110.0, "Not logged in", "log in", None)
    assert run_step(run, lc.FatalSeen("other", "x", 10.0)).fatal == "Not logged in"
    stopped = run_step(lc.RunLife(), lc.StopSignal(10.0), lc.FatalSeen("Not logged in", "log in", 10.0))
    assert stopped.fatal == "Not logged in" and stopped.deadline == 110.0  # already stopping: only noted


def test_a_stopping_run_ignores_limits_and_an_ended_run_takes_no_events():
    run = run_step(lc.RunLife(), lc.StopSignal(10.0))
    assert run_step(run, lc.LimitHit(500.0), lc.Tick(), lc.LimitLifted()) == run
    ended = run_step(run, lc.RunEnds(0, "stopped by request"))
    with pytest.raises(lc.TransitionError):
        run_step(ended, lc.StopSignal(10.0))


def test_pacing_credit_is_recorded_with_its_time():
    run = run_step(lc.RunLife(), lc.Paced(0.5), now=42.0)
    assert (run.credit, run.credit_at) == (0.5, 42.0)
    assert run_step(run, lc.Paced(None)).credit is None


def test_the_run_row_survives_the_saved_table(tmp_path):
    life = lc.RunLife(state=R.PAUSED, started_at=1.0, paused_until=900.0, probe=True, credit=3.0, credit_at=5.0)
    path = tmp_path / "run.json"
    lc.save_table(path, lc.Table(run_life=life))
    assert lc.load_table(path)[0].run_life == life
    stopping = lc.RunLife(state=R.STOPPING, started_at=1.0, deadline=20.0, forced=True, interrupted=True,
                          fatal="Not logged in", fix="log in")
    lc.save_table(path, lc.Table(run_life=stopping))
    assert lc.load_table(path)[0].run_life == stopping


def test_a_version_2_run_file_still_loads(tmp_path):
    """Before the run had a row, run.json kept its start and end beside the facts, and exits as text."""
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"version": 2, "run": {
        "started_at": 1.5, "ended_at": 9.0, "exit_code": 1, "outcome": "nothing more can progress",
        "isolation": "worktree", "integration_branch": "orchestrate/x", "base": "abc", "max_restarts": 3},
        "streams": {"A": {"state": "backoff", "attempts": 1, "failures": 1, "retry_at": 5.0, "reason": "x",
                          "last_exit": "code 1", "after_stop": None, "ran": True}}}))
    table, warnings = lc.load_table(path)
    assert warnings == []
    assert table.run == lc.RunInfo("worktree", "orchestrate/x", "abc", 3)
    assert table.run_life == lc.RunLife(state=R.ENDED, started_at=1.5, ended_at=9.0, exit_code=1,
                                        outcome="nothing more can progress")
    assert table.rows["A"] == lc.Life(state=S.BACKOFF, attempts=1, failures=1, retry_at=5.0, reason="x", ran=True)
    unfinished = {"version": 2, "run": {"started_at": 1.5, "ended_at": None}, "streams": {}}
    path.write_text(json.dumps(unfinished))
    assert lc.load_table(path)[0].run_life == lc.RunLife(started_at=1.5)  # its orchestrator died mid-run


def test_describe_run():
    assert lc.describe_run(lc.RunLife()) == "running"
    assert lc.describe_run(lc.RunLife(state=R.PROBING)).startswith("probing")
    assert lc.describe_run(lc.RunLife(state=R.STOPPING, fatal="x")) == "stopping: configuration error"
    assert lc.describe_run(lc.RunLife(state=R.ENDED, exit_code=0, outcome="all complete")) == \
        "ended: all complete (exit 0)"


def test_the_spend_cap_caps_a_running_run_and_lifts_it_but_never_overrides_a_usage_limit_or_a_stop():
    R = lc.RunState
    run = lc.transition_run(lc.RunLife(), lc.RunBegins("20261202T060000Z-abcdef"), 100.0)
    capped = lc.transition_run(run, lc.SpendCap(True, 5000.0), 110.0)
    assert (capped.state, capped.capped_until, capped.run_id) == (R.CAPPED, 5000.0, "20261202T060000Z-abcdef")
    assert lc.transition_run(capped, lc.SpendCap(True, 5000.0), 120.0) == capped  # nothing new: no save
    lifted = lc.transition_run(capped, lc.SpendCap(False), 5000.0)
    assert (lifted.state, lifted.capped_until) == (R.RUNNING, None)
    paused = replace(run, state=R.PAUSED, paused_until=900.0)
    assert lc.transition_run(paused, lc.SpendCap(True, 5000.0), 120.0) == paused
    stopping = lc.transition_run(capped, lc.StopSignal(10.0), 130.0)
    assert stopping.state is R.STOPPING
    assert lc.transition_run(stopping, lc.SpendCap(True, 5000.0), 131.0).state is R.STOPPING
    # A continued run is still capped (the next decision looks again) and keeps its id; a new run gets its own.
    again = lc.transition_run(capped, lc.RunBegins("20261202T070000Z-123456"), 200.0)
    assert (again.state, again.capped_until, again.run_id) == (R.CAPPED, 5000.0, "20261202T060000Z-abcdef")
    ended = lc.transition_run(capped, lc.RunEnds(1, "stopped by request"), 300.0)
    fresh = lc.transition_run(ended, lc.RunBegins("20261202T070000Z-123456"), 400.0)
    assert fresh.run_id == "20261202T070000Z-123456" and fresh.state is R.RUNNING
    assert "capped: the spend cap is reached; no new worker starts, resumes ~" in lc.describe_run(capped)
