"""Notifications for people, through scripted histories and a real hook script: each `on_event` call
says whether a person must act (`ORCHESTRATE_NEEDS_YOU`: 1 for a stream failed for good, a failed
check, the spend cap, a run that ends stuck; 0 for a usage limit that waits for its reset and for a
clean finish), runs in the project's folder, and `run_finished` carries the summary and the report."""

import json
import os
import stat
import sys
import time

import pytest

from tests.support.loop_harness import START, FakeMerger, Harness
from tests.runtime.test_loop_journal import result

FIELDS = ("ORCHESTRATE_EVENT", "ORCHESTRATE_NEEDS_YOU", "STREAM_ID", "REASON", "EXIT_CODE", "REPORT", "SUMMARY")


@pytest.fixture
def hook(tmp_path):
    """A real hook (a shell script) that appends what it was told, and where it ran, as one JSON line."""
    out = tmp_path / "hook-calls.jsonl"
    script = tmp_path / "hook.sh"
    fields = " ".join(FIELDS)
    script.write_text("#!/bin/sh\n"
                      f"exec {json.dumps(sys.executable)} -c 'import json, os, sys; "
                      f"sys.stdout.write(json.dumps(dict({{k: os.environ.get(k, \"\") for k in \"{fields}\".split()}}, "
                      f"cwd=os.getcwd())) + \"\\n\")' >> {json.dumps(str(out))}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, out


def calls(out, count, limit=60.0):
    """The hook's calls once `count` of them have arrived (each is its own process: wait for the lines)."""
    deadline = time.monotonic() + limit  # a guard against a hook that never ran, not a measure of speed
    while True:
        lines = out.read_text().splitlines() if out.exists() else []
        if len(lines) >= count:
            return sorted((json.loads(line) for line in lines), key=lambda c: c["ORCHESTRATE_EVENT"])
        assert time.monotonic() < deadline, f"only {len(lines)} of {count} hook calls arrived"
        time.sleep(0.05)


def spied(h):
    """Every event the loop fires, in order (the hook's lines arrive in any order, one process each)."""
    fired = []
    notifier = h.supervisor.announce.notifier
    real = notifier.fire

    def fire(event, needs_you=False, **details):
        fired.append((event, "1" if needs_you else "0"))
        real(event, needs_you, **details)

    notifier.fire = fire
    return fired


def by_event(found):
    return {c["ORCHESTRATE_EVENT"]: c for c in found}


def test_a_clean_finish_needs_nobody_and_carries_the_summary_and_the_report(tmp_path, hook):
    script, out = hook
    h = Harness(tmp_path, {"A": []}, on_event=str(script))
    fired = spied(h)
    h.settle()
    assert h.finish("A") == 0
    assert fired == [("run_finished", "0")]
    (done,) = calls(out, 1)
    assert done["ORCHESTRATE_EVENT"] == "run_finished" and done["ORCHESTRATE_NEEDS_YOU"] == "0"
    assert done["EXIT_CODE"] == "0" and "all 1 stream(s) complete" in done["SUMMARY"]
    assert done["REPORT"] == str(h.layout.reports / f"{h.run.run_id}.html")
    assert done["cwd"] == str(h.layout.root)  # the project's folder, wherever `start` was run from


def test_a_stream_failed_for_good_and_the_stuck_run_need_you(tmp_path, hook):
    script, out = hook
    h = Harness(tmp_path, {"A": [], "B": ["A"]}, on_event=str(script), max_restarts=0)
    fired = spied(h)
    h.settle()
    h.executor.exit("A", 1)
    assert h.settle() == 1
    assert fired == [("stream_failed", "1"), ("run_finished", "1")]
    found = by_event(calls(out, 2))
    assert found["stream_failed"]["ORCHESTRATE_NEEDS_YOU"] == "1" and found["stream_failed"]["STREAM_ID"] == "A"
    assert found["run_finished"]["ORCHESTRATE_NEEDS_YOU"] == "1" and found["run_finished"]["EXIT_CODE"] == "1"
    assert "nothing more can progress" in found["run_finished"]["SUMMARY"]


def test_a_failed_check_needs_you(tmp_path, hook):
    script, out = hook
    merger = FakeMerger(checks=True)
    h = Harness(tmp_path, {"A": []}, merger=merger, merge_check="make test", on_event=str(script))
    fired = spied(h)
    h.settle()
    h.finish("A")
    merger.check_done(passed=False)
    assert h.settle() == 1
    assert fired == [("check_failed", "1"), ("run_finished", "1")]
    found = by_event(calls(out, 2))
    assert found["check_failed"]["ORCHESTRATE_NEEDS_YOU"] == "1" and found["check_failed"]["STREAM_ID"] == "A"
    assert found["run_finished"]["ORCHESTRATE_NEEDS_YOU"] == "1"


def test_a_usage_limit_waits_for_its_reset_without_you(tmp_path, hook):
    script, out = hook
    reset = int(START) + 400
    h = Harness(tmp_path, {"A": []}, on_event=str(script))
    fired = spied(h)
    h.settle()
    h.executor.say("A", f"Claude AI usage limit reached|{reset}")
    h.executor.exit("A", 1)
    h.settle()
    h.wait(400.0)
    assert h.finish("A") == 0
    assert fired == [("usage_limit", "0"), ("usage_limit_resumed", "0"), ("run_finished", "0")]
    found = by_event(calls(out, 3))
    assert {c["ORCHESTRATE_NEEDS_YOU"] for c in found.values()} == {"0"}  # what the hook was told


def test_the_spend_cap_needs_you_once_and_a_stop_at_it_is_your_own(tmp_path, hook):
    script, out = hook
    h = Harness(tmp_path, {"A": [], "B": ["A"]}, agent_events=True, spend_cap_usd=0.5, on_event=str(script))
    fired = spied(h)
    h.settle()
    h.executor.say("A", result(0.5))
    h.finish("A")
    h.wait(60.0)
    h.wait(60.0)
    assert h.signal() == 1
    assert fired == [("spend_cap_reached", "1"), ("run_finished", "0")]  # the cap told once; the stop was yours
    found = calls(out, 2)
    cap, end = by_event(found)["spend_cap_reached"], by_event(found)["run_finished"]
    assert cap["ORCHESTRATE_NEEDS_YOU"] == "1" and "spend cap reached: 0.50 of 0.50 USD in the last day" in cap["REASON"]
    assert end["ORCHESTRATE_NEEDS_YOU"] == "0" and "the spend cap is reached" in end["SUMMARY"]


def test_a_real_run_s_merge_conflict_needs_you_and_the_hook_runs_in_the_project_folder(tmp_path):
    """The real orchestrator, started from a subfolder, with the hook named relative to the project."""
    from tests.support.project import Project
    from tests.support.taskdb import diamond

    repo = Project.create_git(tmp_path, {"conflicts": "manual", "on_event": "hooks/tell.sh"})
    try:
        diamond(repo.db)
        repo.plan({"Stream-A": ["ok"], "Stream-B": ["edit-shared"], "Stream-C": ["edit-shared"], "Stream-Z": ["write"]})
        out = tmp_path / "hook-calls.jsonl"
        (repo.root / "hooks").mkdir()
        script = repo.root / "hooks" / "tell.sh"
        script.write_text("#!/bin/sh\n"
                          f'printf \'{{"event": "%s", "needs_you": "%s", "stream": "%s", "cwd": "%s"}}\\n\' '
                          f'"$ORCHESTRATE_EVENT" "$ORCHESTRATE_NEEDS_YOU" "$STREAM_ID" "$PWD" >> {json.dumps(str(out))}\n')
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        elsewhere = repo.root / "src" / "deep"
        elsewhere.mkdir(parents=True)

        result = repo.orchestrate("start", cwd=elsewhere, timeout=180)

        assert result.returncode == 1, result.stdout + result.stderr
        parked = [sid for sid, state in repo.states().items() if state == "merge_conflict"]
        assert len(parked) == 1
        found = []
        deadline = time.monotonic() + 60  # a guard against a hook that never ran
        while len(found) < 2 or not any(c["event"] == "run_finished" for c in found):
            assert time.monotonic() < deadline, found
            found = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
            time.sleep(0.05)
        events = {c["event"]: c for c in found}
        assert events["merge_conflict"]["needs_you"] == "1" and events["merge_conflict"]["stream"] == parked[0]
        assert events["run_finished"]["needs_you"] == "1"
        assert {c["cwd"] for c in found} == {str(repo.root)}
    finally:
        repo.stop_leftovers()
