"""The faults of issue 9, each as the real user or agent would cause it: real processes, real git, real files.

Every test names the old behaviour it catches (the runtime of d423bdc, one
orchestrate.py). To see a test fail there:
    git archive d423bdc template/.claude/orchestrator | tar -x -C /tmp/old
    ORCHESTRATE_TEST_RUNTIME=/tmp/old/template/.claude/orchestrator .venv/bin/pytest tests/reliability/test_faults.py
Waits are on events (the fake claude's event file, `status`, a process's exit), never on wall-clock gaps.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support import taskdb
from tests.support.project import Project, pid_alive


def one_stream_each(project: Project, *ids: str, deps=None) -> None:
    taskdb.make_db(project.db)
    for sid in ids:
        taskdb.add_stream(project.db, sid, (deps or {}).get(sid, []), 1)


def starts(project: Project, stream: str) -> list:
    return [e for e in project.events("start") if e["stream"] == stream]


def view(project: Project, stream: str) -> dict:
    return next(s for s in project.status()["streams"] if s["stream_id"] == stream)


def run_shell(project: Project, script: str, cwd: Path = None, env=None, timeout: float = 90):
    """A bash command line, with $ORCH set to the runtime's orchestrate.py."""
    env = dict(env or project.env, ORCH=str(project.home / "orchestrate.py"), PY=sys.executable)
    return subprocess.run(["bash", "-c", script], cwd=cwd or project.root, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def start_logged(project: Project, *args: str, cwd: Path = None, env=None, script: Path = None):
    """`start` in the background with its output in a file, so a test can wait for a line."""
    out = project.root.parent / f"start-{len(list(project.root.parent.glob('start-*.out')))}.out"
    handle = open(out, "w")
    command = [sys.executable, str(script or project.home / "orchestrate.py"), "start", *args]
    proc = subprocess.Popen(command, cwd=cwd or project.root, env=env or project.env, stdout=handle,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    handle.close()
    proc.output = out
    return proc


def output_of(proc) -> str:
    return Path(proc.output).read_text(encoding="utf-8", errors="replace")


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True,
                   capture_output=True)


# ---------------------------------------------------------------- 1. git clean -fdx mid-run


def test_1_git_clean_mid_run_keeps_one_orchestrator(project):
    """Old: the lock and pid files were in git-ignored folders; after `git clean -fdx` status said
    "not running", a second start succeeded (two workers on one stream) and `stop` missed the first."""
    one_stream_each(project, "A")
    git(project.root, "init", "-q")
    (project.root / ".gitignore").write_text(".claude/orchestrator/logs/\n.claude/orchestrator/pids/\n"
                                             ".claude/orchestrator/state/\n")
    git(project.root, "add", "-A")
    git(project.root, "commit", "-qm", "runtime")
    project.plan({"A": ["hang"]})
    first = project.start_background()
    project.wait_for(lambda: starts(project, "A"), what="A to start")
    git(project.root, "clean", "-fdx")
    assert project.status()["orchestrator"] == {"running": True, "pid": first.pid}
    second = project.orchestrate("start", timeout=30)
    assert second.returncode == 1 and "already running" in second.stderr, second.stdout + second.stderr
    stop = project.orchestrate("stop")
    assert stop.returncode == 0, stop.stderr
    first.wait(timeout=30)
    assert len(starts(project, "A")) == 1 and project.events("duplicate") == []


# ---------------------------------------------------------------- 2. a dead stdout


def test_2_start_piped_into_head_keeps_supervising_and_logs(project):
    """Old: the first write after `head` exited raised BrokenPipeError, caught as exit 0 ("all
    complete") mid-run, with the workers left unsupervised."""
    one_stream_each(project, "A", "B", "C", deps={"B": ["A"], "C": ["B"]})
    result = run_shell(project, '"$PY" "$ORCH" start | head -2; echo "exit=${PIPESTATUS[0]}"')
    assert result.stdout.splitlines()[-1] == "exit=0", result.stdout + result.stderr
    assert len(result.stdout.splitlines()) == 3
    assert set(project.states().values()) == {"complete"}
    log = (project.home / "logs" / "orchestrator.log").read_text()
    assert "standard output is gone" in log and "all 3 stream(s) complete" in log


def test_2_start_with_stdout_and_stderr_closed_completes(project):
    """Old: with stdout closed (`>&-`) the first line crashed or ended the run."""
    one_stream_each(project, "A", "B", deps={"B": ["A"]})
    result = run_shell(project, '"$PY" "$ORCH" start >&- 2>&-; echo "exit=$?"')
    assert result.stdout.strip() == "exit=0", result.stdout + result.stderr
    assert set(project.states().values()) == {"complete"}
    assert "all 2 stream(s) complete" in (project.home / "logs" / "orchestrator.log").read_text()


# ---------------------------------------------------------------- 3. one project however it is reached


def test_3_links_and_relative_paths_find_one_project_and_one_lock(project, tmp_path):
    """Old: a symlinked project folder, a symlinked script or `../../.claude/...` from a subfolder each
    made a second layout and lock, and took the link's name or `..` as the workspace."""
    project.env.pop("WORKSPACE_ID")  # the workspace is the project folder's name: "project"
    project.base = tmp_path / "tasks"
    taskdb.make_db(project.base / "project" / "tasks.db")
    taskdb.add_stream(project.base / "project" / "tasks.db", "A", [], 1)
    project.plan({"A": ["hang"]})
    linked_root = tmp_path / "linked-folder"
    linked_root.symlink_to(project.root)
    (tmp_path / "bin").mkdir()
    linked_script = tmp_path / "bin" / "orch"
    linked_script.symlink_to(project.home / "orchestrate.py")
    sub = project.root / "src" / "deep"
    sub.mkdir(parents=True)

    first = start_logged(project, cwd=linked_root, script=linked_root / ".claude" / "orchestrator" / "orchestrate.py")
    project.wait_for(lambda: starts(project, "A"), what="A to start")
    assert starts(project, "A")[0]["cwd"] == str(project.root)
    ways = [
        ([sys.executable, "../../.claude/orchestrator/orchestrate.py"], sub),
        ([sys.executable, str(linked_script)], tmp_path),
        ([sys.executable, str(linked_root / ".claude" / "orchestrator" / "orchestrate.py")], linked_root / "src"),
    ]
    for command, cwd in ways:
        status = subprocess.run(command + ["status", "--json"], cwd=cwd, env=project.env, capture_output=True,
                                text=True, timeout=30)
        assert status.returncode == 0, status.stderr
        data = json.loads(status.stdout)
        assert data["workspace"] == "project" and data["orchestrator"]["pid"] == first.pid
        second = subprocess.run(command + ["start"], cwd=cwd, env=project.env, capture_output=True, text=True,
                                timeout=30)
        assert second.returncode == 1 and "already running" in second.stderr, (command, second.stderr)
    assert len(starts(project, "A")) == 1
    stop = subprocess.run([sys.executable, str(linked_script), "stop"], cwd=tmp_path, env=project.env,
                          capture_output=True, text=True, timeout=60)
    assert stop.returncode == 0, stop.stderr
    first.wait(timeout=30)


# ---------------------------------------------------------------- 4. two projects, one database


def test_4_a_second_project_on_the_same_database_is_refused_naming_the_first(project, tmp_path):
    """Old: two checkouts with one WORKSPACE_ID each ran every stream of the shared database."""
    one_stream_each(project, "A")
    project.plan({"A": ["hang"]})
    other = Project.create(tmp_path / "elsewhere")
    other.env.update(TASK_DB_PATH=project.env["TASK_DB_PATH"], FAKE_CLAUDE_EVENTS=str(project.events_file),
                     FAKE_CLAUDE_PLAN=str(project.plan_file))
    first = project.start_background()
    project.wait_for(lambda: starts(project, "A"), what="A to start")
    second = other.orchestrate("start", timeout=30)
    assert second.returncode == 1, second.stdout + second.stderr
    assert str(project.root) in second.stderr and "WORKSPACE_ID" in second.stderr
    assert len(starts(project, "A")) == 1
    assert project.orchestrate("stop").returncode == 0
    first.wait(timeout=30)


# ---------------------------------------------------------------- 5. one stream's log unusable


def test_5_an_unusable_log_fails_that_stream_only(project):
    """Old: opening the log raised IsADirectoryError out of the loop: exit 70, other workers unsupervised."""
    one_stream_each(project, "A", "B", "C")
    (project.home / "logs" / "B.log").mkdir(parents=True)
    result = project.orchestrate("start", "--max-restarts", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "internal error" not in result.stderr
    assert "B: its worker could not be started" in result.stdout
    states = project.states()
    assert states == {"A": "complete", "B": "failed", "C": "complete"}
    b = view(project, "B")
    assert b["attempts"] == 2 and "Is a directory" in b["reason"]
    assert starts(project, "B") == []


# ---------------------------------------------------------------- 6. crash, then start


def test_6_a_crash_keeps_the_budget_and_only_start_stream_resets_it(project):
    """Old: every start after a crash gave failed streams a fresh budget (8 attempts with
    --max-restarts 1 over 3 crashes)."""
    one_stream_each(project, "A", "B")
    project.plan({"A": ["fail"], "B": ["hang"]})
    for _crash in range(3):
        orchestrator = project.start_background("--max-restarts", "1")
        project.wait_for(lambda: project.status()["orchestrator"]["running"] and view(project, "A")["state"] == "failed"
                         and view(project, "B")["state"] == "running", what="A failed, B running")
        orchestrator.kill()  # a crash: no clean-up, B's worker lives on
        orchestrator.wait()
    assert len(starts(project, "A")) == 2 and view(project, "A")["attempts"] == 2
    assert project.orchestrate("stop").returncode == 0
    result = project.orchestrate("start", "A", "--max-restarts", "1")
    assert result.returncode == 1
    assert len(starts(project, "A")) == 4  # `start A` gave it a fresh budget of two attempts


# ---------------------------------------------------------------- 7. stop


def test_7_stop_grace_reaches_the_running_orchestrator(project):
    """Old: the running orchestrator used its configured grace (here 60 s), not `stop --grace 1`: it still
    waited for its deaf worker when `stop` gave up on it and ended the worker group itself."""
    project.configure(stop_grace=60)
    one_stream_each(project, "A")
    project.plan({"A": ["spawn-child-deaf"]})
    orchestrator = start_logged(project)
    worker = project.wait_for(lambda: project.events("grandchild"), what="A to be deaf to TERM")[0]
    stop = project.orchestrate("stop", "--grace", "1")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert "worker group" not in stop.stdout  # the orchestrator had ended it: nothing left for `stop`
    assert orchestrator.wait(timeout=30) == 1
    assert not pid_alive(worker["pid"]) and not pid_alive(worker["child_pid"])


def test_7_stop_of_a_stopped_orchestrator_continues_and_ends_it(project):
    """Old: `stop` said it worked while the SIGSTOPped orchestrator lived on, holding the lock."""
    one_stream_each(project, "A")
    project.plan({"A": ["hang"]})
    orchestrator = project.start_background()
    project.wait_for(lambda: starts(project, "A"), what="A to start")
    os.kill(orchestrator.pid, signal.SIGSTOP)
    stop = project.orchestrate("stop", "--grace", "1")
    if stop.returncode == 0:
        assert orchestrator.wait(timeout=30) is not None
    else:
        assert pid_alive(orchestrator.pid) and "still running" in stop.stderr
    assert not project.status()["orchestrator"]["running"] or stop.returncode != 0


# ---------------------------------------------------------------- 8. holds and start STREAM


def test_8_a_refused_start_keeps_holds_and_start_stream_is_handed_over(project):
    """Old: a refused `start` still lifted the holds of `stop STREAM`, and `start STREAM` while an
    orchestrator ran was refused although `stop STREAM` told the user to run exactly that."""
    one_stream_each(project, "A", "B")
    project.plan({"A": ["hang", "ok"], "B": ["hang"]})
    orchestrator = project.start_background()
    project.wait_for(lambda: len(project.events("start")) == 2, what="both to start")
    assert project.orchestrate("stop", "A").returncode == 0
    project.wait_for(lambda: view(project, "A")["state"] == "held", what="A held")
    refused = project.orchestrate("start", timeout=30)
    assert refused.returncode == 1 and "already running" in refused.stderr
    assert view(project, "A")["state"] == "held"
    project.plan({"A": ["ok"], "B": ["hang"]})
    handed = project.orchestrate("start", "A", timeout=30)
    assert handed.returncode == 0, handed.stderr
    assert "Handed to the running orchestrator" in handed.stdout
    project.wait_for(lambda: view(project, "A")["state"] == "complete", what="A to run again and complete")
    assert [e["attempt"] for e in starts(project, "A")] == [1, 1]  # a fresh budget: attempt 1 again
    assert project.orchestrate("stop").returncode == 0
    orchestrator.wait(timeout=30)


# ---------------------------------------------------------------- 11. a stream reopened each time it completes


def test_11_a_stream_reopened_after_each_completion_respawns_within_its_budget(project):
    """Old: it respawned without limit (13 spawns in 20 s with --max-restarts 2)."""
    one_stream_each(project, "A", "B")
    project.plan({"B": ["hang"]})
    done = threading.Event()

    def reopen_a():
        """Each time A's worker has completed A and exited (its pid gone from status), reopen A."""
        reopened = 0
        while not done.is_set():
            ended = [e for e in project.events("end") if e["stream"] == "A"]
            a = view(project, "A")
            if len(ended) > reopened and a["state"] == "complete" and a["pid"] is None:
                taskdb.set_stream_status(project.db, "A", "pending")
                reopened += 1
            done.wait(0.05)

    reopener = threading.Thread(target=reopen_a)
    reopener.start()
    try:
        orchestrator = start_logged(project, "--max-restarts", "2")
        project.wait_for(lambda: view(project, "A")["state"] == "failed", timeout=60, what="A to fail")
    finally:
        done.set()
        reopener.join()
    assert len(starts(project, "A")) == 3
    assert project.orchestrate("stop").returncode == 0
    orchestrator.wait(timeout=30)


def test_11_a_dependency_reopened_after_its_dependents_started_is_reported(project):
    """Old: a dependency going back to incomplete under a running dependent was not mentioned."""
    one_stream_each(project, "A", "B", deps={"B": ["A"]})
    project.plan({"B": ["hang"]})
    orchestrator = start_logged(project)
    project.wait_for(lambda: starts(project, "B"), what="B to start")
    taskdb.set_stream_status(project.db, "A", "pending")
    project.wait_for(lambda: "warning: A was reopened after it completed; its dependents already started on it: B"
                     in output_of(orchestrator), what="the reopening to be reported")
    assert project.orchestrate("stop").returncode == 0
    orchestrator.wait(timeout=30)


# ---------------------------------------------------------------- 12. values and files of the wrong shape


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_12_a_poll_interval_that_is_not_finite_is_a_clear_error(project, value):
    """Old: nan made the loop spin or crash, inf made it hang."""
    one_stream_each(project, "A")
    result = project.orchestrate("start", f"--poll-interval={value}", timeout=30)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "poll-interval" in result.stderr
    project.configure(poll_interval=value)
    result = project.orchestrate("start", timeout=30)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "poll_interval" in result.stderr and result.stderr.count("\n") == 1
    assert project.events("start") == []


@pytest.mark.parametrize("content", ["null", '{"streams": null}', '{"streams": {"A": {"state": "failed", '
                                     '"attempts": "many"}}}', '{"streams": {"A": {"state": "exploded"}}}', "{oops"])
def test_12_a_damaged_run_file_leaves_status_start_and_dashboard_working(project, content):
    """Old: `null`, `{"streams": null}` or a non-numeric attempt count crashed all three."""
    one_stream_each(project, "A")
    (project.home / "state").mkdir(parents=True, exist_ok=True)
    run_file = project.home / "state" / "run.json"
    run_file.write_text(content)
    status = project.orchestrate("status")
    assert status.returncode == 0 and "A" in status.stdout, status.stderr
    assert "warning: ignored the saved" in status.stdout
    frame = subprocess.run([sys.executable, str(project.home / "check_streams_data.py")], env=project.env,
                           cwd=project.root, capture_output=True, text=True, timeout=30)
    assert frame.returncode == 0 and frame.stdout.endswith("END\n"), frame.stderr
    run_file.write_text(content)
    result = project.orchestrate("start")
    assert result.returncode == 0, result.stdout + result.stderr
    assert project.states() == {"A": "complete"}


# ---------------------------------------------------------------- 13. --detach and relative paths


@pytest.mark.parametrize("how", ["--db", "TASK_DB_PATH"])
def test_13_detach_from_a_subfolder_with_a_relative_database_path(project, how):
    """Old: the detached child resolved a relative --db or TASK_DB_PATH elsewhere than the foreground."""
    one_stream_each(project, "A")
    sub = project.root / "src"
    sub.mkdir()
    env = dict(project.env)
    if how == "--db":  # a path typed on the command line is relative to where it was typed
        args = ["--db", os.path.join(os.path.relpath(project.base, sub), "demo-ws", "tasks.db")]
        env["TASK_DB_PATH"] = "/nonexistent"
    else:  # TASK_DB_PATH is relative to the project, as the Task Copilot server (started there) reads it
        args, env["TASK_DB_PATH"] = [], os.path.relpath(project.base, project.root)
    result = subprocess.run(project.command("start", "--detach", *args), cwd=sub, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    project.wait_for(lambda: project.status()["run"]["exit_code"] is not None, what="the run to end")
    assert project.status()["run"]["exit_code"] == 0 and project.states() == {"A": "complete"}


# ---------------------------------------------------------------- 14. a cycle appears mid-run


def test_14_a_cycle_mid_run_is_reported_and_the_running_worker_finishes_its_attempt(project):
    """Old: the new cycle was not reported and the running stream's worker went on silently."""
    one_stream_each(project, "A", "B", deps={"B": ["A"]})
    project.plan({"A": ["hang"]})
    orchestrator = start_logged(project)
    worker = project.wait_for(lambda: starts(project, "A"), what="A to start")[0]
    taskdb.add_stream(project.db, "A", ["B"], 1)  # a new task of A depends on B: A -> B -> A
    project.wait_for(lambda: "the stream graph changed" in output_of(orchestrator), what="the cycle to be reported")
    status = project.status()
    assert any("Circular dependency" in p for p in status["problems"])
    assert view(project, "A")["state"] == "running" and pid_alive(worker["pid"])  # left to finish its attempt
    assert "running worker(s) of A are left to finish but will not be restarted" in output_of(orchestrator)
    os.kill(worker["pid"], signal.SIGKILL)  # its attempt ends
    assert orchestrator.wait(timeout=60) == 1  # nothing more can progress
    assert len(starts(project, "A")) == 1
    assert view(project, "A")["state"] == "invalid"


# ---------------------------------------------------------------- 15. a second Ctrl-C, a large log


def test_15_a_second_ctrl_c_forces_the_shutdown(project):
    """Old: the second Ctrl-C was ignored while the stop grace (here 60 s) ran out."""
    project.configure(stop_grace=60)
    one_stream_each(project, "A")
    project.plan({"A": ["spawn-child-deaf"]})
    orchestrator = start_logged(project)
    worker = project.wait_for(lambda: project.events("grandchild"), what="A to be deaf to TERM")[0]
    os.kill(orchestrator.pid, signal.SIGINT)
    project.wait_for(lambda: "stopping 1 worker(s)" in output_of(orchestrator), what="the first Ctrl-C")
    os.kill(orchestrator.pid, signal.SIGINT)
    assert orchestrator.wait(timeout=30) == 130
    assert not pid_alive(worker["pid"]) and not pid_alive(worker["child_pid"])


def test_15_logs_n_reads_a_large_log_from_its_end(project):
    """Old: `logs -n 2` read the whole file (437 MB of memory for a 200 MB log)."""
    one_stream_each(project, "A")
    log = project.home / "logs" / "A.log"
    log.parent.mkdir(parents=True)
    with open(log, "wb") as handle:
        handle.truncate(150 * 1024 * 1024)  # sparse: 150 MB without using the disk
        handle.seek(0, os.SEEK_END)
        handle.write(b"\nbefore last\nsecond to last\nlast line\n")
    probe = ("import resource, subprocess, sys; "
             "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); print(r.stdout, end='')")
    result = subprocess.run([sys.executable, "-c", probe, *project.command("logs", "A", "-n", "2")],
                            cwd=project.root, env=project.env, capture_output=True, text=True, timeout=60)
    first, *lines = result.stdout.splitlines()
    code, max_rss_kib = map(int, first.split())
    assert code == 0 and lines == ["second to last", "last line"]
    assert max_rss_kib < 60 * 1024  # far less than the log


# ---------------------------------------------------------------- 16. what the user sees


def test_16_backoff_and_held_are_described_in_status_and_json(project):
    """Old: a stream in back-off showed as plain `ready`, a held one without how to resume it."""
    project.configure(restart_delay=600)
    one_stream_each(project, "A", "B")
    project.plan({"A": ["fail"], "B": ["hang"]})
    orchestrator = project.start_background("--max-restarts", "3")
    project.wait_for(lambda: view(project, "A")["state"] == "backoff", what="A to back off")
    assert re.fullmatch(r"restarting in \d+ s \(attempt 2 of 4\)", view(project, "A")["description"])
    assert project.orchestrate("stop", "B").returncode == 0
    project.wait_for(lambda: view(project, "B")["state"] == "held", what="B held")
    assert view(project, "B")["description"] == "stopped by you; `start STREAM` resumes it"
    text = project.orchestrate("status").stdout
    assert re.search(r"\n0 +A +restarting in \d+ s \(attempt 2 of 4\) ", text), text  # LEVEL, STREAM, STATE
    assert re.search(r"\n0 +B +stopped by you; `start STREAM` resumes it ", text), text
    assert project.orchestrate("stop").returncode == 0
    orchestrator.wait(timeout=30)


# ---------------------------------------------------------------- the loop never blocks


def test_six_workers_leaving_term_deaf_children_do_not_delay_a_completion(project):
    """Old: the loop blocked for the whole stop grace on each worker's leftovers before it went on."""
    project.configure(stop_grace=60)
    six = [f"S{n}" for n in range(1, 7)]
    one_stream_each(project, *six, "T", deps={"T": six})
    project.plan({**{sid: ["ok-with-child-deaf"] for sid in six}, "T": ["ok"]})
    orchestrator = start_logged(project)
    project.wait_for(lambda: project.events("end") and any(e["stream"] == "T" for e in project.events("end")),
                     timeout=60, what="T to complete")
    children = [e["child_pid"] for e in project.events("grandchild")]
    assert len(children) == 6
    # T ran without waiting on them (the loop never waits: a stream waits only on its own leftovers), and the
    # deaf children are KILLed by the leftover grace, 2 s after their worker ended however long stop_grace is
    # (it was 60 s each): no `stop` is needed for them.
    project.wait_for(lambda: not any(pid_alive(pid) for pid in children), timeout=30, what="children to be killed")
    assert orchestrator.wait(timeout=30) == 0
