"""The loop's last-resort guard with real processes (issue 18): a bug met while judging one worker's exit
fails that stream, and the real orchestrator goes on supervising the other worker to the run's end.

The fault is injected into a real orchestrator process: a launcher (below) patches `judge_exit` to
raise for stream A, then runs orchestrate.py as `start` does. Everything else is real: the database,
the fake `claude` workers, their process groups, the log and the exit code.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.support import taskdb

LAUNCHER = textwrap.dedent('''
    import runpy, sys
    home = sys.argv[1]
    sys.path.insert(0, home)
    import _orchestrate_kit.supervisor as supervisor

    real = supervisor.judge_exit

    def judge_exit(ended, stream, *rest):
        if stream is not None and stream.stream_id == "A":
            raise LookupError("an injected fault while judging A")
        return real(ended, stream, *rest)

    supervisor.judge_exit = judge_exit
    sys.argv = [home + "/orchestrate.py"] + sys.argv[2:]
    runpy.run_path(sys.argv[0], run_name="__main__")
''')


def test_a_crash_judging_one_exit_fails_that_stream_and_the_run_ends_normally(project, tmp_path):
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 1)
    taskdb.add_stream(project.db, "B", [], 1)
    gate = tmp_path / "gate"
    project.env["FAKE_CLAUDE_GATE"] = str(gate)
    project.plan({"A": ["fail"], "B": ["gated"]})  # B runs on until A's exit has been judged
    launcher = tmp_path / "inject.py"
    launcher.write_text(LAUNCHER, encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(launcher), str(project.home), "start", "--no-preflight"],
                            env=project.env, cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        project.wait_for(lambda: "failed" in project.states().get("A", ""), timeout=60, what="A failed")
        assert project.states()["B"] == "running"  # still supervised: its worker runs, its row says so
        gate.touch()  # now B completes its task and exits
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, out  # a run that ended with a failed stream, not an internal error (70)
    assert "internal error while judging its exit: LookupError: an injected fault while judging A" in out
    assert "failing this stream, the run goes on" in out and "Traceback" not in out
    status = {s["stream_id"]: s for s in json.loads(project.orchestrate("status", "--json").stdout)["streams"]}
    assert status["A"]["state"] == "failed" and status["B"]["state"] == "complete"
    assert "internal error while judging its exit" in status["A"]["reason"]
    crash = next(project.home.parent.parent.rglob("crash.log")).read_text(encoding="utf-8")
    assert "stream A, while judging its exit" in crash and "LookupError: an injected fault" in crash
    starts = [e["stream"] for e in project.events("start")]
    assert sorted(starts) == ["A", "B"]  # A was not restarted; B started once and completed
