#!/usr/bin/env python3
"""One dashboard frame's data for check-streams: one snapshot, printed as lines bash can split safely.

The picture comes from `status_report.collect_status`, the very code behind
`orchestrate.py status`, so the two never disagree: one Python process and one
database query per frame, whatever the number of streams.

    python3 check_streams_data.py [--width COLUMNS] [--ascii] [--draw [--colour]] [--db PATH]

Output: one record per line, fields separated by tabs, the record type first.

    E  missing|unreadable text wide    no readable database: the message, one wrapped line a record
    H  workspace wide database wide clock orchestrator_pid|-
    T  percent done total in_progress pending blocked streams_complete streams workers_running
    S  level|- state finished total attempts|- running_time|- label wide
    D  text wide                       a detail line under the stream before it (what it waits on, ...)
    M  kind text wide                  a note for the foot of the frame; kind is done, warn or hint
    ROWS                               with --draw, in place of S and D, after every other record: the
                                       lines that follow, up to END, are the stream lines drawn (column
                                       titles, level headings, rows, details; in colour with --colour),
                                       which check-streams prints as they are (10,000 bash loop turns
                                       were most of a frame)
    END                                the last line: without it the frame is incomplete

Text from the database, the environment or a log is data, never code or
terminal control: every text field has backslashes doubled and every
non-printable character (tab, newline, ESC, ...) written as an escape such as
\\t or \\x1b, so a field can hold neither a tab nor a newline nor a raw control
character; with --ascii every non-ASCII character is escaped too. No field is
empty ('-' stands for nothing). `wide` says where the text's double-width
characters are, for bash, which counts characters, to fit text to columns: 0
for none, else their character indexes, comma-separated. Messages (E and M)
come wrapped to --width.

Exit status: 0 a frame; 1 no readable database (E records say where we looked
and how to point at one); 2 usage; 70 an internal error (one line on stderr).
"""

from __future__ import annotations

import signal
import sys
import textwrap
import time
import unicodedata
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).absolute().parent))

from _orchestrate_kit import status as report_mod  # noqa: E402  (the runtime folder is put on sys.path first)
from _orchestrate_kit.dashboard import Drawing  # noqa: E402
from _orchestrate_kit.graph import StreamState, StreamView  # noqa: E402
from _orchestrate_kit.names import printable  # noqa: E402
from _orchestrate_kit.settings import UserError, default_layout  # noqa: E402
from _orchestrate_kit.trackers import whole_percent  # noqa: E402
from _orchestrate_kit.trackers.progress import progress_summary_of  # noqa: E402

EXIT_FRAME, EXIT_NO_DATABASE, EXIT_INTERNAL = 0, 1, 70
MESSAGE_INDENT = 2  # check-streams indents E and M lines by this much
START_HINT = "The orchestrator is not running: start it with /orchestrate start, or:"
START_COMMAND = "python3 .claude/orchestrator/orchestrate.py start"  # a line of its own: never broken in two


def as_field(escaped: str) -> List[str]:
    """An escaped text and where its double-width characters are, as two fields ('-' for no text)."""
    if escaped.isascii():
        return [escaped or "-", "0"]
    wide = [str(i) for i, c in enumerate(escaped) if c > "\u10ff" and unicodedata.east_asian_width(c) in "WF"]
    return [escaped, ",".join(wide) or "0"]


def wide_list(wide: str) -> List[int]:
    """A `wide` field back as character indexes."""
    return [] if wide == "0" else [int(i) for i in wide.split(",")]


class Frame:
    """The records of one frame, escaped as they are added; with a `drawing`, stream lines drawn (R)."""

    def __init__(self, width: int, ascii_only: bool, drawing: Optional[Drawing] = None):
        self.width = width
        self.ascii_only = ascii_only
        self.drawing = drawing
        self.lines: List[str] = []
        self.drawn: List[str] = []  # with a drawing: the stream lines, sent after every record

    def escape(self, value: str) -> str:
        """Text made inert: backslashes doubled, non-printables (and with --ascii non-ASCII) escaped."""
        if value.isascii() and value.isprintable() and "\\" not in value:
            return value  # the usual name, with nothing to escape: the fast way at 1000 streams
        out = printable(value.replace("\\", "\\\\"))
        return out.encode("ascii", "backslashreplace").decode("ascii") if self.ascii_only else out

    def text(self, value: str) -> List[str]:
        """An escaped text field and its count of double-width characters."""
        return as_field(self.escape(value))

    def add(self, kind: str, *fields: object) -> None:
        self.lines.append("\t".join([kind] + [str(f) for f in fields]))

    def add_text(self, kind: str, *fields: object, text: str) -> None:
        self.add(kind, *fields, *self.text(text))

    def add_wrapped(self, kind: str, *fields: object, text: str) -> None:
        """A message wrapped to the frame's width, one record a line."""
        room = max(self.width - MESSAGE_INDENT, 10)
        for line in textwrap.wrap(self.escape(text), room, break_on_hyphens=False) or [""]:
            self.add(kind, *fields, *as_field(line))

    def output(self) -> bytes:
        rows = ["ROWS"] + self.drawn if self.drawing is not None else []
        return ("\n".join(self.lines + rows + ["END"]) + "\n").encode("utf-8")


def stream_label(view: StreamView) -> str:
    if view.stream_name and view.stream_name != view.stream_id:
        return f"{view.stream_id}  {view.stream_name}"
    return view.stream_id


# The states whose streams get a detail line (see detail_of).
DETAILED = frozenset((StreamState.WAITING, StreamState.INVALID, StreamState.HELD, StreamState.BACKOFF,
                      StreamState.RATE_LIMITED, StreamState.MERGE_CONFLICT, StreamState.CHECK_FAILED,
                      StreamState.FAILED, StreamState.RUNNING, StreamState.AWAITING_REVIEW,
                      StreamState.AWAITING_PR, StreamState.PR_CLOSED))


def detail_of(view: StreamView, report: report_mod.StatusReport, now: float) -> Optional[str]:
    """The line under a stream: what it waits on, why it cannot run, how its worker ended, or what
    its agent is doing (last message, cost, turns, how long ago it last said anything)."""
    if view.state in DETAILED - {StreamState.FAILED, StreamState.RUNNING}:
        return view.describe()  # parked and gated streams: which files, the commit and diff stat, the next step
    if view.state is StreamState.FAILED:
        last = report_mod.last_log_line(report.layout.log_for(view.stream_id))
        if last and not last.startswith("{"):  # a text log's last line; an agent's JSON says less than the reason
            return f"last log: {last}"
        return view.reason or None
    if view.state is StreamState.RUNNING:
        return activity_line(report.activity.get(view.stream_id, {}), report.cost_of(view.stream_id), now)
    return None


def activity_line(activity: dict, cost: Optional[float], now: float) -> Optional[str]:
    """'$0.42 · 12 turns · 8s ago · Writing the tests' for a running agent; None when nothing is known."""
    parts = []
    if cost:
        parts.append(f"${cost:.2f}")
    turns = activity.get("turns")
    if isinstance(turns, int) and turns:
        parts.append(f"{turns} turn{'s' if turns != 1 else ''}")
    last = activity.get("last_activity")
    if isinstance(last, (int, float)):
        parts.append(f"{report_mod.format_duration(now - last)} ago")
    message = activity.get("last_message")
    if isinstance(message, str) and message:
        parts.append(message)
    return " · ".join(parts) or None


def running_time(view: StreamView, now: float) -> str:
    if view.state is StreamState.RUNNING and view.started_at:
        return report_mod.format_duration(now - view.started_at)
    return "-"


def add_report(frame: Frame, report: report_mod.StatusReport, now: float) -> None:
    views = report_mod.level_order(report.board.views.values())  # the order `status` lists them in
    orch = report.orchestrator
    frame.add("H", *frame.text(report.location.project_name), *frame.text(str(report.location.path)),
              time.strftime("%H:%M:%S", time.localtime(now)), orch.pid if orch else "-")
    summary = progress_summary_of(report.snapshot)
    running = sum(1 for v in views if v.state is StreamState.RUNNING)
    done = summary.completed_tasks + summary.cancelled_tasks
    frame.add("T", whole_percent(done, summary.total_tasks), done,
              summary.total_tasks, summary.in_progress_tasks, summary.pending_tasks, summary.blocked_tasks,
              summary.completed_streams, summary.total_streams, running)
    lines, text, drawing, drawn = frame.lines, frame.text, frame.drawing, frame.drawn
    labels = [text(stream_label(view)) for view in views]
    if drawing is not None:
        drawing.layout(max((len(f"{v.finished}/{v.total}") for v in views), default=3),
                       max((len(str(v.attempts)) for v in views), default=1),
                       max((len(label) + len(wide_list(wide)) for label, wide in labels), default=0))
        if views:
            drawn += ["", drawing.columns_line()]
    level = None
    for view, (label, wide) in zip(views, labels):  # the hot loop at 10,000 streams: one f-string a line
        shown_level = "-" if view.level is None else str(view.level)
        attempts = str(view.attempts) if view.attempts else "-"
        if drawing is None:
            lines.append(f"S\t{shown_level}\t{view.state.value}\t{view.finished}\t{view.total}\t{attempts}\t"
                         f"{running_time(view, now)}\t{label}\t{wide}")
        else:
            if shown_level != level:
                level = shown_level
                drawn.append(drawing.heading(level))
            drawn.append(drawing.row(view.state.value, view.finished, view.total, attempts, running_time(view, now),
                                     label, wide_list(wide)))
        if view.state in DETAILED:
            detail = detail_of(view, report, now)
            if detail:
                detail, wide = text(detail)
                if drawing is None:
                    lines.append(f"D\t{detail}\t{wide}")
                else:
                    drawn.append(drawing.detail(detail, wide_list(wide)))
    add_notes(frame, report, views)


def add_notes(frame: Frame, report: report_mod.StatusReport, views: List[StreamView]) -> None:
    if not views:
        frame.add_wrapped("M", "warn", text=f"No streams found in Task Copilot database {report.location.path}.")
        frame.add_wrapped("M", "hint", text="A task belongs to a stream when its metadata has a streamId, e.g.")
        frame.add_wrapped("M", "hint", text=report_mod.METADATA_EXAMPLE)
    for problem in report.board.problems.messages():
        frame.add_wrapped("M", "warn", text=problem)
    for warning in report.snapshot.warnings():
        frame.add_wrapped("M", "warn", text=warning)
    if report.spend is not None:  # the spend cap across runs: spent / cap in its window, in 60 columns
        reached = "; reached: nothing new starts" if report.spend.reached else ""
        frame.add_wrapped("M", "warn" if report.spend.reached else "hint",
                          text=f"Spend cap {report.spend.gauge(10)}{reached}")
    if report.board.all_complete():
        frame.add_wrapped("M", "done", text=f"All {len(views)} stream(s) complete.")
    elif views and report.orchestrator is None and not any(v.state is StreamState.RUNNING for v in views):
        frame.add_wrapped("M", "hint", text=START_HINT)
        frame.add_text("M", "hint", text=START_COMMAND)


def build_frame(width: int, ascii_only: bool, db: Optional[str], draw: bool = False,
                colour: bool = False) -> "tuple[Frame, int]":
    frame = Frame(width, ascii_only, Drawing(width, ascii_only, colour) if draw else None)
    layout = default_layout()
    problem = "missing"
    try:
        report_mod.open_database(layout, db)  # tells a missing database from an unreadable one
        problem = "unreadable"
        report = report_mod.collect_status(layout, db)
    except UserError as exc:
        frame.add_wrapped("E", problem, text=str(exc))
        return frame, EXIT_NO_DATABASE
    add_report(frame, report, time.time())
    return frame, EXIT_FRAME


class Options:
    """The command line: check-streams passes `--width N [--ascii] [--draw [--colour]] [--db PATH]`."""

    def __init__(self) -> None:
        self.width, self.ascii, self.draw, self.colour = 80, False, False, False
        self.db: Optional[str] = None


def parse_args(argv: List[str]) -> Options:
    """The options as check-streams passes them, read by hand: argparse is a twentieth of a frame.
    Anything else (--help, a mistake) goes to argparse, for its usage and its messages."""
    options, rest = Options(), list(argv)
    try:
        while rest:
            arg = rest.pop(0)
            if arg in ("--ascii", "--draw", "--colour"):
                setattr(options, arg[2:], True)
            elif arg in ("--width", "--db") and rest and not rest[0].startswith("-"):
                value = rest.pop(0)
                if arg == "--db":
                    options.db = value
                else:
                    options.width = int(value)
            else:
                raise ValueError(arg)
    except ValueError:
        return full_parser().parse_args(argv, namespace=options)
    return options


def full_parser():
    import argparse

    parser = argparse.ArgumentParser(prog="check_streams_data.py", description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=80, help="terminal columns (messages are wrapped to fit)")
    parser.add_argument("--ascii", action="store_true", help="escape every non-ASCII character")
    parser.add_argument("--draw", action="store_true",
                        help="the stream lines drawn for check-streams (R records) instead of S and D records")
    parser.add_argument("--colour", action="store_true", help="with --draw: in colour")
    parser.add_argument("--db", metavar="PATH", help="the tasks.db to read (default: from TASK_DB_PATH and WORKSPACE_ID)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    options = parse_args(sys.argv[1:] if argv is None else argv)
    # A frame takes a fraction of a second: let it finish, and let the shell
    # around it (watch-status) decide what Ctrl-C does, with no traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with report_mod.one_read():
            frame, code = build_frame(options.width, options.ascii, options.db, options.draw, options.colour)
        sys.stdout.buffer.write(frame.output())
        sys.stdout.flush()
    except BrokenPipeError:
        return EXIT_FRAME
    except Exception as exc:  # a bug: one line, not a traceback across the dashboard
        print(f"check-streams: internal error in check_streams_data.py: {exc!r}", file=sys.stderr)
        return EXIT_INTERNAL
    return code


if __name__ == "__main__":
    sys.exit(main())
