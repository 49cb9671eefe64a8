"""Pid reuse and concurrent starts: never signal a stranger, never run two orchestrators.

tests/runtime/test_supervision.py already covers one stale stream pid file naming a lone
`sleep`, and a second `start` refused while one runs. Here: the orchestrator's own pid file
reused, a reused pid that leads a whole process group, a group whose leader is gone, a record
without our token, a worker's daemon that left its group (`setsid`), and five
`start` (or `start --detach`) at the same moment.
"""

from __future__ import annotations

import json
import secrets
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import taskdb
from tests.support.project import RUNTIME, Project, pid_alive
from tests.support.waiting import wait_until

from .checks import starts_per_stream


def bystander_group() -> subprocess.Popen:
    """A stranger's process group of the same user: a shell leading two sleeps."""
    return subprocess.Popen(["sh", "-c", "sleep 300 & sleep 300 & wait"], start_new_session=True)


def group_of(pgid: int) -> list:
    out = subprocess.run(["ps", "-A", "-o", "pid=,pgid="], capture_output=True, text=True).stdout
    return [int(p) for p, g in (line.split() for line in out.splitlines()) if int(g) == pgid]


def kill_quietly(pid: int, group: bool = False) -> None:
    try:
        (os.killpg if group else os.kill)(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def write_pid_file(path: Path, pid: int, stream_id: str, token: str = "", start_time: str = "12345") -> None:
    """What an earlier run left behind: its process had this pid and started at another time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "start_time": start_time, "stream_id": stream_id,
                                "attempt": 1, "started_at": 0, "token": token}))


@pytest.fixture
def strangers():
    started = []

    def make() -> subprocess.Popen:
        proc = bystander_group()
        started.append(proc)
        time.sleep(0.2)  # let the shell fork its sleeps
        return proc

    yield make
    for proc in started:
        kill_quietly(proc.pid, group=True)
        proc.wait()


def test_reused_pids_in_every_pid_file_are_never_signalled(project, strangers):
    taskdb.diamond(project.db)
    pids = project.home / "pids"
    state = project.home / "state"
    orchestrator_stranger, worker_stranger = strangers(), strangers()
    members = group_of(orchestrator_stranger.pid) + group_of(worker_stranger.pid)
    assert len(members) == 6
    write_pid_file(state / "orchestrator.pid", orchestrator_stranger.pid, "")
    write_pid_file(pids / "Stream-A.pid", worker_stranger.pid, "Stream-A", token="0123456789abcdef")

    status = project.status()
    assert status["orchestrator"]["running"] is False
    assert {s["stream_id"]: s["state"] for s in status["streams"]}["Stream-A"] == "ready"
    stop_one = project.orchestrate("stop", "Stream-A", "--grace", "1")
    assert stop_one.returncode == 1 and "has no running worker" in stop_one.stderr
    stop = project.orchestrate("stop", "--grace", "1")
    assert stop.returncode == 0 and "Nothing to stop" in stop.stdout, stop.stdout + stop.stderr
    assert all(pid_alive(p) for p in members)

    write_pid_file(state / "orchestrator.pid", orchestrator_stranger.pid, "")
    write_pid_file(pids / "Stream-A.pid", worker_stranger.pid, "Stream-A", token="0123456789abcdef")
    result = project.orchestrate("start")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "adopted" not in result.stdout
    assert starts_per_stream(project)["Stream-A"] == 1
    assert all(pid_alive(p) for p in members)


def start_time_of(pid: int) -> str:
    """Field 22 of /proc/PID/stat, as the runtime records it."""
    data = Path(f"/proc/{pid}/stat").read_bytes()
    return data[data.rindex(b")") + 2:].split()[19].decode()


def test_a_stranger_with_the_recorded_start_time_is_still_not_ours(project, strangers):
    """Pid files outlive a reboot, and start times (clock ticks since boot) can repeat after one:
    a live process with the recorded pid and start time is ours only if it carries our token,
    and the orchestrator's pid only if it runs orchestrate.py."""
    taskdb.diamond(project.db)
    orchestrator_stranger, worker_stranger = strangers(), strangers()
    members = group_of(orchestrator_stranger.pid) + group_of(worker_stranger.pid)
    pids, state = project.home / "pids", project.home / "state"

    def leave_pid_files():
        write_pid_file(state / "orchestrator.pid", orchestrator_stranger.pid, "",
                       start_time=start_time_of(orchestrator_stranger.pid))
        write_pid_file(pids / "Stream-A.pid", worker_stranger.pid, "Stream-A", token="0123456789abcdef",
                       start_time=start_time_of(worker_stranger.pid))

    leave_pid_files()
    status = project.status()
    assert status["orchestrator"]["running"] is False
    assert {s["stream_id"]: s["state"] for s in status["streams"]}["Stream-A"] == "ready"
    assert project.orchestrate("stop", "Stream-A", "--grace", "1").returncode == 1
    stop = project.orchestrate("stop", "--grace", "1")
    assert stop.returncode == 0 and "Nothing to stop" in stop.stdout, stop.stdout + stop.stderr
    assert all(pid_alive(p) for p in members)
    leave_pid_files()
    result = project.orchestrate("start")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "adopted" not in result.stdout and starts_per_stream(project)["Stream-A"] == 1
    assert all(pid_alive(p) for p in members)


def test_a_group_whose_leader_is_gone_is_not_ours_without_our_token(project):
    """Our worker's pid is free now, but a stranger's group carries that number as its id."""
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 1)
    leader = subprocess.Popen(["sh", "-c", "sleep 300 & echo $!"], start_new_session=True,
                              stdout=subprocess.PIPE, text=True)
    orphan = int(leader.stdout.readline())
    leader.wait()
    try:
        assert not pid_alive(leader.pid) and group_of(leader.pid) == [orphan]
        write_pid_file(project.home / "pids" / "A.pid", leader.pid, "A", token="feedfacefeedface")
        assert project.orchestrate("stop", "--grace", "1").returncode == 0
        assert pid_alive(orphan)
        write_pid_file(project.home / "pids" / "A.pid", leader.pid, "A", token="feedfacefeedface")
        result = project.orchestrate("start")
        assert result.returncode == 0, result.stdout + result.stderr
        assert pid_alive(orphan)
        assert project.states() == {"A": "complete"}
    finally:
        kill_quietly(orphan)


def start_at_once(project: Project, extra: list, count: int = 5) -> list:
    procs = [subprocess.Popen(project.command("start", *extra), env=project.env, cwd=project.root,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL, start_new_session=True)
             for _ in range(count)]
    return procs


def test_five_starts_at_once_run_exactly_one_orchestrator(project):
    taskdb.diamond(project.db)
    project.plan({"Stream-A": ["hang"]})
    procs = start_at_once(project, [])
    project.wait_for(lambda: sum(p.poll() is not None for p in procs) == 4, timeout=60,
                     what="four of the five starts to give up")
    losers = [p for p in procs if p.poll() is not None]
    winner = next(p for p in procs if p.poll() is None)
    for proc in losers:
        out, err = proc.communicate()
        assert proc.returncode == 1, out + err
        assert "an orchestrator is already running on this project" in err and "Traceback" not in err
    project.wait_for(lambda: project.events("start"), what="Stream-A to start")
    time.sleep(0.5)
    assert project.status()["orchestrator"]["pid"] == winner.pid
    assert starts_per_stream(project) == {"Stream-A": 1}
    assert project.orchestrate("stop", "--grace", "1").returncode == 0
    winner.communicate(timeout=30)
    assert project.events("duplicate") == []


def test_five_detached_starts_at_once_run_exactly_one_orchestrator(project):
    taskdb.diamond(project.db)
    project.plan({"Stream-A": ["hang"]})
    procs = start_at_once(project, ["--detach"])
    results = [(p.wait(timeout=60), *p.communicate()) for p in procs]
    started = [r for r in results if r[0] == 0]
    refused = [r for r in results if r[0] != 0]
    assert len(started) == 1, results
    assert "started in the background" in started[0][1]
    for code, out, err in refused:
        assert code == 1, (code, out, err)
        assert "already running" in err and "Traceback" not in err, err
    project.wait_for(lambda: project.events("start"), what="Stream-A to start")
    time.sleep(0.5)
    assert starts_per_stream(project) == {"Stream-A": 1}
    assert project.status()["orchestrator"]["running"] is True
    assert project.orchestrate("stop", "--grace", "1").returncode == 0
    assert project.events("duplicate") == []


def test_init_and_our_own_group_are_never_signalled():
    """A corrupt pid file naming pid 0 or 1 (init's group) must not turn into killpg(0 or 1)."""
    from tests.runtime.runtime_import import processes

    init = processes.PidRecord(1, processes.process_start_time(1) or "", "A")
    assert init.is_alive() is False and init.own_group_members() == []
    zero = processes.PidRecord(0, "", "A", token="abc")
    assert zero.own_group_members() == []
    # In a session of its own, so that a regression kills only the probe.
    probe = ("import os, signal, sys; sys.path.insert(0, sys.argv[1]); from _orchestrate_kit.executor import processes; "
             "processes.signal_group(os.getpgrp(), signal.SIGKILL); processes.signal_group(0, signal.SIGKILL); "
             "print('still here')")
    result = subprocess.run([sys.executable, "-c", probe, str(RUNTIME)], capture_output=True, text=True,
                            start_new_session=True, timeout=30)
    assert result.returncode == 0 and "still here" in result.stdout, result


# ---------------------------------------------------------------- records without a token (fault 9)

TOKEN = secrets.token_hex(8)  # unique per run: nothing left over from another run can carry it


def in_own_session(argv: list, token: str = "") -> subprocess.Popen:
    """A process in a session of its own, carrying `token` in its environment if one is given."""
    env = {k: v for k, v in os.environ.items() if k != "ORCHESTRATE_KIT_TOKEN"}
    if token:
        env["ORCHESTRATE_KIT_TOKEN"] = token
    return subprocess.Popen(argv, env=env, start_new_session=True, stdout=subprocess.PIPE, text=True)


@pytest.fixture
def sessions():
    started = []

    def make(argv: list, token: str = "") -> subprocess.Popen:
        proc = in_own_session(argv, token)
        started.append(proc)
        return proc

    yield make
    for proc in started:
        kill_quietly(proc.pid, group=True)
        proc.wait()


def test_a_record_without_a_token_naming_a_live_stranger_is_never_ours(sessions):
    from tests.runtime.runtime_import import processes

    stranger = sessions(["sleep", "300"])
    carrier = sessions(["sleep", "300"], token=TOKEN)  # the control: a record that is ours
    tokenless = processes.PidRecord(stranger.pid, start_time_of(stranger.pid), "A")
    nameless = processes.PidRecord(stranger.pid, start_time_of(stranger.pid), "")
    ours = processes.PidRecord(carrier.pid, start_time_of(carrier.pid), "A", token=TOKEN)

    assert ours.is_alive() and processes.members_of(ours) == [carrier.pid]
    for record in (tokenless, nameless):
        assert record.is_alive() is False
        assert processes.members_of(record) == [] and record.own_group_members() == []
        assert processes.signal_worker(record, signal.SIGKILL) == []
        assert processes.terminate_groups({record.pid: record.own_group_members}, 0.1) == []
    assert pid_alive(stranger.pid)


def test_the_orchestrators_record_needs_no_token_but_is_never_signalled(sessions, tmp_path):
    """The orchestrator's record names no stream and has no token: it is proven by its script."""
    from tests.runtime.runtime_import import processes

    script = tmp_path / "orchestrate.py"
    script.write_text("import time\ntime.sleep(300)\n")
    orchestrator = sessions([sys.executable, str(script)])
    record = processes.PidRecord(orchestrator.pid, start_time_of(orchestrator.pid), "")
    wait_until(lambda: processes.runs_script(orchestrator.pid, "orchestrate.py"), "the exec")
    assert record.is_alive() is True
    assert processes.members_of(record) == [] and processes.signal_worker(record, signal.SIGKILL) == []
    assert pid_alive(orchestrator.pid)
    as_worker = processes.PidRecord(orchestrator.pid, record.start_time, "A")
    assert as_worker.is_alive() is False


def test_a_tokenless_worker_file_naming_a_stranger_is_not_shown_adopted_or_stopped(project, strangers):
    taskdb.diamond(project.db)
    stranger = strangers()
    members = group_of(stranger.pid)

    def leave_pid_file():
        write_pid_file(project.home / "pids" / "Stream-A.pid", stranger.pid, "Stream-A",
                       start_time=start_time_of(stranger.pid))

    leave_pid_file()
    assert {s["stream_id"]: s["state"] for s in project.status()["streams"]}["Stream-A"] == "ready"
    assert project.orchestrate("stop", "Stream-A", "--grace", "1").returncode == 1
    stop = project.orchestrate("stop", "--grace", "1")
    assert stop.returncode == 0 and "Nothing to stop" in stop.stdout, stop.stdout + stop.stderr
    leave_pid_file()
    result = project.orchestrate("start")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "adopted" not in result.stdout and starts_per_stream(project)["Stream-A"] == 1
    assert all(pid_alive(p) for p in members)


# ---------------------------------------------------------------- daemons that left the group (fault 10)

# A double fork into a session of its own: the daemon's parent exits at once.
DAEMONIZE = "import subprocess; print(subprocess.Popen(['sleep', '300'], start_new_session=True).pid)"


def test_ending_a_worker_ends_its_setsid_daemon_and_nothing_else(sessions):
    from tests.runtime.runtime_import import processes

    worker = sessions(["sh", "-c", '"$0" -c "$1"; sleep 300', sys.executable, DAEMONIZE], token=TOKEN)
    daemon = int(worker.stdout.readline())
    try:
        ended_with_its_worker(worker, daemon, sessions)
    finally:
        kill_quietly(daemon)


def ended_with_its_worker(worker, daemon: int, sessions) -> None:
    from tests.runtime.runtime_import import processes

    stranger = sessions(["sleep", "300"])
    other_worker = sessions(["sleep", "300"], token="fedcba9876543210")
    record = processes.PidRecord(worker.pid, start_time_of(worker.pid), "A", token=TOKEN)
    assert os.getpgid(daemon) != worker.pid and os.getsid(daemon) == daemon  # it escaped the group
    members = processes.members_of(record)
    assert worker.pid in members and daemon in members
    assert stranger.pid not in members and other_worker.pid not in members

    assert processes.signal_worker(record, signal.SIGTERM)
    worker.wait(timeout=30)
    wait_until(lambda: not pid_alive(daemon), "the daemon to end")
    # The group got TERM at once, but its members end on their own time: the shell's `sleep`,
    # forked while the test started the others, can still be on its way out here.
    wait_until(lambda: processes.members_of(record) == [], "every member to end")
    assert pid_alive(stranger.pid) and pid_alive(other_worker.pid)


def test_stop_ends_a_workers_daemon_and_spares_a_stranger(project, sessions):
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 1)
    project.plan({"A": ["spawn-daemon"]})
    stranger = sessions(["sleep", "300"])
    assert project.orchestrate("start", "--detach").returncode == 0
    daemon = project.wait_for(lambda: project.events("daemon"), what="the daemon")[0]["child_pid"]
    try:
        assert pid_alive(daemon) and os.getsid(daemon) == daemon
        assert project.orchestrate("stop", "--grace", "1").returncode == 0
        project.wait_for(lambda: not pid_alive(daemon), timeout=10, what="the daemon to end")
        assert pid_alive(stranger.pid)
    finally:
        kill_quietly(daemon)


def test_a_daemon_left_by_a_finished_worker_does_not_outlive_the_run(project):
    taskdb.make_db(project.db)
    taskdb.add_stream(project.db, "A", [], 1)
    project.plan({"A": ["ok-with-daemon"]})
    result = project.orchestrate("start")
    assert result.returncode == 0, result.stdout + result.stderr
    daemon = project.events("daemon")[0]["child_pid"]
    try:
        project.wait_for(lambda: not pid_alive(daemon), timeout=10, what="the daemon to end")
    finally:
        kill_quietly(daemon)


def test_without_proc_a_worker_needs_a_recorded_token_and_only_its_group_is_ended(sessions, tmp_path, monkeypatch):
    """What holds on macOS (no /proc), exercised here through `ps` alone: pid + start time + a
    token in the record for a worker, pid + start time + script name for the orchestrator, and
    only the process group is found (a daemon in a session of its own is out of sight)."""
    from tests.runtime.runtime_import import processes

    monkeypatch.setattr(processes, "_HAS_PROC", False)
    script = tmp_path / "orchestrate.py"
    script.write_text("import time\ntime.sleep(300)\n")
    orchestrator = sessions([sys.executable, str(script)])
    worker = sessions(["sh", "-c", '"$0" -c "$1"; sleep 300', sys.executable, DAEMONIZE], token=TOKEN)
    daemon = int(worker.stdout.readline())
    try:
        wait_until(lambda: processes.runs_script(orchestrator.pid, "orchestrate.py"), "the exec")
        started = processes.process_start_time(worker.pid)
        assert started and started == processes.process_start_time(worker.pid)
        assert processes.PidRecord(worker.pid, started, "A").is_alive() is False
        record = processes.PidRecord(worker.pid, started, "A", token=TOKEN)
        assert record.is_alive() is True
        assert processes.token_carriers(TOKEN) == []
        assert daemon not in processes.members_of(record) and worker.pid in processes.members_of(record)
        stranger = processes.PidRecord(worker.pid, started, "")
        assert stranger.is_alive() is False  # no stream, no token, not orchestrate.py
        own = processes.PidRecord(orchestrator.pid, processes.process_start_time(orchestrator.pid), "")
        assert own.is_alive() is True and processes.members_of(own) == []
    finally:
        kill_quietly(daemon)


def test_a_worker_read_while_it_execs_its_command_is_still_ours(monkeypatch):
    """Mid-exec, /proc/PID/environ reads empty (seen in most launches of a launcher that execs
    its command): identity must look again, or an adopting orchestrator takes a live worker for
    ended and starts a second one."""
    from tests.runtime.runtime_import import processes

    child = subprocess.Popen(["sleep", "30"], env={"PATH": os.environ["PATH"], processes.TOKEN_VARIABLE: TOKEN})
    try:
        record = processes.PidRecord(child.pid, processes.process_start_time(child.pid) or "", "A", token=TOKEN)
        real = processes._environment
        reads = iter([b"", b""])
        monkeypatch.setattr(processes, "_environment", lambda pid: next(reads, None) or real(pid))
        assert record.is_alive()
        monkeypatch.setattr(processes, "_environment", lambda pid: b"")  # never settles: not provably ours
        assert not record.is_alive()
    finally:
        child.kill()
        child.wait()
