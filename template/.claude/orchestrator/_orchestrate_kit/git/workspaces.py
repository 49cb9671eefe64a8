"""Stream workspaces: one git worktree per stream, merged into the run's integration branch.

A run gets an integration branch created from the user's HEAD and checked out in
its own worktree (`.claude/worktrees/_integration`). Each stream works in
`.claude/worktrees/<name>` on `stream/<name>`, branched from the integration
branch once every dependency has been merged into it. A completed stream's
leftovers are committed, its branch is merged with `--no-ff` in the integration
worktree, and an optional check runs on the merged tree (git/merging.py runs it
through the local executor; how it starts and its result are here). A finished clean
worktree is parked as a spare and reused by the next stream (a rename and a
checkout of the files that differ). `recover` repairs what a killed orchestrator
left half-done. `land` brings the result into the user's branch at the end.

Rules this module keeps: the user's checkout, branch, HEAD and index are touched
only by `land`, which refuses a dirty tree, a detached HEAD, or landing over a
file of the user's that git does not track; git runs from argument lists, never a
shell, never with `--force`; the only `reset` that moves a branch is of the
integration branch in its own worktree, which belongs to the orchestrator (the
others: `reset --hard` to HEAD in that worktree, and unstaging a nested
repository's gitlink in a stream's); a worktree with uncommitted changes is never
removed. Every git command of ours runs without the user's git hooks (they are
mechanical; the merge check is the quality gate), except `land`'s in the user's
own checkout, and commits with a fallback identity when git has none. Agents share
the repository's refs with the user, so the run keeps a record of the user's stash,
branches and tags and of the integration tip (see `watch_shared_refs`); a run
whose state was lost, or whose project folder moved, is found in git again.

Several of these run at once, in separate step processes (git/steps.py): worktrees
for several streams are prepared side by side while a merge runs. What git itself
cannot share is serialised by locks in the git directory (`_locked`): registering,
moving and removing worktrees (`git worktree add` reads every other worktree's
registration and fails on one half written), the run record (read, compared and
written back), and a merge (`merge_finished`, `undo_merge`: the merge lock names its
holder, so `recover` waits for a merge step a killed orchestrator left running). The
files of a new worktree are checked out outside the lock.
Every git failure becomes a WorkspaceError with one readable line.
Standard library only.
"""

from __future__ import annotations

import fcntl
import json
import os
import posixpath
import re
import secrets
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any, Collection, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from .. import atomic
from ..executor.processes import (
    TOKEN_VARIABLE,
    process_start_time,
    signal_group,
    signal_members,
    token_carriers,
)
from ..names import printable, safe_name
from .bounded import GIT_CONTEXT

WORKTREES = Path(".claude") / "worktrees"
INTEGRATION_FOLDER = "_integration"  # no safe name starts with "_", so no stream gets this folder
SPARE_PREFIX = "_spare-"  # finished worktrees parked for reuse (see remove_workspace)
MAX_SPARES = 2
STREAM_PREFIX = "stream/"
INTEGRATION_PREFIX = "orchestrate/integration-"
FALLBACK_NAME, FALLBACK_EMAIL = "orchestrate-kit", "orchestrate-kit@localhost"
NO_HOOKS = ("-c", "core.hooksPath=/dev/null")
MIN_GIT = (2, 17)  # git worktree move/remove
CHECK_OUTPUT_LIMIT = 64_000
ORPHAN_GRACE = 5.0  # seconds a git orphaned mid-creation gets to end on TERM before KILL
UNMERGED = {"DD", "AU", "UD", "UA", "DU", "AA", "UU"}
WORKTREES_LOCK, RECORD_LOCK, MERGE_LOCK = "worktrees", "record", "merge"  # see _locked, _merge_lock


class WorkspaceError(Exception):
    """A git or workspace problem, said in one line the user can act on."""


class LandRefused(WorkspaceError):
    """`land` will not run in the user's checkout as it is now."""


# ---------------------------------------------------------------- names


def name_clashes(stream_ids: Iterable[str]) -> List[Tuple[str, ...]]:
    """Groups of stream ids whose names differ only in case: on a case-insensitive file system
    (macOS, Windows) they would share one folder and one branch file, so plan/start refuse them."""
    groups: Dict[str, List[str]] = {}
    for sid in sorted(set(stream_ids)):
        groups.setdefault(safe_name(sid).casefold(), []).append(sid)
    return [tuple(ids) for ids in groups.values() if len(ids) > 1]


def stream_branch(stream_id: str) -> str:
    return STREAM_PREFIX + safe_name(stream_id)


def worktree_path(project: Path, stream_id: str) -> Path:
    return Path(project) / WORKTREES / safe_name(stream_id)


def integration_path(project: Path) -> Path:
    return Path(project) / WORKTREES / INTEGRATION_FOLDER


# ---------------------------------------------------------------- running git


def _git_env(extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in GIT_CONTEXT}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_EDITOR=":", GIT_MERGE_AUTOEDIT="no", **(extra or {}))
    return env


def _git(cwd: Path, *args: str, check: bool = True, user_hooks: bool = False,
         env: Optional[Mapping[str, str]] = None) -> subprocess.CompletedProcess:
    """Run git in `cwd` from an argument list; a failure raises WorkspaceError unless check=False.

    Our own operations run without the user's hooks (NO_HOOKS): a post-checkout hook that fails
    would fail every `worktree add`, one that writes a file would leave our worktrees dirty.
    Only `land`, in the user's own checkout on their branch, passes `user_hooks=True`."""
    argv = ["git", *(() if user_hooks else NO_HOOKS), *args]
    try:
        done = subprocess.run(argv, cwd=str(cwd), env=_git_env(env), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, errors="replace")
    except OSError as error:
        problem = "git is not installed (or not on PATH)" if Path(cwd).is_dir() else f"folder {cwd} is missing"
        raise WorkspaceError(f"cannot run git {_subcommand(args)}: {problem} ({error.strerror})") from None
    if check and done.returncode != 0:
        raise WorkspaceError(f"git {_subcommand(args)} failed in {cwd}: {_reason(done)}")
    return done


def _subcommand(args: Sequence[str]) -> str:
    """The git command's name, past any `-c name=value` options."""
    i = 0
    while i < len(args) and args[i] == "-c":
        i += 2
    return args[i] if i < len(args) else ""


def _git_version(project: Path) -> Tuple[int, int]:
    found = re.search(r"(\d+)\.(\d+)", _git(project, "--version").stdout)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def _reason(done: subprocess.CompletedProcess) -> str:
    """The line of git's output that says what went wrong."""
    lines = [ln.strip() for ln in (done.stderr + "\n" + done.stdout).splitlines() if ln.strip()]
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            return line
    return lines[0] if lines else f"exit status {done.returncode}"


def _rev(cwd: Path, ref: str) -> str:
    return _git(cwd, "rev-parse", "--verify", "-q", ref + "^{commit}").stdout.strip()


def _exists(cwd: Path, ref: str) -> bool:
    return _git(cwd, "rev-parse", "--verify", "-q", ref, check=False).returncode == 0


def _is_ancestor(cwd: Path, older: str, newer: str) -> bool:
    return _git(cwd, "merge-base", "--is-ancestor", older, newer, check=False).returncode == 0


def _parents(cwd: Path, commit: str) -> List[str]:
    return _git(cwd, "rev-list", "--parents", "-n", "1", commit).stdout.split()[1:]


@lru_cache(maxsize=None)
def _identity_options(project: Path) -> Tuple[str, ...]:
    """A fallback identity when git has none, so a commit never fails for want of a name."""
    for var in ("GIT_AUTHOR_IDENT", "GIT_COMMITTER_IDENT"):
        if _git(project, "var", var, check=False).returncode != 0:
            return ("-c", f"user.name={FALLBACK_NAME}", "-c", f"user.email={FALLBACK_EMAIL}")
    return ()


def _commit_options(project: Path) -> Tuple[str, ...]:
    """Options for our own bookkeeping commits and merges: an identity (`_git` skips the hooks)."""
    return _identity_options(project)


@lru_cache(maxsize=None)
def _prefix(project: Path) -> str:
    """Where the project sits inside its repository ('' at the top, 'app/' in a monorepo)."""
    return _git(project, "rev-parse", "--show-prefix").stdout.strip()


def _short(project: Path, path: Path) -> str:
    try:
        return str(Path(path).relative_to(project))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------- worktree state


@dataclass(frozen=True)
class TreeState:
    """One `git status` of a worktree: its branch, changed and unmerged paths."""

    branch: Optional[str]  # None when HEAD is detached
    tracked: Tuple[str, ...]  # changed tracked files, staged or not (unmerged ones included)
    untracked: Tuple[str, ...]
    unmerged: Tuple[str, ...]
    head: str = ""  # the commit HEAD is at ('' before the first commit)

    @property
    def dirty(self) -> bool:
        return bool(self.tracked or self.untracked)


def _tree_state(cwd: Path) -> TreeState:
    out = _git(cwd, "status", "--porcelain=v2", "--branch", "-z").stdout
    fields = iter(out.split("\0"))
    branch: Optional[str] = None
    oid = ""
    tracked: List[str] = []
    untracked: List[str] = []
    unmerged: List[str] = []
    for field in fields:
        kind = field[:1]
        if field.startswith("# branch.oid "):
            oid = field[len("# branch.oid "):]
            oid = "" if oid == "(initial)" else oid
        elif field.startswith("# branch.head "):
            head = field[len("# branch.head "):]
            branch = None if head == "(detached)" else head
        elif kind == "1":
            tracked.append(field.split(" ", 8)[8])
        elif kind == "2":
            tracked.append(field.split(" ", 9)[9])
            next(fields, None)  # the rename's source path
        elif kind == "u":
            unmerged.append(field.split(" ", 10)[10])
            tracked.append(unmerged[-1])
        elif kind == "?":
            untracked.append(field[2:])
    return TreeState(branch, tuple(tracked), tuple(untracked), tuple(unmerged), oid)


def _merging(cwd: Path) -> bool:
    """A merge in progress in the worktree at `cwd` (its MERGE_HEAD), read from its git folder when
    `cwd` is a worktree's top (no git call), else asked."""
    dot_git = Path(cwd) / ".git"
    try:
        if dot_git.is_dir():
            return (dot_git / "MERGE_HEAD").exists()
        text = dot_git.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return _exists(cwd, "MERGE_HEAD")
    if not text.startswith("gitdir: "):
        return _exists(cwd, "MERGE_HEAD")
    folder = Path(text[len("gitdir: "):].strip())
    return (folder if folder.is_absolute() else Path(cwd) / folder).joinpath("MERGE_HEAD").exists()


_MARKER = re.compile(r"^(?:<{7}|>{7}|\|{7})(?: |$)", re.M)  # conflict start, end, diff3 base: never content
_SEPARATOR = re.compile(r"^={7}$", re.M)  # between the sides: also an RST heading or a banner


def _files_with_markers(cwd: Path, files: Iterable[str], sides: Sequence[str] = ()) -> List[str]:
    """Files that still hold a conflict marker line: any `<<<<<<<`, `>>>>>>>` or `|||||||` line, or more
    `=======` lines than the file has on either side of the merge (`sides`: the merged commits), so a
    resolution that deleted only one end of a block is caught, and a heading the file had is not."""
    found = []
    for name in files:
        try:
            text = (Path(cwd) / name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if _MARKER.search(text):
            found.append(name)
            continue
        separators = len(_SEPARATOR.findall(text))
        if separators and separators > max((_separators_in(cwd, side, name) for side in sides), default=0):
            found.append(name)
    return found


def _separators_in(cwd: Path, commit: str, name: str) -> int:
    done = _git(cwd, "show", f"{commit}:{name}", check=False)
    return len(_SEPARATOR.findall(done.stdout)) if done.returncode == 0 else 0


def _last_merge_sides(cwd: Path) -> List[str]:
    """The parents of the latest merge commit on HEAD (the two sides a resolution joined)."""
    return _git(cwd, "log", "--merges", "-n", "1", "--format=%P", "HEAD", check=False).stdout.split()


# ---------------------------------------------------------------- worktrees


@dataclass(frozen=True)
class _Registered:
    branch: Optional[str]
    locked: bool


def _registered(project: Path) -> Dict[str, _Registered]:
    """Worktrees git knows about, by real path."""
    found: Dict[str, _Registered] = {}
    path, branch, locked = "", None, False
    for line in _git(project, "worktree", "list", "--porcelain").stdout.splitlines() + [""]:
        if line.startswith("worktree "):
            path = os.path.realpath(line[len("worktree "):])
        elif line.startswith("branch "):
            branch = line[len("branch "):]
        elif line == "locked" or line.startswith("locked "):
            locked = True
        elif not line and path:
            found[path] = _Registered(branch, locked)
            path, branch, locked = "", None, False
    return found


def _marker(path: Path) -> Path:
    """Exists only while we create the worktree at `path`: proof that nobody has worked in it."""
    return path.parent / f".{path.name}.creating"


def _begin_creating(path: Path) -> Dict[str, str]:
    """Write the marker, naming a token that every git we run for this creation carries in its
    environment: a git orphaned by a SIGKILL of ours is found by it and ended before cleaning up."""
    token = "worktree-" + secrets.token_hex(8)
    creator = {"pid": os.getpid(), "started": process_start_time(os.getpid()), "token": token}
    _marker(path).write_text(json.dumps(creator) + "\n", encoding="utf-8")
    return {TOKEN_VARIABLE: token}


def _add_worktree(project: Path, path: Path, *args: str, checkout: bool = True) -> None:
    """`git worktree add` into a folder that does not exist yet, undone if it fails half-way. With
    `checkout=False` only its registration is made (under the worktrees lock) and the marker stays
    until `_check_out` has written its files (outside the lock, several worktrees at once)."""
    if path.exists():
        raise WorkspaceError(f"{_short(project, path)} exists but is not a worktree of this repository; "
                             "move it out of the way and start again")
    path.parent.mkdir(parents=True, exist_ok=True)
    creating = _begin_creating(path)
    try:
        _git(project, "worktree", "add", "-q", *(() if checkout else ("--no-checkout",)), *args, env=creating)
    except WorkspaceError:
        _undo_half_created(project, path)
        raise
    if checkout:
        _marker(path).unlink()


def _check_out(project: Path, path: Path) -> None:
    """Write the files of a worktree registered without them (what `git worktree add` itself runs), with the
    creation's token; a failure removes the half-made worktree (nobody has worked in it)."""
    try:
        token = json.loads(_marker(path).read_text(encoding="utf-8")).get("token", "")
    except (OSError, ValueError, AttributeError):
        token = ""
    try:
        _git(path, "reset", "-q", "--hard", "--no-recurse-submodules", env={TOKEN_VARIABLE: str(token)})
    except WorkspaceError:
        with _locked(project, WORKTREES_LOCK):
            _undo_half_created(project, path)
        raise
    _marker(path).unlink()


def _undo_half_created(project: Path, path: Path) -> None:
    """Remove a worktree whose creation was interrupted (our marker says nobody worked in it), once
    the git that was creating it (orphaned when we were killed) has ended."""
    _end_orphans(_marker(path))
    entry = _registered(project).get(os.path.realpath(path))
    if entry is not None and entry.locked:
        _git(project, "worktree", "unlock", str(path))
    if path.exists():
        shutil.rmtree(path)
    if entry is not None:
        _forget(project, path)
    _marker(path).unlink(missing_ok=True)


def _end_orphans(marker: Path) -> None:
    """End what still carries the marker's token (TERM, then KILL after ORPHAN_GRACE) and wait for it:
    removing a folder a git still writes into fails with "Directory not empty". Linux finds them by
    token; elsewhere (no /proc) a killed creation may need a second start."""
    try:
        creator = json.loads(marker.read_text(encoding="utf-8"))
        token = creator.get("token", "")
    except (OSError, ValueError, AttributeError):
        return  # an older marker (a pid only) or none: nothing to look for
    _end_creator(creator)
    deadline = time.monotonic() + ORPHAN_GRACE
    sent_kill = False
    while True:
        orphans = token_carriers(str(token))
        if not orphans:
            return
        late = time.monotonic() >= deadline
        if late and sent_kill and time.monotonic() >= deadline + ORPHAN_GRACE:
            raise WorkspaceError(f"a git process creating {marker.name[1:-len('.creating')]} (pid "
                                 f"{', '.join(map(str, orphans))}) does not end; end it, then start again")
        signal_members(orphans, signal.SIGKILL if late else signal.SIGTERM)
        sent_kill = sent_kill or late
        time.sleep(0.05)


def _end_creator(creator: Mapping[str, Any]) -> None:
    """End the step that wrote the marker if it still runs (its orchestrator was SIGKILLed): once its git
    fails it would undo "its" half-made worktree, removing the folder after the next run made it anew
    (a worker then ran among missing files, and its leftover commit deleted them). A step leads a
    session of its own: git and its filters go with it. Another process's pid (reused) is left alone."""
    try:
        pid, started = int(creator.get("pid", 0)), creator.get("started")
    except (TypeError, ValueError):
        return
    if pid <= 0 or pid == os.getpid() or started is None or process_start_time(pid) != started:
        return
    signal_members([pid], signal.SIGKILL, group=pid)  # its session when it leads one, else it alone
    deadline = time.monotonic() + 2 * ORPHAN_GRACE
    while process_start_time(pid) == started:
        if time.monotonic() >= deadline:
            raise WorkspaceError(f"the step that was creating a worktree (pid {pid}) does not end; end it, "
                                 "then start again")
        time.sleep(0.02)


def _forget(project: Path, path: Path) -> None:
    """Drop git's record of a worktree whose folder is gone."""
    if _git(project, "worktree", "remove", str(path), check=False).returncode != 0:
        _git(project, "worktree", "prune")  # older git: remove needs the folder


def _ensure_worktree(project: Path, path: Path, branch: str, start: Optional[str], checkout: bool = True,
                     registered: Optional[Mapping[str, "_Registered"]] = None) -> bool:
    """Make `path` a worktree on `branch`, reusing it when it already is one. True when a new one was
    registered without its files (`checkout=False`): the caller runs `_check_out` next."""
    entry = (_registered(project) if registered is None else registered).get(os.path.realpath(path))
    if entry is not None and path.is_dir():
        if entry.branch != "refs/heads/" + branch:
            raise WorkspaceError(f"{_short(project, path)} is checked out on {entry.branch or 'a detached HEAD'}, "
                                 f"not {branch}; switch it back with: git -C {path} switch {branch}")
        return False
    if entry is not None:
        if entry.locked:
            _git(project, "worktree", "unlock", str(path))
        _forget(project, path)
    if _exists(project, "refs/heads/" + branch):
        _add_worktree(project, path, str(path), branch, checkout=checkout)
    elif start is None:
        raise WorkspaceError(f"branch {branch} no longer exists")
    else:
        _add_worktree(project, path, "--no-track", "-b", branch, str(path), start, checkout=checkout)
    return not checkout


# ---------------------------------------------------------------- the run


def default_isolation(project: Path) -> str:
    """'worktree' in a git repository with at least one commit (and git 2.17+), else 'none'."""
    try:
        done = _git(project, "rev-parse", "--is-inside-work-tree", "--verify", "-q", "HEAD^{commit}", check=False)
        recent = _git_version(project) >= MIN_GIT
    except WorkspaceError:
        return "none"
    return "worktree" if recent and done.returncode == 0 and done.stdout.startswith("true") else "none"


@dataclass(frozen=True)
class RunInfo:
    """What the caller persists between starts (also `status --json`'s `run` object)."""

    isolation: str  # "worktree" or "none"
    integration_branch: Optional[str] = None
    base: Optional[str] = None  # the user's HEAD when the run began
    notes: Tuple[str, ...] = field(default=(), compare=False)  # what start_run found and did: say once
    continued: bool = field(default=False, compare=False)  # start_run continued an earlier run

    def as_dict(self) -> Dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("notes", "continued")}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunInfo":
        return cls(str(data.get("isolation", "none")), data.get("integration_branch"), data.get("base"))


def start_run(project: Path, previous: Optional[RunInfo] = None) -> RunInfo:
    """Begin a run from the user's HEAD, or continue `previous` on its integration branch.

    Without `previous` (state/run.json lost, or the project folder moved) an unlanded run found
    in git is continued. The user's stash and refs are recorded (`watch_shared_refs` compares them
    later); `notes` says what was found and done, once."""
    project = Path(project).resolve()
    if _git_version(project) < MIN_GIT:
        raise WorkspaceError("worktree isolation needs git {}.{} or later; upgrade git or use isolation "
                             "'none'".format(*MIN_GIT))
    ensure_ignored(project)
    _remove_half_created(project)  # recover() does this too; a creation cut short must not block us
    notes = [n for n in (hooks_notice(project),) if n]
    if previous is None or not previous.integration_branch:
        previous, found = find_run(project), True
    else:
        found = False
    if previous is not None and previous.integration_branch:
        branch = previous.integration_branch
        if found:
            notes.append(f"continuing the unlanded run found in git (integration branch {branch}): the "
                         "orchestrator's record of it (state/run.json) is gone or belongs to another folder")
        notes += watch_shared_refs(project, previous)  # restores a deleted or moved integration branch
        if not _exists(project, "refs/heads/" + branch):
            raise WorkspaceError(f"this run's integration branch {branch} no longer exists and the orchestrator "
                                 "has no record of its last commit, so the work merged into it cannot be found; "
                                 "start a new run")
        _ensure_worktree(project, integration_path(project), branch, None)
        return replace(previous, notes=tuple(notes), continued=True)
    base = _rev(project, "HEAD")
    branch = _new_integration_branch(project)
    _ensure_worktree(project, integration_path(project), branch, base)
    _new_record(project, branch, base)
    return RunInfo("worktree", branch, base, tuple(notes))


def find_run(project: Path) -> Optional[RunInfo]:
    """The unlanded run git knows of when our own record of it is lost: the registered integration
    worktree's branch (its base from our record in the git directory, else its fork point)."""
    project = Path(project).resolve()
    entry = _registered(project).get(os.path.realpath(integration_path(project)))
    branch = (entry.branch or "").replace("refs/heads/", "", 1) if entry is not None else ""
    if not branch.startswith(INTEGRATION_PREFIX) or not _exists(project, "refs/heads/" + branch):
        folder = _records_folder(project)
        records = [r for r in map(_load_record_file, sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime))
                   if r is not None and r.prefix == _prefix(project)] if folder.is_dir() else []
        if not records:
            return None
        branch = records[-1].branch
    record = _load_record(project, branch)
    if record is not None:
        return RunInfo("worktree", branch, record.base)
    fork = _git(project, "merge-base", "HEAD", "refs/heads/" + branch, check=False).stdout.strip()
    return RunInfo("worktree", branch, fork or None)


# ---------------------------------------------------------------- what the agents share with the user
#
# Every worktree shares the repository's refs with the user's checkout: an agent can pop the user's
# stash (`git stash; git stash pop` with nothing of its own), clear it, commit on the user's branch
# (`git switch --ignore-other-worktrees main`), commit on the integration worktree or delete its
# branch. So the run keeps a record, in the git directory: the user's stash entries (each a commit,
# kept reachable under refs/orchestrate-kit/stash/ so `git gc` cannot drop one an agent removed), the
# user's branches and tags, and the integration branch's tip after each of our own operations.
# `watch_shared_refs` compares and acts: the stash is put back (`git stash store`), a moved branch
# or tag of the user's is reported with the commands to inspect it (never reset: it is theirs),
# and the integration branch (ours) is restored from the record, whatever was on it kept under
# refs/orchestrate-kit/stray/ and named.

KEEP_REFS = "refs/orchestrate-kit/"


@dataclass
class _Record:
    branch: str  # the run's integration branch
    tip: str  # its commit after our last operation on it
    base: Optional[str]  # the user's HEAD when the run began
    user_refs: Dict[str, str]  # the user's branches and tags -> commit, as last seen
    stash: List[Tuple[str, str]]  # the user's stash entries at the start: (commit, message), newest first
    prefix: str = ""  # the project's folder inside the repository (a monorepo can have several projects)
    taken: List[Tuple[str, str]] = field(default_factory=list)  # user's entries taken (and put back) this run
    seen_stash: List[str] = field(default_factory=list)  # stash entries made since, already reported


@lru_cache(maxsize=None)
def _common_dir(project: Path) -> Path:
    found = Path(_git(project, "rev-parse", "--git-common-dir").stdout.strip())
    return found if found.is_absolute() else (Path(project) / found).resolve()


_held: Dict[str, int] = {}  # locks this process holds now, and how deeply (a holder may take one again)


@contextmanager
def _locked(project: Path, name: str) -> Iterator[None]:
    """Hold one of the run's locks in the git directory while several of our steps run at once:
    `worktrees` (registering, moving, removing a worktree) or `record` (the run record)."""
    path = _lock_path(project, name)
    key = str(path)
    if _held.get(key):
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _held[key] = 1
        try:
            yield
        finally:
            _held.pop(key, None)
    finally:
        os.close(fd)  # closing it releases the lock


def _lock_path(project: Path, name: str) -> Path:
    return _common_dir(Path(project).resolve()) / "orchestrate-kit" / f"{name}.lock"


def _records_folder(project: Path) -> Path:
    return _common_dir(project) / "orchestrate-kit" / "runs"


def _record_path(project: Path, branch: str) -> Path:
    return _records_folder(project) / (branch.replace("/", "+") + ".json")


def _load_record_file(path: Path) -> Optional[_Record]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return _Record(str(data["branch"]), str(data["tip"]), data.get("base"), dict(data.get("user_refs", {})),
                       [(str(c), str(m)) for c, m in data.get("stash", [])], str(data.get("prefix", "")),
                       [(str(c), str(m)) for c, m in data.get("taken", [])], list(data.get("seen_stash", [])))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _load_record(project: Path, branch: str) -> Optional[_Record]:
    return _load_record_file(_record_path(project, branch))


def _save_record(project: Path, record: _Record) -> None:
    path = _record_path(project, record.branch)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, json.dumps(asdict(record), indent=1))


def _new_record(project: Path, branch: str, base: Optional[str], refs: Optional[Mapping[str, str]] = None) -> None:
    refs = _shared_refs(project) if refs is None else refs
    tip = refs.get("refs/heads/" + branch) or _rev(project, "refs/heads/" + branch)
    _save_record(project, _Record(branch, tip, base, _user_refs(project, refs),
                                  _protect_stash(project, branch, _stash(project, refs)), _prefix(project)))


def _forget_record(project: Path, branch: str) -> None:
    """The run has landed: drop its record and the refs that kept the user's stash reachable."""
    _record_path(project, branch).unlink(missing_ok=True)
    for ref in _refs(project, f"{KEEP_REFS}stash/{_ref_safe(branch)}/"):
        _git(project, "update-ref", "-d", ref, check=False)


def _ref_safe(branch: str) -> str:
    return branch.replace("/", "+")


def _refs(project: Path, *patterns: str) -> Dict[str, str]:
    out = _git(project, "for-each-ref", "--format=%(refname) %(objectname)", *patterns).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def _shared_refs(project: Path) -> Dict[str, str]:
    """Every branch and tag, and the stash: what agents share with the user, in one git call."""
    return _refs(project, "refs/heads/", "refs/tags/", "refs/stash")


def _user_refs(project: Path, refs: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The user's branches and tags (the run's own branches left out)."""
    ours = ("refs/heads/" + STREAM_PREFIX, "refs/heads/" + INTEGRATION_PREFIX)
    listed = _shared_refs(project) if refs is None else refs
    return {ref: sha for ref, sha in listed.items()
            if ref.startswith(("refs/heads/", "refs/tags/")) and not ref.startswith(ours)}


def _stash(project: Path, refs: Optional[Mapping[str, str]] = None) -> List[Tuple[str, str]]:
    if "refs/stash" not in (_refs(project, "refs/stash") if refs is None else refs):
        return []
    out = _git(project, "log", "-g", "--format=%H%x00%gs", "refs/stash", check=False).stdout
    return [(commit, subject) for commit, _, subject in (line.partition("\0") for line in out.splitlines() if "\0" in line)]


def _protect_stash(project: Path, branch: str, stash: List[Tuple[str, str]]) -> List[Tuple[str, str]]:
    for n, (commit, _message) in enumerate(stash):
        _git(project, "update-ref", f"{KEEP_REFS}stash/{_ref_safe(branch)}/{n}", commit)
    return stash


def watch_shared_refs(project: Path, run: RunInfo) -> List[str]:
    """Compare the refs agents share with the user against the run's record; restore the stash and
    the integration branch, report the user's moved refs. What it found and did, one line each.
    Call before each of our operations on the integration branch (merge, land, a continued start)."""
    project = Path(project).resolve()
    branch = _integration(run)
    with _locked(project, RECORD_LOCK):
        refs = _shared_refs(project)
        record = _load_record(project, branch)
        if record is None:  # a run from before the record: begin one now
            if "refs/heads/" + branch in refs:
                _new_record(project, branch, run.base, refs)
            return []
        notes = _restore_stash(project, record, refs) + _report_user_refs(project, record, refs)
        notes += _restore_integration(project, record, refs)
        _save_record(project, record)
    return notes


def _restore_stash(project: Path, record: _Record, refs: Mapping[str, str]) -> List[str]:
    now = _stash(project, refs)
    present = {commit for commit, _message in now}
    missing = [(c, m) for c, m in record.stash if c not in present]
    notes = []
    for commit, message in reversed(missing):  # oldest first: `stash store` puts each on top
        _git(project, *_identity_options(project), "stash", "store", "-q", "-m", message, commit)
    record.taken += [entry for entry in missing if entry not in record.taken]
    if missing:
        notes.append(f"{len(missing)} of your stash entries were taken while the run went on (an agent's "
                     "`git stash pop` or `git stash clear` in its worktree: the stash is shared); put them "
                     "back: " + "; ".join(f"{m} ({c[:12]})" for c, m in missing[:3]) + ". See: git stash list")
    own = {c for c, _m in record.stash}
    for commit, message in now:
        if commit not in own and commit not in record.seen_stash:
            record.seen_stash.append(commit)
            notes.append(f"a new stash entry appeared while the run went on (an agent's `git stash`?): "
                         f"{message} ({commit[:12]}); it was left where it is")
    return notes


def _report_user_refs(project: Path, record: _Record, refs: Mapping[str, str]) -> List[str]:
    now = _user_refs(project, refs)
    notes = []
    strays: Optional[Dict[Optional[str], str]] = None  # the stream worktrees that have a ref of the user's out
    for ref, old in sorted(record.user_refs.items()):
        new = now.get(ref)
        if new == old:
            continue
        if strays is None:
            strays = {e.branch: path for path, e in _registered(project).items()
                      if Path(path).parent == (project / WORKTREES).resolve() and e.branch in record.user_refs}
        name = ref.split("/", 2)[2]
        where = f" (a stream's worktree has it checked out: {_short(project, Path(strays[ref]))})" \
            if ref in strays else ""
        if new is None:
            notes.append(f"your {_kind(ref)} {name} was deleted while the run went on{where}; the orchestrator "
                         f"never touches it. It pointed at {old[:12]}: git branch {name} {old} brings it back")
        else:
            notes.append(f"your {_kind(ref)} {name} moved while the run went on, from {old[:12]} to {new[:12]}"
                         f"{where}; the orchestrator never moves it, so you or an agent did. Inspect it with: "
                         f"git log --stat {old[:12]}..{new[:12]} (and git reflog {name})")
    record.user_refs = now
    return notes


def _kind(ref: str) -> str:
    return "tag" if ref.startswith("refs/tags/") else "branch"


def _restore_integration(project: Path, record: _Record, refs: Mapping[str, str]) -> List[str]:
    """Put the integration branch back on the record's tip when something else moved or deleted it."""
    ref = "refs/heads/" + record.branch
    now = refs.get(ref)
    if now == record.tip:
        return []
    if now is not None and (_only_our_merges(project, record.tip, now) or _only_our_merges(project, now, record.tip)):
        record.tip = now  # our own merge (or the undoing of one), made just before a kill cut short saving the record
        return []
    keep = f"{KEEP_REFS}stray/{_ref_safe(record.branch)}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    integ = integration_path(project)
    kept = []
    if now is not None:
        _git(project, "update-ref", keep, now)
        kept.append(f"its commits are kept as {keep} (git log {record.tip[:12]}..{keep})")
    saved = _git(integ, "stash", "create", check=False).stdout.strip() if integ.is_dir() else ""
    if saved:  # a commit of the worktree's uncommitted changes; no stash entry is made
        _git(project, "update-ref", keep + "-uncommitted", saved)
        kept.append(f"the uncommitted changes there as {keep}-uncommitted")
    _git(project, "update-ref", ref, record.tip)
    if integ.is_dir():
        _git(integ, "reset", "--hard", "-q")  # HEAD only: moves no branch, whichever one is checked out
        if _tree_state(integ).branch != record.branch:
            _git(integ, "checkout", "-q", record.branch)
    what = "was deleted" if now is None else f"moved from {record.tip[:12]} to {now[:12]}"
    return [f"the run's integration branch {record.branch} {what} without the orchestrator (an agent working "
            f"there?); restored it to {record.tip[:12]}" + "".join(f"; {k}" for k in kept)]


def _holds_taken_stash(project: Path, run: RunInfo, stream_id: str) -> Optional[str]:
    """Why a stream's worktree must not be merged: it holds the changes of a stash entry of the
    user's that was taken this run (an agent's `git stash pop`), or None."""
    record = _load_record(project, _integration(run))
    path = worktree_path(project, stream_id)
    if record is None or not record.taken or not path.is_dir():
        return None
    for commit, message in record.taken:
        patch = _git(project, "diff", "--binary", f"{commit}^1", commit, check=False).stdout
        if not patch.strip():
            continue
        check = subprocess.run(["git", "apply", "-R", "--check", "-"], cwd=str(path), env=_git_env(),
                               input=patch, capture_output=True, text=True, errors="replace")
        if check.returncode == 0:
            return (f"{_short(project, path)} holds the changes of your stash entry '{message}' ({commit[:12]}), "
                    "which its agent took (git stash pop); the entry is back in your stash. Take those changes "
                    f"out of the worktree (see: git -C {path} diff {commit[:12]}^1 {commit[:12]} --stat)")
    return None


def _only_our_merges(project: Path, old: str, new: str) -> bool:
    if not _is_ancestor(project, old, new):
        return False
    out = _git(project, "log", "--first-parent", "--format=%P%x00%s", f"{old}..{new}").stdout
    return all(len(parents.split()) == 2 and subject.startswith("Merge stream ")
               for parents, subject in (line.split("\0", 1) for line in out.splitlines()))


def _moved_by_us(project: Path, branch: str, tip: str = "") -> None:
    """After one of our operations on the integration branch: its new tip (`tip`, or as git says) is the record's."""
    with _locked(project, RECORD_LOCK):
        record = _load_record(project, branch)
        if record is not None:
            record.tip = tip or _rev(project, "refs/heads/" + branch)
            _save_record(project, record)


def note_integration_moved(project: Path, run: RunInfo) -> None:
    """The integration branch moved forward by our own fetch (a pull request merged on the remote): its new
    tip is ours, so the next look at the shared refs does not take it for an agent's commit."""
    _moved_by_us(Path(project).resolve(), _integration(run))


def hooks_notice(project: Path) -> Optional[str]:
    """One line for the start of a run when the user has git hooks: ours skip them (or None)."""
    project = Path(project).resolve()
    # user_hooks=True: asked with our override, git would answer /dev/null
    folder = project / _git(project, "rev-parse", "--git-path", "hooks", user_hooks=True).stdout.strip()
    try:
        names = sorted(p.name for p in folder.iterdir()
                       if p.is_file() and not p.name.endswith(".sample") and os.access(p, os.X_OK))
    except OSError:
        return None
    if not names:
        return None
    return (f"your git hooks ({', '.join(names)}) do not run on the orchestrator's own git operations in "
            f"{WORKTREES.as_posix()}/ (creating worktrees, committing leftovers, merging); they run on the "
            "agents' own commits and on `land` in your checkout")


def _new_integration_branch(project: Path) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    name, n = INTEGRATION_PREFIX + stamp, 1
    while _exists(project, "refs/heads/" + name):
        n += 1
        name = f"{INTEGRATION_PREFIX}{stamp}-{n}"
    return name


def ensure_ignored(project: Path) -> None:
    """Keep .claude/worktrees/ out of `git status`: the install ships a .gitignore there; where it
    is missing (deleted, or an install that predates it), add the folder to .git/info/exclude."""
    probe = str(WORKTREES / INTEGRATION_FOLDER)
    if _git(project, "check-ignore", "-q", probe, check=False).returncode == 0:
        return
    exclude = Path(project) / _git(project, "rev-parse", "--git-path", "info/exclude").stdout.strip()
    exclude.parent.mkdir(parents=True, exist_ok=True)
    with open(exclude, "a", encoding="utf-8") as handle:
        handle.write(f"\n# orchestrate-kit: stream worktrees\n/{_prefix(project)}{WORKTREES.as_posix()}/\n")


# ---------------------------------------------------------------- stream workspaces


@dataclass(frozen=True)
class Workspace:
    """Where a stream works: its branch, its worktree, and the worker's cwd inside it."""

    stream_id: str
    branch: str
    path: Path
    cwd: Path  # the project's folder inside the worktree (differs from path in a monorepo)
    notes: Tuple[str, ...] = field(default=(), compare=False)  # watch_shared_refs's findings, a repair: say them


def workspace_of(project: Path, stream_id: str) -> Workspace:
    """The names a stream's workspace has (whether or not it exists yet)."""
    project = Path(project).resolve()
    path = worktree_path(project, stream_id)
    return Workspace(stream_id, stream_branch(stream_id), path, path / _prefix(project))


def prepare_workspace(project: Path, run: RunInfo, stream_id: str, watched: bool = False) -> Workspace:
    """Give the stream its worktree on its branch: the one it has, a parked one switched to the
    integration branch's tip, or a new one created from that tip. Safe to run for several streams
    at once (see the module's docstring); `watched`: the caller just ran watch_shared_refs."""
    project = Path(project).resolve()
    start = "refs/heads/" + _integration(run)
    notes = () if watched else tuple(watch_shared_refs(project, run))  # a clean tip first
    notes += _repair_cut_short_hand_back(project, run, stream_id)  # before an agent works there again
    ws = replace(workspace_of(project, stream_id), notes=notes)
    with _locked(project, WORKTREES_LOCK):
        if _marker(ws.path).exists():  # its creation was cut short in this run (its step was stopped)
            _undo_half_created(project, ws.path)
        registered = _registered(project)
        if os.path.realpath(ws.path) not in registered and not ws.path.exists():
            if _take_spare(project, registered, ws.path, ws.branch, start):
                return ws
        fresh = _ensure_worktree(project, ws.path, ws.branch, start, checkout=False, registered=registered)
    if fresh:
        _check_out(project, ws.path)
    return ws


def remove_workspace(project: Path, stream_id: str) -> None:
    """Take a merged stream's worktree away (its branch stays); refuses one with uncommitted changes.

    A clean worktree is parked as a spare (a rename, detached from the branch) for the next
    stream to start, which then checks out only the files that differ instead of the whole
    tree; ignored files (build output, caches) come along. Beyond MAX_SPARES it is removed.
    """
    project = Path(project).resolve()
    path = worktree_path(project, stream_id)
    with _locked(project, WORKTREES_LOCK):
        if not path.is_dir():
            if os.path.realpath(path) in _registered(project):
                _forget(project, path)
            return
        _require_clean(project, path)
        spare = _free_spare_path(project)
        if spare is not None and _git(project, "worktree", "move", str(path), str(spare), check=False).returncode == 0:
            _git(spare, "checkout", "-q", "--detach")  # frees the branch for land and for a later restart
            return
        _git(project, "worktree", "remove", str(path))


def remove_spares(project: Path) -> List[str]:
    """Remove the parked worktrees (at the end of a run); returns why any was kept."""
    project = Path(project).resolve()
    kept = []
    with _locked(project, WORKTREES_LOCK):
        for spare in _spares(project):
            try:
                _require_clean(project, spare)
                _git(project, "worktree", "remove", str(spare))
            except WorkspaceError as error:
                kept.append(str(error))
    return kept


def stream_branches(project: Path) -> List[str]:
    """The `stream/...` branches that exist now (one git call, for `status --json`)."""
    done = _git(project, "for-each-ref", "--format=%(refname)", "refs/heads/" + STREAM_PREFIX, check=False)
    return [ref[len("refs/heads/"):] for ref in done.stdout.split()] if done.returncode == 0 else []


def _require_clean(project: Path, path: Path) -> None:
    state = _tree_state(path)
    if state.dirty or _merging(path):
        sample = ", ".join((state.tracked + state.untracked)[:3]) or "a merge in progress"
        raise WorkspaceError(f"not removing {_short(project, path)}: it has uncommitted changes "
                             f"({sample}); commit them there or move them away first")


def _spares(project: Path, registered: Optional[Mapping[str, _Registered]] = None) -> List[Path]:
    folder = (project / WORKTREES).resolve()
    return sorted(Path(p) for p in (registered if registered is not None else _registered(project))
                  if Path(p).parent == folder and Path(p).name.startswith(SPARE_PREFIX) and os.path.isdir(p))


def _free_spare_path(project: Path) -> Optional[Path]:
    """Where to park one more spare, or None when MAX_SPARES are parked already."""
    if len(_spares(project)) >= MAX_SPARES:
        return None
    names = (f"{SPARE_PREFIX}{n}" for n in range(1, MAX_SPARES + 1))
    free = next((n for n in names if not (project / WORKTREES / n).exists()), None)
    return None if free is None else project / WORKTREES / free


def _take_spare(project: Path, registered: Mapping[str, _Registered], path: Path, branch: str,
                start: str) -> bool:
    """Move a clean, detached spare to `path` and check out the stream's branch there."""
    spare = next((s for s in _spares(project, registered)
                  if registered[str(s)].branch is None and not _tree_state(s).dirty), None)
    if spare is None:
        return False
    creating = _begin_creating(path)
    if _git(project, "worktree", "move", str(spare), str(path), check=False, env=creating).returncode != 0:
        _marker(path).unlink()
        return False
    target = [branch] if _exists(project, "refs/heads/" + branch) else ["--no-track", "-b", branch, start]
    if _git(path, "checkout", "-q", *target, "--", check=False, env=creating).returncode != 0:
        _undo_half_created(project, path)  # a clean spare: nothing of anyone's is lost
        return False
    _marker(path).unlink()
    return True


def _integration(run: RunInfo) -> str:
    if run.isolation != "worktree" or not run.integration_branch:
        raise WorkspaceError("this run does not use worktrees (isolation is 'none')")
    return run.integration_branch


# ---------------------------------------------------------------- merging


class MergeOutcome(str, Enum):
    MERGED = "merged"  # the integration branch now holds the stream's work
    CONFLICT = "conflict"  # merging it conflicts; the integration worktree is clean again
    UNRESOLVED = "unresolved"  # the stream's own worktree still has conflicts to resolve
    PENDING = "pending"  # a conflict handed back to it is not resolved and committed yet (merge_finished)


@dataclass(frozen=True)
class MergeResult:
    outcome: MergeOutcome
    before: str  # integration tip before this stream's merge (what a failed check returns to)
    tip: str  # integration tip now
    conflicts: Tuple[str, ...] = ()
    committed_leftovers: bool = False
    notes: Tuple[str, ...] = ()  # what watch_shared_refs found and did before this merge: say them
    pending: str = ""  # PENDING: why the handed-back conflict is still open (hand_back_pending)

    def as_dict(self) -> Dict[str, Any]:
        """JSON for the merge step's answer (git/steps.py)."""
        return {**asdict(self), "outcome": self.outcome.value, "conflicts": list(self.conflicts),
                "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MergeResult":
        """Raises KeyError, TypeError or ValueError for an answer that is not one."""
        return cls(MergeOutcome(data["outcome"]), str(data["before"]), str(data["tip"]),
                   tuple(str(f) for f in data.get("conflicts") or ()), bool(data.get("committed_leftovers")),
                   tuple(str(n) for n in data.get("notes") or ()), str(data.get("pending") or ""))


def commit_leftovers(project: Path, stream_id: str) -> bool:
    """Commit whatever the worker left in its worktree (untracked files too). True if it committed.

    Raises WorkspaceError when the worktree is off its branch or a merge there still has
    conflicts (unmerged paths, or conflict markers in files it is about to commit).
    """
    project = Path(project).resolve()
    ws = workspace_of(project, stream_id)
    if not ws.path.is_dir():
        return False
    state = _tree_state(ws.path)
    if state.branch != ws.branch:
        raise WorkspaceError(f"{_short(project, ws.path)} is on {state.branch or 'a detached HEAD'}, not "
                             f"{ws.branch}; switch it back with: git -C {ws.path} switch {ws.branch}")
    if state.unmerged:
        raise WorkspaceError(f"{_short(project, ws.path)} has unresolved conflicts in: {', '.join(state.unmerged)}")
    merging = _merging(ws.path)
    if not state.dirty and not merging:
        return False
    if merging:
        touched = _git(ws.path, "diff", "--name-only", "-z", "HEAD").stdout.split("\0")
        marked = _files_with_markers(ws.path, [f for f in touched if f], ("HEAD", "MERGE_HEAD"))
        if marked:
            raise WorkspaceError(f"{_short(project, ws.path)} still has conflict markers in: {', '.join(marked)}")
    _git(ws.path, "add", "-A")
    nested = _new_gitlinks(ws.path, "HEAD", cached=True)
    if nested:
        _git(ws.path, "reset", "-q", "HEAD", "--", *nested)  # unstage them (the index only: files, refs stay)
        raise WorkspaceError(_nested_repositories(project, ws.path, nested))
    if not merging and _git(ws.path, "diff", "--cached", "--quiet", check=False).returncode == 0:
        return False  # only changes git does not commit (e.g. inside a submodule)
    message = f"Work left uncommitted by stream {printable(stream_id, 200)}"
    _git(ws.path, *_commit_options(project), "commit", "-q", "--no-verify", "-m", message)
    return True


def _new_gitlinks(cwd: Path, base: str, cached: bool = False) -> List[str]:
    """Paths that become gitlinks (another repository's commit, mode 160000) since `base`: in the
    index (`cached`) or in the commits `base` names (`A...B`)."""
    args = ["diff", "--raw", "-z", "--no-renames", *(["--cached"] if cached else []), base]
    fields = _git(cwd, *args).stdout.split("\0")
    found = []
    for meta, path in zip(fields[0::2], fields[1::2]):
        modes = meta.lstrip(":").split(" ")
        if len(modes) >= 2 and modes[1] == "160000" and modes[0] != "160000":
            found.append(path)
    return found


def _nested_repositories(project: Path, worktree: Path, paths: Sequence[str]) -> str:
    # Parked, not committed with their content: that would mean deleting or moving the nested
    # repository's .git (its history, the agent's to keep) or making it a submodule nobody asked for.
    listed = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
    return (f"{listed} in {_short(project, worktree)} is a git repository of its own (a `git init` or a "
            "clone?): git would merge only a pointer to it (a gitlink), not its files. To keep its files, "
            "remove its .git folder and commit them; to add it on purpose, make it a submodule")


def merge_finished(project: Path, run: RunInfo, stream_id: str, handed_back: Sequence[str] = (),
                   commit: Optional[str] = None) -> MergeResult:
    """All the git a finished stream's merge does (the merge step's, git/steps.py), under the merge lock.

    With `handed_back` (the files of a conflict handed back to its agent, or parked) it is first
    checked that the agent resolved and committed them (else PENDING, with why). Then merge_stream
    (its leftovers committed, its branch merged). A conflict is handed back to its worktree
    (hand_back_conflict): CONFLICT with those files; when it merged cleanly there, the stream is
    merged once more. Raises WorkspaceError.
    """
    project = Path(project).resolve()
    with _merge_lock(project):
        repaired = _repair_cut_short_hand_back(project, run, stream_id)
        if handed_back:
            pending = hand_back_pending(project, run, stream_id, handed_back)
            if pending:
                tip = _rev(integration_path(project), "HEAD")
                return MergeResult(MergeOutcome.PENDING, tip, tip, tuple(handed_back), pending=pending)
        notes = repaired
        for again in (True, False):
            result = merge_stream(project, run, stream_id, commit)  # approved: exactly the reviewed commit
            notes += result.notes
            if result.outcome is not MergeOutcome.CONFLICT:
                break
            files = hand_back_conflict(project, run, stream_id)  # the conflict, in its worktree
            result = replace(result, conflicts=files)
            if files or not again:
                break  # else it merged cleanly there: try once more
        return replace(result, notes=notes)


@contextmanager
def _merge_lock(project: Path) -> Iterator[None]:
    """Held by a merge for all its git work, with the holder's pid and start time written in it: a
    merge step orphaned by a SIGKILL of its orchestrator runs on, and `recover` waits for it."""
    with _locked(project, MERGE_LOCK):
        me = {"pid": os.getpid(), "started": process_start_time(os.getpid())}
        _lock_path(project, MERGE_LOCK).write_text(json.dumps(me) + "\n", encoding="utf-8")
        yield


def merge_stream(project: Path, run: RunInfo, stream_id: str, commit: Optional[str] = None) -> MergeResult:
    """Commit the stream's leftovers, then merge its branch into the integration branch (--no-ff).

    With `commit` (the one a review showed and `approve` bound: git/gates.py) exactly that commit
    is merged, whatever the branch or its worktree hold now; it must be on the stream's branch,
    and leftovers are not committed (nobody reviewed them).
    """
    project = Path(project).resolve()
    notes = tuple(watch_shared_refs(project, run))
    try:
        result = _merge_stream(project, run, stream_id, commit)
    except WorkspaceError as exc:
        raise WorkspaceError("; ".join((str(exc),) + notes)) from None
    if result.outcome is MergeOutcome.MERGED and result.tip != result.before:
        _moved_by_us(project, _integration(run), result.tip)
    return replace(result, notes=notes)


def _merge_stream(project: Path, run: RunInfo, stream_id: str, commit: Optional[str]) -> MergeResult:
    integ = integration_path(project)
    _integration(run)
    holding = _holds_taken_stash(project, run, stream_id) if commit is None else None
    if holding:
        raise WorkspaceError(holding)
    try:
        committed = commit_leftovers(project, stream_id) if commit is None else False
    except WorkspaceError:
        state = _tree_state(worktree_path(project, stream_id))
        if not state.unmerged:
            raise
        tip = _rev(integ, "HEAD")
        return MergeResult(MergeOutcome.UNRESOLVED, tip, tip, state.unmerged)
    before = _require_clean_integration(project)
    branch = "refs/heads/" + stream_branch(stream_id)
    found = _git(project, "rev-parse", "--verify", "-q", branch + "^{commit}", check=False).stdout.strip()
    if not found and commit is None:  # it never had a workspace (complete before the run began)
        return MergeResult(MergeOutcome.MERGED, before, before)
    stream_tip = found if commit is None else _commit_on_branch(project, branch, commit)
    nested = _new_gitlinks(project, f"{before}...{stream_tip}")
    if nested:  # the agent committed them itself
        raise WorkspaceError(_nested_repositories(project, worktree_path(project, stream_id), nested))
    if _is_ancestor(integ, stream_tip, before):  # nothing new, or merged before a restart
        parents = _parents(integ, before)
        start = parents[0] if parents[1:] == [stream_tip] else before
        return MergeResult(MergeOutcome.MERGED, start, before, (), committed)
    message = f"Merge stream {printable(stream_id, 200)} ({stream_branch(stream_id)})"
    done = _git(integ, *_commit_options(project), "merge", "--no-ff", "--no-edit", "-m", message,
                branch if commit is None else stream_tip, check=False)
    if done.returncode == 0:
        return MergeResult(MergeOutcome.MERGED, before, _rev(integ, "HEAD"), (), committed)
    conflicts = _tree_state(integ).unmerged
    if _merging(integ) or conflicts:
        _git(integ, "merge", "--abort")
    if not conflicts:
        raise WorkspaceError(f"merging {stream_branch(stream_id)} failed: {_reason(done)}")
    return MergeResult(MergeOutcome.CONFLICT, before, before, conflicts, committed)


def _commit_on_branch(project: Path, branch: str, commit: str) -> str:
    """`commit` as a full id, if it is on `branch` (its tip or an ancestor of it); else WorkspaceError."""
    name = branch[len("refs/heads/"):]
    if not _exists(project, branch):
        raise WorkspaceError(f"branch {name} no longer exists, so commit {commit[:12]} cannot be merged from it")
    found = _git(project, "rev-parse", "--verify", "-q", commit + "^{commit}", check=False).stdout.strip()
    if not found or not _is_ancestor(project, found, branch):
        raise WorkspaceError(f"commit {commit[:12]} is not on {name}; review the stream again")
    return found


def _require_clean_integration(project: Path) -> str:
    """The integration worktree's commit, if it is there and clean (else WorkspaceError)."""
    integ = integration_path(project)
    if not integ.is_dir():
        raise WorkspaceError(f"{_short(project, integ)} is missing; run start again to recreate it")
    state = _tree_state(integ)
    if _merging(integ) or state.tracked:
        raise WorkspaceError(f"{_short(project, integ)} has a half-done merge or changes; "
                             "run start again to recover it")
    return state.head or _rev(integ, "HEAD")


def hand_back_conflict(project: Path, run: RunInfo, stream_id: str) -> Tuple[str, ...]:
    """Merge the integration branch into the stream's worktree and leave the conflicts there.

    Returns the conflicted files for the stream's agent (empty: it merged cleanly, so
    merging the stream again will succeed).
    """
    project = Path(project).resolve()
    ws = prepare_workspace(project, run, stream_id)
    commit_leftovers(project, stream_id)
    marker = _hand_back_marker(project, stream_id)
    marker.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(marker, json.dumps({"tip": _rev(ws.path, "HEAD")}) + "\n")
    message = f"Merge {_integration(run)} into stream {printable(stream_id, 200)}"
    done = _git(ws.path, *_commit_options(project), "merge", "--no-edit", "-m", message,
                "refs/heads/" + _integration(run), check=False)
    marker.unlink()  # only once git has ended: a merge cut short keeps it (_repair_cut_short_hand_back)
    conflicts = _tree_state(ws.path).unmerged
    if done.returncode != 0 and not conflicts:
        raise WorkspaceError(f"merging {run.integration_branch} into {ws.branch} failed: {_reason(done)}")
    return conflicts


def _hand_back_marker(project: Path, stream_id: str) -> Path:
    """Exists while a hand-back's merge runs in the stream's worktree, naming the commit it began at."""
    return _common_dir(project) / "orchestrate-kit" / "handing-back" / f"{safe_name(stream_id)}.json"


def _repair_cut_short_hand_back(project: Path, run: RunInfo, stream_id: str) -> Tuple[str, ...]:
    """Undo a hand-back merge that was killed while it wrote the stream's worktree (at a stop's
    deadline, or an orchestrator SIGKILLed and its orphaned step ended): files half merged, markers
    in some, no MERGE_HEAD. Committed as the stream's leftovers, that would travel on towards the
    integration branch. The worktree was clean at the marker's commit when the merge began, so all it
    holds now is kept under a ref (nothing is lost, should anyone else have written there) and the
    worktree is put back on that commit; the hand-back is then made again. Under the merge lock."""
    marker = _hand_back_marker(project, stream_id)
    try:
        began_at = str(json.loads(marker.read_text(encoding="utf-8"))["tip"])
    except FileNotFoundError:
        return ()
    except (OSError, ValueError, KeyError, TypeError):
        began_at = ""  # damaged: nothing proves the worktree's state is the merge's
    notes: Tuple[str, ...] = ()
    path = worktree_path(project, stream_id)
    if path.is_dir() and (path / ".git").exists():  # the killed git's locks: no other git runs there now
        notes += tuple(_remove_stale_locks(path, stream_branch(stream_id), _short(project, path)))
    if began_at and path.is_dir() and not _merging(path) and _rev(path, "HEAD") == began_at and _tree_state(path).dirty:
        keep = (f"{KEEP_REFS}interrupted/{_ref_safe(stream_branch(stream_id))}-"
                f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")
        _git(project, "update-ref", keep, _commit_of_worktree(project, path, "A hand-back merge cut short"))
        _git(path, "reset", "--hard", "-q")  # our worktree, back on the stream's own commit
        _git(path, "clean", "-fdq")  # what the merge added; ignored files (build output) stay
        notes += (f"the merge of {run.integration_branch} into {stream_branch(stream_id)}'s worktree was cut short; "
                 f"what it had written is kept as {keep}, and it is made again",)
    marker.unlink()
    return notes


def _commit_of_worktree(project: Path, path: Path, message: str) -> str:
    """A commit of everything in the worktree at `path` (untracked files too, not ignored ones) on
    top of its HEAD, made with an index of its own: the worktree's index, branch and files stay."""
    index = _common_dir(project) / "orchestrate-kit" / f"keep-{os.getpid()}.index"
    try:
        env = {"GIT_INDEX_FILE": str(index)}
        _git(path, "read-tree", "HEAD", env=env)
        _git(path, "add", "-A", env=env)
        tree = _git(path, "write-tree", env=env).stdout.strip()
    finally:
        index.unlink(missing_ok=True)
    return _git(path, *_commit_options(project), "commit-tree", tree, "-p", "HEAD", "-m", message).stdout.strip()


def hand_back_pending(project: Path, run: RunInfo, stream_id: str, files: Iterable[str] = ()) -> Optional[str]:
    """Why a handed-back conflict is not resolved and committed yet, or None when it is.

    `files` are the conflicted files hand_back_conflict returned (checked for leftover markers).
    """
    project = Path(project).resolve()
    ws = workspace_of(project, stream_id)
    if not ws.path.is_dir():
        return f"its worktree {_short(project, ws.path)} is missing"
    state = _tree_state(ws.path)
    if state.unmerged:
        return f"conflicts not resolved in: {', '.join(state.unmerged)}"
    if _merging(ws.path):
        return "conflicts resolved but the merge is not committed (git commit)"
    if state.branch != ws.branch:
        return f"the worktree is on {state.branch or 'a detached HEAD'}, not {ws.branch}"
    if not _is_ancestor(ws.path, "refs/heads/" + _integration(run), "HEAD"):
        return f"{run.integration_branch} is not merged into {ws.branch} (was the merge aborted?)"
    marked = _files_with_markers(ws.path, files, _last_merge_sides(ws.path))
    if marked:
        return f"conflict markers left in: {', '.join(marked)}"
    return None


# ---------------------------------------------------------------- the merge check


@dataclass(frozen=True)
class CheckResult:
    passed: bool
    returncode: Optional[int]  # None when it timed out
    output: str  # stdout and stderr together, the last CHECK_OUTPUT_LIMIT characters
    timed_out: bool = False


@dataclass(frozen=True)
class CheckLaunch:
    """How the merge check runs: the user's shell in the integration worktree, without git's context."""

    argv: List[str]
    cwd: Path
    env: Dict[str, str]


def merge_check_launch(project: Path, command: str) -> CheckLaunch:
    """The check's command line, folder and environment (whoever starts it adds its own token)."""
    project = Path(project).resolve()
    shell = os.environ.get("SHELL") or "/bin/sh"
    env = {k: v for k, v in os.environ.items() if k not in GIT_CONTEXT}
    return CheckLaunch([shell, "-c", command], integration_path(project) / _prefix(project), env)


def check_result_of(project: Path, log: Path, offset: int, returncode: Optional[int]) -> CheckResult:
    """The result of an ended check whose output starts at `offset` in `log` (returncode None: it
    was stopped, or how it ended is not known).

    The output is read from the log's end, so a check that printed 300 MB costs CHECK_OUTPUT_LIMIT
    characters of memory, not 300 MB. Tracked files the check changed are restored (the integration
    worktree must stay clean for the next merge); ignored build output stays.
    """
    integ = integration_path(Path(project).resolve())
    output = _log_tail(log, offset, CHECK_OUTPUT_LIMIT)
    if _tree_state(integ).tracked:
        _git(integ, "reset", "--hard", "-q", "HEAD")  # our own worktree
    return CheckResult(returncode == 0, returncode, output, returncode is None)


def check_timeout_text(timeout: float) -> str:
    """"timed out after 30 min": for the log, the stream's reason and the message."""
    if timeout < 60:
        return f"timed out after {timeout:g} s"
    if timeout < 3600:
        return f"timed out after {timeout / 60:.3g} min"
    return f"timed out after {timeout / 3600:.3g} h"


def _log_tail(path: Path, offset: int, limit: int) -> str:
    """The last `limit` characters written to `path` after `offset`, reading at most 4 bytes each."""
    with open(path, "rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        start = max(offset, end - 4 * limit)
        handle.seek(start)
        return handle.read(end - start).decode("utf-8", "replace")[-limit:]


def integration_at(project: Path, branch: str, tip: str) -> bool:
    """Whether the integration branch, and its worktree's checkout, are at `tip` (a merge check's
    verdict is about that commit, and only counts while both still are)."""
    project = Path(project).resolve()
    found = _git(project, "rev-parse", "--verify", "-q", f"refs/heads/{branch}^{{commit}}", check=False)
    if found.returncode != 0 or found.stdout.strip() != tip:
        return False
    integ = integration_path(project)
    head = _git(integ, "rev-parse", "--verify", "-q", "HEAD^{commit}", check=False) if integ.is_dir() else None
    return head is not None and head.returncode == 0 and head.stdout.strip() == tip


def undo_merge(project: Path, run: RunInfo, before: str) -> None:
    """Move the integration branch back to `before`, the tip before the last merge (under the merge lock)."""
    integ = integration_path(Path(project).resolve())
    with _merge_lock(Path(project).resolve()):
        head = _rev(integ, "HEAD")
        if head == before:
            return
        if _tree_state(integ).branch != _integration(run) or _parents(integ, head)[:1] != [before]:
            raise WorkspaceError(f"{run.integration_branch} moved on since that merge; not moving it back")
        _git(integ, "reset", "--hard", "-q", before)  # our own branch in our own worktree
        _moved_by_us(Path(project).resolve(), _integration(run))


# ---------------------------------------------------------------- recovery


def recover(project: Path, previous: Optional[RunInfo] = None, merging: Iterable[str] = (),
            checking: bool = False) -> List[str]:
    """Repair what an orchestrator killed mid-operation left behind; what was done, one line each.

    Call at start, before start_run and before any worker runs (one orchestrator at a
    time). A merge step still running for a killed orchestrator is waited for (ended after
    ORPHAN_GRACE). Half-created worktrees (our marker says no worker has used them) are
    removed; a half-done merge in the integration worktree is aborted (the stream is merged
    again); records of worktree folders that are gone are dropped (start_run recreates
    the integration worktree). In the worktrees of the streams `merging` (their workers have
    ended; a merge step ended mid-commit at a stop), git's stale lock files are removed, so
    the next merge commits what is left; their files and commits are never touched.
    `checking`: a merge check adopted from the killed orchestrator still runs in the
    integration worktree (at the merge it checks), so that worktree is left to it: its
    result restores what the check changed there (check_result_of).
    """
    project = Path(project).resolve()
    notes = _end_orphaned_merge(project)
    notes += _repair_moved(project) + _remove_half_created(project)
    previous = previous if previous is not None and previous.integration_branch else find_run(project)
    integ = integration_path(project)
    if previous is not None and previous.integration_branch and integ.is_dir() and not checking:
        notes += _clean_integration(project, integ, previous.integration_branch)
    for sid in merging:
        folder = worktree_path(project, sid)
        if folder.is_dir() and (folder / ".git").exists():
            notes += _remove_stale_locks(folder, stream_branch(sid), _short(project, folder))
    for spare in _spares(project):
        if _tree_state(spare).branch is not None:  # killed while parking it
            _git(spare, "checkout", "-q", "--detach")
            notes.append(f"detached spare worktree {_short(project, spare)} from its branch")
    for path in _registered(project):
        if Path(path).parent == (project / WORKTREES).resolve() and not os.path.isdir(path):
            _forget(project, Path(path))
            notes.append(f"dropped the record of missing worktree {_short(project, Path(path))}")
    return notes


def _repair_moved(project: Path) -> List[str]:
    """Worktree folders here that git knows under another path (the project folder was moved or
    copied): `git worktree repair` links both sides again."""
    folder = project / WORKTREES
    if not folder.is_dir():
        return []
    known = set(_registered(project))
    moved = sorted(p for p in folder.iterdir() if (p / ".git").is_file() and os.path.realpath(p) not in known)
    if not moved:
        return []
    listed = " ".join(str(p) for p in moved)
    if _git_version(project) < (2, 30):
        raise WorkspaceError(f"the worktrees in {_short(project, folder)} were moved with the project; git 2.30 "
                             f"or later repairs them (git worktree repair {listed}); upgrade git, then start again")
    _git(project, "worktree", "repair", *map(str, moved))
    return [f"repaired {len(moved)} worktree(s) moved with the project folder (git worktree repair)"]


def _remove_half_created(project: Path) -> List[str]:
    folder = project / WORKTREES
    notes = []
    for marker in sorted(folder.glob(".*.creating")) if folder.is_dir() else []:
        path = folder / marker.name[1:-len(".creating")]
        _undo_half_created(project, path)
        notes.append(f"removed half-created worktree {_short(project, path)}")
    return notes


def _end_orphaned_merge(project: Path) -> List[str]:
    """Wait for a merge step an orchestrator SIGKILLed left running (its own session, the merge lock
    held), and end its process group after ORPHAN_GRACE: only then may its worktrees be repaired."""
    path = _lock_path(project, MERGE_LOCK)
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return []  # never merged here
    try:
        if _try_lock(fd):
            return []
        try:
            holder = json.loads(path.read_text(encoding="utf-8"))
            pid, started = int(holder["pid"]), holder.get("started")
        except (OSError, ValueError, KeyError, TypeError):
            pid, started = 0, None
        deadline, ended = time.monotonic() + ORPHAN_GRACE, False
        while not _try_lock(fd):
            if time.monotonic() >= deadline + ORPHAN_GRACE:
                raise WorkspaceError(f"a merge an earlier orchestrator started (pid {pid or 'unknown'}) still "
                                     "runs in the integration worktree; end it, then start again")
            if time.monotonic() >= deadline and not ended and pid > 0 and process_start_time(pid) == started:
                signal_group(pid, signal.SIGKILL)  # the step leads a session of its own: git and its filters too
                ended = True
            time.sleep(0.05)
        return [f"{'ended' if ended else 'waited for'} a merge an earlier orchestrator left running (pid {pid})"]
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True  # held until the fd is closed


def _remove_stale_locks(cwd: Path, branch: str, where: str) -> List[str]:
    """Remove the lock files a killed git left in a worktree of ours (its index, HEAD, its branch): only
    our merge runs git there now, and a stale lock makes every later git there fail."""
    notes = []
    for name in ("index.lock", "HEAD.lock", f"refs/heads/{branch}.lock"):
        lock = cwd / _git(cwd, "rev-parse", "--git-path", name).stdout.strip()
        if lock.exists():
            lock.unlink()
            notes.append(f"removed a stale {Path(name).name} of {where}")
    return notes


def _clean_integration(project: Path, integ: Path, branch: str) -> List[str]:
    notes = _remove_stale_locks(integ, branch, "the integration worktree")  # only we run git there, on our branch
    if _merging(integ):
        _git(integ, "merge", "--abort")
        notes.append("aborted a half-done merge in the integration worktree")
    elif _tree_state(integ).tracked:
        _git(integ, "reset", "--hard", "-q", "HEAD")
        notes.append("restored the integration worktree to its last commit")
    return notes


# ---------------------------------------------------------------- landing


@dataclass(frozen=True)
class LandResult:
    branch: str  # the user's branch that received the work
    fast_forward: bool
    head: str  # its new commit
    deleted: Tuple[str, ...]  # branches deleted
    kept: Tuple[Tuple[str, str], ...]  # (branch, why it was kept)
    notes: Tuple[str, ...] = ()  # what watch_shared_refs found and did first


def land(project: Path, run: RunInfo, stream_ids: Iterable[str]) -> LandResult:
    """Bring the integration branch into the user's current branch, then tidy the run's branches."""
    project = Path(project).resolve()
    integration = "refs/heads/" + _integration(run)
    notes = tuple(watch_shared_refs(project, run))  # a moved or deleted integration branch is put back first
    state = _tree_state(project)
    if state.branch is None:
        raise LandRefused("HEAD is detached; check out the branch to land on (git switch BRANCH) and run land again")
    if state.tracked:
        raise LandRefused(f"your working tree has uncommitted changes ({', '.join(state.tracked[:3])}); "
                          "commit or stash them and run land again")
    _refuse_to_overwrite_untracked(project, integration)
    fast_forward = _is_ancestor(project, "HEAD", integration)
    if fast_forward:
        _git(project, "merge", "--ff-only", "-q", integration, user_hooks=True)
    else:
        _merge_into_user_branch(project, run, state.branch)
    deleted, kept = _delete_run_branches(project, run, stream_ids)
    kept += tuple(("(spare worktree)", why) for why in remove_spares(project))
    _forget_record(project, _integration(run))
    return LandResult(state.branch, fast_forward, _rev(project, "HEAD"), deleted, kept, notes)


def _refuse_to_overwrite_untracked(project: Path, integration: str) -> None:
    """Land never replaces a file of the user's that git does not track: git itself overwrites an
    ignored one (a `.env`) without a word when the landed work adds the same path."""
    top = Path(_git(project, "rev-parse", "--show-toplevel").stdout.strip())
    added = _git(project, "diff", "--name-only", "-z", "--no-renames", "--diff-filter=A", "HEAD", integration)
    in_the_way = []
    for name in (n for n in added.stdout.split("\0") if n):
        parts = Path(name).parts
        blocked = [top.joinpath(*parts[:i]) for i in range(1, len(parts) + 1)]
        if any(os.path.lexists(p) and (p == blocked[-1] or not p.is_dir()) for p in blocked):
            in_the_way.append(name)
    if in_the_way:
        listed = ", ".join(in_the_way[:10]) + (f" and {len(in_the_way) - 10} more" if len(in_the_way) > 10 else "")
        raise LandRefused(f"landing would overwrite files of yours that git does not track (untracked or ignored): "
                          f"{listed}; move them away (or compare them with `git show {integration}:PATH`) and "
                          "run land again")


def _merge_into_user_branch(project: Path, run: RunInfo, branch: str) -> None:
    """A real merge in the user's checkout (their hooks run: it is their branch); a conflict is undone."""
    done = _git(project, *_identity_options(project), "merge", "--no-ff", "--no-edit", "-m",
                f"Land {run.integration_branch}", "refs/heads/" + str(run.integration_branch), check=False,
                user_hooks=True)
    if done.returncode == 0:
        return
    conflicts = _tree_state(project).unmerged
    if _merging(project):
        _git(project, "merge", "--abort", user_hooks=True)
    if conflicts:
        raise LandRefused(f"{run.integration_branch} conflicts with {branch} in: {', '.join(conflicts)}; "
                          f"merge it yourself: git merge {run.integration_branch}")
    raise LandRefused(f"merging {run.integration_branch} into {branch} failed: {_reason(done)}")


def _delete_run_branches(project: Path, run: RunInfo,
                         stream_ids: Iterable[str]) -> Tuple[Tuple[str, ...], Tuple[Tuple[str, str], ...]]:
    deleted: List[str] = []
    kept: List[Tuple[str, str]] = []
    targets = [(stream_branch(s), worktree_path(project, s)) for s in stream_ids]
    targets.append((_integration(run), integration_path(project)))
    for branch, path in targets:
        if not _exists(project, "refs/heads/" + branch):
            continue
        if not _is_ancestor(project, "refs/heads/" + branch, "HEAD"):
            kept.append((branch, "its work is not merged; it is only on this branch"))
            continue
        try:
            if path.is_dir():
                _require_clean(project, path)
                _git(project, "worktree", "remove", str(path))
            _git(project, "branch", "-q", "-d", branch)
            deleted.append(branch)
        except WorkspaceError as error:
            kept.append((branch, str(error)))
    return tuple(deleted), tuple(kept)


# ---------------------------------------------------------------- file claims


def overlapping_claims(claims: Mapping[str, Iterable[str]],
                       concurrent: Iterable[Collection[str]]) -> List[Tuple[str, str, Tuple[str, ...]]]:
    """(stream a, stream b, shared files) for streams that may run at once and claim the same files.

    `claims` maps a stream to the paths its tasks' `files` metadata names; `concurrent`
    holds the pairs of streams neither of which depends, even transitively, on the other.
    """
    together = {frozenset(pair) for pair in concurrent if len(set(pair)) == 2}
    claimers: Dict[str, List[str]] = {}
    for sid, paths in claims.items():
        for path in {_normal_path(p) for p in paths if isinstance(p, str) and p.strip()}:
            claimers.setdefault(path, []).append(sid)
    shared: Dict[Tuple[str, str], List[str]] = {}
    for path, sids in claimers.items():
        ordered = sorted(set(sids))
        for i, a in enumerate(ordered):
            for b in ordered[i + 1:]:
                if frozenset((a, b)) in together:
                    shared.setdefault((a, b), []).append(path)
    return [(a, b, tuple(sorted(files))) for (a, b), files in sorted(shared.items())]


def concurrent_pairs(dependencies: Mapping[str, Iterable[str]]) -> List[Tuple[str, str]]:
    """Pairs of streams neither of which depends on the other, directly or transitively."""
    ancestors: Dict[str, set] = {}

    def ancestors_of(root: str) -> set:
        stack, seen = [root], set()
        while stack:
            for dep in dependencies.get(stack.pop(), ()):
                if dep not in seen:
                    seen.add(dep)
                    stack.append(dep)
        return seen

    for sid in dependencies:
        ancestors[sid] = ancestors_of(sid)
    ids = sorted(dependencies)
    return [(a, b) for i, a in enumerate(ids) for b in ids[i + 1:]
            if a not in ancestors[b] and b not in ancestors[a]]


def _normal_path(path: str) -> str:
    clean = posixpath.normpath(path.strip().replace("\\", "/"))
    return clean[2:] if clean.startswith("./") else clean
