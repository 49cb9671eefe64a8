"""stream_graph: pure functions over stream records."""

from tests.runtime.runtime_import import executor_api as ex
from tests.runtime.runtime_import import lifecycle as lc
from tests.runtime.runtime_import import stream_graph as sg
from tests.runtime.runtime_import import task_copilot_client as tcc


def streams(spec, complete=()):
    out = {}
    for sid, deps in spec.items():
        counts = {"completed": 1} if sid in complete else {"pending": 1}
        out[sid] = tcc.StreamRecord(sid, sid, tuple(deps), counts)
    return out


DIAMOND = {"A": [], "B": ["A"], "C": ["A"], "Z": ["B", "C"]}


def test_diamond_states_and_levels():
    board = sg.build_board(streams(DIAMOND), {})
    assert {s: v.state.value for s, v in board.views.items()} == {
        "A": "ready", "B": "waiting", "C": "waiting", "Z": "waiting"}
    assert board.views["Z"].waiting_on == ("B", "C")
    assert {s: v.level for s, v in board.views.items()} == {"A": 0, "B": 1, "C": 1, "Z": 2}
    rows = {"B": lc.Life(state=lc.StreamState.RUNNING, attempts=1, ran=True)}
    worker = ex.Handle("B", 1, "42@1", 7.0, "pid 42", (("pid", 42),))
    board = sg.build_board(streams(DIAMOND, complete={"A"}), rows, {"B": worker})
    assert board.views["B"].state is sg.StreamState.RUNNING
    view = board.views["B"]
    assert (view.where, view.worker, view.started_at, view.attempts) == ("pid 42", {"pid": 42}, 7.0, 1)
    assert board.views["C"].state is sg.StreamState.READY


def test_cycles_are_named_and_invalid():
    spec = {"A": ["C"], "B": ["A"], "C": ["B"], "D": ["D"], "E": ["A"], "F": []}
    board = sg.build_board(streams(spec), {})
    assert board.problems.cycles == (("A", "C", "B"), ("D",))
    messages = board.problems.messages()
    assert "Circular dependency detected: A -> C -> B -> A" in messages
    assert "Circular dependency detected: D -> D" in messages
    states = {s: v.state.value for s, v in board.views.items()}
    assert states == {"A": "invalid", "B": "invalid", "C": "invalid", "D": "invalid", "E": "waiting", "F": "ready"}


def test_unknown_dependency_is_invalid():
    board = sg.build_board(streams({"A": ["ghost"], "B": ["A"]}), {})
    assert board.views["A"].state is sg.StreamState.INVALID
    assert "unknown stream 'ghost'" in board.views["A"].reason
    assert board.views["B"].waiting_on == ("A",)


def test_failed_and_complete_take_precedence_correctly():
    rows = {"A": lc.Life(state=lc.StreamState.FAILED, attempts=3, reason="boom"),
            "B": lc.Life(state=lc.StreamState.FAILED, reason="x")}
    board = sg.build_board(streams({"A": [], "B": []}, complete={"B"}), rows)
    assert board.views["A"].state is sg.StreamState.FAILED
    assert board.views["A"].describe() == "failed after 3 attempts"
    assert board.views["B"].state is sg.StreamState.COMPLETE


def test_critical_path_and_start_order():
    spec = {"long1": [], "long2": ["long1"], "long3": ["long2"], "short": [], "mid1": [], "mid2": ["mid1"]}
    recs = streams(spec)
    board = sg.build_board(recs, {})
    assert sg.critical_path(recs, board.order) == ["long1", "long2", "long3"]
    assert sg.start_order(board, ["short", "mid1", "long1"]) == ["long1", "mid1", "short"]
    done = streams(spec, complete={"long1"})
    board = sg.build_board(done, {})
    assert sg.critical_path(done, board.order) == ["long2", "long3"]


def test_deep_chain_needs_no_recursion():
    spec = {f"s{i}": [f"s{i - 1}"] if i else [] for i in range(5000)}
    board = sg.build_board(streams(spec), {})
    assert board.views["s4999"].level == 4999
    assert board.views["s0"].remaining_path == 5000


def test_problem_messages_can_be_limited_to_some_streams():
    board = sg.build_board(streams({"A": ["B"], "B": ["A"], "C": ["ghost"], "D": []}), {})
    assert board.problems.messages({"C"}) == ["Stream 'C' depends on unknown stream 'ghost'"]
    assert board.problems.messages({"B"}) == ["Circular dependency detected: A -> B -> A"]
    assert len(board.problems.messages()) == 2
