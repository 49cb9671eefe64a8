"""The run's branches on a remote: push them (never forced), fetch one back, and check that the remote answers.

Used by `push = integration | all` (after each merge), by `merge_gate = pr` (the branches a
pull request needs, and the integration branch fetched back once the pull request merged),
by `land --push`, and by `start`'s refusal when a remote it needs is missing. Every function
takes plain arguments and returns a small JSON-able result with a one-line reason instead
of raising, and every git call has a deadline (bounded.py), so the orchestrator can run each
as a short child process and never waits on a network.

Rules kept here:
- A push is never forced: no `+` refspec, no `--force`, no `--force-with-lease`. A remote
  that has commits we lack refuses the push, and that stays a refusal ("someone else pushed
  first"), reported with the fix; nothing on the remote is ever deleted or reset.
- Our own pushes (the run's branches) skip the user's pre-push hook, as our merges skip
  their hooks; the user's own branch (`land --push`) runs them. A hook on the remote
  (pre-receive, update) is the remote's business: its refusal comes back as a reason.
- A fetched branch moves our local branch only by a fast-forward (in the worktree that has
  it checked out, or by a compare-and-swap of the ref); a branch that diverged is reported.
- git runs from argument lists; refspecs are always spelled in full (`refs/heads/B:refs/heads/B`)
  and a remote name that could be read as an option is refused.
Standard library only, Python 3.9+.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from . import bounded

DEFAULT_REMOTE = "origin"
NETWORK_TIMEOUT = 120.0  # seconds a push or fetch may take
CHECK_TIMEOUT = 20.0  # seconds `start` waits for the remote to answer
NO_HOOKS = ("-c", "core.hooksPath=/dev/null")
FETCHED = "refs/orchestrate-kit/fetched/"  # where a fetched branch lands before we fast-forward to it
_REMOTE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/@-]*")


@dataclass(frozen=True)
class PushResult:
    """One branch pushed, or why not. `status`: pushed, up_to_date, behind (the remote's branch has
    commits ours lacks: someone else pushed; nothing was overwritten), rejected (a hook or a rule
    of the remote said no), failed (it could not be asked: no such remote, unreachable,
    authentication, timeout)."""

    branch: str
    remote: str
    status: str
    commit: str = ""  # the local tip that was pushed (or offered)
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("pushed", "up_to_date")

    def as_dict(self) -> Dict[str, Any]:
        return dict(asdict(self), ok=self.ok)


@dataclass(frozen=True)
class FetchResult:
    """A branch fetched from the remote and our local branch fast-forwarded to it, or why not."""

    branch: str
    remote: str
    ok: bool
    before: str = ""  # our local tip before
    after: str = ""  # our local tip now
    remote_tip: str = ""
    reason: str = ""

    @property
    def moved(self) -> bool:
        return bool(self.before) and self.before != self.after

    def as_dict(self) -> Dict[str, Any]:
        return dict(asdict(self), moved=self.moved)


# ---------------------------------------------------------------- running git


_git = bounded.git
_rev = bounded.rev


def _is_ancestor(cwd: Path, older: str, newer: str) -> bool:
    return _git(cwd, "merge-base", "--is-ancestor", older, newer).code == 0


def remote_name_problem(remote: str) -> Optional[str]:
    """Why `remote` cannot be used as a remote's name here (None when it can)."""
    if not remote:
        return "push_remote is empty; name a git remote (see `git remote -v`), e.g. origin"
    if not _REMOTE_NAME.fullmatch(remote):
        return f"push_remote {remote!r} is not a plain git remote name (see `git remote -v`), e.g. origin"
    return None


def _branch_problem(cwd: Path, branch: str) -> Optional[str]:
    if not branch or _git(cwd, "check-ref-format", "refs/heads/" + branch).code != 0:
        return f"{branch!r} is not a valid branch name"
    return None


# ---------------------------------------------------------------- is the remote there


def check_remote(project: Path, remote: str = DEFAULT_REMOTE, timeout: float = CHECK_TIMEOUT) -> Optional[str]:
    """Why the run cannot use `remote` (missing, unreachable, refusing us), with the fix; None when it answers.

    For `start`'s refusal before anything starts: `git remote get-url`, then `git ls-remote`
    with a deadline (a remote that hangs is as good as unreachable here).
    """
    problem = remote_name_problem(remote)
    if problem:
        return problem
    url = _git(project, "remote", "get-url", remote)
    if not url.ok:
        known = _git(project, "remote").stdout.split()
        listed = f"; this repository's remotes: {', '.join(known)}" if known else "; this repository has none"
        return (f"there is no git remote named {remote!r}{listed}. Add one (git remote add {remote} URL) "
                "or set push_remote to one of them")
    where = f"{remote} ({url.stdout.strip()})"
    done = _git(project, "ls-remote", "-q", remote, "HEAD", timeout=timeout)
    if done.timed_out:
        return f"{where} did not answer within {timeout:g} s; check the network and your credentials"
    if not done.ok:
        return f"{where} cannot be reached: {done.reason()}"
    return None


# ---------------------------------------------------------------- push


def push_branches(project: Path, branches: Sequence[str], remote: str = DEFAULT_REMOTE,
                  timeout: float = NETWORK_TIMEOUT, hooks: bool = False) -> List[PushResult]:
    """Push local branches to the same names on `remote` in one `git push`, never forced.

    `hooks`: run the user's pre-push hook (only for the user's own branch: `land --push`).
    """
    project = Path(project)
    problem = remote_name_problem(remote)
    results: Dict[str, PushResult] = {}
    tips: Dict[str, str] = {}
    for branch in branches:
        why = problem or _branch_problem(project, branch)
        tip = "" if why else _rev(project, "refs/heads/" + branch)
        if not why and not tip:
            why = f"there is no local branch {branch}"
        if why:
            results[branch] = PushResult(branch, remote, "failed", "", why)
        else:
            tips[branch] = tip
    if tips:
        options = () if hooks else NO_HOOKS
        refspecs = [f"refs/heads/{b}:refs/heads/{b}" for b in tips]
        done = _git(project, *options, "push", "--porcelain", "--no-follow-tags", "--no-recurse-submodules",
                    "--no-signed", *(() if hooks else ("--no-verify",)), remote, *refspecs, timeout=timeout)
        results.update(_push_outcomes(done, remote, tips))
    return [results[b] for b in branches]


def push_branch(project: Path, branch: str, remote: str = DEFAULT_REMOTE, timeout: float = NETWORK_TIMEOUT,
                hooks: bool = False) -> PushResult:
    """Push one local branch to `remote`, never forced; see push_branches."""
    return push_branches(project, [branch], remote, timeout, hooks)[0]


def push_landed(project: Path, remote: str = DEFAULT_REMOTE, timeout: float = NETWORK_TIMEOUT) -> PushResult:
    """`land --push`: push the user's current branch (the one land brought the run into), with their hooks."""
    head = _git(project, "symbolic-ref", "-q", "--short", "HEAD")
    if not head.ok:
        return PushResult("HEAD", remote, "failed", "", "HEAD is detached: there is no branch to push")
    return push_branch(project, head.stdout.strip(), remote, timeout, hooks=True)


def _push_outcomes(done: bounded.Ran, remote: str, tips: Dict[str, str]) -> Dict[str, PushResult]:
    """Each branch's outcome from `git push --porcelain` (lines `FLAG\\tFROM:TO\\tSUMMARY`)."""
    lines: Dict[str, tuple] = {}
    for line in done.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and len(parts[0]) == 1 and ":" in parts[1]:
            lines[parts[1].split(":", 1)[1]] = (parts[0], parts[2])
    remote_says = [ln.strip()[len("remote:"):].strip() for ln in done.stderr.splitlines()
                   if ln.strip().startswith("remote:") and ln.strip()[len("remote:"):].strip()]
    outcomes = {}
    for branch, tip in tips.items():
        flag, summary = lines.get("refs/heads/" + branch, ("", ""))
        if flag in (" ", "*"):
            outcomes[branch] = PushResult(branch, remote, "pushed", tip)
        elif flag == "=":
            outcomes[branch] = PushResult(branch, remote, "up_to_date", tip)
        elif flag == "!":
            behind = any(word in summary for word in ("non-fast-forward", "fetch first", "stale info"))
            outcomes[branch] = PushResult(branch, remote, "behind" if behind else "rejected", tip,
                                          _refusal(branch, remote, summary, remote_says, behind))
        else:
            why = done.reason() if not done.ok else f"git push said nothing about {branch}"
            outcomes[branch] = PushResult(branch, remote, "failed", tip, f"could not push {branch} to {remote}: {why}")
    return outcomes


def _refusal(branch: str, remote: str, summary: str, remote_says: List[str], behind: bool) -> str:
    if behind:
        return (f"{remote} refused {branch}: it has commits there that this run does not have (someone else "
                f"pushed to it); nothing was overwritten. Look at them with: git fetch {remote} {branch}")
    found = re.search(r"\((.*)\)\s*$", summary)
    why = found.group(1) if found else summary.strip() or "rejected"
    said = f": {'; '.join(remote_says[:2])}" if remote_says else ""
    return f"{remote} refused {branch}: {why}{said}"


# ---------------------------------------------------------------- fetch


def fetch_branch(project: Path, branch: str, remote: str = DEFAULT_REMOTE,
                 timeout: float = NETWORK_TIMEOUT) -> FetchResult:
    """Fetch `branch` from `remote` and fast-forward our local branch to it when that is a fast-forward.

    Used once a pull request merged on the remote: the integration branch moved there. Our
    local branch moves only forward; when the remote's is behind ours or equal, nothing
    changes; when the two diverged, nothing changes and the reason says so.
    """
    project = Path(project)
    problem = remote_name_problem(remote) or _branch_problem(project, branch)
    if problem:
        return FetchResult(branch, remote, False, reason=problem)
    before = _rev(project, "refs/heads/" + branch)
    landing = FETCHED + branch
    _git(project, "update-ref", "-d", landing)  # a leftover of an interrupted fetch: a new ref needs no force
    # Fetched from the branch's own worktree when it has one: FETCH_HEAD is per worktree, so the
    # user's own FETCH_HEAD in their checkout is left as it was.
    done = _git(checked_out_in(project, branch) or project, *NO_HOOKS, "fetch", "-q", "--no-tags",
                "--no-recurse-submodules", remote, f"refs/heads/{branch}:{landing}", timeout=timeout)
    remote_tip = _rev(project, landing) if done.ok else ""
    _git(project, "update-ref", "-d", landing)
    if not remote_tip:
        return FetchResult(branch, remote, False, before, before,
                           reason=f"could not fetch {branch} from {remote}: {done.reason()}")
    why = fast_forward(project, branch, remote_tip)
    after = _rev(project, "refs/heads/" + branch)
    return FetchResult(branch, remote, why is None, before, after, remote_tip, why or "")


def fast_forward(project: Path, branch: str, commit: str) -> Optional[str]:
    """Move local `branch` forward to `commit` if that is a fast-forward; None when done (or nothing to do).

    The branch's own worktree, when it has one, moves with it (`merge --ff-only` there);
    otherwise the ref is swapped only if it still points where we read it.
    """
    project = Path(project)
    tip = _rev(project, "refs/heads/" + branch)
    if not tip:
        done = _git(project, "update-ref", "refs/heads/" + branch, commit, "")  # "": only if it still does not exist
        return None if done.ok else f"could not create {branch}: {done.reason()}"
    if tip == commit or _is_ancestor(project, commit, tip):
        return None  # we have it already
    if not _is_ancestor(project, tip, commit):
        return (f"{branch} here and on the remote have diverged (each has commits the other lacks); "
                f"not moving it. Merge them yourself: git merge {commit[:12]} (in {branch}'s worktree)")
    worktree = checked_out_in(project, branch)
    if worktree is not None:
        done = _git(worktree, *NO_HOOKS, "merge", "--ff-only", "-q", commit)
    else:
        done = _git(project, "update-ref", "refs/heads/" + branch, commit, tip)
    return None if done.ok else f"could not fast-forward {branch} to {commit[:12]}: {done.reason()}"


def checked_out_in(project: Path, branch: str) -> Optional[Path]:
    """The worktree that has `branch` checked out, if any."""
    path = None
    for line in _git(project, "worktree", "list", "--porcelain").stdout.splitlines():
        if line.startswith("worktree "):
            path = Path(line[len("worktree "):])
        elif line == f"branch refs/heads/{branch}" and path is not None:
            return path
    return None
