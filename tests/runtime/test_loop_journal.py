"""The run's journal as the loop writes it, through scripted histories (fake executor, fake clock):
one line per transition, attempt start and end, back-off, usage limit and its end, spend cap and run
end, each with the run's id; never ahead of the saved table, nothing twice after a restart; and the
spend cap across runs holding new workers back until old spending rolls out of its window."""

import json

from tests.runtime.runtime_import import lifecycle as lc
from tests.support.loop_harness import START, Harness

import _orchestrate_kit.journal as jr  # noqa: E402  (on sys.path through runtime_import)

S = lc.StreamState
R = lc.RunState
DAY = 24 * 3600.0


def result(cost, ok=True, text="all tasks done"):
    """The worker's closing stream-json event: what its attempt cost, as Claude Code reports it."""
    return json.dumps({"type": "result", "subtype": "success" if ok else "error_during_execution",
                       "is_error": not ok, "num_turns": 3, "result": text, "total_cost_usd": cost,
                       "session_id": "5f3c2b1a-0d4e-4f6a-9b8c-7d6e5f4a3b2c",
                       "usage": {"input_tokens": 1200, "output_tokens": 340}})


def journal(h, run_id=None):
    """The events of the harness's run (or of `run_id`), read back from the file."""
    warnings = []
    events = list(jr.read_journal(jr.journal_path(h.layout.journals, run_id or h.run.run_id), warnings.append))
    assert warnings == []
    return events


def kinds(events, stream=None):
    return [e["kind"] for e in events if stream is None or e.get("stream") == stream]


def moves(events, stream):
    return [(e["before"], e["after"]) for e in events if e["kind"] == "transition" and e.get("stream") == stream]


def journaled_states(events):
    """Each stream's state as the journal's last transition left it."""
    return {e["stream"]: e["after"] for e in events if e["kind"] == "transition"}


# ---------------------------------------------------------------- one line per event


def test_every_transition_attempt_back_off_and_the_run_s_end_is_one_line_with_the_run_id(tmp_path):
    h = Harness(tmp_path, {"A": [], "B": ["A"]}, agent_events=True)
    h.settle()
    run_id = h.run.run_id
    assert jr.is_run_id(run_id) and h.saved().run_life.run_id == run_id  # the run row holds its id
    h.executor.say("A", result(0.25, ok=False, text="tests fail"))
    h.executor.exit("A", 1)
    h.settle()
    assert h.state("A") is S.BACKOFF
    h.wait_until(lambda: h.state("A") is S.RUNNING)  # the back-off's end: attempt 2
    assert h.clock.now == START + 5.0
    h.executor.say("A", result(0.5))
    h.finish("A")
    h.executor.say("B", result(0.75))
    assert h.finish("B") == 0

    events = journal(h)
    assert {e["run"] for e in events} == {run_id} and all(e["v"] == jr.FORMAT for e in events)
    assert [e["t"] for e in events] == sorted(e["t"] for e in events)
    assert events[0]["kind"] == "run_started" and events[0]["resumed"] is False
    assert events[0]["plan"]["critical_path"] == ["A", "B"]
    assert kinds(events).count("run_started") == 1 and kinds(events)[-1] == "run_finished"
    assert moves(events, "A") == [("waiting", "ready"), ("ready", "starting"), ("starting", "running"),
                                  ("running", "backoff"), ("backoff", "starting"), ("starting", "running"),
                                  ("running", "complete")]
    assert moves(events, "B")[-1] == ("running", "complete")
    # One start and one end per attempt the executor ran, with the agent's own account of it.
    started = [(e["stream"], e["attempt"]) for e in events if e["kind"] == "attempt_started"]
    ended = {(e["stream"], e["attempt"]): e for e in events if e["kind"] == "attempt_ended"}
    assert started == h.executor.spawns() == [("A", 1), ("A", 2), ("B", 1)]
    assert sorted(ended) == sorted(started)
    first = ended[("A", 1)]
    assert (first["exit_code"], first["complete"], first["cost_usd"], first["turns"]) == (1, False, 0.25, 3)
    assert (first["input_tokens"], first["output_tokens"]) == (1200, 340) and "code 1" in first["reason"]
    assert ended[("A", 2)]["complete"] is True and ended[("A", 2)]["result"] == "all tasks done"
    backoffs = [e for e in events if e["kind"] == "backoff"]
    assert [(b["stream"], b["until"], b["failures"]) for b in backoffs] == [("A", START + 5.0, 1)]
    end = events[-1]
    assert (end["exit_code"], end["outcome"], end["cost_usd"], end["states"]) == (0, "all complete", 1.5,
                                                                                  {"complete": 2})
    assert end["report"] == str(h.layout.reports / f"{run_id}.html")
    assert h.lines(f"report: .claude/orchestrator/reports/{run_id}.html")


def test_a_usage_limit_and_its_end_are_journaled_once_each(tmp_path):
    reset = int(START) + 400
    h = Harness(tmp_path, {"A": []})
    h.settle()
    h.executor.say("A", f"Claude AI usage limit reached|{reset}")
    h.executor.exit("A", 1)
    h.settle()
    h.wait(400.0)
    assert h.run.state is R.RUNNING and h.executor.spawns() == [("A", 1), ("A", 1)]
    assert h.finish("A") == 0
    events = journal(h)
    limits = [e for e in events if e["kind"] == "usage_limit"]
    assert [(e["stream"], e["until"], e["probing"]) for e in limits] == [("A", reset, False)]
    assert kinds(events).count("usage_limit_resumed") == 1
    assert kinds(events).index("usage_limit") < kinds(events).index("usage_limit_resumed")
    assert ("running", "rate_limited") in moves(events, "A") and ("rate_limited", "starting") in moves(events, "A")
    assert [e["kind"] for e in events if e["kind"] == "attempt_started"] == ["attempt_started"] * 2


def test_a_stopped_run_s_journal_ends_with_its_exit_code_and_its_attempt_ended_as_stopped(tmp_path):
    h = Harness(tmp_path, {"A": []})
    h.settle()
    assert h.signal() == 1
    events = journal(h)
    ended = [e for e in events if e["kind"] == "attempt_ended"]
    assert [(e["stream"], e["attempt"], e["signal"]) for e in ended] == [("A", 1, 15)]
    assert events[-1]["kind"] == "run_finished" and events[-1]["exit_code"] == 1
    assert events[-1]["outcome"] == "stopped by request"


def test_the_journal_is_never_ahead_of_the_saved_table(tmp_path):
    """After every turn the journal's last word on each stream is what the saved table says."""
    h = Harness(tmp_path, {"A": [], "B": ["A"], "C": ["A"]}, agent_events=True)

    def agree():
        saved = {sid: life.state.value for sid, life in h.saved().rows.items()}
        assert journaled_states(journal(h)) == {sid: state for sid, state in saved.items() if state != "waiting"}

    h.settle()
    agree()
    h.executor.exit("A", 1)
    h.settle()
    agree()
    h.wait()
    agree()
    h.finish("A")
    agree()
    h.finish("B")
    agree()
    assert h.finish("C") == 0
    agree()


# ---------------------------------------------------------------- an orchestrator killed and restarted


def test_a_restart_after_a_kill_continues_the_run_s_journal_with_nothing_lost_or_doubled(tmp_path):
    h = Harness(tmp_path, {"A": [], "B": [], "C": ["A"]}, agent_events=True)
    h.settle()
    run_id = h.run.run_id
    # The orchestrator is killed after saving a turn's table and before writing its journal lines:
    # A's worker ended and A completed, B's worker still runs.
    h.supervisor.store.after_save = lambda: None
    h.executor.say("A", result(0.4))
    h.tracker.complete("A")
    h.executor.exit("A", 0)
    h.turn()
    assert h.saved().rows["A"].state is S.COMPLETE and journaled_states(journal(h))["A"] == "running"

    h.restart()
    assert h.run.run_id == run_id and h.lines("adopted running worker of B")
    h.settle()
    h.tracker.complete("B")
    h.executor.exit("B", 0)
    h.settle()
    assert h.finish("C") == 0
    events = journal(h)
    assert [e["resumed"] for e in events if e["kind"] == "run_started"] == [False, True]
    assert moves(events, "A").count(("running", "complete")) == 1  # recorded by the restart, once
    assert [e["reason"] for e in events if e["kind"] == "transition" and e["stream"] == "A"][-1] == \
        "as its saved state says (recorded when the run continued after its orchestrator stopped)"
    ends = [(e["stream"], e["attempt"]) for e in events if e["kind"] == "attempt_ended"]
    starts = [(e["stream"], e["attempt"]) for e in events if e["kind"] == "attempt_started"]
    assert sorted(ends) == sorted(starts) == [("A", 1), ("B", 1), ("C", 1)]  # B's start is not doubled
    assert kinds(events).count("run_finished") == 1


# ---------------------------------------------------------------- the spend cap across runs


def test_the_spend_cap_across_two_runs_holds_new_workers_until_the_first_run_s_spending_rolls_out(tmp_path):
    h = Harness(tmp_path, {"A": [], "B": ["A"], "C": ["B"]}, agent_events=True, spend_cap_usd=1.0)
    h.settle()
    h.executor.say("A", result(0.6))
    h.finish("A")
    assert h.state("B") is S.RUNNING
    h.executor.say("B", result(0.3))
    h.tracker.complete("B")
    h.executor.exit("B", 0)
    first_run = h.run.run_id
    h.settle()
    assert h.state("C") is S.RUNNING  # 0.90 of 1.00 spent: 0.10 left, enough for one more worker
    h.signal()  # the first run stops; C is ready again for the next one

    h.clock.now += 3600.0
    h.executor.endings.clear()
    h.restart()
    assert h.run.run_id != first_run
    h.settle()
    assert h.executor.spawns()[-1] == ("C", 1)  # a new run: a fresh restart budget
    h.executor.say("C", result(0.15, ok=False))
    h.executor.exit("C", 1)
    h.settle()
    assert h.state("C") is S.BACKOFF
    h.wait_until(lambda: h.state("C") is not S.BACKOFF or h.clock.now > START + 3700)
    # 1.05 of 1.00 spent in the last day: no worker starts, the run waits in its capped state.
    assert h.run.state is R.CAPPED and h.executor.spawns()[-1] == ("C", 1)
    a_ended = [e["t"] for e in journal(h, first_run) if e["kind"] == "attempt_ended" and e["stream"] == "A"]
    lifts = a_ended[0] + DAY  # A's 0.60 leaves the window: 0.45 spent, room again
    assert h.run.capped_until == lifts
    assert h.saved().run_life.state is R.CAPPED
    assert len(h.lines("spend cap reached (1.05 of 1.00 USD in the last day)")) == 1
    assert lc.describe_run(h.run).startswith("capped: the spend cap is reached; no new worker starts")
    assert h.supervisor.sleep_time() > 0 and h.turn() is None  # waiting is not the end of the run
    events = journal(h)
    cap = [e for e in events if e["kind"] == "spend_cap_reached"]
    assert len(cap) == 1 and (cap[0]["spent_usd"], cap[0]["cap_usd"], cap[0]["period"]) == (1.05, 1.0, "day")

    h.clock.now = lifts - 1.0
    h.settle()
    assert h.run.state is R.CAPPED and h.executor.spawns()[-1] == ("C", 1)
    h.clock.now = lifts
    h.settle()
    assert h.run.state is R.RUNNING and h.executor.spawns()[-1] == ("C", 2)
    assert h.lines("the spend cap has room again")
    h.executor.say("C", result(0.1))
    assert h.finish("C") == 0



def test_a_run_stopped_at_the_spend_cap_says_so_and_exits_1(tmp_path):
    h = Harness(tmp_path, {"A": [], "B": ["A"]}, agent_events=True, spend_cap_usd=0.5)
    h.settle()
    h.executor.say("A", result(0.5))
    h.finish("A")
    assert h.run.state is R.CAPPED and h.state("B") is S.READY and h.executor.spawns() == [("A", 1)]
    assert h.signal() == 1
    assert h.lines("the spend cap is reached (0.50 of 0.50 USD in the last day): the next run starts workers "
                   "once old spending leaves the window (~")
    assert journal(h)[-1]["exit_code"] == 1
