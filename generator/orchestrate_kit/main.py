"""The ``orchestrate-kit`` command line: the argparse tree, dispatch, and every exit code.

Exit codes:

====  =====================================================================
0     done
1     something the user can fix (message and hint on stderr), ``doctor``
      found problems, or ``upgrade`` left conflicts to resolve
2     usage error (argparse prints the usage)
130   interrupted with Ctrl-C
====  =====================================================================

A reader that goes away (``orchestrate-kit install | head -1``) silences the rest of the output; the
command finishes and its own exit code stands. An unexpected error (a bug) prints one line and the
file its traceback was written to.
Adding a command is one entry in ``COMMANDS``: a function that adds its arguments and one that
runs it from the parsed namespace.
"""

from __future__ import annotations

import argparse
import os
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__, output
from .errors import UserError

EXIT_OK, EXIT_USER, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass(frozen=True)
class Command:
    """One subcommand: its help line, its arguments, and how to run it."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _quiet_argument(parser: argparse.ArgumentParser, default: Any) -> None:
    # On every subcommand too, so `orchestrate-kit doctor -q` works; SUPPRESS keeps the top one's value.
    parser.add_argument("-q", "--quiet", action="store_true", default=default,
                        help="print only warnings and errors")


def _project_argument(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("project", nargs="?", default=None, metavar="PROJECT", help=help)


FOUND_PROJECT = "the project (default: the one holding the current folder, found from any subfolder)"


def _data_pair(text: str) -> tuple[str, str]:
    """argparse type of --data: a malformed pair is a usage error (exit 2)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"takes KEY=VALUE, not {text!r} (e.g. --data max_parallel=4)")
    return key.strip(), value


def _data_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", "-d", action="append", default=[], type=_data_pair, metavar="KEY=VALUE",
                        help="answer one install question (repeatable), e.g. max_parallel=4; "
                        "`orchestrate-kit config` lists them")


def _install_arguments(parser: argparse.ArgumentParser) -> None:
    _project_argument(parser, "the folder to install into (default: the top of the git repository "
                      "holding the current folder, else the current folder)")
    parser.add_argument("--defaults", action="store_true", help="take the default answers without asking")
    parser.add_argument("--force", action="store_true",
                        help="install even inside a project that already has the orchestrator (a nested copy)")
    _data_argument(parser)


def _upgrade_arguments(parser: argparse.ArgumentParser) -> None:
    _project_argument(parser, FOUND_PROJECT)
    parser.add_argument("--to", metavar="VERSION", help="the version to move to (default: this installer's)")
    _data_argument(parser)


def _doctor_arguments(parser: argparse.ArgumentParser) -> None:
    _project_argument(parser, FOUND_PROJECT)
    parser.add_argument("--fix", action="store_true", help="repair what is safe to repair (symlink, run bits)")


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("key", nargs="?", metavar="KEY", help="the setting to show or change (default: list them all)")
    parser.add_argument("value", nargs="?", metavar="VALUE", help="its new value, written to orchestrator.local.conf")
    parser.add_argument("--unset", action="store_true", help="remove KEY from orchestrator.local.conf")
    parser.add_argument("--project", metavar="PATH", help=FOUND_PROJECT)


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, metavar="PATH",
                        help="make the demo in this new or empty folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the demo folder (its project and Task Copilot database) to explore afterwards")
    parser.add_argument("--pause", type=float, default=0.6, metavar="S",
                        help="seconds the simulated agent spends on each task (default %(default)s)")
    parser.add_argument("--refresh", type=float, default=1.0, metavar="S",
                        help="seconds between dashboard frames (default %(default)s)")


def _sample_db_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=Path, metavar="PATH",
                        help="where to write it (default: where the project's orchestrator looks, "
                        "$TASK_DB_PATH or ~/.claude/tasks, then $WORKSPACE_ID or the folder's name)")
    parser.add_argument("--project", metavar="PATH", help=FOUND_PROJECT)


def _install_command_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", action="store_true", default=True,
                        help="install into ~/.claude/commands/ (the default, and for now the only place)")
    parser.add_argument("--force", action="store_true", help="replace a command file of your own")


def _found_project(argument: str | None) -> Path:
    """The project a command about an installed orchestrator means, from any subfolder."""
    from .project import ANSWERS_FILE, find_root, resolve_project

    return find_root(resolve_project(argument), ANSWERS_FILE)


def _run_install(args: argparse.Namespace) -> int:
    from .commands.install import install
    from .project import resolve_project

    project = resolve_project(args.project) if args.project is not None else _found_project(None)
    return install(project=project, data=dict(args.data), defaults=args.defaults, force=args.force)


def _run_upgrade(args: argparse.Namespace) -> int:
    from .commands.upgrade import upgrade

    return upgrade(project=_found_project(args.project), data=dict(args.data), to=args.to)


def _run_doctor(args: argparse.Namespace) -> int:
    from .commands.doctor import doctor

    return doctor(project=_found_project(args.project), fix=args.fix)


def _run_config(args: argparse.Namespace) -> int:
    from .commands.config import config

    return config(project=_found_project(args.project), key=args.key, value=args.value, unset=args.unset)


def _run_sample_db(args: argparse.Namespace) -> int:
    from .commands.sample_db import sample_db

    return sample_db(project=_found_project(args.project), db=args.db)


def _run_demo(args: argparse.Namespace) -> int:
    from .commands.demo import demo

    return demo(directory=args.dir, keep=args.keep, pause=args.pause, refresh=args.refresh)


def _run_install_command(args: argparse.Namespace) -> int:
    from .commands.install_command import install_command

    return install_command(force=args.force)


# Commands import their modules on use, so `--help` stays fast and copier loads only when needed.
COMMANDS: dict[str, Command] = {
    "install": Command("install the orchestrator into a project", _install_arguments, _run_install),
    "upgrade": Command("upgrade it, keeping your edits (three-way merge)", _upgrade_arguments, _run_upgrade),
    "doctor": Command("check that it can run, and --fix what is safe", _doctor_arguments, _run_doctor),
    "config": Command("show or change its settings (kept in orchestrator.local.conf)", _config_arguments,
                      _run_config),
    "install-command": Command(
        "put the /orchestrate slash command into ~/.claude/commands/",
        _install_command_arguments, _run_install_command,
    ),
    "sample-db": Command("write a small Task Copilot plan (the diamond, harmless tasks) to try it on",
                         _sample_db_arguments, _run_sample_db),
    "demo": Command("run the orchestrator on a built-in example project, end to end",
                    _demo_arguments, _run_demo),
}


def build_parser() -> argparse.ArgumentParser:
    """The whole argparse tree."""
    parser = argparse.ArgumentParser(
        prog=output.PROG,
        description="Install, upgrade and check the Task Copilot stream orchestrator in a project.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _quiet_argument(parser, False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        sub = subparsers.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(sub)
        _quiet_argument(sub, argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (never calls sys.exit)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse: --help/--version (0) or a usage error (2)
        return int(exit_.code or 0)
    output.set_quiet(args.quiet)
    try:
        return COMMANDS[args.command].run(args)
    except UserError as error:
        output.error(error.message, hint=error.hint, details=error.details)
        return EXIT_USER
    except KeyboardInterrupt:
        output.error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (`| head`) before anything we print was lost
        output.silence_stdout()
        return EXIT_OK
    except Exception as error:  # a bug: one line here, the traceback in a file
        where = _write_traceback()
        output.error(f"unexpected error (a bug): {type(error).__name__}: {error}; traceback in {where}")
        return EXIT_USER
    finally:
        output.set_quiet(False)


def _write_traceback() -> str:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "orchestrate-kit"
    try:
        base.mkdir(parents=True, exist_ok=True)
        path = base / "crash.log"
        path.write_text(f"orchestrate-kit {__version__}\n{traceback.format_exc()}")
        return str(path)
    except OSError:
        traceback.print_exc()
        return "the output above"
