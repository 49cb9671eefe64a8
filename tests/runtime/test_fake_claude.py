"""The fake `claude` speaks like the real one: its events carry the real samples' fields, and each agent
behaviour classifies as the real situation would (through agent_events, as the supervisor reads it)."""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import taskdb
from tests.support.project import FAKE_BIN, WORKSPACE

import tests.runtime.runtime_import  # noqa: F401  (puts the runtime on sys.path)
from _orchestrate_kit.agent import events as ev  # noqa: E402
from _orchestrate_kit.agent import claude as cc  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "support" / "claude-samples"
SESSION = "5b0d3c5e-8a4f-4a7e-9d61-0c2f3b7e1a90"
BASE = ["claude", "--print", "--dangerously-skip-permissions", "-p"]


@pytest.fixture
def world(tmp_path):
    taskdb.make_db(tmp_path / "tasks" / WORKSPACE / "tasks.db")
    taskdb.add_stream(tmp_path / "tasks" / WORKSPACE / "tasks.db", "S", [], 2)
    return tmp_path


def fake(world, argv, mode="ok", timeout=30, **env):
    (world / "plan.json").write_text(json.dumps({"S": [mode]}), encoding="utf-8")
    environ = {**os.environ, "STREAM_ID": "S", "ORCHESTRATOR_ATTEMPT": "1", "TASK_DB_PATH": str(world / "tasks"),
               "WORKSPACE_ID": WORKSPACE, "FAKE_CLAUDE_PLAN": str(world / "plan.json"), "FAKE_CLAUDE_DELAY": "0",
               "FAKE_CLAUDE_EVENTS": str(world / "events.jsonl"), **env}
    return subprocess.run([str(FAKE_BIN / "claude"), *argv[1:]], env=environ, cwd=world, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def events_of(done):
    return [json.loads(line) for line in done.stdout.splitlines()]


def sample(name):
    return [json.loads(line) for line in (SAMPLES / name).read_text(encoding="utf-8").splitlines()]


def classify(done, now=None):
    stream = ev.AgentStream()
    for line in (done.stdout + done.stderr).splitlines():
        stream.feed(line, time.time() if now is None else now)
    return stream, stream.outcome(done.returncode)


def stream_json(prompt="Work on S.", **launch):
    return cc.build_argv(BASE, cc.StreamLimits(), cc.Launch(prompt, **launch))


def test_its_events_carry_every_field_the_real_clis_do(world):
    real_init, real_assistant, real_result = sample("not-logged-in.stream-json")
    done = fake(world, stream_json())
    assert done.returncode == 0, done.stderr
    events = events_of(done)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "system" and kinds[-1] == "result" and {"assistant", "user"} <= set(kinds)
    init, result = events[0], events[-1]
    assert set(real_init) <= set(init) and set(real_result) <= set(result)
    for message in (e for e in events if e["type"] == "assistant"):
        assert set(real_assistant) - {"error"} <= set(message)
        assert set(real_assistant["message"]) <= set(message["message"])
    assert result["num_turns"] >= 2 and result["total_cost_usd"] == 0.05 and result["usage"]["output_tokens"] > 0


def test_a_normal_run_in_events_completes_its_tasks_and_reports_progress(world):
    done = fake(world, stream_json(), FAKE_CLAUDE_COST="0.125")
    stream, outcome = classify(done)
    assert outcome.kind is ev.EndKind.OK
    assert stream.cost_usd == 0.125 and stream.turns >= 2 and stream.session_id and stream.last_message == "Done."
    assert stream.output_tokens > 0


def test_without_stream_json_the_plain_text_is_unchanged(world):
    done = fake(world, [*BASE, "go"])
    assert done.stdout == "fake claude: stream 'S' attempt 1 mode ok\n"


def test_the_session_id_is_the_one_asked_for_and_a_resume_is_recorded(world):
    assert events_of(fake(world, stream_json(session_id=SESSION)))[0]["session_id"] == SESSION
    done = fake(world, stream_json(resume_session=SESSION))
    assert events_of(done)[0]["session_id"] == events_of(done)[-1]["session_id"] == SESSION
    records = [json.loads(line) for line in (world / "events.jsonl").read_text().splitlines()]
    assert [r["session_id"] for r in records if r["event"] == "resume"] == [SESSION]
    assert fake(world, [*BASE, "--resume", SESSION, "go"]).stdout.startswith("fake claude:")


@pytest.mark.parametrize("mode", ["limit-unix", "limit-hit", "limit-session", "limit-date"])
@pytest.mark.parametrize("events", [True, False], ids=["stream-json", "text"])
def test_usage_limits_in_each_form_reset_a_few_seconds_ahead(world, mode, events):
    argv = stream_json() if events else [*BASE, "go"]
    before = time.time()
    done = fake(world, argv, mode, FAKE_CLAUDE_LIMIT_RESET="3", FAKE_CLAUDE_LIMIT_ZONE="Europe/Lisbon")
    _stream, outcome = classify(done, now=before)
    assert done.returncode == 1 and outcome.kind is ev.EndKind.USAGE_LIMIT, done.stdout
    if mode == "limit-unix":
        assert before + 3 <= outcome.resume_at <= time.time() + 4
    else:  # a wall time shows minutes: the next whole minute after the reset
        assert before + 3 <= outcome.resume_at <= time.time() + 3 + 60
        assert "(Europe/Lisbon)" in outcome.reason


def test_a_429_limit_has_no_reset_time(world):
    _stream, outcome = classify(fake(world, stream_json(), "limit-429"))
    assert outcome.kind is ev.EndKind.USAGE_LIMIT and outcome.resume_at is None


def test_a_usage_limit_in_events_looks_like_the_real_one(world):
    events = events_of(fake(world, stream_json(), "limit-hit"))
    assert events[-2]["error"] == "rate_limit" and events[-2]["message"]["model"] == "<synthetic>"
    assert events[-1]["is_error"] is True and events[-1]["api_error_status"] == 429


@pytest.mark.parametrize("events", [True, False], ids=["stream-json", "text"])
def test_not_logged_in_is_exactly_the_real_output(world, events):
    done = fake(world, stream_json(session_id=SESSION) if events else [*BASE, "go"], "not-logged-in")
    _stream, outcome = classify(done)
    assert done.returncode == 1 and outcome.fatal.kind is ev.FatalKind.NOT_LOGGED_IN
    if events:
        real = sample("not-logged-in.stream-json")
        mine = events_of(done)
        assert [sorted(e) for e in mine] == [sorted(e) for e in real] and mine[0]["session_id"] == SESSION
    else:
        assert done.stdout == (SAMPLES / "not-logged-in.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize("events", [True, False], ids=["stream-json", "text"])
def test_budget_is_budget_exhausted(world, events):
    limits = cc.parse_worker_options({"maxBudgetUsd": 0.5})
    argv = cc.build_argv(BASE, limits, cc.Launch("go", stream_json=events))
    stream, outcome = classify(fake(world, argv, "budget"))
    assert outcome.kind is ev.EndKind.BUDGET_EXHAUSTED
    if events:
        assert stream.cost_usd == pytest.approx(0.51)


def test_stall_prints_nothing_and_hangs(world):
    with pytest.raises(subprocess.TimeoutExpired) as caught:
        fake(world, stream_json(), "stall", timeout=1.5)
    assert not caught.value.stdout
