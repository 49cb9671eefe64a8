"""The run's journal: one line per event, atomic appends from several writers, torn lines skipped, a
SIGKILL of the writer survived, a full disk a warning; and the run id."""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tests.runtime.runtime_import  # noqa: F401  (puts the runtime on sys.path)
from _orchestrate_kit import journal as jl  # noqa: E402
from _orchestrate_kit.lifecycle import Life, StreamState  # noqa: E402
from tests.support.project import RUNTIME

RUN = "20260921T120000Z-abc123"


class Clock:
    def __init__(self):
        self.wall, self.mono = 1_790_000_000.0, 100.0

    def tick(self, seconds=1.0):
        self.wall += seconds
        self.mono += seconds


def journal(tmp_path, warnings=None, clock=None, write=os.write):
    clock = clock or Clock()
    sink = warnings if warnings is not None else []
    return jl.Journal(jl.journal_path(tmp_path / "journal", RUN), RUN, sink.append, lambda: clock.wall,
                      lambda: clock.mono, write)


def events(path, warnings=None):
    return list(jl.read_journal(path, (warnings if warnings is not None else []).append))


# ---------------------------------------------------------------- run ids and lines


def test_run_ids_sort_by_time_and_never_leave_their_folder(tmp_path):
    early, late = jl.new_run_id(1_790_000_000), jl.new_run_id(1_790_000_061)
    assert jl.is_run_id(early) and early.startswith("20260921T") and early < late
    assert jl.new_run_id(1_790_000_000) != early  # the random suffix
    for bad in ("../../etc/passwd", "20260921T120000Z-abc123/../x", "", "latest"):
        with pytest.raises(ValueError):
            jl.journal_path(tmp_path, bad)
    (tmp_path / f"{late}.jsonl").write_text("")
    (tmp_path / f"{early}.jsonl").write_text("")
    (tmp_path / "notes.jsonl").write_text("")
    assert jl.run_ids(tmp_path) == [early, late] and jl.run_ids(tmp_path / "missing") == []


def test_each_event_is_one_line_with_the_run_both_clocks_its_kind_and_fields(tmp_path):
    clock = Clock()
    j = journal(tmp_path, clock=clock)
    assert j.attempt_started("Stream-A", 1, session_id="s-1")
    clock.tick(2.5)
    assert j.attempt_ended("Stream-A", 1, exit_code=None, signal=9, complete=False, cost_usd=float("nan"),
                           result="x" * 10_000, reason="killed")
    assert j.transition("Stream-A", StreamState.RUNNING, StreamState.BACKOFF, "killed")
    lines = j.path.read_bytes().split(b"\n")
    assert len(lines) == 4 and lines[-1] == b""  # three lines, each ended
    first, ended, moved = events(j.path)
    assert first == {"v": 1, "run": RUN, "t": 1_790_000_000.0, "mono": 100.0, "kind": "attempt_started",
                     "stream": "Stream-A", "attempt": 1, "session_id": "s-1", "where": "local", "workspace": "",
                     "resume": False}
    assert ended["mono"] == 102.5 and ended["signal"] == 9 and ended["exit_code"] is None
    assert ended["cost_usd"] is None  # not a number: not JSON's NaN
    assert len(ended["result"]) == jl.RESULT_LIMIT and ended["result"].endswith("…")
    assert (moved["before"], moved["after"]) == ("running", "backoff")


def test_hostile_text_stays_one_ascii_line_and_comes_back_unchanged(tmp_path):
    hostile = 'Stream\n{"kind":"run_finished"}\r\u2028\x00\udcff<script>'
    j = journal(tmp_path)
    j.transition(hostile, "ready", "starting", reason=hostile)
    raw = j.path.read_bytes()
    assert raw.count(b"\n") == 1 and raw.isascii()
    (event,) = events(j.path)
    assert event["stream"] == hostile and event["reason"] == hostile and event["kind"] == "transition"


def test_record_changes_journals_every_row_whose_state_moved(tmp_path):
    j = journal(tmp_path)
    before = {"A": Life(StreamState.RUNNING), "B": Life(StreamState.WAITING)}
    after = {"A": Life(StreamState.BACKOFF, reason="worker exited with code 1"), "B": Life(StreamState.WAITING),
             "C": Life(StreamState.READY)}
    j.record_changes(before, after)
    seen = [(e["stream"], e["before"], e["after"], e["reason"]) for e in events(j.path)]
    assert seen == [("A", "running", "backoff", "worker exited with code 1"), ("C", None, "ready", "")]


def test_the_plan_and_the_settings_a_report_needs():
    from _orchestrate_kit.graph import build_board, critical_path
    from _orchestrate_kit.settings import Settings
    from _orchestrate_kit.trackers.snapshot import StreamRecord

    def record(sid, deps):
        return StreamRecord(sid, f"name of {sid}", deps, {"pending": 2})

    streams = {"A": record("A", ()), "B": record("B", ("A",)), "C": record("C", ("A",)), "Z": record("Z", ("B", "C"))}
    board = build_board(streams, {})
    plan = jl.plan_of(board.views, critical_path(streams, board.order))
    assert plan["levels"] == [["A"], ["B", "C"], ["Z"]]
    assert plan["streams"]["Z"] == {"name": "name of Z", "dependencies": ["B", "C"], "level": 2, "state": "waiting",
                                    "tasks": 2, "finished": 0}
    assert plan["critical_path"][0] == "A" and plan["critical_path"][-1] == "Z"
    shown = jl.settings_of(Settings(worker_command="claude --print --api-key SECRET -p", max_parallel=3))
    assert shown["max_parallel"] == 3 and shown["worker_program"] == "claude"
    assert "SECRET" not in json.dumps(shown) and "worker_command" not in shown


# ---------------------------------------------------------------- damaged journals


def test_a_truncated_last_line_is_skipped_with_a_warning_and_the_next_writer_starts_a_new_line(tmp_path):
    j = journal(tmp_path)
    for n in range(3):
        j.attempt_started("A", n + 1)
    j.close()
    data = j.path.read_bytes()
    j.path.write_bytes(data[:-15])  # the last line loses its end, as a torn write would leave it
    warnings = []
    assert [e["attempt"] for e in events(j.path, warnings)] == [1, 2]
    assert warnings == [f"{j.path.name}: skipped 1 damaged line(s) (line 3)"]

    again = journal(tmp_path)
    again.attempt_started("A", 4)
    assert [e["attempt"] for e in events(j.path)] == [1, 2, 4]  # the new event was not glued to the torn one
    assert jl.first_and_last(j.path)[1]["attempt"] == 4


def test_garbage_and_foreign_lines_are_skipped_never_raised(tmp_path):
    path = tmp_path / "journal" / f"{RUN}.jsonl"
    path.parent.mkdir()
    good = json.dumps({"v": 1, "run": RUN, "t": 1.0, "mono": 1.0, "kind": "usage_limit_resumed"})
    path.write_bytes(b"\n".join([b"\xff\xfe not json", b"[1, 2]", b'{"kind": 3, "t": 1}', b'{"kind": "x", "t": "soon"}',
                                 b'{"kind": "x", "t": NaN}', good.encode(), b"", b"{"]) + b"\n")
    warnings = []
    assert [e["kind"] for e in events(path, warnings)] == ["usage_limit_resumed"]
    assert "skipped 6 damaged line(s) (line 1, 2, 3, 4, 5, ...)" in warnings[0]
    assert events(tmp_path / "missing.jsonl", warnings) == [] and "cannot read" in warnings[-1]


def test_a_line_longer_than_the_limit_is_skipped_and_reading_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(jl, "LINE_LIMIT", 1000)
    j = journal(tmp_path)
    j.check_started("A", "make test")
    j.append("note", text="y" * 5000)
    j.check_passed("A", 1.0)
    warnings = []
    assert [e["kind"] for e in events(j.path, warnings)] == ["check_started", "check_passed"]
    assert "line 2" in warnings[0]


# ---------------------------------------------------------------- failures while writing


def test_a_full_disk_is_one_warning_the_run_goes_on_and_recovery_is_said(tmp_path):
    full = {"on": True}

    def write(fd, data):
        if full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)

    warnings = []
    j = journal(tmp_path, warnings, write=write)
    assert j.attempt_started("A", 1) is False and j.attempt_started("A", 2) is False
    assert len(warnings) == 1 and "No space left on device" in warnings[0] and "the run goes on" in warnings[0]
    full["on"] = False
    assert j.attempt_started("A", 3) is True
    assert "written again (2 event(s) before this one were lost)" in warnings[-1]
    assert [e["attempt"] for e in events(j.path)] == [3]


def test_a_short_write_is_never_glued_to_the_next_event(tmp_path):
    calls = {"n": 0}

    def write(fd, data):
        calls["n"] += 1
        if calls["n"] == 2:
            return os.write(fd, data[:10])  # the disk filled up in the middle of the line
        return os.write(fd, data)

    warnings = []
    j = journal(tmp_path, warnings, write=write)
    assert j.attempt_started("A", 1) and not j.attempt_started("A", 2) and j.attempt_started("A", 3)
    assert "only 10 of" in warnings[0]
    read_warnings = []
    assert [e["attempt"] for e in events(j.path, read_warnings)] == [1, 3] and "line 2" in read_warnings[0]


def test_a_file_size_limit_is_a_warning_not_a_dead_writer(tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse the write (EFBIG), as a full disk does."""
    script = textwrap.dedent(f"""
        import resource, signal, sys
        sys.path.insert(0, {str(RUNTIME)!r})
        from pathlib import Path
        from _orchestrate_kit.journal import Journal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the writer
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))
        warnings = []
        j = Journal(Path(sys.argv[1]), "{RUN}", warnings.append)
        written = sum(j.attempt_started("A", n) for n in range(100))
        print(written, len(warnings), warnings[0] if warnings else "")
    """)
    path = tmp_path / f"{RUN}.jsonl"
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    written, warned, first = done.stdout.split(" ", 2)
    assert 0 < int(written) < 100 and warned == "1" and "the run goes on" in first
    assert "File too large" in first or "bytes were written" in first  # refused, or cut at the limit
    assert len(events(path)) == int(written) and path.stat().st_size <= 2000


def test_a_journal_removed_under_the_writer_is_started_again(tmp_path):
    j = journal(tmp_path)
    j.attempt_started("A", 1)
    j.path.unlink()
    assert j.attempt_started("A", 2)
    assert [e["attempt"] for e in events(j.path)] == [2]


# ---------------------------------------------------------------- several processes, SIGKILL

WRITER = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, sys.argv[1])
    from pathlib import Path
    from _orchestrate_kit.journal import Journal
    j = Journal(Path(sys.argv[2]), sys.argv[3])
    name, count, size = sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
    n = 0
    while count == 0 or n < count:
        n += 1
        payload = (name * size)[:size]
        if j.append("note", name, n=n, payload=payload, length=len(payload)):
            os.write(1, b"%d\\n" % n)  # told only once the line is in the file
""")


def writer(path, name, count, size=100):
    return subprocess.Popen([sys.executable, "-c", WRITER, str(RUNTIME), str(path), RUN, name, str(count), str(size)],
                            stdout=subprocess.PIPE)


def test_two_processes_appending_at_once_never_interleave(tmp_path):
    path = tmp_path / f"{RUN}.jsonl"
    one, two = writer(path, "one", 1500, 700), writer(path, "two", 1500, 3000)
    for process in (one, two):
        process.communicate(timeout=120)
        assert process.returncode == 0
    warnings = []
    seen = events(path, warnings)
    assert warnings == [] and len(seen) == 3000
    for name in ("one", "two"):
        mine = [e for e in seen if e["stream"] == name]
        assert [e["n"] for e in mine] == list(range(1, 1501))  # each writer's own order kept
        assert all(len(e["payload"]) == e["length"] for e in mine)


def test_a_writer_killed_over_and_over_loses_no_event_it_was_told_of_and_leaves_no_torn_event(tmp_path):
    path = tmp_path / f"{RUN}.jsonl"
    told = {}
    for round_ in range(8):
        name = f"w{round_}"
        process = writer(path, name, 0, 200_000 if round_ % 2 else 300)  # big lines make a mid-line kill likely
        seen = []
        while len(seen) < 5:  # it is writing: kill it somewhere in its loop
            line = process.stdout.readline()
            assert line, "the writer died on its own"
            seen.append(int(line))
        process.send_signal(signal.SIGKILL)
        rest = process.stdout.read()  # what it said before it died (readline may hold some of it already)
        process.stdout.close()
        assert process.wait(timeout=60) == -signal.SIGKILL
        told[name] = seen + [int(n) for n in rest.split()]
    valid = events(path)
    for event in valid:
        assert len(event["payload"]) == event["length"]  # no torn line ever reads as an event
    for name, numbers in told.items():
        journaled = [e["n"] for e in valid if e["stream"] == name]
        assert journaled[:len(numbers)] == numbers  # every event it was told of is there, in order, once
        assert len(journaled) in (len(numbers), len(numbers) + 1)  # at most the one it was writing when killed


def test_reading_a_journal_of_100k_lines_streams_it(tmp_path):
    """Correctness at size (the speed is bench/bench_report.py's): every line read, in order."""
    path = tmp_path / f"{RUN}.jsonl"
    line = '{"v":1,"run":"%s","t":%d,"mono":%d,"kind":"transition","stream":"s%d","before":"ready","after":"running"}\n'
    path.write_text("".join(line % (RUN, n, n, n % 200) for n in range(100_000)))
    count = last = 0
    for event in jl.read_journal(path):
        count, last = count + 1, event["t"]
    assert count == 100_000 and last == 99_999
    first, final = jl.first_and_last(path)
    assert first["t"] == 0 and final["t"] == 99_999


def test_reading_only_some_kinds_skips_the_others_unparsed(tmp_path):
    j = journal(tmp_path)
    j.attempt_started("A", 1)
    j.attempt_ended("A", 1, exit_code=0, signal=None, complete=True, cost_usd=0.5)
    j.close()
    with open(j.path, "ab") as handle:
        handle.write(b"not json, and no kind we asked for\n")
    warnings = []
    assert [e["kind"] for e in jl.read_journal(j.path, warnings.append, kinds={"attempt_ended"})] == ["attempt_ended"]
    assert warnings == []  # a line it did not need to read is not reported


def test_a_line_torn_just_after_an_inner_brace_is_not_taken_with_its_neighbours(tmp_path):
    """Lines are parsed in batches (one JSON array); a torn line that happens to end with `}` must
    still be skipped alone, never merged with the next lines into something that parses."""
    j = journal(tmp_path)
    j.attempt_started("A", 1)
    j.run_started(settings={"max_parallel": 2}, targets=None, tracker="tc", isolation="none",
                  plan={"streams": {"A": {"dependencies": []}}, "levels": [["A"]], "critical_path": ["A"]})
    j.close()
    data = j.path.read_bytes()
    cut = data.index(b'"dependencies":[]}') + len(b'"dependencies":[]}')
    j.path.write_bytes(data[:cut])
    again = journal(tmp_path)
    for n in range(2, 6):
        again.attempt_started("A", n)
    warnings = []
    assert [e.get("attempt") for e in events(j.path, warnings)] == [1, 2, 3, 4, 5]
    assert warnings == [f"{j.path.name}: skipped 1 damaged line(s) (line 2)"]
