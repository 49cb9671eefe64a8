"""The spend cap across runs with the real orchestrator as a process, the fake claude (each attempt
costs FAKE_CLAUDE_COST) and a real database: at the cap no new worker starts, the run's row says
`capped`, `status` (text and --json) and the dashboard show the gauge and why the ready stream waits,
and a stop at the cap exits 1 saying so. A second run reads the first run's spending from its journal."""

import subprocess
import sys

from tests.support import taskdb


def chain(project, *streams):
    taskdb.make_db(project.db)
    previous = []
    for sid in streams:
        taskdb.add_stream(project.db, sid, previous, 1)
        previous = [sid]


def test_at_the_spend_cap_nothing_starts_and_status_the_dashboard_and_the_exit_say_so(project):
    chain(project, "A", "B", "C")
    project.configure(spend_cap_usd="0.08")
    project.env["FAKE_CLAUDE_COST"] = "0.05"

    orchestrator = project.start_background()
    try:
        status = project.wait_for(lambda: (lambda s: s if s["run"]["state"] == "capped" and s["run"]["spend"]["reached"] else None)(
            project.status()),
                                  timeout=120, what="the run to reach the spend cap")
        spend = status["run"]["spend"]
        assert (spend["spent_usd"], spend["cap_usd"], spend["period"], spend["reached"]) == (0.1, 0.08, "day", True)
        assert spend["lifts_at"] is not None
        states = {s["stream_id"]: s for s in status["streams"]}
        assert (states["A"]["state"], states["B"]["state"], states["C"]["state"]) == ("complete", "complete", "ready")
        assert "spend cap reached (0.10 of 0.08 USD in the last day)" in states["C"]["description"]
        assert [e["stream"] for e in project.events("start")] == ["A", "B"]  # C never started

        text = project.orchestrate("status").stdout
        assert "capped: the spend cap is reached; no new worker starts" in text
        assert "Spend cap: [####################] 0.10 of 0.08 USD in the last day (reached: no new worker starts)" in text
        frame = subprocess.run([sys.executable, str(project.home / "check_streams_data.py")], env=project.env,
                               cwd=project.root, capture_output=True, text=True, timeout=60).stdout
        notes = [line.split("\t")[2] for line in frame.splitlines() if line.startswith("M\t")]
        gauge = next(i for i, note in enumerate(notes) if note.startswith("Spend cap"))
        assert " ".join(notes[gauge:gauge + 2]) == ("Spend cap [##########] 0.10 of 0.08 USD in the last day; "
                                                    "reached: nothing new starts")  # wrapped to the dashboard's width

        assert project.orchestrate("stop").returncode == 0
        out, err = orchestrator.communicate(timeout=60)
    finally:
        if orchestrator.poll() is None:
            orchestrator.kill()
            orchestrator.communicate()
    assert orchestrator.returncode == 1, out + err
    assert "spend cap reached (0.10 of 0.08 USD in the last day): no new worker starts until ~" in out
    assert "the spend cap is reached (0.10 of 0.08 USD in the last day): the next run starts workers once" in out

    # The next run starts at the cap too: the first run's journal holds what it spent.
    again = project.start_background()
    try:
        project.wait_for(lambda: project.status()["run"]["state"] == "capped", timeout=120, what="the cap again")
        assert project.status()["run"]["spend"]["spent_usd"] == 0.1
        assert project.orchestrate("stop").returncode == 0
        again.communicate(timeout=60)
    finally:
        if again.poll() is None:
            again.kill()
            again.communicate()
    assert again.returncode == 1 and [e["stream"] for e in project.events("start")] == ["A", "B"]


def test_without_a_cap_status_has_no_spend_gauge(project):
    chain(project, "A")
    assert project.orchestrate("start").returncode == 0
    status = project.status()
    assert status["run"]["spend"] is None
    assert "Spend cap" not in project.orchestrate("status").stdout
