"""agent_events: the per-worker accumulator and the classification of a worker's end (pure, fixed clocks)."""

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

import tests.runtime.runtime_import  # noqa: F401  (puts the runtime on sys.path)
from _orchestrate_kit.agent import events as ev  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "support" / "claude-samples"
SESSION = "5b0d3c5e-8a4f-4a7e-9d61-0c2f3b7e1a90"


def utc(text):
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


RESETS = [
    # (message, now UTC, expected reset UTC or None)
    ("You've hit your limit · resets 1pm (Europe/Lisbon)", "2026-07-10T10:00", "2026-07-10T12:00"),
    ("You've hit your limit · resets 1pm (Europe/Lisbon)", "2026-01-10T10:00", "2026-01-10T13:00"),  # winter: UTC+0
    # long past today: tomorrow's
    ("You've hit your limit · resets 1pm (Europe/Lisbon)", "2026-07-10T12:30", "2026-07-11T12:00"),
    # read a few minutes late: this limit's reset, wait a minute more (not a day)
    ("You've hit your limit · resets 1pm (Europe/Lisbon)", "2026-07-10T12:05", "2026-07-10T12:06"),
    ("You've hit your session limit · resets 12:50am (America/Los_Angeles)", "2026-01-15T07:00",
     "2026-01-15T08:50"),  # 23:00 PST -> past midnight
    ("You've hit your session limit · resets 12:50am (America/Los_Angeles)", "2026-03-07T20:00",
     "2026-03-08T08:50"),  # the night DST starts, before the change: still PST
    # 2:30am does not exist on 2026-03-08 in Los Angeles: taken at PST, i.e. 3:30 PDT
    ("You've hit your limit · resets 2:30am (America/Los_Angeles)", "2026-03-08T06:00", "2026-03-08T10:30"),
    # 1:30am happens twice on 2026-11-01: the first one (PDT)
    ("You've hit your limit · resets 1:30am (America/Los_Angeles)", "2026-11-01T07:00", "2026-11-01T08:30"),
    ("You've hit your limit · resets 9am (America/New_York)", "2026-11-01T12:00", "2026-11-01T14:00"),  # after fall back
    ("You've hit your limit · resets Apr 23 at 4pm (America/Recife)", "2026-04-20T00:00", "2026-04-23T19:00"),
    ("You've hit your limit · resets May 5 at 9pm (America/New_York)", "2026-05-03T20:54", "2026-05-06T01:00"),
    ("You've hit your limit · resets Jan 2 at 9am (Asia/Tokyo)", "2026-12-30T00:00", "2027-01-02T00:00"),  # year
    ("You've hit your limit · resets 1am (Asia/Tokyo)", "2026-01-31T14:00", "2026-01-31T16:00"),  # month
    ("You've hit your limit · resets Feb 29 at 9am (UTC)", "2026-03-01T00:00", "2028-02-29T09:00"),
    ("You've hit your limit · resets 11:15pm (Asia/Kolkata)", "2026-08-26T19:00", "2026-08-27T17:45"),
    ("Limit reached · resets 11:30am (Asia/Calcutta) · /upgrade to Max or turn on /extra-usage",
     "2026-12-11T00:00", "2026-12-11T06:00"),
    ("Claude AI usage limit reached|1760000400", "2025-10-09T00:00", "2025-10-09T09:00"),
    ("Claude AI usage limit reached|1760000400000", "2025-10-09T00:00", "2025-10-09T09:00"),  # milliseconds
    ("Claude AI usage limit reached|1760000400", "2025-10-09T09:05", "2025-10-09T09:06"),  # just passed
    ("Claude AI usage limit reached|1760000400", "2025-10-10T09:00", None),  # a stale message
    ("You've hit your limit · resets 1pm (Mars/Olympus_Mons)", "2026-07-10T10:00", None),
    ("You've hit your limit · resets 1pm (../../etc/passwd)", "2026-07-10T10:00", None),
    ("You've hit your limit · resets 13pm (UTC)", "2026-07-10T10:00", None),
    ("You've hit your limit · resets 1:75pm (UTC)", "2026-07-10T10:00", None),
    ("You've hit your limit · resets Foo 3 at 1pm (UTC)", "2026-07-10T10:00", None),
    ("You've hit your limit · resets soon", "2026-07-10T10:00", None),
    ("You've hit your limit", "2026-07-10T10:00", None),
]


@pytest.mark.parametrize("message,now,expected", RESETS)
def test_limit_reset_is_the_next_occurrence_in_the_named_zone(message, now, expected):
    reset = ev.parse_limit_reset(message, utc(now))
    assert reset == (None if expected is None else utc(expected))


@pytest.mark.parametrize("line", [
    "Claude AI usage limit reached|1760000400",
    "You've hit your limit · resets 1pm (Europe/Lisbon)",
    "You've hit your session limit · resets 12:50am (America/Los_Angeles)",
    "You've hit your weekly limit · resets Apr 23 at 4pm (America/Recife)",
    'API Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed '
    'your account\'s rate limit. Please try again later."}}',
])
def test_each_text_form_of_a_usage_limit_is_seen_as_it_arrives(line):
    stream = ev.AgentStream()
    signal = stream.feed(line + "\n", 100.0)
    assert isinstance(signal, ev.UsageLimit)
    assert stream.outcome(1).kind is ev.EndKind.USAGE_LIMIT
    assert stream.feed(line, 101.0) is None  # signalled once


def test_an_unreadable_reset_leaves_the_wait_to_the_caller():
    stream = ev.AgentStream()
    signal = stream.feed('API Error: 429 {"error":{"type":"rate_limit_error"}}', 0.0)
    assert signal.resume_at is None and ev.DEFAULT_LIMIT_WAIT > 0
    assert stream.outcome(1).resume_at is None


@pytest.mark.parametrize("line", [
    "We discussed the usage limit and decided to wait.",
    "Handled rate_limit_error in the client retry code",
    "The login page says: Not logged in",
    "error: this is the agent talking",
])
def test_a_worker_talking_about_limits_or_logins_is_not_a_signal(line):
    stream = ev.AgentStream()
    assert stream.feed(line, 0.0) is None
    assert stream.outcome(0).kind is ev.EndKind.OK


FATAL_LINES = [
    ("Not logged in · Please run /login", ev.FatalKind.NOT_LOGGED_IN, "claude /login"),
    ("Invalid API key · Please run /login", ev.FatalKind.NOT_LOGGED_IN, "setup-token"),
    ("--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons",
     ev.FatalKind.ROOT_REFUSED, "normal user"),
    ("error: unknown option '--bogus-flag'", ev.FatalKind.UNKNOWN_OPTION, "worker_command"),
    ("Error: Input must be provided either through stdin or as a prompt argument when using --print",
     ev.FatalKind.NO_PROMPT, "--allowedTools=A,B"),
    ("orchestrate: cannot run worker command 'claude': [Errno 2] No such file or directory: 'claude'",
     ev.FatalKind.NOT_RUNNABLE, "PATH"),
    ("orchestrate: cannot run worker command './agent.sh': [Errno 13] Permission denied: './agent.sh'",
     ev.FatalKind.NOT_RUNNABLE, "executable"),
    ("You've hit your monthly spend limit · raise it at claude.ai/settings/usage", ev.FatalKind.SPEND_LIMIT,
     "spend limit"),
]


@pytest.mark.parametrize("line,kind,fix", FATAL_LINES)
def test_configuration_failures_are_fatal_with_a_fix(line, kind, fix):
    stream = ev.AgentStream()
    signal = stream.feed(line, 5.0)
    assert isinstance(signal, ev.Fatal) and signal.kind is kind and fix in signal.fix
    outcome = stream.outcome(127 if kind is ev.FatalKind.NOT_RUNNABLE else 1)
    assert outcome.kind is ev.EndKind.FATAL and outcome.fatal is signal


@pytest.mark.parametrize("line", [
    "error: option '--permission-mode <mode>' argument 'weird' is invalid. Allowed choices are acceptEdits.",
    "Error: Invalid session ID. Must be a valid UUID.",
    "Error: When using --print, --output-format=stream-json requires --verbose",
])
def test_other_argument_errors_are_fatal_when_the_cli_exits_with_them(line):
    stream = ev.AgentStream()
    assert stream.feed(line, 0.0) is None  # not at once: a worker's own text may start like that
    outcome = stream.outcome(1)
    assert outcome.kind is ev.EndKind.FATAL and outcome.fatal.kind is ev.FatalKind.BAD_ARGUMENT
    assert line[:40] in outcome.reason


@pytest.mark.parametrize("line,kind", [
    ("Error: Exceeded USD budget (1)", ev.EndKind.BUDGET_EXHAUSTED),
    ("Error: Reached max turns (3)", ev.EndKind.MAX_TURNS),
])
def test_text_mode_ends_that_look_like_errors_are_not_argument_errors(line, kind):
    stream = ev.AgentStream()
    stream.feed(line, 0.0)
    assert stream.outcome(1).kind is kind


def test_an_error_line_after_events_is_a_crash_not_a_parse_error():
    stream = ev.AgentStream()
    stream.feed(event(type="system", subtype="init", session_id=SESSION), 0.0)
    stream.feed("Error: something broke", 1.0)
    assert stream.outcome(1).kind is ev.EndKind.CRASH


def event(**fields):
    return json.dumps(fields)


def assistant(text, message_id="m1", model="claude-sonnet-5", usage=None, **extra):
    return event(type="assistant", message={
        "id": message_id, "model": model, "role": "assistant",
        "content": [{"type": "text", "text": text}],
        "usage": usage or {"input_tokens": 0, "output_tokens": 0}}, session_id=SESSION, **extra)


def result(**fields):
    base = {"type": "result", "subtype": "success", "is_error": False, "num_turns": 3, "result": "done",
            "session_id": SESSION, "total_cost_usd": 0.25, "terminal_reason": "completed",
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 90, "output_tokens": 40}}
    base.update(fields)
    return event(**base)


def test_progress_session_turns_tokens_cost_and_last_message():
    stream = ev.AgentStream()
    stream.feed(event(type="system", subtype="init", session_id=SESSION, model="x"), 10.0)
    assert stream.session_id == SESSION and stream.cost_usd is None
    stream.feed(assistant("Reading the\n   code", "m1", usage={"input_tokens": 5, "cache_read_input_tokens": 20,
                                                                "output_tokens": 7}), 11.0)
    # the CLI repeats a message's usage on each content block: counted once
    stream.feed(assistant("Reading the code", "m1", usage={"input_tokens": 5, "cache_read_input_tokens": 20,
                                                           "output_tokens": 7}), 11.5)
    stream.feed(event(type="user", message={"role": "user", "content": [{"type": "tool_result", "content": "x" * 9}]}),
                12.0)
    stream.feed(event(type="rate_limit_event", rate_limit_info={"status": "allowed"}), 12.5)
    stream.feed(event(type="brand_new_event", payload=[1, 2]), 12.7)
    assert (stream.turns, stream.input_tokens, stream.output_tokens) == (1, 25, 7)
    assert stream.last_message == "Reading the code" and stream.last_activity == 12.7
    stream.feed(assistant("x" * 500, "m2", usage={"input_tokens": 1, "output_tokens": 3}), 13.0)
    assert len(stream.last_message) == ev.LAST_MESSAGE_LENGTH and stream.turns == 2
    stream.feed(result(), 14.0)
    assert (stream.turns, stream.cost_usd, stream.input_tokens, stream.output_tokens) == (3, 0.25, 100, 40)
    assert stream.last_message == "done" and stream.last_activity == 14.0
    assert stream.outcome(0) == ev.Outcome(ev.EndKind.OK, "exited 0")


def test_non_json_and_broken_json_lines_are_text():
    stream = ev.AgentStream()
    assert stream.feed("{not json", 1.0) is None
    assert stream.feed("[1, 2]", 2.0) is None
    assert (stream.events, stream.text_lines, stream.last_text) == (0, 2, "[1, 2]")
    assert stream.outcome(3).kind is ev.EndKind.CRASH and "exit code 3: [1, 2]" in stream.outcome(3).reason


def test_the_real_not_logged_in_run_is_fatal_although_its_subtype_says_success():
    stream = ev.AgentStream()
    signals = [stream.feed(line, 1.0) for line in
               (SAMPLES / "not-logged-in.stream-json").read_text(encoding="utf-8").splitlines()]
    fatal = [s for s in signals if s is not None]
    assert len(fatal) == 1 and fatal[0].kind is ev.FatalKind.NOT_LOGGED_IN
    assert stream.result.subtype == "success" and stream.result.is_error
    assert stream.session_id and stream.cost_usd == 0 and stream.turns == 1
    assert stream.outcome(1).kind is ev.EndKind.FATAL


def test_a_usage_limit_in_events_pauses_until_the_stated_reset():
    now = utc("2026-08-26T19:02")
    text = "You've hit your session limit · resets 11pm (Asia/Nicosia)"
    stream = ev.AgentStream()
    stream.feed(event(type="rate_limit_event", rate_limit_info={"status": "rejected", "resetsAt": 1}), now)
    signal = stream.feed(assistant(text, model="<synthetic>", error="rate_limit"), now)
    assert signal == ev.UsageLimit(text, utc("2026-08-26T20:00"))
    assert stream.turns == 0  # the CLI's synthetic message is no API turn
    assert stream.feed(result(is_error=True, api_error_status=429, result=text, terminal_reason="api_error"), now) \
        is None
    assert stream.outcome(1) == ev.Outcome(ev.EndKind.USAGE_LIMIT, text, resume_at=utc("2026-08-26T20:00"))


def test_no_credit_is_fatal_as_soon_as_the_cli_says_so():
    stream = ev.AgentStream()
    signal = stream.feed(assistant("Credit balance is too low", model="<synthetic>", error="billing_error"), 0.0)
    assert signal.kind is ev.FatalKind.SPEND_LIMIT and "credit" in signal.fix


def test_a_rejected_rate_limit_event_gives_the_reset_when_the_text_does_not():
    stream = ev.AgentStream()
    now = 1771390800 - 3600
    stream.feed(event(type="rate_limit_event", rate_limit_info={"status": "rejected", "resetsAt": 1771390800}), now)
    signal = stream.feed(result(is_error=True, api_error_status=429, result="API Error: Request rejected (429)"), now)
    assert signal == ev.UsageLimit("API Error: Request rejected (429)", 1771390800.0)


def test_a_retried_429_is_not_a_limit():
    stream = ev.AgentStream()
    assert stream.feed(event(type="system", subtype="api_retry", attempt=1, error_status=429, error="rate_limit"),
                       0.0) is None
    assert stream.limit is None


@pytest.mark.parametrize("fields,kind", [
    ({"subtype": "error_max_budget_usd", "is_error": True}, ev.EndKind.BUDGET_EXHAUSTED),
    ({"terminal_reason": "budget_exhausted", "is_error": True}, ev.EndKind.BUDGET_EXHAUSTED),
    ({"subtype": "error_max_turns", "is_error": True}, ev.EndKind.MAX_TURNS),
    ({"subtype": "error_during_execution", "is_error": True, "result": "boom"}, ev.EndKind.CRASH),
    ({"is_error": True, "api_error_status": 401, "result": "Failed to authenticate. API Error: 401"},
     ev.EndKind.FATAL),
    ({"is_error": True, "result": "OAuth token has expired. Please run /login"}, ev.EndKind.FATAL),
    ({"is_error": True, "result": "Credit balance is too low"}, ev.EndKind.FATAL),
])
def test_result_events_classify_the_end(fields, kind):
    stream = ev.AgentStream()
    stream.feed(result(**fields), 0.0)
    assert stream.outcome(1).kind is kind


def test_a_result_that_is_an_error_is_not_ok_even_with_exit_0():
    stream = ev.AgentStream()
    stream.feed(result(is_error=True, result="boom"), 0.0)
    assert stream.outcome(0) == ev.Outcome(ev.EndKind.CRASH, "exit code 0: boom")


def test_a_killed_worker_is_a_crash_that_says_so():
    stream = ev.AgentStream()
    stream.feed(assistant("working"), 0.0)
    assert stream.outcome(-15).reason == "killed by a signal"
    assert stream.outcome(None).kind is ev.EndKind.CRASH


def test_a_fatal_failure_wins_over_everything_else():
    stream = ev.AgentStream()
    stream.feed("You've hit your limit · resets 1pm (Europe/Lisbon)", 0.0)
    stream.feed("Not logged in · Please run /login", 0.0)
    assert stream.outcome(1).kind is ev.EndKind.FATAL
