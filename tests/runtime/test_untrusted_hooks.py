"""The on_event hook is a user's program run on our behalf (issue 18): what it starts ends with it,
a path with spaces works, a missing hook is one clear warning, and its output is bounded."""

import os
import stat
import sys

import pytest

import tests.runtime.runtime_import  # noqa: F401  (puts the runtime on sys.path)
from _orchestrate_kit import notify  # noqa: E402
from tests.support.project import pid_alive
from tests.support.waiting import wait_until


def write_hook(path, body):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\nimport os, subprocess, sys, time\n{body}\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def notifier(tmp_path, command):
    warnings = []
    return notify.Notifier(command, tmp_path / "orchestrator.log", warnings.append), warnings


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="a setsid daemon is found by its token on Linux only")
def test_a_daemon_the_hook_forks_into_its_own_session_ends_at_the_timeout(tmp_path, monkeypatch):
    monkeypatch.setattr(notify, "HOOK_TIMEOUT", 1.0)
    pid_file = tmp_path / "daemon.pid"
    hook = write_hook(tmp_path / "hook.py", (
        "d = subprocess.Popen(['sleep', '600'], start_new_session=True, stdout=subprocess.DEVNULL)\n"
        f"open({str(pid_file)!r}, 'w').write(str(d.pid))"))  # the hook exits at once; its daemon stays
    hooks, warnings = notifier(tmp_path, str(hook))
    hooks.fire("run_finished")
    wait_until(lambda: pid_file.exists() and pid_file.read_text(), "the daemon's pid")
    daemon = int(pid_file.read_text())
    try:
        wait_until(lambda: not pid_alive(daemon), "the hook's daemon to be ended")
    finally:
        if pid_alive(daemon):
            os.kill(daemon, 9)
    assert "ran over 1s; killed it" in (tmp_path / "orchestrator.log").read_text()
    assert warnings == []


def test_an_unquoted_path_with_spaces_that_names_a_hook_runs_it(tmp_path):
    out = tmp_path / "ran.txt"
    hook = write_hook(tmp_path / "my hooks" / "notify me.py",
                      f"open({str(out)!r}, 'a').write(os.environ['ORCHESTRATE_EVENT'] + '\\n')")
    hooks, warnings = notifier(tmp_path, str(hook))
    hooks.fire("stream_failed", stream_id="A")
    wait_until(out.exists, "the hook to run")
    assert out.read_text() == "stream_failed\n" and warnings == []


def test_a_path_with_spaces_that_names_nothing_says_to_quote_it_once(tmp_path):
    write_hook(tmp_path / "my hooks" / "notify.py", "pass")
    hooks, warnings = notifier(tmp_path, f"{tmp_path}/my hooks/notify.py --quiet")  # the argument makes it a command
    for _ in range(3):
        hooks.fire("stream_failed")
    assert len(warnings) == 1 and "must be quoted" in warnings[0] and "no more events" in warnings[0]
    assert not (tmp_path / "orchestrator.log").exists()  # nothing started, no traceback anywhere


@pytest.mark.parametrize("command,said", [("/nowhere/hook.sh", "not a file"), ("no-such-hook-program", "not a program"),
                                          ("'unclosed", "quotes")])
def test_a_hook_that_cannot_run_is_one_warning_for_the_whole_run(tmp_path, command, said):
    hooks, warnings = notifier(tmp_path, command)
    for event in ("stream_failed", "usage_limit", "run_finished"):
        hooks.fire(event)
    assert len(warnings) == 1 and said in warnings[0]
    assert not (tmp_path / "orchestrator.log").exists()


def test_a_hook_that_is_not_executable_says_chmod(tmp_path):
    hook = tmp_path / "hook.sh"
    hook.write_text("#!/bin/sh\n", encoding="utf-8")
    hooks, warnings = notifier(tmp_path, str(hook))
    hooks.fire("run_finished")
    assert len(warnings) == 1 and "chmod +x" in warnings[0]


def test_a_hook_printing_20_MB_per_event_keeps_the_log_small(tmp_path):
    done = tmp_path / "done"
    hook = write_hook(tmp_path / "hook.py", (
        "for _ in range(20):\n    sys.stdout.write('y' * (1 << 20))\nsys.stdout.flush()\n"
        f"open({str(done)!r}, 'a').write('x')"))
    hooks, _warnings = notifier(tmp_path, str(hook))
    for _ in range(3):
        hooks.fire("stream_failed")
    log = tmp_path / "orchestrator.log"
    wait_until(lambda: log.exists() and log.read_text(errors="replace").count("dropped them") == 3, "three hook calls")
    assert log.stat().st_size < 3 * notify.HOOK_OUTPUT_LIMIT + 4096
