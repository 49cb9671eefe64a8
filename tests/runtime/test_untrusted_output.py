"""A worker's output is untrusted: values are validated where they are read, the CLI's failure texts
count only where the CLI puts them, usage-limit resets are bounded, and a log is read to its end at
exit with bounded memory (issue 18). Pure: AgentStream and WorkerOutputs over scripted lines and files."""

import json
import math
import tracemalloc

import pytest

import tests.runtime.runtime_import  # noqa: F401  (puts the runtime on sys.path)
from _orchestrate_kit.agent import claude as cc  # noqa: E402
from _orchestrate_kit.agent import events as ev  # noqa: E402
from _orchestrate_kit.agent import output as out  # noqa: E402

SESSION = "5b0d3c5e-8a4f-4a7e-9d61-0c2f3b7e1a90"
NOW = 1_790_000_000.0  # 2026-09-21
ROOT_REFUSAL = "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons"


def event(**fields):
    return json.dumps(fields, ensure_ascii=False)  # compact and unescaped, as the CLI prints


def init(session_id=SESSION):
    return event(type="system", subtype="init", session_id=session_id, model="claude-sonnet-5")


def assistant(text, message_id="m1", **extra):
    return event(type="assistant", message={"id": message_id, "model": "claude-sonnet-5", "role": "assistant",
                                            "content": [{"type": "text", "text": text}],
                                            "usage": {"input_tokens": 10, "output_tokens": 5}},
                 session_id=SESSION, **extra)


def tool_output(text):
    return event(type="user", message={"role": "user", "content": [
        {"tool_use_id": "toolu_1", "type": "tool_result", "content": text, "is_error": False}]}, session_id=SESSION)


def result(**fields):
    base = {"type": "result", "subtype": "success", "is_error": False, "num_turns": 3, "result": "done",
            "session_id": SESSION, "total_cost_usd": 0.25, "terminal_reason": "completed",
            "usage": {"input_tokens": 10, "output_tokens": 40}}
    base.update(fields)
    return json.dumps(base)


# ---------------------------------------------------------------- values validated where they are read


@pytest.mark.parametrize("bad", ["not-a-uuid", "--resume", "", 42, ["x"], "5b0d3c5e-8a4f-4a7e-9d61-0c2f3b7e1a90\n-x"])
def test_a_session_id_that_is_not_a_uuid_is_dropped_with_a_note(bad):
    stream = ev.AgentStream()
    stream.feed(init(SESSION), NOW)
    stream.feed(event(type="system", subtype="init", session_id=bad), NOW)
    stream.feed(result(session_id=bad), NOW)
    assert stream.session_id == SESSION  # the good one it said before is kept
    notes = stream.take_notes()
    assert len(notes) == 1 and "not a UUID" in notes[0]
    fresh = ev.AgentStream()
    fresh.feed(event(type="system", subtype="init", session_id=bad), NOW)
    assert fresh.session_id is None


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "-0.5", "1e308", "100001", '"0.25"', "true"])
def test_a_cost_that_is_not_a_finite_amount_is_dropped_with_a_note(bad):
    stream = ev.AgentStream()
    line = result().replace('"total_cost_usd": 0.25', f'"total_cost_usd": {bad}')
    assert bad in line
    stream.feed(line, NOW)
    assert stream.cost_usd is None
    assert any("total_cost_usd" in note for note in stream.take_notes())
    assert stream.outcome(0).kind is ev.EndKind.OK  # the rest of the result still counts


def test_a_huge_cost_twice_never_makes_the_live_cost_infinite(tmp_path):
    outputs = out.WorkerOutputs()
    for sid in ("A", "B"):
        log = tmp_path / f"{sid}.log"
        log.write_text(result(total_cost_usd=1e308) + "\n", encoding="utf-8")
        outputs.watch(sid, log, 0, NOW)
    outputs.read(NOW)
    assert math.isfinite(outputs.live_cost()) and outputs.live_cost() == 0.0


@pytest.mark.parametrize("field,bad", [("num_turns", -3), ("num_turns", 1.5), ("num_turns", "7"),
                                       ("num_turns", 10 ** 30), ("num_turns", True)])
def test_turns_that_are_not_a_count_are_dropped_with_a_note(field, bad):
    stream = ev.AgentStream()
    stream.feed(assistant("working"), NOW)
    stream.feed(result(**{field: bad}), NOW)
    assert stream.turns == 1  # what the assistant events counted
    assert any(field in note for note in stream.take_notes())


@pytest.mark.parametrize("bad", [-100, 1e9, "5", 10 ** 30, float("nan")])
def test_tokens_that_are_not_a_count_are_dropped_with_a_note(bad):
    stream = ev.AgentStream()
    usage = {"input_tokens": bad, "cache_read_input_tokens": 20, "output_tokens": bad}
    stream.feed(event(type="assistant", message={"id": "m1", "model": "m", "content": [], "usage": usage}), NOW)
    stream.feed(result(usage=usage), NOW)
    assert (stream.input_tokens, stream.output_tokens) == (20, 0)
    assert stream.take_notes()


def test_a_worker_repeating_a_bad_value_is_noted_once():
    stream = ev.AgentStream()
    for _ in range(1000):
        stream.feed(event(type="system", subtype="init", session_id="nope"), NOW)
    assert len(stream.take_notes()) == 1 and stream.take_notes() == []


def test_a_deeply_nested_event_is_text_not_a_crash():
    stream = ev.AgentStream()
    assert stream.feed('{"a":' * 100_000 + "1" + "}" * 100_000, NOW) is None
    assert stream.events == 0


def test_a_resume_of_a_session_that_is_not_a_uuid_starts_afresh_instead_of_raising():
    """A run.json from before the check (or edited) can hold anything: the stream starts a new session."""
    base = ["claude", "--print", "--dangerously-skip-permissions", "-p"]
    argv = cc.build_argv(base, cc.StreamLimits(), cc.Launch("the full prompt", resume_session="not-a-uuid"))
    assert not any(a.startswith("--resume") for a in argv)
    assert argv[-2:] == ["--", "the full prompt"]


# ---------------------------------------------------------------- the CLI's texts only where the CLI puts them


QUOTES = [
    ROOT_REFUSAL,
    "Claude AI usage limit reached|1790003600",
    "Claude AI usage limit reached|9999999999",
    "You've hit your limit · resets 1pm (Europe/Lisbon)",
    "Not logged in · Please run /login",
    "You've hit your monthly spend limit · raise it at claude.ai/settings/usage",
]


@pytest.mark.parametrize("text", QUOTES)
def test_the_clis_texts_quoted_by_the_agent_or_its_tools_are_no_signal(text):
    stream = ev.AgentStream()
    stream.feed(init(), NOW)
    assert stream.feed(assistant(f"The CLI prints:\n{text}\nwhen that happens."), NOW) is None
    assert stream.feed(assistant(text, "m2"), NOW) is None  # even alone in a message of its own
    assert stream.feed(tool_output(f"docs/RELIABILITY.md:12:{text}\n{text}"), NOW) is None
    assert stream.feed(text, NOW) is None  # a plain line after the events: not where the CLI reports
    assert stream.feed(result(result=text), NOW) is None  # a successful result that quotes it
    assert stream.limit is None and stream.fatal is None
    assert stream.outcome(0).kind is ev.EndKind.OK


@pytest.mark.parametrize("text", QUOTES)
def test_a_cut_off_event_quoting_the_clis_texts_is_no_signal(text):
    stream = ev.AgentStream()
    line = assistant(f"the CLI said {text} and more")
    cut = line[: line.index(text) + len(text)]
    assert stream.feed(cut, NOW) is None
    assert stream.outcome(1).kind is ev.EndKind.CRASH


@pytest.mark.parametrize("line", [
    f"grep: docs/RELIABILITY.md: {ROOT_REFUSAL}",
    f"  `{ROOT_REFUSAL}`",
    "echo 'Claude AI usage limit reached|1790003600'",
    "the message was: Claude AI usage limit reached|1790003600",
    "Claude AI usage limit reached|1790003600 is what the old CLI printed",
    "I saw \"You've hit your limit · resets 1pm (Europe/Lisbon)\" in the log",
])
def test_a_plain_line_that_quotes_the_clis_texts_is_no_signal(line):
    stream = ev.AgentStream()
    assert stream.feed(line, NOW) is None
    assert stream.limit is None and stream.fatal is None


def test_the_root_refusal_counts_only_where_the_cli_refuses_to_start():
    early = ev.AgentStream()
    assert isinstance(early.feed(ROOT_REFUSAL, NOW), ev.Fatal)
    late = ev.AgentStream()  # a text-mode worker whose own output has it on line 12
    for n in range(11):
        late.feed(f"step {n}", NOW)
    assert late.feed(ROOT_REFUSAL, NOW) is None
    assert late.outcome(1).kind is ev.EndKind.CRASH


def test_every_form_the_cli_prints_is_still_seen_where_it_prints_it():
    # text mode: the CLI's whole output is its message
    for line in ("Claude AI usage limit reached|1790003600", "You've hit your limit · resets 1pm (Europe/Lisbon)",
                 'API Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"x"}}'):
        assert isinstance(ev.AgentStream().feed(line, NOW), ev.UsageLimit), line
    # stream-json: the CLI's synthetic error message, then its result
    stream = ev.AgentStream()
    stream.feed(init(), NOW)
    text = "You've hit your limit · resets 1pm (UTC)"
    signal = stream.feed(event(type="assistant", error="rate_limit", message={
        "id": "m9", "model": "<synthetic>", "content": [{"type": "text", "text": text}]}), NOW)
    assert isinstance(signal, ev.UsageLimit)
    errored = ev.AgentStream()
    errored.feed(init(), NOW)
    assert isinstance(errored.feed(result(is_error=True, result="Claude AI usage limit reached|1790003600"), NOW),
                      ev.UsageLimit)


# ---------------------------------------------------------------- reset times far from now are clamped


@pytest.mark.parametrize("line", ["Claude AI usage limit reached|9999999999",
                                  "Claude AI usage limit reached|9999999999999"])
def test_a_reset_far_from_now_is_clamped_and_said(line):
    stream = ev.AgentStream()
    signal = stream.feed(line, NOW)
    assert signal.resume_at == NOW + ev.MAXIMUM_LIMIT_WAIT
    notes = stream.take_notes()
    assert len(notes) == 1 and "more than 24 hours away" in notes[0] and "2286" in notes[0]
    assert stream.outcome(1).resume_at == NOW + ev.MAXIMUM_LIMIT_WAIT


def test_a_rate_limit_event_reset_far_from_now_is_clamped_too():
    stream = ev.AgentStream()
    stream.feed(init(), NOW)
    stream.feed(event(type="rate_limit_event", rate_limit_info={"status": "rejected", "resetsAt": 9e12}), NOW)
    signal = stream.feed(result(is_error=True, api_error_status=429, result="API Error: Request rejected (429)"), NOW)
    assert signal.resume_at == NOW + ev.MAXIMUM_LIMIT_WAIT


def test_a_reset_within_the_day_is_kept():
    signal = ev.AgentStream().feed(f"Claude AI usage limit reached|{int(NOW) + 5 * 3600}", NOW)
    assert signal.resume_at == NOW + 5 * 3600


# ---------------------------------------------------------------- read in full at exit, bounded memory


def watched(tmp_path, text: bytes, notes=None):
    log = tmp_path / "A.log"
    log.write_bytes(text)
    outputs = out.WorkerOutputs(note=lambda _sid, note: (notes if notes is not None else []).append(note))
    outputs.watch("A", log, 0, NOW)
    return outputs, log


def test_after_a_line_longer_than_the_cap_the_result_is_still_read_with_bounded_memory(tmp_path):
    big = tool_output("x" * (3 * out.LINE_LIMIT)).encode()
    notes = []
    outputs, _log = watched(tmp_path, init().encode() + b"\n" + big + b"\n" + result(total_cost_usd=1.5).encode()
                            + b"\n", notes)
    tracemalloc.start()
    try:
        ended = outputs.finish("A", 0, NOW)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    outcome, agent = ended
    assert agent.cost_usd == 1.5 and outcome.kind is ev.EndKind.OK
    assert peak < out.LINE_LIMIT + 4 * out.READ_LIMIT, peak  # never the whole 24 MiB line
    assert len(notes) == 1 and "longer than 8 MiB" in notes[0]


def test_everything_left_at_exit_is_read_so_a_limit_after_a_flood_is_seen(tmp_path):
    flood = b"".join(assistant(f"step {n} " + "y" * 2000, f"m{n}").encode() + b"\n" for n in range(3000))
    assert len(flood) > 4 * out.READ_LIMIT
    text = "You've hit your limit · resets 1pm (UTC)"
    tail = (event(type="assistant", error="rate_limit", message={"id": "z", "model": "<synthetic>", "content": [
        {"type": "text", "text": text}]}) + "\n" + result(is_error=True, result=text, api_error_status=429)).encode()
    outputs, _log = watched(tmp_path, init().encode() + b"\n" + flood + tail)  # no newline at the very end
    outputs.read(NOW)  # one turn's read, then the worker exits
    outcome, agent = outputs.finish("A", 1, NOW)
    assert outcome.kind is ev.EndKind.USAGE_LIMIT
    assert agent.input_tokens == 10 * 3000  # every message of the flood was read


def test_a_running_workers_overlong_line_is_skipped_in_pieces(tmp_path):
    outputs, log = watched(tmp_path, init().encode() + b"\n")
    outputs.read(NOW)
    with open(log, "ab") as handle:
        for _ in range(3 * out.LINE_LIMIT // out.READ_LIMIT):
            handle.write(b"z" * out.READ_LIMIT)  # a line still being written, longer than the cap
            outputs.read(NOW)
        handle.write(b'zz"}\n' + result(total_cost_usd=0.5).encode() + b"\n")
    assert outputs.read(NOW) == []
    assert outputs.live_cost() == 0.5


def test_notes_reach_the_callback_with_the_stream(tmp_path):
    said = []
    outputs = out.WorkerOutputs(note=lambda sid, text: said.append((sid, text)))
    log = tmp_path / "A.log"
    log.write_text(init("bogus") + "\n" + result(total_cost_usd=float("nan")).replace("NaN", "NaN") + "\n")
    outputs.watch("A", log, 0, NOW)
    outputs.read(NOW)
    assert [sid for sid, _ in said] == ["A", "A"]
    assert "UUID" in said[0][1] and "total_cost_usd" in said[1][1]


def test_saved_activity_is_strict_json_even_from_a_damaged_file(tmp_path):
    path = tmp_path / "activity.json"
    path.write_text('{"A": {"cost_usd": NaN, "turns": Infinity, "last_message": "x"}}', encoding="utf-8")
    loaded = out.load_activity(path)
    assert loaded["A"]["cost_usd"] is None and loaded["A"]["turns"] is None and loaded["A"]["last_message"] == "x"
    outputs = out.WorkerOutputs()
    outputs.watch("A", tmp_path / "none.log", 0, NOW)
    outputs.save_activity(path, {"A": float("inf")}, NOW, force=True)
    json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in activity.json"))
