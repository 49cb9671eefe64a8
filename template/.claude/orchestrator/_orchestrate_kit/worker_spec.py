"""What one worker attempt is given: its command line, prompt, environment and working folder.

Names and titles from the database are data: they reach the worker only as
one argv item (the prompt) and environment values, never through a shell, and
are bounded so any database yields a command line the system accepts.
Standard library only, Python 3.9+.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .agent.claude import Launch, StreamLimits, WorkerOptionError, build_argv, is_claude, parse_worker_options
from .executor import WorkerSpec
from .settings import Layout, Settings
from .graph import StreamView
from .trackers import DatabaseError, DatabaseLocation, Snapshot, StreamRecord
from .git.workspaces import Workspace

# Linux refuses a single argument over 128 KiB (MAX_ARG_STRLEN), and the prompt is one
# argument: bound what it lists so that any database yields a prompt that can be passed.
PROMPT_TASKS = 100


def stream_limits(record: Optional[StreamRecord], claude: bool) -> StreamLimits:
    """A stream's Claude Code limits from its task metadata (none for other workers, or when they are
    not valid: such a stream is invalid on the board and never spawned)."""
    if not claude or record is None or not record.worker_options:
        return StreamLimits()
    try:
        return parse_worker_options(record.worker_options)
    except WorkerOptionError:
        return StreamLimits()


def choose_session(session_id: str, resume: bool, settings: Settings) -> Tuple[Optional[str], Optional[str]]:
    """(the session this attempt continues, the new session it starts): Claude Code workers only. A new
    session gets an id we choose, so a resume after a usage limit knows it even when the worker dies
    before printing its first event."""
    if resume and session_id:
        return session_id, None
    return None, str(uuid.uuid4()) if is_claude(settings.worker_argv()) else None


def tasks_of(reader, stream_id: str) -> List[Tuple[str, str, str]]:
    """The stream's tasks for its prompt (none when the tracker cannot be read now: the prompt says less)."""
    try:
        return list(reader.stream_tasks(stream_id))
    except DatabaseError:
        return []


def stream_budgets(snapshot: Snapshot, settings: Settings) -> Dict[str, float]:
    """Each stream's own spending cap (maxBudgetUsd), where its metadata sets one (Claude Code workers)."""
    claude = is_claude(settings.worker_argv())
    budgets = {}
    for sid, record in snapshot.streams.items():
        if record.worker_options:
            cap = stream_limits(record, claude).max_budget_usd
            if cap is not None:
                budgets[sid] = cap
    return budgets


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clean(text: str) -> str:
    return text.replace("\0", "")  # NUL cannot travel in argv or the environment


def worker_prompt(view: StreamView, tasks: Sequence[Tuple[str, str, str]], workspace: str, attempt: int,
                  how_to_update: str) -> str:
    """What the worker is asked to do: its stream, its remaining tasks, how to report."""
    open_tasks = [t for t in tasks if t[2] not in ("completed", "cancelled")]
    listed = "\n".join(f"- {_cut(tid, 100)} [{status}] {_cut(title, 300)}"
                       for tid, title, status in open_tasks[:PROMPT_TASKS])
    more = f"\n- ... and {len(open_tasks) - PROMPT_TASKS} more" if len(open_tasks) > PROMPT_TASKS else ""
    restart = (
        f"\nThis is attempt {attempt}: an earlier attempt ended before the stream was complete. "
        "Check what is already done and resume with what is left.\n"
        if attempt > 1 else ""
    )
    return _clean(
        f"You are the worker for stream {_cut(view.stream_id, 2000)!r} ({_cut(view.stream_name, 500)}) in Task Copilot "
        f"workspace {workspace!r}, started by orchestrate-kit.\n"
        f"Its remaining tasks:\n{listed or '- (none listed)'}{more}\n"
        f"{restart}"
        f"Work through them in order. {how_to_update} "
        "Work only on this stream's tasks; other streams run in parallel. "
        "The stream is done when all its tasks are completed in Task Copilot; then exit.\n"
    )


def workspace_instructions(workspace: Workspace, integration_branch: str, conflicts: Sequence[str],
                           elsewhere: bool = False) -> str:
    """The prompt's part about the worker's own git worktree (worktree isolation), and a handed-back conflict.
    `elsewhere`: the worker runs on another machine (a cluster node), in a checkout of its own there."""
    if elsewhere:  # no path of this machine means anything there; the branch is where its work comes back
        text = (f"You work in a git checkout of your own (your current folder) on a cluster node; other streams "
                "work elsewhere at the same time. Commit your work as you go (git add, git commit). Never switch "
                "branches, rebase or push: when you exit, your commits are pushed as branch "
                f"{workspace.branch} and the orchestrator merges it once the stream is complete. Never run git "
                "init or clone a repository inside the checkout: git would keep only a pointer to it, not its "
                "files.\n")
    else:
        text = (f"You work in your own git worktree, {workspace.path}, on branch {workspace.branch}; other streams "
                "work in other worktrees at the same time. Commit your work on this branch as you go (git add, "
                "git commit). Never switch branches (not even with --ignore-other-worktrees), rebase, push, or touch "
                "other worktrees or the project's main checkout: the orchestrator merges your branch once the stream "
                "is complete. Never use git stash: the stash is shared with the user's checkout, so a stash pop can "
                "take the user's own work. Never run git init or clone a repository inside the worktree: git would "
                "keep only a pointer to it, not its files.\n")
    if conflicts:
        listed = "\n".join(f"- {_cut(f, 300)}" for f in conflicts[:PROMPT_TASKS])
        text += (f"Your stream's tasks are done, but merging {workspace.branch} into {integration_branch} "
                 f"conflicted. The orchestrator has merged {integration_branch} into your worktree, which left "
                 f"conflicts in these files:\n{listed}\nResolve every conflict, keeping the intent of both sides "
                 "(leave no conflict markers), git add the files and git commit to conclude the merge; then exit.\n")
    return _clean(text)


def worker_environment(view: StreamView, location: DatabaseLocation, attempt: int) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CLAUDECODE"}  # a nested claude refuses to start
    env.update(
        STREAM_ID=view.stream_id,
        STREAM_NAME=view.stream_name,
        ORCHESTRATOR_ATTEMPT=str(attempt),
        **location.worker_environment(),
        ORCHESTRATE_DB_FILE=str(location.path),
    )
    return {k: _clean(v) for k, v in env.items()}


def build_spec(view: StreamView, attempt: int, tasks: Sequence[Tuple[str, str, str]], layout: Layout,
               settings: Settings, location: DatabaseLocation, limits: StreamLimits = StreamLimits(),
               resume_session: Optional[str] = None, budget_usd: Optional[float] = None,
               session_id: Optional[str] = None,
               warn: Callable[[str], None] = lambda _message: None, workspace: Optional[Workspace] = None,
               conflicts: Sequence[str] = (), integration_branch: str = "", feedback: str = "") -> WorkerSpec:
    """One attempt's WorkerSpec. For Claude Code the stream's limits, stream-json, a resumed session
    and the budget left become separate arguments (claude_command.build_argv); others get the prompt.
    With a workspace the worker runs in its worktree and the prompt says how to work there."""
    prompt = worker_prompt(view, tasks, location.workspace_id, attempt, location.update_instructions())
    if workspace is not None:
        prompt += workspace_instructions(workspace, integration_branch, conflicts, settings.executor != "local")
    if feedback:  # a reviewer's reason, or a closed pull request (lifecycle.Life.feedback)
        prompt += _clean(feedback.rstrip("\n") + "\n")
    launch = Launch(prompt, stream_json=settings.agent_events, session_id=session_id, resume_session=resume_session,
                    budget_usd=budget_usd,
                    name=view.stream_id, fallback_model=settings.fallback_model or None,
                    resume_prompt=_clean(feedback) if feedback else None)
    argv: List[str] = [_clean(a) for a in build_argv(settings.worker_argv(), limits, launch)]
    # Where the session to resume cannot be reached (a cluster node that is gone), a new one with the full prompt.
    resumes = any(a.startswith("--resume=") for a in argv)
    afresh = [_clean(a) for a in build_argv(settings.worker_argv(), limits, replace(
        launch, resume_session=None, session_id=str(uuid.uuid4())))] if resumes else []
    banner = (f"\n=== orchestrate-kit: {view.stream_id!r} attempt {attempt} at "
              f"{time.strftime('%Y-%m-%d %H:%M:%S')} ===\n")
    return WorkerSpec(view.stream_id, attempt, argv, worker_environment(view, location, attempt),
                      workspace.cwd if workspace else layout.root, layout.log_for(view.stream_id), banner,
                      settings.log_max_bytes, settings.log_keep, warn, integration_branch, tuple(afresh))
