"""What a worker's output says: progress, cost, usage limits and configuration failures. Pure, no I/O.

The supervisor feeds every output line of a worker to one `AgentStream` (Claude Code
`--output-format stream-json` events, or plain text from any other worker command) with the
time it read it. The stream keeps what `status` shows (session id, turns, tokens, cost, last
activity, last message) and notices, as soon as the line arrives, the two things that change
what the whole run does:
- a usage limit (`UsageLimit`, with the reset time when the message says it): the limit is per
  account, so no worker should start anywhere until then;
- a configuration failure (`Fatal`, with a fix): not logged in, the root refusal, an option or
  prompt the CLI cannot parse, a worker command that cannot run. Retrying cannot fix these.
When the worker exits, `AgentStream.outcome(exit_code)` names how it ended (`EndKind`).

Cost is the result event's `total_cost_usd`: the CLI prices its own usage, and a price table
here would drift from the CLI's. Until the result arrives the cost is unknown (None) while
tokens are counted as assistant messages arrive (each message id once: the CLI repeats a
message's usage on every content block it streams).

Event shapes are those of Claude Code 2.1 (see tests/support/claude-samples/); unknown event
types and fields are ignored, since the format drifts between versions.

A worker is an untrusted program: it prints whatever its agent or its tools print. So
- values are validated where they are read: a session id that is not a UUID, a cost that is not a
  finite amount in [0, MAX_COST_USD], a count that is not a whole number in [0, MAX_COUNT] is dropped
  with a note (`AgentStream.take_notes`), never raised and never kept;
- the CLI's failure texts count only where the CLI itself puts them: its `result` event and its
  synthetic error messages (an assistant event with `error`), or, before the first event (text
  mode, or the CLI refusing to start), a whole line in the CLI's own form: the startup refusals only
  among the first lines. An agent quoting them in its text, its tool output or a broken event line
  (one that starts with `{` but does not parse: a cut-off event) changes nothing;
- a usage limit's reset more than MAXIMUM_LIMIT_WAIT away is clamped to it, with a note.
"""

from __future__ import annotations

import calendar
import json
import math
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Dict, List, Optional, Tuple, Union

try:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
except ImportError:  # pragma: no cover - Python 3.9+ always has it; tzdata may still be missing
    ZoneInfo = None  # type: ignore[assignment,misc]
    ZoneInfoNotFoundError = KeyError  # type: ignore[assignment,misc]

# When a usage limit says no reset time we can read, wait this long, then let one worker
# probe; a probe that hits the limit again costs nothing and waits again.
DEFAULT_LIMIT_WAIT = 15 * 60.0
# A reset wall time that passed less than this long ago is the reset of this limit (the CLI
# shows minutes, not seconds, and the line may be read late), not tomorrow's: wait a little.
RESET_LATE_TOLERANCE = 15 * 60.0
MINIMUM_LIMIT_WAIT = 60.0

# A reset further away than this is not believed (a weekly limit is real, but so is a worker quoting
# `|9999999999`): wait this long, then the streams start again; if the limit still holds, they pause
# again at no cost.
MAXIMUM_LIMIT_WAIT = 24 * 3600.0
MAX_COST_USD = 100_000.0  # more than any one session costs: a larger total_cost_usd is not a cost
MAX_COUNT = 10 ** 12  # turns and tokens: more is not a count
_RECENT_MESSAGE_IDS = 64  # the CLI repeats a message's usage on its consecutive blocks: remember a few

LAST_MESSAGE_LENGTH = 160
_PARSE_ERROR_LINES = 5  # a CLI parse error is among the first lines a worker prints


class EndKind(str, Enum):
    """How a worker's run ended, as far as its output tells."""

    OK = "ok"
    USAGE_LIMIT = "usage_limit"  # paused: resume after resume_at (or DEFAULT_LIMIT_WAIT)
    FATAL = "fatal"  # configuration failure: stop the run, print the fix
    BUDGET_EXHAUSTED = "budget_exhausted"  # --max-budget-usd reached: not restarted
    MAX_TURNS = "max_turns"  # --max-turns reached
    SESSION_NOT_FOUND = "session_not_found"  # --resume of a session the CLI does not have: start afresh
    CRASH = "crash"  # anything else that failed: a failed attempt


class FatalKind(str, Enum):
    NOT_LOGGED_IN = "not_logged_in"
    ROOT_REFUSED = "root_refused"
    UNKNOWN_OPTION = "unknown_option"
    BAD_ARGUMENT = "bad_argument"
    NO_PROMPT = "no_prompt"
    NOT_RUNNABLE = "not_runnable"
    SPEND_LIMIT = "spend_limit"  # a spend cap or no credit: the user must act, no reset time to wait for
    DATABASE_READ_ONLY = "database_read_only"  # the tracker's database cannot be written (seen by the loop)


# The worker command is a setting: `orchestrate-kit config` changes it (orchestrator.conf is rewritten by upgrades).
CHANGE_WORKER_COMMAND = "`orchestrate-kit config worker_command '...'`"
SANDBOX_NOTE = ("inside a real sandbox Claude Code accepts the flag as root when you set IS_SANDBOX=1 yourself "
                "(orchestrate-kit never sets it)")
FIXES = {
    FatalKind.NOT_LOGGED_IN: ("log the worker's account in as the user that runs the orchestrator: "
                              "`claude /login` (or `claude setup-token` for a long-lived token), then start again"),
    FatalKind.ROOT_REFUSED: ("Claude Code refuses --dangerously-skip-permissions and --permission-mode "
                             "bypassPermissions as root: run the orchestrator as a normal user, or set a worker "
                             "command without the flag, e.g. `orchestrate-kit config worker_command 'claude --print "
                             "-p'` (and drop permissionMode bypassPermissions from task metadata); " + SANDBOX_NOTE),
    FatalKind.UNKNOWN_OPTION: ("remove or correct that option: it comes from the worker_command setting (change it "
                               f"with {CHANGE_WORKER_COMMAND}) or from a task's metadata"),
    FatalKind.BAD_ARGUMENT: ("correct that argument: it comes from the worker_command setting (change it with "
                             f"{CHANGE_WORKER_COMMAND}) or from a task's metadata"),
    FatalKind.NO_PROMPT: ("the worker received no prompt: an option with a list of values (such as --allowedTools "
                          "in worker_command) swallowed it; write it as --allowedTools=A,B, with "
                          f"{CHANGE_WORKER_COMMAND}"),
    FatalKind.NOT_RUNNABLE: ("the worker_command setting names a program that cannot run: install it, put it on "
                             f"PATH or make it executable, or change it with {CHANGE_WORKER_COMMAND}"),
    FatalKind.SPEND_LIMIT: ("add credit or raise the account's spend limit (claude.ai/settings/usage, or the "
                            "Anthropic Console for an API key), then start again"),
}


@dataclass(frozen=True)
class Fatal:
    """A configuration failure: the same for every worker, so retrying cannot fix it."""

    kind: FatalKind
    message: str  # what the worker said, one line
    fix: str


@dataclass(frozen=True)
class UsageLimit:
    """The account's usage limit: no worker can run before `resume_at` (unix seconds; None: unknown)."""

    message: str
    resume_at: Optional[float]


@dataclass(frozen=True)
class ResultInfo:
    """The CLI's `result` event (one per run, last)."""

    is_error: bool
    subtype: str
    terminal_reason: str
    text: str
    api_error_status: Optional[int]
    first_error: str = ""  # the first of its `errors`, when it has some


@dataclass(frozen=True)
class Outcome:
    """How a worker's run ended: the kind and a one-line reason for status and the log."""

    kind: EndKind
    reason: str
    resume_at: Optional[float] = None  # USAGE_LIMIT only
    fatal: Optional[Fatal] = None  # FATAL only


Signal = Union[UsageLimit, Fatal]


# ---------------------------------------------------------------- text forms

_UNIX_LIMIT = re.compile(r"usage limit reached\|(\d{9,13})")
_WALL_LIMIT = re.compile(
    r"(?:hit your (?:[\w-]+ )?limit|[Ll]imit reached)\s*·\s*resets\s+"
    r"(?:(?P<month>[A-Z][a-z]{2})[a-z]*\.? (?P<day>\d{1,2}),? at )?"
    r"(?P<hour>\d{1,2})(?::(?P<minute>\d{2}))?\s*(?P<ampm>am|pm|AM|PM)?\s*"
    r"\((?P<zone>[A-Za-z0-9_+\-/]+)\)")
# The usage-limit messages as whole lines, as the CLI prints them: anchored at the start, so a line
# that quotes one (`grep` output, a sentence, a log line) is not one.
_LIMIT_LINES = (
    re.compile(r"^Claude AI usage limit reached\|\d{9,13}$"),
    re.compile(r"^(?:You've hit your (?:[\w-]+ )?limit|(?:[\w-]+ )?[Ll]imit reached)\s*·\s*resets\s"),
    re.compile(r"^API Error: 429\b.*rate_limit_error"),
)
# The CLI's own words, anchored: a worker's text may mention logins, never start like this.
_NOT_LOGGED_IN = re.compile(r"^(?:Not logged in|Invalid API key) · ")
# A result event that is an error speaks for the CLI, so its text may say more.
_AUTH_FAILED_RESULT = re.compile(
    r"^(?:Not logged in|Invalid API key|Failed to authenticate|OAuth token has expired)")
_ROOT_REFUSED = re.compile(r"^--[\w-]+(?: \w+)? cannot be used with root/sudo privileges")
_UNKNOWN_OPTION = re.compile(r"^error: unknown option '([^']*)'")
_NO_PROMPT = re.compile(r"^Error: Input must be provided")
_NOT_RUNNABLE = re.compile(r"^orchestrate: cannot run worker command")
_PARSE_ERROR = re.compile(r"^(?:error|Error): ")
_NO_SESSION = re.compile(r"^No conversation found with session ID")
_SPEND_LIMIT = re.compile(r"^(?:You've hit your (?:[\w-]+ )?spend limit|Credit balance is too low)")
# Text-mode ends the CLI prints as `Error: ...`: not argument errors.
_BUDGET_TEXT = re.compile(r"^Error: Exceeded USD budget")
_MAX_TURNS_TEXT = re.compile(r"^Error: Reached max turns")
_FATAL_TEXTS = (  # checked in this order: the first that matches names the failure
    # (pattern, kind, only among the first lines: the CLI refusing to start says so at once)
    (_NOT_LOGGED_IN, FatalKind.NOT_LOGGED_IN, False),
    (_ROOT_REFUSED, FatalKind.ROOT_REFUSED, True),
    (_UNKNOWN_OPTION, FatalKind.UNKNOWN_OPTION, True),
    (_NO_PROMPT, FatalKind.NO_PROMPT, True),
    (_NOT_RUNNABLE, FatalKind.NOT_RUNNABLE, True),
    (_SPEND_LIMIT, FatalKind.SPEND_LIMIT, False),
)
_SESSION_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_MONTHS = {name.lower(): number for number, name in enumerate(calendar.month_abbr) if name}


def parse_limit_reset(text: str, now: float) -> Optional[float]:
    """When a usage-limit message says the limit resets (unix seconds), or None if it does not say.

    `Claude AI usage limit reached|1760000400` gives that time; `... · resets 1pm (Europe/Lisbon)`
    and `... · resets Apr 23 at 4pm (America/Recife)` give the next occurrence of that wall time
    in that IANA zone after `now` (a time that does not exist on a DST day is taken at the
    zone's offset before the change; a repeated one at its first occurrence). Unknown zone or
    unreadable time: None.
    """
    found = _UNIX_LIMIT.search(text)
    if found:
        stamp = float(found.group(1))
        return _settle(stamp / 1000.0 if stamp > 1e11 else stamp, now)
    found = _WALL_LIMIT.search(text)
    if not found:
        return None
    zone = _zone(found.group("zone"))
    hour, minute = _clock(found.group("hour"), found.group("minute"), found.group("ampm"))
    if zone is None or hour is None:
        return None
    if found.group("month"):
        return _next_date(zone, found.group("month"), int(found.group("day")), hour, minute, now)
    return _next_time(zone, hour, minute, now)


def _zone(name: str):
    if ZoneInfo is None or ".." in name or name.startswith("/"):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _clock(hour_text: str, minute_text: Optional[str], ampm: Optional[str]):
    hour, minute = int(hour_text), int(minute_text or 0)
    if minute > 59:
        return None, 0
    if ampm:
        if not 1 <= hour <= 12:
            return None, 0
        hour = hour % 12 + (12 if ampm.lower() == "pm" else 0)
    elif hour > 23:
        return None, 0
    return hour, minute


def _settle(candidate: float, now: float) -> Optional[float]:
    """A candidate reset just behind us is this limit's reset: wait a minute, not a day."""
    if candidate > now:
        return candidate
    if now - candidate < RESET_LATE_TOLERANCE:
        return now + MINIMUM_LIMIT_WAIT
    return None


def _next_time(zone, hour: int, minute: int, now: float) -> float:
    today = datetime.fromtimestamp(now, zone).date()
    for days in range(0, 3):
        day = today + timedelta(days=days)
        candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone).timestamp()
        settled = _settle(candidate, now)
        if settled is not None:
            return settled
    raise AssertionError("a wall time recurs within three days")  # pragma: no cover


def _next_date(zone, month_name: str, day: int, hour: int, minute: int, now: float) -> Optional[float]:
    month = _MONTHS.get(month_name[:3].lower())
    if month is None:
        return None
    year = datetime.fromtimestamp(now, zone).year
    for offset in range(0, 9):  # Feb 29 recurs within eight years
        try:
            candidate = datetime(year + offset, month, day, hour, minute, tzinfo=zone).timestamp()
        except ValueError:
            continue
        settled = _settle(candidate, now)
        if settled is not None:
            return settled
    return None


def is_session_id(value: object) -> bool:
    """Whether `value` can be a Claude Code session id (a UUID): the only kind we put in an argv."""
    return isinstance(value, str) and _SESSION_ID.fullmatch(value) is not None


def bounded_reset(resume_at: Optional[float], now: float) -> Tuple[Optional[float], str]:
    """A reset time we can wait for, and a note when the one given was not: one in the past is
    unknown (None), one more than MAXIMUM_LIMIT_WAIT away is clamped to it."""
    if resume_at is None:
        return None, ""
    if resume_at <= now:
        return None, ""
    if resume_at - now > MAXIMUM_LIMIT_WAIT:
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(min(resume_at, 253402300799)))
        return now + MAXIMUM_LIMIT_WAIT, (f"the usage limit's reset ({when} UTC) is more than "
                                          f"{MAXIMUM_LIMIT_WAIT / 3600:g} hours away: waiting {MAXIMUM_LIMIT_WAIT / 3600:g} hours")
    return resume_at, ""


def is_limit_line(line: str) -> bool:
    """Whether a whole line is one of the CLI's usage-limit messages (not a line quoting one)."""
    return "imit" in line and any(pattern.search(line) for pattern in _LIMIT_LINES)


def limit_in_text(line: str, now: float, hint: Optional[float] = None) -> Optional[UsageLimit]:
    """A usage limit in one whole line the CLI printed (any of the forms users see), or None; its
    reset is the line's, else `hint`, bounded by `bounded_reset`."""
    if not is_limit_line(line):
        return None
    reset = parse_limit_reset(line, now)
    return UsageLimit(_one_line(line), bounded_reset(reset if reset is not None else hint, now)[0])


def fatal_in_text(line: str, first_lines: bool = True) -> Optional[Fatal]:
    """A configuration failure in one whole line the CLI (or our launcher) prints, or None.

    `first_lines`: the line is among the first a worker printed, where the CLI's refusals to start
    (root, an unknown option, no prompt) and our launcher's "cannot run" appear; later, only the
    failures a CLI meets while it works (not logged in, a spend limit) count."""
    text = line.strip()
    for pattern, kind, at_start_only in _FATAL_TEXTS:
        if (first_lines or not at_start_only) and pattern.search(text):
            return Fatal(kind, _one_line(text), FIXES[kind])
    return None


def _one_line(text: str, limit: int = LAST_MESSAGE_LENGTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------- the per-worker accumulator


class AgentStream:
    """Everything one worker's output has said so far. Feed it lines; read its fields."""

    __slots__ = ("session_id", "turns", "input_tokens", "output_tokens", "cost_usd", "last_activity",
                 "last_message", "result", "limit", "fatal", "events", "text_lines", "first_text",
                 "last_text", "_message_ids", "_limit_hint", "_notes", "_noted")

    def __init__(self) -> None:
        self.session_id: Optional[str] = None  # always a UUID (is_session_id)
        self.turns = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_usd: Optional[float] = None  # the result's total_cost_usd: finite, in [0, MAX_COST_USD]
        self.last_activity: Optional[float] = None  # time of the last line, as the caller gave it
        self.last_message = ""  # the last assistant text, one short line
        self.result: Optional[ResultInfo] = None
        self.limit: Optional[UsageLimit] = None
        self.fatal: Optional[Fatal] = None
        self.events = 0  # JSON events seen
        self.text_lines = 0  # non-JSON lines seen
        self.first_text = ""  # the first and last non-JSON lines, for the end's reason
        self.last_text = ""
        self._message_ids: Dict[str, None] = {}  # the last few, oldest first
        self._limit_hint: Optional[float] = None  # resetsAt of a rejected rate_limit_event
        self._notes: List[str] = []
        self._noted: set = set()  # what was noted once already (a worker repeating itself is noted once)

    def feed(self, line: str, now: float) -> Optional[Signal]:
        """Take one output line read at `now`; return a usage limit or fatal failure the first time one shows."""
        self.last_activity = now
        line = line.strip()
        if not line:
            return None
        if line[0] == "{":
            # Tool results (`user` events) can be large and carry nothing we keep: skip parsing them.
            if line.startswith('{"type":"user"'):
                self.events += 1
                return None
            try:
                event = json.loads(line)
            except (ValueError, RecursionError):
                event = None
            if isinstance(event, dict):
                self.events += 1
                return self._event(event, now)
            self._count_text(line)
            return None  # a broken or cut-off event: whatever it quotes is no signal
        self._count_text(line)
        return self._text(line, now)

    def note(self, key: str, text: str) -> None:
        """Say something about what the worker printed (once per `key`), for the caller to pass on."""
        if key not in self._noted:
            self._noted.add(key)
            self._notes.append(text)

    def take_notes(self) -> List[str]:
        """The notes since the last call (values dropped, limits clamped, lines skipped)."""
        notes, self._notes = self._notes, []
        return notes

    # -- plain text

    def _count_text(self, line: str) -> None:
        self.text_lines += 1
        if self.text_lines == 1:
            self.first_text = _one_line(line)
        self.last_text = _one_line(line)

    def _text(self, line: str, now: float) -> Optional[Signal]:
        """A text line is the CLI's own only before its first event (text mode, or a refusal to start)."""
        if self.events:
            return None  # stream-json: the CLI reports in its events; other text is its tools' or agent's
        if self.fatal is None:
            fatal = fatal_in_text(line, first_lines=self.text_lines <= _PARSE_ERROR_LINES)
            if fatal is not None:
                self.fatal = fatal
                return fatal
        if self.limit is None and is_limit_line(line):
            return self._limit(line, parse_limit_reset(line, now), now)
        return None

    def _limit(self, text: str, reset: Optional[float], now: float) -> UsageLimit:
        """The limit the CLI reported: its reset (else the rate_limit_event's), bounded, noted when clamped."""
        resume_at, note = bounded_reset(reset if reset is not None else self._limit_hint, now)
        if note:
            self.note("limit reset", note)
        self.limit = UsageLimit(_one_line(text), resume_at)
        return self.limit

    # -- stream-json events

    def _event(self, event: dict, now: float) -> Optional[Signal]:
        kind = event.get("type")
        if kind == "assistant":
            return self._assistant(event, now)
        if kind == "result":
            return self._result(event, now)
        if kind == "system" and event.get("subtype") == "init":
            self._session(event.get("session_id"))
        elif kind == "rate_limit_event":
            self._rate_limit_info(event.get("rate_limit_info"))
        return None

    def _assistant(self, event: dict, now: float) -> Optional[Signal]:
        message = event.get("message")
        if not isinstance(message, dict):
            return None
        text = _message_text(message.get("content"))
        if text:
            self.last_message = _one_line(text)
        self._count_usage(message)
        error = event.get("error")  # set by the CLI on its own (synthetic) error messages only
        if error == "authentication_failed" and self.fatal is None:
            self.fatal = Fatal(FatalKind.NOT_LOGGED_IN, _one_line(text or "authentication_failed"),
                               FIXES[FatalKind.NOT_LOGGED_IN])
            return self.fatal
        if error == "billing_error" and self.fatal is None:
            self.fatal = Fatal(FatalKind.SPEND_LIMIT, _one_line(text or "billing_error"), FIXES[FatalKind.SPEND_LIMIT])
            return self.fatal
        if error == "rate_limit" and self.limit is None:
            return self._limit(text or "rate_limit", parse_limit_reset(text, now), now)
        return None

    def _count_usage(self, message: dict) -> None:
        message_id = message.get("id")
        if isinstance(message_id, str):
            if message_id in self._message_ids:
                return
            self._message_ids[message_id] = None
            if len(self._message_ids) > _RECENT_MESSAGE_IDS:
                del self._message_ids[next(iter(self._message_ids))]
        if message.get("model") == "<synthetic>":
            return  # the CLI's own error messages: no API turn, no tokens
        self.turns += 1
        usage = message.get("usage")
        if isinstance(usage, dict):
            self.input_tokens += self._tokens(usage)
            self.output_tokens += self._count("output_tokens", usage.get("output_tokens")) or 0

    def _result(self, event: dict, now: float) -> Optional[Signal]:
        status = event.get("api_error_status")
        info = ResultInfo(
            is_error=event.get("is_error") is True,
            subtype=_text_or(event.get("subtype"), ""),
            terminal_reason=_text_or(event.get("terminal_reason"), ""),
            text=_one_line(_text_or(event.get("result"), "")),
            api_error_status=status if isinstance(status, int) and not isinstance(status, bool) else None,
            first_error=_first_error(event.get("errors")),
        )
        self.result = info
        self._session(event.get("session_id"))
        if "num_turns" in event:
            turns = self._count("num_turns", event["num_turns"])
            if turns is not None:
                self.turns = turns
        if "total_cost_usd" in event:
            self._cost(event["total_cost_usd"])
        usage = event.get("usage")
        if isinstance(usage, dict):
            self.input_tokens = max(self.input_tokens, self._tokens(usage))
            self.output_tokens = max(self.output_tokens, self._count("output_tokens", usage.get("output_tokens")) or 0)
        if info.text and not info.is_error:
            self.last_message = info.text
        if not info.is_error:
            return None
        if self.fatal is None and (info.api_error_status == 401 or _AUTH_FAILED_RESULT.search(info.text)):
            self.fatal = Fatal(FatalKind.NOT_LOGGED_IN, info.text or "authentication failed",
                               FIXES[FatalKind.NOT_LOGGED_IN])
            return self.fatal
        if self.fatal is None and _SPEND_LIMIT.search(info.text):
            self.fatal = Fatal(FatalKind.SPEND_LIMIT, info.text, FIXES[FatalKind.SPEND_LIMIT])
            return self.fatal
        if self.limit is None and (is_limit_line(info.text) or info.api_error_status == 429):
            return self._limit(info.text or "HTTP 429", parse_limit_reset(info.text, now), now)
        return None

    def _rate_limit_info(self, info: object) -> None:
        """Remember a rejected window's reset time; the limit itself is signalled by the error that follows."""
        if isinstance(info, dict) and info.get("status") == "rejected":
            resets = _number(info.get("resetsAt"))
            if resets is not None and 0 < resets < 1e15:
                self._limit_hint = resets / 1000.0 if resets > 1e11 else resets

    # -- validation: a value we cannot use is dropped with a note

    def _session(self, value: object) -> None:
        if value is None:
            return
        if is_session_id(value):
            self.session_id = value  # type: ignore[assignment]
        else:
            self.note("session_id", f"ignored a session id that is not a UUID ({_shown(value)}): "
                                    "this worker's session cannot be resumed")

    def _cost(self, value: object) -> None:
        cost = _number(value)
        if cost is not None and 0 <= cost <= MAX_COST_USD:
            self.cost_usd = cost
        else:
            self.note("total_cost_usd", f"ignored total_cost_usd {_shown(value)}: not a cost "
                                        f"(a finite amount from 0 to {MAX_COST_USD:g} USD)")

    def _count(self, name: str, value: object) -> Optional[int]:
        """A whole number from 0 to MAX_COUNT; None when it is missing, and when it is anything else
        (noted)."""
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT:
            return value
        self.note(name, f"ignored {name} {_shown(value)}: not a count")
        return None

    def _tokens(self, usage: dict) -> int:
        """Input tokens including the cached ones: what the turn read."""
        return sum(self._count(key, usage.get(key)) or 0
                   for key in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"))

    # -- the end

    def outcome(self, exit_code: Optional[int]) -> Outcome:
        """How the run ended, given the worker's exit code (negative or None: killed by a signal)."""
        if self.fatal is not None:
            return Outcome(EndKind.FATAL, f"{self.fatal.message} ({self.fatal.kind.value})", fatal=self.fatal)
        if self.limit is not None:
            return Outcome(EndKind.USAGE_LIMIT, self.limit.message, resume_at=self.limit.resume_at)
        result = self.result
        if result is not None:
            if result.terminal_reason == "budget_exhausted" or result.subtype == "error_max_budget_usd":
                return Outcome(EndKind.BUDGET_EXHAUSTED, "budget: --max-budget-usd reached")
            if result.terminal_reason == "max_turns" or result.subtype == "error_max_turns":
                return Outcome(EndKind.MAX_TURNS, "max turns: --max-turns reached")
        if self.events == 0 and _BUDGET_TEXT.match(self.last_text):
            return Outcome(EndKind.BUDGET_EXHAUSTED, "budget: " + self.last_text)
        if self.events == 0 and _MAX_TURNS_TEXT.match(self.last_text):
            return Outcome(EndKind.MAX_TURNS, "max turns: " + self.last_text)
        if exit_code == 0 and (result is None or not result.is_error):
            return Outcome(EndKind.OK, "exited 0")
        said = result.first_error if result is not None and result.first_error else self.first_text
        if _NO_SESSION.match(said):
            return Outcome(EndKind.SESSION_NOT_FOUND, said)
        parse_error = self._parse_error(exit_code)
        if parse_error is not None:
            return Outcome(EndKind.FATAL, f"{parse_error.message} ({parse_error.kind.value})", fatal=parse_error)
        return Outcome(EndKind.CRASH, self._crash_reason(exit_code))

    def _parse_error(self, exit_code: Optional[int]) -> Optional[Fatal]:
        """`error: ...` as the first thing a failed worker said, before any event: the CLI rejected its arguments."""
        if exit_code in (0, None) or self.events or not 0 < self.text_lines <= _PARSE_ERROR_LINES:
            return None
        if _PARSE_ERROR.match(self.first_text):
            return Fatal(FatalKind.BAD_ARGUMENT, self.first_text, FIXES[FatalKind.BAD_ARGUMENT])
        return None

    def _crash_reason(self, exit_code: Optional[int]) -> str:
        how = "killed by a signal" if exit_code is None or exit_code < 0 else f"exit code {exit_code}"
        result = self.result
        said = (result.text or result.first_error) if result is not None and result.is_error else self.last_text
        return f"{how}: {said}" if said else how


def _message_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    for block in reversed(content):
        if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
            return block["text"]
    return ""


def _first_error(errors: object) -> str:
    if isinstance(errors, list) and errors and isinstance(errors[0], str):
        return _one_line(errors[0])
    return ""


def _number(value: object) -> Optional[float]:
    """`value` as a float when it is a finite int or float (not a bool), else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _shown(value: object) -> str:
    """A value as a note shows it: short, one line."""
    if isinstance(value, str):
        return _one_line(repr(value[:80]), 60)
    if isinstance(value, (bool, int, float)) or value is None:
        return _one_line(repr(value), 60)
    return f"a JSON {type(value).__name__}"


def _text_or(value: object, default):
    return value if isinstance(value, str) else default
