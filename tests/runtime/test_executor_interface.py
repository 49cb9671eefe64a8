"""The executor interface: both implementations (local processes, and the loop tests' in-memory one) keep
its shape, and the local executor keeps its promises with real processes: recorded before the command
runs, ends reported as numbers, groups signalled whole, leftovers ended, workers adopted after a restart."""

import inspect
import os
import signal
import sys
import time

import pytest

from tests.runtime.runtime_import import executor as local
from tests.runtime.runtime_import import executor_api as ex
from tests.runtime.runtime_import import processes
from tests.support.fake_executor import FakeExecutor
from tests.support.project import pid_alive
from tests.support.waiting import wait_until

METHODS = [name for name, _ in inspect.getmembers(ex.Executor, inspect.isfunction) if not name.startswith("_")]


def test_the_interface_names_no_pids():
    assert sorted(METHODS) == ["adopt", "cleaning_up", "kill", "live", "output", "poll", "shutdown", "spawn",
                               "terminate", "tick"]
    fields = {f for cls in (ex.Handle, ex.Ended, ex.Adoption, ex.Output, ex.WorkerSpec)
              for f in cls.__dataclass_fields__}
    assert not {f for f in fields if "pid" in f or "token" in f or "group" in f}


@pytest.mark.parametrize("implementation", [local.LocalExecutor, FakeExecutor])
def test_each_implementation_has_every_method_with_the_same_parameters(implementation):
    for name in METHODS:
        wanted = list(inspect.signature(getattr(ex.Executor, name)).parameters)
        assert list(inspect.signature(getattr(implementation, name)).parameters) == wanted, name


def test_ended_says_how_in_numbers_and_in_words():
    assert ex.Ended(exit_code=1).describe() == "code 1" and ex.Ended(exit_code=1).returncode == 1
    assert ex.Ended(signal=9).describe() == "signal 9" and ex.Ended(signal=9).returncode == -9
    unknown = ex.Ended(why="an adopted worker, not our child")
    assert not unknown.known and unknown.returncode is None
    assert unknown.describe() == "unknown code (an adopted worker, not our child)"


# ---------------------------------------------------------------- the local executor, for real


@pytest.fixture
def folders(tmp_path):
    pids, logs = tmp_path / "pids", tmp_path / "logs"
    pids.mkdir()
    logs.mkdir()
    executors = []

    def make(grace=5.0):
        executor = local.LocalExecutor(pids, lambda sid: logs / f"{sid}.log", grace)
        executors.append(executor)
        return executor

    yield make, pids, logs
    for executor in executors:  # never leave a process behind
        for handle in executor.live().values():
            executor.kill(handle)
        executor.shutdown(0.0)


def spec(logs, sid, script, attempt=1):
    return ex.WorkerSpec(sid, attempt, [sys.executable, "-c", script], dict(os.environ), logs.parent,
                         logs / f"{sid}.log", f"=== {sid} attempt {attempt} ===\n")


def ended(executor, handle):
    return wait_until(lambda: executor.poll(handle), "the worker to end")


def test_a_worker_is_recorded_before_its_command_runs_and_its_end_is_a_number(folders):
    make, pids, logs = folders
    executor = make()
    seen = []

    def before_go(handle):
        record = processes.read_pid_file(pids / "A.pid")
        seen.append((handle.stream_id, handle.attempt, record.pid, (logs / "marker").exists()))

    script = f"open({str(logs / 'marker')!r}, 'w').close(); print('out'); raise SystemExit(3)"
    handle = executor.spawn(spec(logs, "A", script), before_go)
    assert seen == [("A", 1, handle.detail("pid"), False)]  # recorded; its command had not run yet
    assert handle.where == f"pid {handle.detail('pid')}" and executor.live() == {"A": handle}
    output = executor.output(handle)
    assert ended(executor, handle) == ex.Ended(exit_code=3)
    assert not (pids / "A.pid").exists() and executor.live() == {}
    text = output.path.read_text()
    assert text.startswith("=== A attempt 1 ===\n") and text[output.offset:] == "out\n"


def test_a_refusal_in_before_go_leaves_nothing_running_and_no_record(folders):
    make, pids, logs = folders
    executor = make()

    def refuse(_handle):
        raise OSError("disk full")

    with pytest.raises(OSError):
        executor.spawn(spec(logs, "A", f"open({str(logs / 'ran')!r}, 'w').close()"), refuse)
    assert not (logs / "ran").exists() and not list(pids.iterdir()) and executor.live() == {}


def test_terminate_and_kill_reach_the_whole_group_and_report_the_signal(folders):
    make, _pids, logs = folders
    executor = make()
    child = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
    polite = executor.spawn(spec(logs, "A", child + " time.sleep(60)"), lambda _h: None)
    deaf = executor.spawn(spec(logs, "B", "import signal, time; "
                                         "signal.signal(signal.SIGTERM, lambda *_: print('TERM, ignored', flush=True)); "
                                         "print('ready', flush=True); time.sleep(60)"), lambda _h: None)
    wait_until(lambda: (logs / "B.log").read_text().endswith("ready\n"), "B to be ready")
    executor.terminate(polite)
    executor.terminate(deaf)
    assert ended(executor, polite) == ex.Ended(signal=signal.SIGTERM)
    wait_until(lambda: "TERM, ignored" in (logs / "B.log").read_text(), "B to have TERM and ignore it")
    assert executor.poll(deaf) is None
    executor.kill(deaf)
    assert ended(executor, deaf) == ex.Ended(signal=signal.SIGKILL)


def test_what_an_ended_worker_leaves_is_cleaned_up_and_killed_by_the_shutdown_deadline(folders):
    make, _pids, logs = folders
    executor = make(grace=60.0)
    # It exits once its child ignores TERM (so the child cannot die of the TERM that follows its end).
    script = ("import subprocess, sys; child = subprocess.Popen([sys.executable, '-c', "
              "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); "
              "time.sleep(60)'], stdout=subprocess.PIPE); child.stdout.readline()")
    handle = executor.spawn(spec(logs, "A", script), lambda _h: None)
    assert ended(executor, handle) == ex.Ended(exit_code=0)
    assert executor.cleaning_up() == {"A"}  # its child ignores TERM: KILLed after the grace, or the deadline
    assert executor.tick() is not None
    executor.shutdown(time.monotonic())
    wait_until(lambda: executor.tick() is None and not executor.cleaning_up(), "the leftover to be KILLed")


def test_a_new_executor_adopts_live_workers_and_reports_those_that_ended(folders):
    make, pids, logs = folders
    first = make()
    running = first.spawn(spec(logs, "A", "import time; time.sleep(60)"), lambda _h: None)
    gone = first.spawn(spec(logs, "B", "pass", attempt=2), lambda _h: None)
    wait_until(lambda: not pid_alive(gone.detail("pid")), "B to exit")
    (pids / "junk.pid").write_text("not json")
    second = make()  # as after an orchestrator restart: only the records are shared
    adoption = second.adopt()
    assert [h.stream_id for h in adoption.live] == ["A"] and adoption.live[0].key == running.key
    assert [(h.stream_id, h.attempt, e) for h, e in adoption.ended] == [("B", 2, ex.Ended(why=local.ENDED_UNSEEN))]
    assert adoption.notes == ("removing unreadable pid file junk.pid",)
    assert sorted(p.name for p in pids.iterdir()) == ["A.pid"]
    assert second.output(adoption.live[0]).offset == (logs / "A.log").stat().st_size
    second.terminate(adoption.live[0])
    assert ended(second, adoption.live[0]) == ex.Ended(why="an adopted worker, not our child")
    first.poll(running)  # the first one reaps its child


def test_only_the_streams_asked_for_are_adopted(folders):
    make, _pids, logs = folders
    first = make()
    first.spawn(spec(logs, "A", "import time; time.sleep(60)"), lambda _h: None)
    first.spawn(spec(logs, "B", "import time; time.sleep(60)"), lambda _h: None)
    assert [h.stream_id for h in make().adopt({"B"}).live] == ["B"]


def test_the_read_only_reader_shows_live_workers_without_adopting_them(folders):
    make, pids, logs = folders
    executor = make()
    handle = executor.spawn(spec(logs, "A", "import time; print('up', flush=True); time.sleep(60)"), lambda _h: None)
    wait_until(lambda: (logs / "A.log").read_text().endswith("up\n"), "the worker's command to run")
    assert local.recorded_workers(pids) == {"A": handle}
