"""The run's journal across a SIGKILL of the orchestrator: every line it holds is whole, `report`
builds the cut-short run's page, and the next `start` continues the same run's journal with no
attempt lost or doubled and writes the report at its end.

The real orchestrator runs as a process over a real database with the fake claude; Stream-B's
worker waits on a gate file, so the kill lands while B runs (the journal already holds its start)
and B ends while no orchestrator watches it.
"""

import json
import re

import tests.runtime.runtime_import  # noqa: F401  (puts the runtime on sys.path)
from _orchestrate_kit.journal import journal_path, read_journal, run_ids  # noqa: E402
from _orchestrate_kit.settings import layout_for  # noqa: E402
from tests.support import taskdb
from tests.support.project import Project


def events_of(path):
    warnings = []
    events = list(read_journal(path, warnings.append))
    assert warnings == [], warnings
    return events


def attempts(events, kind):
    return sorted((e["stream"], e["attempt"]) for e in events if e["kind"] == kind)


def test_a_journal_survives_a_sigkill_and_the_next_start_continues_it(tmp_path):
    project = Project.create(tmp_path)
    try:
        taskdb.diamond(project.db)
        gate = tmp_path / "gate"
        project.env["FAKE_CLAUDE_GATE"] = str(gate)
        project.plan({"Stream-A": ["ok"], "Stream-B": ["gated"], "Stream-C": ["ok"], "Stream-Z": ["ok"]})
        journals = layout_for(project.home).journals

        def b_running_and_c_done():
            ids = run_ids(journals) if journals.is_dir() else []
            if not ids:
                return None
            events = list(read_journal(journal_path(journals, ids[0])))
            started = ("Stream-B", 1) in attempts(events, "attempt_started")
            return ids[0] if started and ("Stream-C", 1) in attempts(events, "attempt_ended") else None

        run_id = project.start_and_kill_when(b_running_and_c_done, "B running and C's attempt journaled", timeout=120)

        path = journal_path(journals, run_id)
        raw = path.read_bytes()
        assert raw.endswith(b"\n") and all(json.loads(line)["run"] == run_id for line in raw.splitlines())
        cut = events_of(path)
        assert "run_finished" not in [e["kind"] for e in cut]

        report = project.orchestrate("report")  # the cut-short run's page builds from what is there
        assert report.returncode == 0, report.stdout + report.stderr
        page = project.root / ".claude" / "orchestrator" / "reports" / f"{run_id}.html"
        assert page.is_file() and "Stream-B" in page.read_text(encoding="utf-8")

        gate.touch()  # B completes its tasks and exits while no orchestrator runs
        project.wait_for(lambda: any(e["stream"] == "Stream-B" for e in project.events("end")), timeout=60,
                         what="B's worker to end")
        final = project.orchestrate("start", timeout=120)
        assert final.returncode == 0, final.stdout + final.stderr
        assert run_ids(journals) == [run_id]  # the same run, continued

        events = events_of(path)
        assert events[:len(cut)] == cut  # nothing written before the kill was changed
        assert [e["resumed"] for e in events if e["kind"] == "run_started"] == [False, True]
        started = attempts(events, "attempt_started")
        assert started == attempts(events, "attempt_ended")  # each attempt once, started and ended
        assert started == [("Stream-A", 1), ("Stream-B", 1), ("Stream-C", 1), ("Stream-Z", 1)]
        assert [e["kind"] for e in events].count("run_finished") == 1 and events[-1]["kind"] == "run_finished"
        assert events[-1]["exit_code"] == 0
        assert re.search(rf"report: \.claude/orchestrator/reports/{run_id}\.html", final.stdout)
        assert "Stream-Z" in page.read_text(encoding="utf-8")
    finally:
        project.orchestrate("stop", "--grace", "1", timeout=30)
