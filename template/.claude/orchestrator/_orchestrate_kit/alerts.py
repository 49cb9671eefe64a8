"""What the ready-made `on_event` hooks (`.claude/orchestrator/hooks/`) share: the event, when to tell you, the words, the sending.

A hook is run by the orchestrator (notify.py) with the event in its environment:
`ORCHESTRATE_EVENT`, `STREAM_ID`, `STREAM_NAME`, `REASON`, `FIX`, `COST_USD`, `RESUME_AT`,
`EXIT_CODE`, `SUMMARY` and `REPORT` (run_finished: the end-of-run summary and the report's path)
and `ORCHESTRATE_NEEDS_YOU` (1 when a
person must act: a merge conflict, a failed check, a review, a configuration error, the spend
cap, a stream failed for good). By default a hook tells you only when you are needed and when
the run is finished (`--all`: every event); without `ORCHESTRATE_NEEDS_YOU` (an older runtime)
the events that need a person are known by name. Where to send comes from the environment
(`NOTIFY_SLACK_URL`, `NOTIFY_NTFY_URL`, `NOTIFY_NTFY_TOKEN`), else from the settings
(`notify_slack_url`, `notify_ntfy_url` in orchestrator.local.conf). A hook never holds up or
fails the run: every wait is bounded (`NOTIFY_TIMEOUT`, 10 s), and a network or program error is
one line on standard error and exit 0. Text from the tracker and agents is made inert for each
receiver (Slack's `<!channel>` and links, notification markup). Standard library only, Python 3.9+.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .names import printable
from .settings import UserError, load_settings

DEFAULT_TIMEOUT = 10.0
TEXT_LIMIT = 600
SUMMARY_LINES = 8  # lines of the end-of-run summary a message shows
# Events a person must act on, for a runtime that does not say so itself (ORCHESTRATE_NEEDS_YOU).
NEEDS_YOU = frozenset({"stream_failed", "configuration_error", "merge_conflict", "check_failed",
                       "spend_cap_reached", "review_requested", "awaiting_review", "needs_review", "pr_closed"})
HEADLINES = {
    "run_finished": "the run finished",
    "stream_failed": "{stream} failed",
    "merge_conflict": "{stream}: merge conflict",
    "check_failed": "{stream}: the merge check failed",
    "configuration_error": "the run stopped: configuration error",
    "usage_limit": "usage limit reached; no worker starts until {resume}",
    "usage_limit_resumed": "the usage limit lifted; {stream} runs again",
    "spend_cap_reached": "spend cap reached: no new worker starts",
    "review_requested": "{stream} awaits your review",
    "awaiting_review": "{stream} awaits your review",
    "needs_review": "{stream} awaits your review",
    "pull_request": "{stream}: its draft pull request is open",
    "pr_closed": "{stream}: its pull request was closed without merging",
    "test": "a test notification: this hook works",
}


@dataclass(frozen=True)
class Note:
    """One event, as a hook tells it."""

    event: str
    needs_you: bool
    title: str
    body: str


def note_from(environ: Mapping[str, str], project: str) -> Note:
    """The event in a hook's environment, with its title and body (bounded, printable text)."""
    event = environ.get("ORCHESTRATE_EVENT", "") or "unknown"
    flag = environ.get("ORCHESTRATE_NEEDS_YOU")
    needs_you = flag == "1" if flag in ("0", "1") else event in NEEDS_YOU
    stream = _clean(environ.get("STREAM_ID", ""), 120) or "a stream"
    headline = HEADLINES.get(event, event.replace("_", " ") + (" ({stream})" if environ.get("STREAM_ID") else ""))
    headline = headline.format(stream=stream, resume=_clock(environ.get("RESUME_AT", "")))
    if event == "run_finished" and environ.get("EXIT_CODE") not in (None, "", "0"):
        headline += f" (exit {_clean(environ['EXIT_CODE'], 10)})"
    lines = []
    name = _clean(environ.get("STREAM_NAME", ""), 200)
    if name and name != stream:
        lines.append(f"{stream}: {name}")
    for key, label in (("REASON", ""), ("FIX", "fix: "), ("SUMMARY", ""), ("COST_USD", "cost so far: "),
                       ("REPORT", "report: ")):
        if key == "SUMMARY":  # several lines: each its own, the first few
            said = [_clean(line, 300) for line in environ.get(key, "").splitlines() if line.strip()]
            lines += [line for line in said if line not in lines][:SUMMARY_LINES]
            continue
        value = _clean(environ.get(key, ""))
        if value:
            lines.append(label + (f"{_money(value)} USD" if key == "COST_USD" else value))
    if needs_you:
        lines.append("Needs you: `orchestrate.py status` says what to do next.")
    title = f"orchestrate-kit · {_clean(project, 80)}: {headline}"
    return Note(event, needs_you, title, "\n".join(lines))


def _clean(text: str, limit: int = TEXT_LIMIT) -> str:
    return printable(" ".join(text.split()), limit)


def _money(text: str) -> str:
    try:
        return f"{float(text):.2f}"
    except ValueError:
        return text


def _clock(text: str) -> str:
    try:
        return time.strftime("%H:%M", time.localtime(float(text)))
    except (ValueError, OverflowError, OSError):
        return "it resets"


def setting(environ: Mapping[str, str], home: Path, key: str) -> str:
    """A hook's setting: the environment's `KEY` (upper case) wins, else the conf files'."""
    value = environ.get(key.upper(), "").strip()
    if value:
        return value
    settings = load_settings([home / "orchestrator.conf", home / "orchestrator.local.conf"])
    return str(getattr(settings, key, "") or "").strip()


def timeout_of(environ: Mapping[str, str]) -> float:
    try:
        value = float(environ.get("NOTIFY_TIMEOUT", "") or DEFAULT_TIMEOUT)
    except ValueError:
        return DEFAULT_TIMEOUT
    return value if 0 < value <= 60 else DEFAULT_TIMEOUT


# ---------------------------------------------------------------- receivers


def slack_payload(note: Note) -> dict:
    """A Slack-compatible incoming webhook's message (Slack, Mattermost, Rocket.Chat, Discord's /slack)."""
    return {"text": f"*{_slack(note.title)}*" + (f"\n{_slack(note.body)}" if note.body else "")}


def _slack(text: str) -> str:
    """Slack reads `<!channel>`, `<@user>` and `<url|label>` in text: escape them into plain text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def ntfy_request(topic_url: str, note: Note) -> Tuple[str, Dict[str, object]]:
    """ntfy's JSON publishing: (the server's root URL, the message), from a topic URL such as
    https://ntfy.sh/your-topic (JSON keeps any text out of HTTP headers)."""
    parts = urllib.parse.urlsplit(topic_url)
    topic = parts.path.strip("/")
    if not topic or "/" in topic:
        raise ValueError(f"{topic_url!r} is not an ntfy topic URL such as https://ntfy.sh/your-topic")
    root = urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/", "", ""))
    message: Dict[str, object] = {"topic": topic, "title": note.title, "message": note.body or note.title,
               "priority": 4 if note.needs_you else 3, "tags": ["warning"] if note.needs_you else ["robot"]}
    return root, message


def desktop_command(note: Note, platform: str = sys.platform, which: Callable[[str], Optional[str]] = shutil.which
                    ) -> Optional[List[str]]:
    """The command that shows a desktop notification here (macOS: osascript; else notify-send), or None."""
    if platform == "darwin":
        # The texts travel as arguments of the script, never inside its source.
        return ["osascript", "-e", "on run argv", "-e",
                "display notification (item 2 of argv) with title (item 1 of argv)", "-e", "end run",
                note.title, note.body or " "]
    program = which("notify-send")
    if program is None:
        return None
    urgency = "critical" if note.needs_you else "normal"
    body = note.body.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")  # its body is markup
    return [program, "--app-name=orchestrate-kit", f"--urgency={urgency}", "--", note.title, body]


def post_json(url: str, payload: dict, timeout: float, headers: Optional[Mapping[str, str]] = None) -> None:
    """POST JSON to an http(s) URL; raises OSError or ValueError with a reason on any failure."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError("the URL must start with https:// (or http://)")
    request = urllib.request.Request(url, data=json.dumps(payload).encode("utf-8"), method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "orchestrate-kit-hook", **(headers or {})})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (scheme checked above)
        response.read(65536)


# ---------------------------------------------------------------- the hooks


def send_slack(note: Note, environ: Mapping[str, str], home: Path) -> None:
    url = setting(environ, home, "notify_slack_url")
    if not url:
        raise ValueError("no webhook URL: set NOTIFY_SLACK_URL in the orchestrator's environment "
                         "(or `orchestrate-kit config notify_slack_url URL`)")
    post_json(url, slack_payload(note), timeout_of(environ))


def send_ntfy(note: Note, environ: Mapping[str, str], home: Path) -> None:
    url = setting(environ, home, "notify_ntfy_url")
    if not url:
        raise ValueError("no topic URL: set NOTIFY_NTFY_URL (e.g. https://ntfy.sh/your-topic) in the orchestrator's "
                         "environment, or `orchestrate-kit config notify_ntfy_url URL`")
    root, message = ntfy_request(url, note)
    token = environ.get("NOTIFY_NTFY_TOKEN", "").strip()
    post_json(root, message, timeout_of(environ), {"Authorization": f"Bearer {token}"} if token else None)


def send_desktop(note: Note, environ: Mapping[str, str], home: Path) -> None:
    argv = desktop_command(note)
    if argv is None:
        raise OSError("notify-send is not on PATH (Debian and Ubuntu: apt install libnotify-bin)")
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                              timeout=timeout_of(environ))
    except subprocess.TimeoutExpired:
        raise OSError(f"{argv[0]} did not answer within {timeout_of(environ):g} s") from None
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise OSError(f"{os.path.basename(argv[0])} exited with {done.returncode}" + (f": {said[0]}" if said else ""))


SENDERS = {"slack": send_slack, "ntfy": send_ntfy, "desktop": send_desktop}
USAGE = ("usage: {name}.py [--all] [--test]\n"
         "  an on_event hook: set `orchestrate-kit config on_event \"python3 .claude/orchestrator/hooks/{name}.py\"`\n"
         "  --all   tell every event (default: only when you are needed, and when the run finishes)\n"
         "  --test  send a test notification now\n")


def main(name: str, home: Path, argv: Sequence[str] = (), environ: Optional[Mapping[str, str]] = None) -> int:
    """Run the hook `name` for the event in `environ`; 0 whatever the network says, 2 for bad arguments."""
    environ = dict(os.environ if environ is None else environ)
    args = set(argv)
    if args - {"--all", "--test", "--help", "-h"}:
        sys.stderr.write(USAGE.format(name=name))
        return 2
    if args & {"--help", "-h"}:
        sys.stdout.write(USAGE.format(name=name))
        return 0
    if "--test" in args:
        environ.update(ORCHESTRATE_EVENT="test", ORCHESTRATE_NEEDS_YOU="0")
    note = note_from(environ, home.resolve().parent.parent.name)
    if not ("--all" in args or "--test" in args or note.needs_you or note.event == "run_finished"):
        return 0
    try:
        SENDERS[name](note, environ, home)
    except (OSError, ValueError, UserError, http.client.HTTPException) as exc:
        plain = isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError)
        reason = str(exc.reason if plain else exc)  # type: ignore[union-attr]
        sys.stderr.write(f"orchestrate-kit {name} hook: could not send {note.event}: {printable(reason, 300)}; "
                         "the run goes on\n")
    return 0
