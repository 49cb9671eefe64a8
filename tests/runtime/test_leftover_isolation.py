"""What one stream's ended worker left never holds another stream (issue 18), through the loop harness and
the fake executor: the leftover is TERM-deaf for as long as the test says, and meanwhile the other
stream completes, is merged and is announced in the same turn; only the stream whose worker left it
waits (with worktrees it is merged once its leftovers are gone: they may still write in its worktree).
The leftover grace itself, on real processes, is tests/reliability/test_leftover_grace.py."""

from tests.runtime.runtime_import import lifecycle as lc
from tests.support.loop_harness import FakeMerger, Harness

S = lc.StreamState


def test_a_leftover_of_one_stream_does_not_delay_the_merge_or_completion_of_another(tmp_path):
    merger = FakeMerger()
    h = Harness(tmp_path, {"A": [], "B": [], "C": ["B"], "D": ["A"]}, merger=merger)
    h.settle()
    h.executor.leave_behind("A")  # a TERM-deaf child: gone only when the test says
    h.finish("A")
    assert h.state("A") is S.MERGING and merger.merged == []  # its own merge waits for its leftover
    assert h.executor.cleaning_up() == {"A"}
    said = len(h.lines())
    h.finish("B")  # no time passes: the loop waits on nothing
    assert merger.merged == ["B"] and h.state("B") is S.COMPLETE
    assert h.lines()[said] == "B complete (1/1 tasks)"  # announced in the turn it was merged
    assert h.executor.spawns()[-1] == ("C", 1)  # B's dependent starts at once
    h.executor.left_gone("A")
    h.settle()
    assert merger.merged == ["B", "A"] and h.state("A") is S.COMPLETE
    assert h.executor.spawns()[-1] == ("D", 1)
    assert h.finish("C") is None
    assert h.finish("D") == 0


def test_a_leftover_of_one_stream_does_not_delay_another_streams_start_or_the_loops_sleep(tmp_path):
    h = Harness(tmp_path, {"A": [], "B": []}, max_parallel=1)
    h.settle()
    assert h.executor.spawns() == [("A", 1)]
    h.executor.leave_behind("A")
    h.finish("A")
    assert h.state("A") is S.COMPLETE and h.executor.cleaning_up() == {"A"}
    assert h.executor.spawns() == [("A", 1), ("B", 1)]  # the slot is free: B starts in the same turn
    assert h.supervisor.sleep_time() > 0  # and the loop sleeps: nothing spins on the leftover
    assert h.finish("B") is None  # the run ends only once everything its workers left is gone
    h.executor.left_gone("A")
    assert h.settle() == 0
