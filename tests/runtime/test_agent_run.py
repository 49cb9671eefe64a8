"""Agent-aware supervision end to end: the real orchestrator, the fake `claude` printing stream-json.

Costs and sessions read from the workers' output, usage limits that pause every spawn and resume
the sessions, configuration failures that stop the run at once, stalls, per-stream limits from task
metadata as flags, the run budget, and the on_event hook.
"""

from __future__ import annotations

import json
import os
import stat
import sys

from tests.support import taskdb
from tests.support.project import pid_alive


def stream_with_options(project, stream_id, options, deps=(), tasks=1):
    for i in range(tasks):
        taskdb.add_task(project.db, {"streamId": stream_id, "dependencies": list(deps), **options}, "pending",
                        f"{stream_id} task {i + 1}")


def test_costs_turns_and_sessions_are_read_from_the_workers_output(project):
    taskdb.diamond(project.db)
    project.env["FAKE_CLAUDE_COST"] = "0.25"
    result = project.orchestrate("start")
    assert result.returncode == 0, result.stdout + result.stderr
    status = project.status()
    streams = {s["stream_id"]: s for s in status["streams"]}
    sessions = {e["stream"]: e for e in project.events("start")}
    for sid, view in streams.items():
        assert view["cost_usd"] == 0.25, view
        assert view["session_id"]  # the init event's session id, kept after the run
        assert sid in sessions
    assert status["run"]["cost_usd"] == 1.0


def test_a_usage_limit_pauses_every_spawn_spends_no_budget_and_resumes_the_sessions(project):
    """Two workers hit the account's limit together; nothing starts until the reset, no attempt is
    spent (--max-restarts 0 would fail any real failure), and both continue their own sessions."""
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 1)
    taskdb.add_stream(project.db, "B", [], 1)
    taskdb.add_stream(project.db, "Later", ["A"], 1)
    project.env["FAKE_CLAUDE_LIMIT_RESET"] = "2"
    project.plan({"A": ["limit-unix", "ok"], "B": ["limit-unix", "ok"]})
    result = project.orchestrate("start", "--max-restarts", "0", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "usage limit hit by" in result.stdout and "no worker starts until" in result.stdout
    starts = project.events("start")
    resumes = project.events("resume")
    assert sorted(e["stream"] for e in resumes) == ["A", "B"]
    logs = {sid: (project.home / "logs" / f"{sid}.log").read_text() for sid in ("A", "B")}
    for resume in resumes:
        # the session it continues is the one its first worker announced in its init event
        assert f'"session_id":"{resume["session_id"]}"' in logs[resume["stream"]]
    # Nothing started during the pause: the resumed workers and Later came after the reset.
    limit_end = max(e["time"] for e in project.events("end") if e["stream"] in ("A", "B") and e["code"] == 1)
    later = [e for e in starts if e["stream"] == "Later"]
    assert later and later[0]["time"] > limit_end
    states = {s["stream_id"]: s for s in project.status()["streams"]}
    assert states["A"]["attempts"] == 1 and states["B"]["attempts"] == 1  # the budget was not spent


def test_a_worker_that_is_not_logged_in_stops_the_run_at_once_with_the_fix(project):
    taskdb.diamond(project.db)
    project.plan({"Stream-A": ["not-logged-in"]})
    result = project.orchestrate("start", "--max-restarts", "5")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Not logged in" in result.stdout and "claude /login" in result.stdout
    assert [e["stream"] for e in project.events("start")] == ["Stream-A"]  # no second attempt
    status = {s["stream_id"]: s for s in project.status()["streams"]}
    assert status["Stream-A"]["state"] == "ready" and status["Stream-A"]["attempts"] == 0
    assert "configuration error" in project.status()["run"]["outcome"]


def test_preflight_refuses_a_logged_out_worker_command_before_anything_starts(project):
    taskdb.diamond(project.db)
    project.env["FAKE_CLAUDE_LOGGED_OUT"] = "1"
    result = project.orchestrate("start")
    assert result.returncode == 2
    assert "not ready" in result.stderr and "claude /login" in result.stderr
    assert project.events("start") == []
    skipped = project.orchestrate("start", "--no-preflight", "--max-restarts", "0")
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr


def test_preflight_refuses_skipping_permissions_as_root_outside_a_sandbox(project):
    if os.geteuid() != 0:
        return  # the check is about root; as a normal user there is nothing to refuse
    taskdb.diamond(project.db)
    del project.env["IS_SANDBOX"]
    result = project.orchestrate("start")
    assert result.returncode == 2
    assert "root" in result.stderr and "--dangerously-skip-permissions" in result.stderr
    assert project.events("start") == []


def test_a_stalled_worker_is_stopped_as_a_failed_attempt(project):
    """One attempt, and no restart: only the stalled worker meets the 1.2 s watchdog. (A retry here
    would race its own start-up, which takes longer than that on a loaded machine, against it.)"""
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 1)
    project.configure(stall_timeout=0.02)  # minutes: 1.2 s of silence
    project.plan({"A": ["stall"]})
    result = project.orchestrate("start", "--max-restarts", "0")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "A stalled: no output for 0.02 min; stopping it" in result.stdout
    view = project.status()["streams"][0]
    assert (view["state"], view["attempts"]) == ("failed", 1)  # the stall spent the one attempt
    assert view["reason"].startswith("stalled: no output for 0.02 min")
    assert all(not pid_alive(e["pid"]) for e in project.events("start"))  # the stalled worker was ended


def test_metadata_limits_become_separate_flags_and_a_bad_value_makes_the_stream_invalid(project):
    taskdb.make_db(project.db)
    stream_with_options(project, "A", {"maxBudgetUsd": 2.5, "maxTurns": 30, "model": "opus",
                                       "allowedTools": ["Edit", "Bash(git *)"]})
    result = project.orchestrate("start")
    assert result.returncode == 0, result.stdout + result.stderr
    argv = project.events("start")[0]["argv"]
    assert argv[-1] == "--" and "--max-budget-usd=2.5" in argv and "--max-turns=30" in argv
    assert "--model=opus" in argv and "--allowedTools=Edit,Bash(git *)" in argv

    stream_with_options(project, "B", {"maxTurns": "--dangerously-skip-permissions"})
    plan = project.orchestrate("plan")
    assert plan.returncode == 2 and "maxTurns" in plan.stderr


def test_a_retry_gets_the_budget_that_is_left(project):
    taskdb.make_db(project.db)
    stream_with_options(project, "A", {"maxBudgetUsd": 1.0})
    project.env["FAKE_CLAUDE_COST"] = "0.4"
    project.plan({"A": ["fail", "ok"]})
    assert project.orchestrate("start").returncode == 0
    budgets = [next(a for a in e["argv"] if a.startswith("--max-budget-usd=")) for e in project.events("start")]
    assert budgets == ["--max-budget-usd=1", "--max-budget-usd=0.6"]


def test_a_worker_stopped_by_its_budget_is_failed_not_restarted(project):
    taskdb.make_db(project.db)
    stream_with_options(project, "A", {"maxBudgetUsd": 0.5})
    project.plan({"A": ["budget"]})
    result = project.orchestrate("start")
    assert result.returncode == 1
    assert len(project.events("start")) == 1
    view = project.status()["streams"][0]
    assert view["state"] == "failed" and view["reason"].startswith("budget")


def test_the_run_budget_stops_new_spawns(project):
    taskdb.make_db(project.db)
    for sid, deps in (("A", []), ("B", ["A"]), ("C", ["B"])):
        taskdb.add_stream(project.db, sid, deps, 1)
    project.env["FAKE_CLAUDE_COST"] = "0.6"
    result = project.orchestrate("start", "--max-cost-usd", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "run budget reached" in result.stdout
    assert [e["stream"] for e in project.events("start")] == ["A", "B"]  # B got the 0.4 left; C none
    b_budget = next(a for a in project.events("start")[1]["argv"] if a.startswith("--max-budget-usd="))
    assert b_budget == "--max-budget-usd=0.4"
    assert project.status()["run"]["outcome"].startswith("failed: run budget reached")


def write_hook(project, body: str):
    hook = project.root.parent / "hook.py"
    hook.write_text(f"#!{sys.executable}\nimport json, os, sys, time\n{body}\n")
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    return hook


def test_on_event_gets_the_event_in_its_environment(project):
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 1)
    out = project.root.parent / "hook-events.jsonl"
    hook = write_hook(project, f"open({str(out)!r}, 'a').write(json.dumps({{k: v for k, v in os.environ.items() "
                               "if k in ('ORCHESTRATE_EVENT', 'STREAM_ID', 'REASON', 'COST_USD', 'EXIT_CODE')}) + '\\n')")
    project.configure(on_event=str(hook))
    project.plan({"A": ["fail"]})
    assert project.orchestrate("start", "--max-restarts", "0").returncode == 1
    project.wait_for(lambda: out.exists() and len(out.read_text().splitlines()) >= 2, what="both hook calls")
    events = [json.loads(line) for line in out.read_text().splitlines()]
    failed = next(e for e in events if e["ORCHESTRATE_EVENT"] == "stream_failed")
    assert failed["STREAM_ID"] == "A" and "failing on purpose" in failed["REASON"]
    finished = next(e for e in events if e["ORCHESTRATE_EVENT"] == "run_finished")
    assert finished["EXIT_CODE"] == "1"


def test_a_hanging_hook_never_stalls_the_run(project, monkeypatch):
    taskdb.diamond(project.db)
    hook = write_hook(project, "time.sleep(600)")  # its watchdog kills it after HOOK_TIMEOUT
    project.configure(on_event=str(hook))
    project.plan({"Stream-B": ["fail", "ok"]})
    result = project.orchestrate("start", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(project.events("start")) == 5
