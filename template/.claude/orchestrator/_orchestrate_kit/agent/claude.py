"""The argument list of a Claude Code worker, and the checks `start` and `doctor` make before spawning.

Argument building is pure: from the install's worker command, a stream's limits (task metadata
`maxBudgetUsd`, `maxTurns`, `model`, `permissionMode`, `allowedTools`) and what this launch needs
(events on, a session to resume or to name, the budget left), one argv, never a shell string.
Every option we add is written in its `--flag=value` form, so no value is read as a flag and no
variadic option (`--allowedTools`, `--disallowedTools`, `--add-dir`, `--tools`) can swallow what
follows; the prompt comes last, after `--`, so a prompt starting with `-` (or naming a
subcommand) stays a prompt. tests/contract/ checks every shape built here against the real CLI.

Preflight runs the worker command through an injectable runner: `--version` (it runs),
`auth status` (logged in), and refuses root with a permission-skipping command. Claude Code
lets root skip permissions when `IS_SANDBOX=1` is set; that is the user's call for a real
sandbox, orchestrate-kit never sets it.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
from dataclasses import dataclass
from typing import Callable, List, Mapping, Optional, Sequence, Tuple

from .events import SANDBOX_NOTE, is_session_id

PERMISSION_MODES = ("acceptEdits", "auto", "bypassPermissions", "default", "dontAsk", "plan")
OPTION_FLAGS = {  # task metadata key -> Claude Code flag
    "maxBudgetUsd": "--max-budget-usd",
    "maxTurns": "--max-turns",
    "model": "--model",
    "permissionMode": "--permission-mode",
    "allowedTools": "--allowedTools",
}
CONTINUE_PROMPT = ("Continue where you left off: the run was paused (a usage limit or a restart). "
                   "Finish the remaining tasks of this stream, update each one in the tracker and commit your work.")
MIN_BUDGET_USD = 0.01  # less than a cent left is no budget: the CLI needs a positive amount
MAX_TURNS = 100_000
NAME_LENGTH = 200  # characters of a stream id kept as its session's name
_SKIP_PERMISSIONS = ("--dangerously-skip-permissions", "--allow-dangerously-skip-permissions")


class WorkerOptionError(ValueError):
    """A task-metadata limit that cannot become a flag; the message names the key and the value."""


def is_claude(argv: Sequence[str]) -> bool:
    """Whether a worker command runs Claude Code (its program is named `claude`)."""
    return bool(argv) and os.path.basename(argv[0]) == "claude"


# ---------------------------------------------------------------- per-stream limits


@dataclass(frozen=True)
class StreamLimits:
    """A stream's Claude Code limits, validated."""

    max_budget_usd: Optional[float] = None
    max_turns: Optional[int] = None
    model: Optional[str] = None
    permission_mode: Optional[str] = None
    allowed_tools: Tuple[str, ...] = ()


def parse_worker_options(options: Mapping[str, object]) -> StreamLimits:
    """Validate raw metadata values (as the tracker hands them over); WorkerOptionError if one is bad."""
    budget = options.get("maxBudgetUsd")
    turns = options.get("maxTurns")
    model = options.get("model")
    mode = options.get("permissionMode")
    tools = options.get("allowedTools")
    return StreamLimits(
        max_budget_usd=None if budget is None else _positive_number("maxBudgetUsd", budget),
        max_turns=None if turns is None else _whole_turns("maxTurns", turns),
        model=None if model is None else _plain_text("model", model),
        permission_mode=None if mode is None else _permission_mode("permissionMode", mode),
        allowed_tools=() if tools is None else _tool_list("allowedTools", tools),
    )


def _bad(key: str, value: object, why: str) -> WorkerOptionError:
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:79] + "…"
    return WorkerOptionError(f"task metadata {key}={shown} {why}")


def _positive_number(key: str, value: object) -> float:
    number: Optional[float] = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not math.isfinite(number) or number <= 0:
        raise _bad(key, value, "must be a positive number of US dollars")
    return number


def _whole_turns(key: str, value: object) -> int:
    turns: Optional[int] = None
    if isinstance(value, int) and not isinstance(value, bool):
        turns = value
    elif isinstance(value, float) and value.is_integer():
        turns = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        turns = int(value.strip())
    if turns is None or not 0 < turns <= MAX_TURNS:
        raise _bad(key, value, f"must be a whole number of turns from 1 to {MAX_TURNS}")
    return turns


def _plain_text(key: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(key, value, "must be non-empty text")
    why = _unsafe(value.strip())
    if why:
        raise _bad(key, value, why)
    return value.strip()


def _unsafe(text: str) -> str:
    """Why a value cannot be an argument (empty if it can)."""
    if text.startswith("-"):
        return "must not start with '-' (it would read as a flag)"
    if any(c in text for c in "\0\r\n"):
        return "must be one line without NUL characters"
    if len(text) > 200:
        return "is too long (200 characters at most)"
    return ""


def _permission_mode(key: str, value: object) -> str:
    if value not in PERMISSION_MODES:
        raise _bad(key, value, "must be one of " + ", ".join(PERMISSION_MODES))
    return str(value)


def _tool_list(key: str, value: object) -> Tuple[str, ...]:
    """A list of tool names/patterns, or one comma-separated string; commas inside (...) stay."""
    if isinstance(value, str):
        items = _split_commas(value)
    elif isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        items = [part for item in value for part in _split_commas(item)]
    else:
        raise _bad(key, value, "must be a list of tool names or a comma-separated string")
    tools = tuple(item.strip() for item in items if item.strip())
    if not tools:
        raise _bad(key, value, "names no tool")
    for tool in tools:
        why = _unsafe(tool)
        if why:
            raise _bad(key, value, f"has the tool {tool!r}, which {why}")
    return tools


def _split_commas(text: str) -> List[str]:
    """Split at commas outside parentheses: `Bash(git log:*),Edit` is two tools."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        elif char == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return parts


def budget_left(limits: StreamLimits, spent_usd: float, run_left_usd: Optional[float]) -> Optional[float]:
    """What this attempt may spend: the stream's budget minus what earlier attempts cost, capped by the run's.

    None: no cap. Below MIN_BUDGET_USD the budget is spent (the caller fails the stream "budget").
    """
    caps = [cap for cap in (None if limits.max_budget_usd is None else limits.max_budget_usd - spent_usd,
                            run_left_usd) if cap is not None]
    return min(caps) if caps else None


# ---------------------------------------------------------------- the argv


@dataclass(frozen=True)
class Launch:
    """What one spawn needs besides the stream's limits."""

    prompt: str
    stream_json: bool = True  # the install answer: Claude workers emit events
    session_id: Optional[str] = None  # start a new session with this id (the orchestrator chose it)
    resume_session: Optional[str] = None  # continue this session instead, with CONTINUE_PROMPT (not a UUID: afresh)
    budget_usd: Optional[float] = None  # budget_left(...) for this attempt
    name: Optional[str] = None  # the session's display name (`--name`): the stream, for `claude agents` and resume
    fallback_model: Optional[str] = None  # the install's fallback_model (`--fallback-model`)
    resume_prompt: Optional[str] = None  # what a resumed session is told instead of CONTINUE_PROMPT (a review's reason)


def build_argv(base: Sequence[str], limits: StreamLimits, launch: Launch) -> List[str]:
    """The worker's argv: the install's command, our options in `=` form, then `--` and the prompt.

    A command that is not Claude Code gets the prompt appended and nothing else.
    """
    if not is_claude(base):
        return [*base, launch.prompt]
    if launch.session_id is not None and launch.resume_session is not None:
        raise ValueError("a launch either names a new session or resumes one, not both")
    argv = list(base) if limits.permission_mode is None else _without_permission_flags(base)
    if launch.stream_json and _prints(base) and not _has_flag(base, "--output-format"):
        argv.append("--output-format=stream-json")
        if not _has_flag(base, "--verbose"):
            argv.append("--verbose")
    prompt = launch.prompt
    # A session to resume comes from a worker's output by way of run.json: one that is not a UUID
    # (an older run.json, an edited one) cannot be resumed, and a stream must not crash the run for it.
    if launch.resume_session is not None and is_session_id(launch.resume_session):
        argv.append("--resume=" + launch.resume_session)
        prompt = launch.resume_prompt or CONTINUE_PROMPT
    elif launch.session_id is not None:
        argv.append("--session-id=" + _session(launch.session_id))
    argv += limit_flags(limits, launch.budget_usd)
    argv += session_flags(base, launch)
    argv += ["--", prompt]
    return argv


def limit_flags(limits: StreamLimits, budget_usd: Optional[float] = None) -> List[str]:
    """The flags for a stream's limits, each one argv item; `budget_usd` replaces the stream's own budget."""
    flags = []
    budget = limits.max_budget_usd if budget_usd is None else budget_usd
    if budget is not None:
        if budget < MIN_BUDGET_USD:
            raise ValueError(f"no budget left ({budget:.4f} USD): the stream fails with the reason 'budget'")
        flags.append(f"--max-budget-usd={_dollars(budget)}")
    if limits.max_turns is not None:
        flags.append(f"--max-turns={limits.max_turns}")
    if limits.model is not None:
        flags.append(f"--model={limits.model}")
    if limits.permission_mode is not None:
        flags.append(f"--permission-mode={limits.permission_mode}")
    if limits.allowed_tools:
        flags.append("--allowedTools=" + ",".join(limits.allowed_tools))
    return flags


def session_flags(base: Sequence[str], launch: Launch) -> List[str]:
    """`--name` (the stream as one printable line, bounded: `claude agents` shows it) and `--fallback-model`,
    unless the install's command sets them."""
    flags = []
    name = " ".join("".join(c if c.isprintable() else " " for c in launch.name or "").split())[:NAME_LENGTH]
    if name and not _has_flag(base, "--name") and "-n" not in base[1:]:
        flags.append("--name=" + name)
    model = (launch.fallback_model or "").strip()
    if model and not _has_flag(base, "--fallback-model"):
        flags.append("--fallback-model=" + model)
    return flags


def _without_permission_flags(base: Sequence[str]) -> List[str]:
    """A stream's own permissionMode replaces the install's: --dangerously-skip-permissions would override it."""
    out, skip_value = [], False
    for arg in base:
        if skip_value:
            skip_value = False
        elif arg in _SKIP_PERMISSIONS or arg.startswith("--permission-mode="):
            pass
        elif arg == "--permission-mode":
            skip_value = True
        else:
            out.append(arg)
    return out


def _dollars(amount: float) -> str:
    """Round down to a hundredth of a cent, so a retry never gets more than is left."""
    return f"{math.floor(amount * 10_000) / 10_000:.4f}".rstrip("0").rstrip(".")


def _session(session_id: str) -> str:
    """A session id we chose ourselves: anything but a UUID is a bug here."""
    if not is_session_id(session_id):
        raise ValueError(f"session id {session_id!r} is not a UUID")
    return session_id


def _has_flag(argv: Sequence[str], flag: str) -> bool:
    return any(arg == flag or arg.startswith(flag + "=") for arg in argv)


def _prints(argv: Sequence[str]) -> bool:
    """Headless mode (`-p`/`--print`): the only mode with an output format."""
    return any(arg in ("-p", "--print") for arg in argv[1:])


def option_origin(option: str, base: Sequence[str]) -> str:
    """Where an option the CLI rejected came from, for the fix text."""
    name = option.split("=", 1)[0]
    if _has_flag(base[1:], name):
        return "the worker_command setting"
    for key, flag in OPTION_FLAGS.items():
        if flag == name:
            return f"task metadata key {key!r}"
    return "orchestrate-kit itself (please report it)"


# ---------------------------------------------------------------- preflight


@dataclass(frozen=True)
class RunResult:
    returncode: int
    stdout: str
    stderr: str


# (argv, timeout in seconds) -> RunResult; raises OSError when the program cannot run at all.
Runner = Callable[[Sequence[str], float], RunResult]


def run_command(argv: Sequence[str], timeout: float) -> RunResult:
    """The real runner: no shell, no stdin, a timeout, `CLAUDECODE` removed as for workers."""
    env = {k: v for k, v in os.environ.items() if k != "CLAUDECODE"}
    try:
        done = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return RunResult(124, "", f"timed out after {timeout:g} s")
    return RunResult(done.returncode, done.stdout, done.stderr)


@dataclass(frozen=True)
class PreflightProblem:
    check: str  # "runs", "login", "root"
    message: str
    fix: str


@dataclass(frozen=True)
class Preflight:
    """What preflight learnt: the CLI's version, whether it is logged in (None: cannot tell), problems."""

    version: Optional[str]
    logged_in: Optional[bool]
    problems: Tuple[PreflightProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def preflight(base: Sequence[str], runner: Runner = run_command, euid: Optional[int] = None,
              environ: Optional[Mapping[str, str]] = None, timeout: float = 30.0) -> Preflight:
    """Check a worker command (the full argv a worker gets, or the install's) before any worker starts.

    Every command must run (`--version`); login and root are checked for Claude Code only. The two
    commands run at once (each is a start of the CLI, most of a second for the real one); the login's
    answer counts only when the command runs.
    """
    from concurrent.futures import ThreadPoolExecutor  # only `start` asks: the workers' own imports stay light

    program = base[0]
    with ThreadPoolExecutor(max_workers=2) as pool:
        login = pool.submit(check_login, program, runner, timeout) if is_claude(base) else None
        version, problem = check_runs(program, runner, timeout)
        logged_in, login_problem = login.result() if login is not None and problem is None else (None, None)
    problems = [p for p in (problem, login_problem) if p is not None]
    problem = check_root(base, os.geteuid() if euid is None else euid, os.environ if environ is None else environ)
    problems += [problem] if problem else []
    return Preflight(version, logged_in, tuple(problems))


def check_runs(program: str, runner: Runner,
               timeout: float = 30.0) -> Tuple[Optional[str], Optional[PreflightProblem]]:
    """`program --version`: its version line, or why it does not run."""
    fix = ("install it, or correct the worker_command setting with `orchestrate-kit config worker_command '...'` "
           "(the program must be on PATH and executable); --no-preflight skips this check for other agent CLIs")
    try:
        done = runner([program, "--version"], timeout)
    except OSError as exc:
        return None, PreflightProblem("runs", f"the worker command {program!r} cannot run: {exc.strerror or exc}",
                                      fix)
    lines = (done.stdout.strip() or done.stderr.strip()).splitlines()
    if done.returncode != 0:
        said = lines[0] if lines else f"exit code {done.returncode}"
        return None, PreflightProblem("runs", f"`{program} --version` failed: {said}", fix)
    return (lines[0].strip() if lines else None), None


def check_login(program: str, runner: Runner,
                timeout: float = 30.0) -> Tuple[Optional[bool], Optional[PreflightProblem]]:
    """`claude auth status` prints JSON with `loggedIn` (and exits 1 when it is false); None when it cannot tell."""
    try:
        done = runner([program, "auth", "status"], timeout)
    except OSError:
        return None, None
    try:
        status = json.loads(done.stdout)
    except ValueError:
        return None, None  # an older CLI without `auth status`: the first worker will tell
    logged_in = status.get("loggedIn") if isinstance(status, dict) else None
    if logged_in is False:
        return False, PreflightProblem(
            "login", "Claude Code is not logged in",
            "run `claude /login` (or `claude setup-token` for a long-lived token) as the user that runs the "
            "orchestrator, or set ANTHROPIC_API_KEY")
    return (logged_in if isinstance(logged_in, bool) else None), None


def check_root(argv: Sequence[str], euid: int, environ: Mapping[str, str]) -> Optional[PreflightProblem]:
    """Claude Code refuses to skip permissions as root: say so before every worker fails the same way.

    The user may have set IS_SANDBOX=1 for a real sandbox (workers inherit it, and the CLI then
    accepts the flag); we respect it but never set it.
    """
    if euid != 0 or not is_claude(argv) or environ.get("IS_SANDBOX") == "1":
        return None
    flag = next((arg for arg in argv if arg in _SKIP_PERMISSIONS
                 or arg in ("--permission-mode=bypassPermissions",)), None)
    if flag is None and "bypassPermissions" in argv:
        flag = "--permission-mode bypassPermissions"
    if flag is None:
        return None
    without = shlex.join(_without_skipping(argv))
    return PreflightProblem(
        "root", f"running as root with {flag}: Claude Code refuses that flag as root/sudo",
        f"run the orchestrator as a normal user, or set a worker command without {flag}: "
        f"`orchestrate-kit config worker_command {shlex.quote(without)}`; {SANDBOX_NOTE}")


def _without_skipping(argv: Sequence[str]) -> List[str]:
    """The worker command with its permission-skipping flags taken out (for the fix text)."""
    kept: List[str] = []
    for arg in argv:
        if arg in _SKIP_PERMISSIONS or arg == "--permission-mode=bypassPermissions":
            continue
        if arg == "bypassPermissions" and kept and kept[-1] == "--permission-mode":
            kept.pop()
            continue
        kept.append(arg)
    return kept
