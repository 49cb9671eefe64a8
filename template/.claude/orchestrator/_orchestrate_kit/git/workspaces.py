"""Stream workspaces: one git worktree per stream, merged into the run's integration branch.

A run gets an integration branch created from the user's HEAD and checked out in
its own worktree (`.claude/worktrees/_integration`). Each stream works in
`.claude/worktrees/<name>` on `stream/<name>`, branched from the integration
branch once every dependency has been merged into it. A completed stream's
leftovers are committed, its branch is merged with `--no-ff` in the integration
worktree, and an optional check runs on the merged tree. A finished clean
worktree is parked as a spare and reused by the next stream (a rename and a
checkout of the files that differ). `recover` repairs what a killed orchestrator
left half-done. `land` brings the result into the user's branch at the end.

Rules this module keeps: the user's checkout, branch, HEAD and index are touched
only by `land`, which refuses a dirty tree or a detached HEAD; git runs from
argument lists, never a shell, never with `--force`; the only `reset` is of the
integration branch in its own worktree, which belongs to the orchestrator; a
worktree with uncommitted changes is never removed. Our own bookkeeping commits
and merges run without the user's git hooks (they are mechanical; the merge
check is the quality gate) and with a fallback identity when git has none.
Every git failure becomes a WorkspaceError with one readable line.
Standard library only.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any, Collection, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ..names import printable, safe_name

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
UNMERGED = {"DD", "AU", "UD", "UA", "DU", "AA", "UU"}
_GIT_CONTEXT = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_PREFIX")


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


def _git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run git in `cwd` from an argument list; a failure raises WorkspaceError unless check=False."""
    env = {k: v for k, v in os.environ.items() if k not in _GIT_CONTEXT}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_EDITOR=":", GIT_MERGE_AUTOEDIT="no")
    try:
        done = subprocess.run(["git", *args], cwd=str(cwd), env=env, stdin=subprocess.DEVNULL,
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
    """Options for our own bookkeeping commits and merges: no user hooks, an identity."""
    return NO_HOOKS + _identity_options(project)


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

    @property
    def dirty(self) -> bool:
        return bool(self.tracked or self.untracked)


def _tree_state(cwd: Path) -> TreeState:
    out = _git(cwd, "status", "--porcelain=v2", "--branch", "-z").stdout
    fields = iter(out.split("\0"))
    branch: Optional[str] = None
    tracked: List[str] = []
    untracked: List[str] = []
    unmerged: List[str] = []
    for field in fields:
        kind = field[:1]
        if field.startswith("# branch.head "):
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
    return TreeState(branch, tuple(tracked), tuple(untracked), tuple(unmerged))


def _merging(cwd: Path) -> bool:
    return _exists(cwd, "MERGE_HEAD")


def _files_with_markers(cwd: Path, files: Iterable[str]) -> List[str]:
    """Files that still hold both ends of a conflict block."""
    found = []
    for name in files:
        try:
            text = (Path(cwd) / name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if re.search(r"^<{7}( |$)", text, re.M) and re.search(r"^>{7}( |$)", text, re.M):
            found.append(name)
    return found


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


def _add_worktree(project: Path, path: Path, *args: str) -> None:
    """`git worktree add` into a folder that does not exist yet, undone if it fails half-way."""
    if path.exists():
        raise WorkspaceError(f"{_short(project, path)} exists but is not a worktree of this repository; "
                             "move it out of the way and start again")
    path.parent.mkdir(parents=True, exist_ok=True)
    _marker(path).write_text(f"{os.getpid()}\n", encoding="utf-8")
    try:
        _git(project, "worktree", "add", "-q", *args)
    except WorkspaceError:
        _undo_half_created(project, path)
        raise
    _marker(path).unlink()


def _undo_half_created(project: Path, path: Path) -> None:
    """Remove a worktree whose creation was interrupted (our marker says nobody worked in it)."""
    entry = _registered(project).get(os.path.realpath(path))
    if entry is not None and entry.locked:
        _git(project, "worktree", "unlock", str(path))
    if path.exists():
        shutil.rmtree(path)
    if entry is not None:
        _forget(project, path)
    _marker(path).unlink(missing_ok=True)


def _forget(project: Path, path: Path) -> None:
    """Drop git's record of a worktree whose folder is gone."""
    if _git(project, "worktree", "remove", str(path), check=False).returncode != 0:
        _git(project, "worktree", "prune")  # older git: remove needs the folder


def _ensure_worktree(project: Path, path: Path, branch: str, start: Optional[str]) -> None:
    """Make `path` a worktree on `branch`, reusing it when it already is one."""
    entry = _registered(project).get(os.path.realpath(path))
    if entry is not None and path.is_dir():
        if entry.branch != "refs/heads/" + branch:
            raise WorkspaceError(f"{_short(project, path)} is checked out on {entry.branch or 'a detached HEAD'}, "
                                 f"not {branch}; switch it back with: git -C {path} switch {branch}")
        return
    if entry is not None:
        if entry.locked:
            _git(project, "worktree", "unlock", str(path))
        _forget(project, path)
    if _exists(project, "refs/heads/" + branch):
        _add_worktree(project, path, str(path), branch)
    elif start is None:
        raise WorkspaceError(f"branch {branch} no longer exists")
    else:
        _add_worktree(project, path, "--no-track", "-b", branch, str(path), start)


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

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunInfo":
        return cls(str(data.get("isolation", "none")), data.get("integration_branch"), data.get("base"))


def start_run(project: Path, previous: Optional[RunInfo] = None) -> RunInfo:
    """Begin a run from the user's HEAD, or continue `previous` on its integration branch."""
    project = Path(project).resolve()
    if _git_version(project) < MIN_GIT:
        raise WorkspaceError("worktree isolation needs git {}.{} or later; upgrade git or use isolation "
                             "'none'".format(*MIN_GIT))
    ensure_ignored(project)
    _remove_half_created(project)  # recover() does this too; a creation cut short must not block us
    if previous is not None and previous.integration_branch:
        branch = previous.integration_branch
        if not _exists(project, "refs/heads/" + branch):
            raise WorkspaceError(f"this run's integration branch {branch} no longer exists, so the work "
                                 "merged into it cannot be found; start a new run")
        _ensure_worktree(project, integration_path(project), branch, None)
        return previous
    integ = integration_path(project)
    earlier = _registered(project).get(os.path.realpath(integ))
    if earlier is not None and integ.is_dir():
        old = (earlier.branch or "a detached HEAD").replace("refs/heads/", "")
        raise WorkspaceError(f"an earlier run's integration worktree is still there (on {old}); land or "
                             f"continue that run, or discard it with: git worktree remove {integ}")
    base = _rev(project, "HEAD")
    branch = _new_integration_branch(project)
    _ensure_worktree(project, integration_path(project), branch, base)
    return RunInfo("worktree", branch, base)


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


def workspace_of(project: Path, stream_id: str) -> Workspace:
    """The names a stream's workspace has (whether or not it exists yet)."""
    project = Path(project).resolve()
    path = worktree_path(project, stream_id)
    return Workspace(stream_id, stream_branch(stream_id), path, path / _prefix(project))


def prepare_workspace(project: Path, run: RunInfo, stream_id: str) -> Workspace:
    """Give the stream its worktree on its branch: the one it has, a parked one switched to the
    integration branch's tip, or a new one created from that tip."""
    project = Path(project).resolve()
    ws = workspace_of(project, stream_id)
    start = "refs/heads/" + _integration(run)
    registered = _registered(project)
    if os.path.realpath(ws.path) not in registered and not ws.path.exists():
        if _take_spare(project, registered, ws.path, ws.branch, start):
            return ws
    _ensure_worktree(project, ws.path, ws.branch, start)
    return ws


def remove_workspace(project: Path, stream_id: str) -> None:
    """Take a merged stream's worktree away (its branch stays); refuses one with uncommitted changes.

    A clean worktree is parked as a spare (a rename, detached from the branch) for the next
    stream to start, which then checks out only the files that differ instead of the whole
    tree; ignored files (build output, caches) come along. Beyond MAX_SPARES it is removed.
    """
    project = Path(project).resolve()
    path = worktree_path(project, stream_id)
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
    _marker(path).write_text(f"{os.getpid()}\n", encoding="utf-8")
    if _git(project, "worktree", "move", str(spare), str(path), check=False).returncode != 0:
        _marker(path).unlink()
        return False
    target = [branch] if _exists(project, "refs/heads/" + branch) else ["--no-track", "-b", branch, start]
    if _git(path, "checkout", "-q", *target, "--", check=False).returncode != 0:
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


@dataclass(frozen=True)
class MergeResult:
    outcome: MergeOutcome
    before: str  # integration tip before this stream's merge (what a failed check returns to)
    tip: str  # integration tip now
    conflicts: Tuple[str, ...] = ()
    committed_leftovers: bool = False


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
        marked = _files_with_markers(ws.path, [f for f in touched if f])
        if marked:
            raise WorkspaceError(f"{_short(project, ws.path)} still has conflict markers in: {', '.join(marked)}")
    _git(ws.path, "add", "-A")
    if not merging and _git(ws.path, "diff", "--cached", "--quiet", check=False).returncode == 0:
        return False  # only changes git does not commit (e.g. inside a submodule)
    message = f"Work left uncommitted by stream {printable(stream_id, 200)}"
    _git(ws.path, *_commit_options(project), "commit", "-q", "--no-verify", "-m", message)
    return True


def merge_stream(project: Path, run: RunInfo, stream_id: str) -> MergeResult:
    """Commit the stream's leftovers, then merge its branch into the integration branch (--no-ff)."""
    project = Path(project).resolve()
    integ = integration_path(project)
    _integration(run)
    try:
        committed = commit_leftovers(project, stream_id)
    except WorkspaceError:
        state = _tree_state(worktree_path(project, stream_id))
        if not state.unmerged:
            raise
        tip = _rev(integ, "HEAD")
        return MergeResult(MergeOutcome.UNRESOLVED, tip, tip, state.unmerged)
    _require_clean_integration(project)
    before = _rev(integ, "HEAD")
    branch = "refs/heads/" + stream_branch(stream_id)
    if not _exists(project, branch):  # it never had a workspace (complete before the run began)
        return MergeResult(MergeOutcome.MERGED, before, before)
    stream_tip = _rev(project, branch)
    if _is_ancestor(integ, stream_tip, before):  # nothing new, or merged before a restart
        parents = _parents(integ, before)
        start = parents[0] if parents[1:] == [stream_tip] else before
        return MergeResult(MergeOutcome.MERGED, start, before, (), committed)
    message = f"Merge stream {printable(stream_id, 200)} ({stream_branch(stream_id)})"
    done = _git(integ, *_commit_options(project), "merge", "--no-ff", "--no-edit", "-m", message, branch,
                check=False)
    if done.returncode == 0:
        return MergeResult(MergeOutcome.MERGED, before, _rev(integ, "HEAD"), (), committed)
    conflicts = _tree_state(integ).unmerged
    if _merging(integ) or conflicts:
        _git(integ, "merge", "--abort")
    if not conflicts:
        raise WorkspaceError(f"merging {stream_branch(stream_id)} failed: {_reason(done)}")
    return MergeResult(MergeOutcome.CONFLICT, before, before, conflicts, committed)


def _require_clean_integration(project: Path) -> None:
    integ = integration_path(project)
    if not integ.is_dir():
        raise WorkspaceError(f"{_short(project, integ)} is missing; run start again to recreate it")
    if _merging(integ) or _tree_state(integ).tracked:
        raise WorkspaceError(f"{_short(project, integ)} has a half-done merge or changes; "
                             "run start again to recover it")


def hand_back_conflict(project: Path, run: RunInfo, stream_id: str) -> Tuple[str, ...]:
    """Merge the integration branch into the stream's worktree and leave the conflicts there.

    Returns the conflicted files for the stream's agent (empty: it merged cleanly, so
    merging the stream again will succeed).
    """
    project = Path(project).resolve()
    ws = prepare_workspace(project, run, stream_id)
    commit_leftovers(project, stream_id)
    message = f"Merge {_integration(run)} into stream {printable(stream_id, 200)}"
    done = _git(ws.path, *_commit_options(project), "merge", "--no-edit", "-m", message,
                "refs/heads/" + _integration(run), check=False)
    conflicts = _tree_state(ws.path).unmerged
    if done.returncode != 0 and not conflicts:
        raise WorkspaceError(f"merging {run.integration_branch} into {ws.branch} failed: {_reason(done)}")
    return conflicts


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
    marked = _files_with_markers(ws.path, files)
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
class RunningCheck:
    """A merge check in progress: the supervisor waits for `process` like for a worker."""

    process: subprocess.Popen
    log: Path
    offset: int  # where the check's output starts in the log


def start_merge_check(project: Path, command: str, log: Path) -> RunningCheck:
    """Start the user's merge check with their shell in the integration worktree, in its own
    session, its output appended to `log` (the stream's log)."""
    project = Path(project).resolve()
    cwd = integration_path(project) / _prefix(project)
    shell = os.environ.get("SHELL") or "/bin/sh"
    env = {k: v for k, v in os.environ.items() if k not in _GIT_CONTEXT}
    with open(log, "ab") as handle:
        offset = handle.tell()
        try:
            process = subprocess.Popen([shell, "-c", command], cwd=str(cwd), env=env, stdin=subprocess.DEVNULL,
                                       stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as error:
            raise WorkspaceError(f"cannot run the merge check with {shell}: {error.strerror}") from None
    return RunningCheck(process, Path(log), offset)


def stop_merge_check(check: RunningCheck) -> None:
    """Kill the check's whole process group (a check has nothing to save) and reap it."""
    try:
        os.killpg(check.process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    check.process.wait()


def merge_check_result(project: Path, check: RunningCheck, timed_out: bool = False) -> CheckResult:
    """The result of a check that has exited (or was stopped).

    Tracked files the check changed are restored (the integration worktree must stay
    clean for the next merge); ignored build output stays.
    """
    integ = integration_path(Path(project).resolve())
    with open(check.log, "rb") as handle:
        handle.seek(check.offset)
        output = handle.read().decode("utf-8", "replace")[-CHECK_OUTPUT_LIMIT:]
    if _tree_state(integ).tracked:
        _git(integ, "reset", "--hard", "-q", "HEAD")  # our own worktree
    code = None if timed_out else check.process.returncode
    return CheckResult(code == 0, code, output, timed_out)


def run_merge_check(project: Path, command: str, timeout: float, log: Path) -> CheckResult:
    """Start the check, wait for it up to `timeout` seconds, and return its result."""
    check = start_merge_check(project, command, log)
    try:
        check.process.wait(timeout=timeout)
        return merge_check_result(project, check)
    except subprocess.TimeoutExpired:
        stop_merge_check(check)
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"\n[merge check stopped after {timeout:g} s]\n")
        return merge_check_result(project, check, timed_out=True)


def undo_merge(project: Path, run: RunInfo, before: str) -> None:
    """Move the integration branch back to `before`, the tip before the last merge."""
    integ = integration_path(Path(project).resolve())
    head = _rev(integ, "HEAD")
    if head == before:
        return
    if _tree_state(integ).branch != _integration(run) or _parents(integ, head)[:1] != [before]:
        raise WorkspaceError(f"{run.integration_branch} moved on since that merge; not moving it back")
    _git(integ, "reset", "--hard", "-q", before)  # our own branch in our own worktree


# ---------------------------------------------------------------- recovery


def recover(project: Path, previous: Optional[RunInfo] = None) -> List[str]:
    """Repair what an orchestrator killed mid-operation left behind; what was done, one line each.

    Call at start, before start_run and before any worker runs (one orchestrator at a
    time). Half-created worktrees (our marker says no worker has used them) are removed;
    a half-done merge in the integration worktree is aborted (the stream is merged
    again); records of worktree folders that are gone are dropped (start_run recreates
    the integration worktree). Stream worktrees with work in them are never touched.
    """
    project = Path(project).resolve()
    notes = _remove_half_created(project)
    integ = integration_path(project)
    if previous is not None and previous.integration_branch and integ.is_dir():
        notes += _clean_integration(project, integ, previous.integration_branch)
    for spare in _spares(project):
        if _tree_state(spare).branch is not None:  # killed while parking it
            _git(spare, "checkout", "-q", "--detach")
            notes.append(f"detached spare worktree {_short(project, spare)} from its branch")
    for path in _registered(project):
        if Path(path).parent == (project / WORKTREES).resolve() and not os.path.isdir(path):
            _forget(project, Path(path))
            notes.append(f"dropped the record of missing worktree {_short(project, Path(path))}")
    return notes


def _remove_half_created(project: Path) -> List[str]:
    folder = project / WORKTREES
    notes = []
    for marker in sorted(folder.glob(".*.creating")) if folder.is_dir() else []:
        path = folder / marker.name[1:-len(".creating")]
        _undo_half_created(project, path)
        notes.append(f"removed half-created worktree {_short(project, path)}")
    return notes


def _clean_integration(project: Path, integ: Path, branch: str) -> List[str]:
    notes = []
    for name in ("index.lock", "HEAD.lock", f"refs/heads/{branch}.lock"):
        lock = integ / _git(integ, "rev-parse", "--git-path", name).stdout.strip()
        if lock.exists():
            lock.unlink()  # left by a killed git: only we run git in our worktree and on our branch
            notes.append(f"removed a stale {Path(name).name} of the integration worktree")
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


def land(project: Path, run: RunInfo, stream_ids: Iterable[str]) -> LandResult:
    """Bring the integration branch into the user's current branch, then tidy the run's branches."""
    project = Path(project).resolve()
    integration = "refs/heads/" + _integration(run)
    state = _tree_state(project)
    if state.branch is None:
        raise LandRefused("HEAD is detached; check out the branch to land on (git switch BRANCH) and run land again")
    if state.tracked:
        raise LandRefused(f"your working tree has uncommitted changes ({', '.join(state.tracked[:3])}); "
                          "commit or stash them and run land again")
    fast_forward = _is_ancestor(project, "HEAD", integration)
    if fast_forward:
        _git(project, "merge", "--ff-only", "-q", integration)
    else:
        _merge_into_user_branch(project, run, state.branch)
    deleted, kept = _delete_run_branches(project, run, stream_ids)
    kept += tuple(("(spare worktree)", why) for why in remove_spares(project))
    return LandResult(state.branch, fast_forward, _rev(project, "HEAD"), deleted, kept)


def _merge_into_user_branch(project: Path, run: RunInfo, branch: str) -> None:
    """A real merge in the user's checkout (their hooks run: it is their branch); a conflict is undone."""
    done = _git(project, *_identity_options(project), "merge", "--no-ff", "--no-edit", "-m",
                f"Land {run.integration_branch}", "refs/heads/" + str(run.integration_branch), check=False)
    if done.returncode == 0:
        return
    conflicts = _tree_state(project).unmerged
    if _merging(project):
        _git(project, "merge", "--abort")
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
