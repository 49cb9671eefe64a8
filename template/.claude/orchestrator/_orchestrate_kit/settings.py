"""Settings (install answers and flags), where the runtime keeps its files, and the user-error type.

The project is identified by its real path, so a symlinked script, a symlinked
project folder or a call from a subfolder all find one layout, one lock and one
workspace. In a git repository the lock, the run state and the worker records
live under the repository's git directory, where an agent's `git clean -fdx`
cannot reach them; logs stay in `.claude/orchestrator/logs/` for users to read.
Standard library only, Python 3.9+.
"""

from __future__ import annotations

import hashlib
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from . import validate
from .logfiles import DEFAULT_KEEP, DEFAULT_MAX_BYTES
from .names import safe_name

EXIT_OK, EXIT_STUCK, EXIT_USAGE = 0, 1, 2
CHOICES = validate.CHOICES  # text settings that take one of a few words


class UserError(Exception):
    """A mistake the user can fix: printed as one line, never as a traceback."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


class NotAFolder(UserError, OSError):
    """A folder the runtime writes to is something else (a file, a FIFO): an OSError to code that
    copes with those, a clear line with a fix to the user."""

    def __init__(self, path: Path):
        super().__init__(f"{path} is not a folder, but the orchestrator keeps its files there: move it away "
                         f"(mv {shlex.quote(str(path))} {shlex.quote(str(path) + '.moved')}) and run the command again", EXIT_STUCK)
        self.path = path


def blocking_part(folder: Path) -> Path:
    """The first part of `folder`'s path that exists and is not a folder (or `folder` itself)."""
    for part in reversed((folder, *folder.parents)):
        if part.exists() and not part.is_dir():
            return part
    return folder


@dataclass(frozen=True)
class Settings:
    """Install answers (orchestrator.conf, then orchestrator.local.conf), overridden by flags."""

    worker_command: str = "claude --print --dangerously-skip-permissions -p"
    max_parallel: int = 0
    max_restarts: int = 10
    poll_interval: float = 1.0
    refresh_interval: float = 15.0
    restart_delay: float = 5.0  # first back-off; doubles per failure
    stop_grace: float = 10.0  # TERM -> KILL
    finish_grace: float = 30.0  # a worker may linger this long after its stream completes
    log_max_bytes: int = DEFAULT_MAX_BYTES  # a stream's log is rotated before an attempt beyond this
    log_keep: int = DEFAULT_KEEP  # rotated logs kept per stream
    tracker: str = "auto"  # which Task Copilot: auto, mcp (the MCP server) or tc (the tc CLI)
    agent_events: bool = True  # Claude Code workers print stream-json: progress, cost, usage limits
    stall_timeout: float = 20.0  # minutes without output before a worker is stopped (0 = never)
    spawn_gap: float = 2.0  # pacing: 8 ready streams start at once, the rest of a larger wave this far apart
    max_cost_usd: float = 0.0  # the run's budget in USD (0 = none)
    on_event: str = ""  # a command run (no shell) when the run finishes, a stream fails, a limit is hit ...
    isolation: str = "auto"  # worktree (one git worktree per stream), none (the project root), auto
    merge_check: str = ""  # a shell command run on the merged tree after each stream's merge
    conflicts: str = "agent"  # a merge conflict: agent (handed back to the stream's agent once) or manual
    # Gates before merge, and the run's branches on a remote (git/gates.py, pull_requests.py, remote.py).
    merge_gate: str = "auto"  # auto (merge at once), review (wait for `approve`), pr (a draft pull request per stream)
    push: str = "none"  # none, integration (the integration branch after each merge) or all (and each stream branch)
    push_remote: str = "origin"  # the git remote that push and merge_gate = pr use
    merge_check_timeout: float = 30.0  # minutes a merge check may run before it is ended (0 = never)
    pr_poll_interval: float = 30.0  # seconds between asking about the pull requests of merge_gate = pr
    # Spend caps across runs (spend.py), the Claude Code fallback model (agent/claude.py), the hooks' receivers.
    spend_cap_usd: float = 0.0  # what all runs of this project may spend in the last spend_cap_period (0 = none)
    spend_cap_period: str = "day"  # day or week, rolling
    fallback_model: str = ""  # Claude Code workers get --fallback-model with it (empty: none)
    notify_slack_url: str = ""  # hooks/slack.py posts here (NOTIFY_SLACK_URL in the environment wins)
    notify_ntfy_url: str = ""  # hooks/ntfy.py publishes to this topic URL (NOTIFY_NTFY_URL wins)
    # Where workers run (executor/): local processes, or jobs on a Ray cluster (docs/RAY.md).
    executor: str = "local"  # local or ray
    ray_address: str = ""  # the Ray head's dashboard URL (the jobs API), e.g. http://head:8265
    ray_pending_timeout: float = 10.0  # minutes a job may wait for a node before it counts as a failed attempt

    def worker_argv(self) -> List[str]:
        try:
            argv = shlex.split(self.worker_command)
        except ValueError as exc:
            raise UserError(f"worker_command in orchestrator.conf cannot be parsed: {exc}") from None
        if not argv:
            raise UserError("worker_command in orchestrator.conf is empty")
        return argv


def load_settings(paths: Sequence[Path]) -> Settings:
    """Read `key = value` lines from each file in turn, later files winning. A key no setting has
    is read past (older runtimes read newer files); `setting_warnings` names it."""
    values: Dict[str, object] = {}
    for line in conf_lines(paths):
        if line.key in validate.RULES:
            values[line.key] = setting_value(line.key, line.value, line.where)
    return Settings(**values)  # type: ignore[arg-type]


def conf_lines(paths: Sequence[Path]) -> List[validate.Line]:
    """Every `key = value` line of the conf files, in order; a UserError for an unreadable file or a
    line that is not `key = value`."""
    lines: List[validate.Line] = []
    for path in paths:
        try:
            lines += validate.read_conf(path)
        except validate.ConfError as exc:
            raise UserError(str(exc)) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read {path}: {exc}") from None
    return lines


def setting_warnings(paths: Sequence[Path]) -> List[str]:
    """A line for each key in the conf files that no setting has, with its file, line and the closest
    name ("did you mean max_parallel?"); none when the files cannot be read (`load_settings` says why)."""
    try:
        return validate.unknown_keys(conf_lines(paths))
    except UserError:
        return []


def setting_value(key: str, value: str, where: str) -> object:
    """One setting parsed and checked (validate.py: the installer checks with the same code);
    `where` names its file and line, or the flag."""
    try:
        return validate.check(key, value)
    except validate.InvalidValue as exc:
        raise UserError(f"{where}: {exc}, not {value!r}") from None


# ================================================================ layout


def git_dir_of(folder: Path) -> Optional[Path]:
    """The git directory of the repository holding `folder` (its own one for a linked worktree),
    found without running git: the dashboard asks for the layout on every frame."""
    for candidate in (folder, *folder.parents):
        dot_git = candidate / ".git"
        if dot_git.is_dir():
            return dot_git
        if dot_git.is_file():
            try:
                text = dot_git.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                return None
            if text.startswith("gitdir:"):
                target = Path(text[len("gitdir:"):].strip())
                return (candidate / target).resolve() if not target.is_absolute() else target
            return None
    return None


@dataclass(frozen=True)
class Layout:
    """Where everything lives. `home` is `.claude/orchestrator/` (a real path); `state_root` holds
    the lock, run state and worker records: beside `home` outside git, else inside the git directory."""

    home: Path
    state_root: Path

    @property
    def root(self) -> Path:
        return self.home.parent.parent

    logs = property(lambda self: self.home / "logs")
    config = property(lambda self: self.home / "orchestrator.conf")
    local_config = property(lambda self: self.home / "orchestrator.local.conf")
    pids = property(lambda self: self.state_root / "pids")
    state = property(lambda self: self.state_root / "state")
    requests = property(lambda self: self.state / "requests")
    lock = property(lambda self: self.state / "orchestrator.lock")
    orchestrator_pid = property(lambda self: self.state / "orchestrator.pid")
    run_file = property(lambda self: self.state / "run.json")
    activity_file = property(lambda self: self.state / "activity.json")
    orchestrator_log = property(lambda self: self.logs / "orchestrator.log")
    journals = property(lambda self: self.state / "journal")  # one <run id>.jsonl per run (journal.py)
    reports = property(lambda self: self.home / "reports")  # one <run id>.html per run (report/)

    def log_for(self, stream_id: str) -> Path:
        return self.logs / f"{safe_name(stream_id)}.log"

    def pid_for(self, stream_id: str) -> Path:
        return self.pids / f"{safe_name(stream_id)}.pid"

    def config_files(self) -> List[Path]:
        return [self.config, self.local_config]

    def make_dirs(self) -> None:
        """Create (or re-create, after an agent's `git clean`) every folder the runtime writes to."""
        for folder in (self.logs, self.pids, self.state, self.requests):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise NotAFolder(blocking_part(folder)) from None


def layout_for(home: Path) -> Layout:
    """The layout of the runtime folder `home`, however it was reached."""
    home = home.resolve()
    git_dir = git_dir_of(home.parent.parent)
    if git_dir is None:
        return Layout(home, home)
    key = hashlib.sha256(str(home).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return Layout(home, git_dir / "orchestrate-kit" / key)


def default_layout() -> Layout:
    return layout_for(Path(__file__).resolve().parents[1])


def database_lock_path(database: Path) -> Path:
    """One lock per database, so two projects sharing a workspace never both run its streams.
    It sits beside the database when that folder is writable, else in the user's cache folder
    (keyed by the database's real path), never inside a project where `git clean` reaches it."""
    real = database.resolve()
    if os.access(str(real.parent), os.W_OK):
        return real.parent / f".{real.name}.orchestrate-lock"
    digest = hashlib.sha256(str(real).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "orchestrate-kit" / "locks" / f"db-{digest}.lock"
