"""The loop's last-resort guard (issue 18): a bug met while handling one stream fails that stream, with
the reason and a traceback in state/crash.log, and the run goes on supervising the others.

Each test injects an exception into one stream's handling (judging its exit, building its spec,
reading its output) of the real supervisor, driven through the loop harness and the fake executor.
The same with real processes is in tests/reliability/test_loop_guard_run.py."""

import pytest

from tests.runtime.runtime_import import lifecycle as lc
from tests.runtime.runtime_import import supervisor as sv
from tests.support.loop_harness import FakeMerger, Harness

S = lc.StreamState
PAIR = {"A": [], "B": []}


class Injected(RuntimeError):
    """The fault the tests put into one stream's handling."""


def only_for(stream_id, real, position=0):
    """`real`, except that it raises Injected when its argument at `position` names `stream_id`."""
    def call(*args, **kwargs):
        target = args[position]
        named = getattr(target, "stream_id", target)
        if named == stream_id:
            raise Injected(f"injected fault for {stream_id}")
        return real(*args, **kwargs)
    return call


def crash_log(h):
    return (h.layout.state / "crash.log").read_text(encoding="utf-8")


def test_an_error_judging_one_exit_fails_that_stream_and_the_run_goes_on(tmp_path, monkeypatch):
    h = Harness(tmp_path, PAIR)
    h.settle()
    assert h.states() == {"A": "running", "B": "running"}
    monkeypatch.setattr(sv, "judge_exit", only_for("A", sv.judge_exit, position=1))  # (ended, its stream, ...)
    h.executor.exit("A", 1)
    assert h.settle() is None
    assert h.state("A") is S.FAILED and h.state("B") is S.RUNNING
    reason = h.row("A").reason
    assert reason.startswith("internal error while judging its exit: Injected: injected fault for A")
    assert "crash.log" in reason
    assert h.lines("A: internal error while judging its exit") and h.lines("failing this stream, the run goes on")
    log = crash_log(h)
    assert "stream A, while judging its exit" in log and "Traceback" in log and "Injected" in log
    assert h.executor.spawns() == [("A", 1), ("B", 1)]  # A is not restarted: a bug would repeat
    assert h.finish("B") == 1  # supervised to its end; the run ends as a run with a failed stream does
    assert h.run.outcome and h.lines("A")


def test_an_error_building_one_spec_fails_that_stream_and_the_other_starts(tmp_path, monkeypatch):
    monkeypatch.setattr(sv, "build_spec", only_for("A", sv.build_spec))
    h = Harness(tmp_path, PAIR)
    assert h.settle() is None
    assert h.executor.spawns() == [("B", 1)]
    assert h.state("A") is S.FAILED and h.row("A").reason.startswith(
        "internal error while starting its worker: Injected: injected fault for A")
    assert "stream A, while starting its worker" in crash_log(h)
    assert h.finish("B") == 1
    assert h.executor.spawns() == [("B", 1)]


def test_an_error_reading_one_output_stops_its_worker_then_fails_it(tmp_path, monkeypatch):
    h = Harness(tmp_path, PAIR, stop_grace=10.0)
    h.settle()
    outputs = h.supervisor.outputs
    monkeypatch.setattr(outputs, "read_stream", only_for("A", outputs.read_stream))
    h.executor.deaf.add("A")  # its worker ignores TERM: the stream stays stopping until the KILL
    h.executor.say("B", "B is working")
    h.turn()
    assert h.executor.sent("terminate") == ["A"] and h.state("A") is S.STOPPING
    assert h.state("B") is S.RUNNING
    h.wait(1.0)  # its output fails again each turn: said and logged once, TERM not repeated
    assert len(h.lines("A: internal error while reading its output")) == 1
    assert crash_log(h).count("stream A, while reading its output") == 1
    assert h.executor.sent("terminate") == ["A"]
    h.wait_until(lambda: "A" not in h.executor.running)  # KILLed at the stop grace
    h.settle()
    assert h.executor.sent("kill") == ["A"]
    assert h.state("A") is S.FAILED and h.row("A").reason.startswith("internal error while reading its output")
    assert h.state("B") is S.RUNNING
    assert h.finish("B") == 1
    assert h.executor.spawns() == [("A", 1), ("B", 1)]


def test_a_stream_whose_worker_completed_it_is_not_failed_by_a_later_error(tmp_path, monkeypatch):
    """The guard fails what is unfinished; work the tracker shows complete completes as usual."""
    h = Harness(tmp_path, PAIR)
    h.settle()
    monkeypatch.setattr(h.supervisor.announce, "exit", only_for("A", h.supervisor.announce.exit))
    h.tracker.complete("A")
    h.executor.exit("A", 0)
    assert h.settle() is None
    assert h.state("A") is S.COMPLETE
    assert h.lines("A: internal error while judging its exit")
    assert h.finish("B") == 0


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_is_not_a_stream_bug(tmp_path, monkeypatch, error):
    h = Harness(tmp_path, PAIR)
    h.settle()

    def interrupted(*_args):
        raise error()
    monkeypatch.setattr(sv, "judge_exit", interrupted)
    h.executor.exit("A", 1)
    with pytest.raises(error):
        h.settle()


def test_an_error_merging_one_stream_parks_it_with_its_work_kept_and_the_others_merge(tmp_path, monkeypatch):
    merger = FakeMerger()
    h = Harness(tmp_path, {"A": [], "B": [], "C": ["B"]}, merger=merger)
    h.settle()
    monkeypatch.setattr(merger, "merge", only_for("A", merger.merge))
    h.finish("A")
    assert h.state("A") is S.MERGE_CONFLICT  # parked: its branch is kept for `start A` to merge again
    assert h.row("A").reason.startswith("internal error while merging it: Injected: injected fault for A")
    assert "stream A, while merging it" in crash_log(h)
    h.finish("B")
    assert merger.merged == ["B"] and h.state("B") is S.COMPLETE
    assert h.executor.spawns()[-1] == ("C", 1)
    monkeypatch.undo()
    assert h.request({"action": "start", "streams": ["A"]})
    assert merger.merged == ["B", "A"] and h.state("A") is S.COMPLETE
    assert h.finish("C") == 0
