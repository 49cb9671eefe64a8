"""The command line: parse, dispatch to the command's module (imported only when it runs), decide the exit code.

`orchestrate.py` beside the package only calls `main`. Standard library only, Python 3.9+.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from pathlib import Path
from typing import List, Optional, Set

from .. import validate
from ..settings import CHOICES, EXIT_OK, Layout, Settings, UserError, default_layout, load_settings
from .common import PROG

TRACKER_CHOICES = CHOICES["tracker"]


def setting_type(key: str):
    """The argparse type of a flag that sets `key`: checked by validate.py, as the conf files and the
    installer check it, so a value is accepted or refused the same way (and with the same words) everywhere."""
    def parse(text: str):
        try:
            return validate.check(key, text)
        except validate.InvalidValue as exc:
            raise argparse.ArgumentTypeError(f"{exc}, not {text.strip()!r}") from None
    parse.__name__ = key  # argparse names the type in its own messages
    return parse


def line_count(text: str) -> int:
    """The argparse type of `logs -n` and `history -n`: a whole number, read as every setting's number is."""
    value = validate.number(text, whole=True)
    if value is None:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive whole number, e.g. 40, not {text!r}")
    return int(value)


def project_settings(layout: Layout) -> Settings:
    """The project's own settings for --help's defaults; built-in ones if they cannot be read."""
    try:
        return load_settings(layout.config_files())
    except UserError:
        return Settings()


def build_parser(defaults: Settings = Settings()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrate.py",
        description="Run Task Copilot streams in parallel with headless workers, each as soon as "
                    "every stream it depends on is complete.",
        epilog="Exit codes: 0 all complete; 1 stopped with failed or stuck streams; "
               "2 usage error, missing database or invalid graph.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    start = sub.add_parser("start", help="run every stream (or the named ones) as its dependencies complete")
    start.add_argument("streams", nargs="*", metavar="STREAM", help="only these streams (their incomplete dependencies are not started)")
    start.add_argument("--detach", action="store_true", help="run in the background (log: logs/orchestrator.log) and return at once")
    start.add_argument("--max-parallel", type=setting_type("max_parallel"), metavar="N", help=f"most workers at once (0 = unlimited; default {defaults.max_parallel})")
    start.add_argument("--max-restarts", type=setting_type("max_restarts"), metavar="N", help=f"restarts per stream before it is failed (default {defaults.max_restarts})")
    start.add_argument("--poll-interval", type=setting_type("poll_interval"), metavar="S", help=f"seconds between database checks (default {defaults.poll_interval:g})")
    start.add_argument("--db", metavar="PATH", help="the tasks.db to use (default: from TASK_DB_PATH and WORKSPACE_ID)")
    start.add_argument("--tracker", choices=TRACKER_CHOICES,
                       help="which Task Copilot: mcp (the MCP server) or tc (the tc CLI); default: the tracker setting, auto")
    start.add_argument("--isolation", choices=("worktree", "none"),
                       help="worktree: each stream in its own git worktree, merged in dependency order; none: all "
                            f"in the project root (default: the isolation setting, {defaults.isolation})")
    start.add_argument("--executor", choices=CHOICES["executor"],
                       help="where workers run: local (processes here) or ray (jobs on the Ray cluster at ray_address; "
                            f"see docs/RAY.md) (default: the executor setting, {defaults.executor})")
    start.add_argument("--dry-run", action="store_true", help="print what would start; start nothing")
    start.add_argument("--max-cost-usd", type=setting_type("max_cost_usd"), metavar="USD",
                       help=f"stop starting workers once the run has cost this much (0 = no limit; default "
                            f"{defaults.max_cost_usd:g})")
    start.add_argument("--no-preflight", action="store_true",
                       help="skip checking that the worker command runs and is logged in (other agent CLIs)")
    start.add_argument("--retry-failed", action="store_true",
                       help="give every failed stream a fresh restart budget and carry the run on")
    start.set_defaults(handler="start:cmd_start")

    status = sub.add_parser("status", help="every stream's state, tasks, worker and attempts")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--db", metavar="PATH", help="the tasks.db to use")
    status.add_argument("--tracker", choices=TRACKER_CHOICES, help="which Task Copilot: mcp or tc (default: auto)")
    status.set_defaults(handler="status:cmd_status")

    stop = sub.add_parser("stop", help="stop the orchestrator and its workers (or one stream's worker)")
    stop.add_argument("stream", nargs="?", metavar="STREAM", help="stop only this stream's worker; it is not restarted")
    stop.add_argument("--grace", type=setting_type("stop_grace"), default=defaults.stop_grace, metavar="S",
                      help="seconds between TERM and KILL (default %(default)g)")
    stop.set_defaults(handler="stop:cmd_stop")

    logs = sub.add_parser("logs", help="show (or follow) one stream's log, or the orchestrator's")
    logs.add_argument("stream", metavar="STREAM", help="a stream id, or `orchestrator` for the background run's log")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C ends)")
    logs.add_argument("-n", "--lines", type=line_count, default=40, metavar="N", help="lines to show (default %(default)s)")
    logs.set_defaults(handler="logs:cmd_logs")

    check = sub.add_parser("preflight", help="check that the worker command runs, is logged in and may run as you")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(handler="plan:cmd_preflight")

    plan = sub.add_parser("plan", help="dependency levels, the critical path, and what would start now")
    plan.add_argument("--json", action="store_true", help="machine-readable output")
    plan.add_argument("--db", metavar="PATH", help="the tasks.db to use")
    plan.add_argument("--tracker", choices=TRACKER_CHOICES, help="which Task Copilot: mcp or tc (default: auto)")
    plan.set_defaults(handler="plan:cmd_plan")

    land = sub.add_parser("land", help="bring the finished run's integration branch into your current branch")
    land.add_argument("--partial", action="store_true",
                      help="land what is merged although streams of the plan are not complete (their branches "
                           "and worktrees stay)")
    land.add_argument("--push", action="store_true",
                      help="then push the landed branch to push_remote (never forced; your pre-push hook runs)")
    land.set_defaults(handler="land:cmd_land")

    # The review gate (merge_gate = review): a stream awaiting review is merged only at the commit shown.
    review = sub.add_parser("review", help="show what a stream awaiting review would merge, and record that commit")
    review.add_argument("stream", metavar="STREAM", help="a stream in awaiting_review")
    review.add_argument("--stat", action="store_true", help="the diff stat without the diff")
    review.add_argument("--json", action="store_true", help="machine-readable output")
    review.set_defaults(handler="review:cmd_review")
    approve = sub.add_parser("approve", help="merge exactly the commit `review STREAM` showed (refused if it moved)")
    approve.add_argument("stream", metavar="STREAM", help="a stream in awaiting_review, reviewed")
    approve.set_defaults(handler="review:cmd_approve")
    reject = sub.add_parser("reject", help="hand a stream awaiting review back to its agent, with your reason")
    reject.add_argument("stream", metavar="STREAM", help="a stream in awaiting_review")
    reject.add_argument("--reason", required=True, metavar="TEXT", help="why: it goes into the agent's next prompt")
    reject.set_defaults(handler="review:cmd_reject")

    report = sub.add_parser("report", help="a run's report: a timeline, costs, what each stream did, failures")
    report.add_argument("run", nargs="?", metavar="RUN", help="a run id from `history` (or the start of one); default: the latest")
    report.add_argument("--json", action="store_true", help="the report's data as JSON (printed unless --out)")
    report.add_argument("--out", metavar="FILE", help="write it here (`-` prints it); default: reports/RUN.html")
    report.set_defaults(handler="report:cmd_report")

    history = sub.add_parser("history", help="this project's past runs: start, length, streams, outcome, cost")
    history.add_argument("--json", action="store_true", help="machine-readable output")
    history.add_argument("-n", "--limit", type=line_count, default=20, metavar="N",
                         help="show the N newest runs (0 = all; default %(default)s)")
    history.set_defaults(handler="history:cmd_history")
    return parser


def command(handler: str):
    """The function behind a subcommand ("module:function"), imported only now: `status` never
    loads the supervisor, `--help` loads no command at all."""
    module, _, function = handler.partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), function)


def ensure_standard_streams() -> Set[int]:
    """Open /dev/null on a closed stdin, stdout or stderr (`>&-`, some cron setups): otherwise the
    next file we open takes its number and worker output or a lock lands in the wrong place.
    Returns the numbers that were closed."""
    closed = set()
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.add(fd)
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")
    return closed


def main(argv: Optional[List[str]] = None, layout: Optional[Layout] = None) -> int:
    closed = ensure_standard_streams()
    argv = sys.argv[1:] if argv is None else list(argv)
    layout = layout or default_layout()
    args = build_parser(project_settings(layout)).parse_args(argv)
    args.raw_argv = argv
    args.stdout_closed = 1 in closed  # `start >&-`: its lines go to the orchestrator log, not /dev/null
    try:
        return command(args.handler)(args, layout)
    except UserError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # a bug: one line for the user, the traceback in a file
        crash = layout.state / "crash.log"
        try:
            layout.make_dirs()
            crash.write_text(traceback.format_exc(), encoding="utf-8")
        except OSError:
            crash = Path("(could not be written)")
        print(f"{PROG}: internal error: {exc!r}; traceback written to {crash}", file=sys.stderr)
        return 70
