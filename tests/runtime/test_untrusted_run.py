"""Hostile worker output end to end: the real orchestrator, the fake `claude` printing what a broken or
hostile worker prints (issue 18). Supervision never dies, every JSON we write stays strict JSON, the
CLI's failure texts quoted by an agent change nothing, and what is printed last is read at exit."""

from __future__ import annotations

import json

import pytest

from tests.support import taskdb


def strict_json(text: str, what: str):
    """JSON as the standard says: NaN and Infinity are not JSON."""
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"{what} carries {name}"))


def assert_written_json_is_strict(project):
    status = project.orchestrate("status", "--json")
    assert status.returncode == 0, status.stderr
    strict_json(status.stdout, "status --json")
    state = project.home / "state"
    for name in ("run.json", "activity.json"):
        if (state / name).exists():
            strict_json((state / name).read_text(encoding="utf-8"), name)
    return json.loads(status.stdout)


def two_streams(project):
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 1)
    taskdb.add_stream(project.db, "B", [], 1)


def test_a_session_id_that_is_not_a_uuid_then_a_usage_limit_never_ends_supervision(project):
    """Before: the resume argv raised ValueError, the orchestrator died with exit 70 and B ran unsupervised."""
    two_streams(project)
    project.env.update(FAKE_CLAUDE_SESSION="not-a-uuid; rm -rf ~", FAKE_CLAUDE_LIMIT_RESET="1")
    project.plan({"A": ["limit-unix", "ok"], "B": ["ok"]})
    result = project.orchestrate("start", "--max-restarts", "0", timeout=120)
    said = result.stdout + result.stderr
    assert result.returncode == 0, said
    assert "internal error" not in said
    assert "warning: A's worker: ignored a session id that is not a UUID" in result.stdout
    assert sorted(e["stream"] for e in project.events("end") if e["code"] == 0) == ["A", "B"]
    # A continued the session the orchestrator had named for it (--session-id), never the bogus one
    resumed = project.events("resume")
    assert [e["stream"] for e in resumed] == ["A"] and resumed[0]["session_id"] != "not-a-uuid; rm -rf ~"
    assert_written_json_is_strict(project)


@pytest.mark.parametrize("cost", ["nan", "1e308", "-5"])
def test_a_cost_that_is_not_an_amount_never_reaches_the_budget_or_the_json(project, cost):
    """Before: NaN with max_cost_usd crashed the orchestrator; 1e308 twice made the budget inf and
    `status --json` printed Infinity."""
    two_streams(project)
    project.env["FAKE_CLAUDE_COST"] = cost
    result = project.orchestrate("start", "--max-cost-usd", "5", timeout=120)
    said = result.stdout + result.stderr
    assert result.returncode == 0, said
    assert "internal error" not in said
    status = assert_written_json_is_strict(project)
    assert "ignored total_cost_usd" in result.stdout
    assert {s["stream_id"]: s["state"] for s in status["streams"]} == {"A": "complete", "B": "complete"}
    assert not status["run"]["cost_usd"]


@pytest.mark.parametrize("text_mode", [False, True])
def test_an_agent_quoting_the_clis_failure_texts_changes_nothing(project, text_mode):
    """Before: the root refusal grepped from the docs stopped the run with exit 2; a quoted usage limit
    paused it for two hours (or until 2286)."""
    if text_mode:
        project.configure(agent_events="false")
    two_streams(project)
    project.plan({"A": ["quote-cli-texts"], "B": ["quote-cli-texts"]})
    result = project.orchestrate("start", "--max-restarts", "0", timeout=120)
    said = result.stdout + result.stderr
    assert result.returncode == 0, said
    assert "usage limit" not in result.stdout and "configuration error" not in result.stdout, said
    assert len(project.events("start")) == 2


def test_the_result_after_a_huge_line_is_read_at_exit(project):
    """Before: only 1 MiB was read at exit, so after a long tool output the cost was never seen."""
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 1)
    project.env.update(FAKE_CLAUDE_BIG_LINE=str(20 << 20), FAKE_CLAUDE_COST="0.75")
    result = project.orchestrate("start", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "skipped an output line longer than 8 MiB" in result.stdout
    status = assert_written_json_is_strict(project)
    assert status["streams"][0]["cost_usd"] == 0.75


def test_a_usage_limit_after_a_flood_is_seen_and_spends_no_attempt(project):
    """Before: the limit at the end of a flood was not read, so the stream was restarted as a failure."""
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 1)
    project.env.update(FAKE_CLAUDE_FLOOD=str(12 << 20), FAKE_CLAUDE_LIMIT_RESET="1")
    project.plan({"A": ["limit-unix", "ok"]})
    result = project.orchestrate("start", "--max-restarts", "0", timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "usage limit hit by A's worker" in result.stdout
    assert [e["stream"] for e in project.events("resume")] == ["A"]
    assert project.status()["streams"][0]["attempts"] == 1
