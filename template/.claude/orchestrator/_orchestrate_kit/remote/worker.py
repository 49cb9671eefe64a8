"""A Ray job's entrypoint: one stream attempt on a cluster node.

    python3 -m _orchestrate_kit.remote.worker      (the job description in $ORCHESTRATE_JOB)

1. The project's git remote is cloned into a per-node cache, once: a bare repository under
   `$ORCHESTRATE_NODE_CACHE` (default `~/.cache/orchestrate-kit/node`), fetched at every job
   under a lock, so jobs on one node share one copy. The attempt gets its own worktree there at the
   commit the orchestrator gave (the integration commit), on a branch of its own.
2. The worker command runs in that worktree with the usual environment (`STREAM_ID`,
   `STREAM_NAME`, `ORCHESTRATOR_ATTEMPT`, `ORCHESTRATE_KIT_TOKEN`), the node's own environment
   under it (its PATH, HOME, git and Claude Code credentials: none travel in a job), and Task
   Copilot replaced by the node's stand-ins: `tc` first on PATH (generation 2), or the MCP server
   named in `--mcp-config` (generation 1). Its output is passed on, line by line, into the job's
   log; each task update the stand-ins record is printed there too, as a structured line.
3. The worker's process tree is reaped: when it exits, and when the job is stopped (TERM), every
   process in its group or carrying its token is sent TERM, then KILL after the grace. Ray does
   not do this itself: its stop misses orphaned grandchildren, and after a normal exit every child
   keeps running (tests/ray/test_node_processes.py shows both).
4. What the worker left uncommitted is committed; the work is pushed, never forced, to the
   attempt's own ref (what the orchestrator merges, see refs.py), the updates as a progress ref,
   and `stream/<name>` as a fast-forward (refused if another attempt moved it: said, not fatal).
   A last structured line reports the outcome. The exit code is the worker's (128 + signal).
5. When the job is gone under it (the node's Ray processes died, so Ray's watcher killed the
   entrypoint's group; the wrapper runs in a session of its own to outlive that), it ends the
   worker's tree the same way and pushes the attempt's ref only: the orchestrator has fenced it.

Standard library only; shipped to the node with the runtime package (`executor/ray/package.py`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ..executor import processes
from ..git.bounded import GIT_CONTEXT
from . import protocol, refs
from .tasks import TASKS_VARIABLE, UPDATES_VARIABLE, NodeTasks

CACHE_VARIABLE = "ORCHESTRATE_NODE_CACHE"
GIT_TIMEOUT = 900
FALLBACK_IDENTITY = ("-c", "user.name=orchestrate-kit", "-c", "user.email=orchestrate-kit@localhost")
NO_HOOKS = ("-c", "core.hooksPath=/dev/null")
# Variables of the orchestrator's machine that mean nothing on a node (gen 1's database pointers).
_LOCAL_ONLY = ("TASK_DB_PATH", "WORKSPACE_ID", "ORCHESTRATE_DB_FILE", protocol.JOB_VARIABLE)
PACKAGE_PARENT = Path(__file__).resolve().parents[2]  # the folder holding _orchestrate_kit


class RemoteError(Exception):
    """A step on the node failed; the message is one line for the job's log."""


def say(text: str) -> None:
    """A line of our own in the job's log (not structured: for people reading it)."""
    sys.stdout.write(f"orchestrate-kit remote worker: {text}\n")
    sys.stdout.flush()


# ---------------------------------------------------------------- git on the node


def git(cwd: Path, *args: str, check: bool = True, timeout: float = GIT_TIMEOUT) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in GIT_CONTEXT}  # the node's git settings stay
    env["GIT_TERMINAL_PROMPT"] = "0"
    try:
        done = subprocess.run(["git", *args], cwd=str(cwd), env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, errors="replace", timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise RemoteError(f"git {args[0] if args else ''} failed: {error}") from None
    if check and done.returncode != 0:
        reason = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise RemoteError(f"git {' '.join(a for a in args if not a.startswith('-c'))[:120]} failed: "
                          f"{reason[-1] if reason else done.returncode}")
    return done


def node_cache(environ: Mapping[str, str]) -> Path:
    return Path(environ.get(CACHE_VARIABLE) or Path(environ.get("HOME") or Path.home()) / ".cache" /
                "orchestrate-kit" / "node")


def prepare_checkout(cache: Path, remote: str, start: str, path: Path, branch: str, start_branch: str = "") -> str:
    """The node's shared copy of `remote`, with `start` in it; a new worktree at `start` on `branch`. The commit.

    Under the node's lock (one fetch or worktree change at a time per node and remote), only what is
    missing: nothing when an earlier job brought `start` already, else the one branch the
    orchestrator pushed it on (`start_branch`), else the commit itself, else every branch. The
    worktree is added there without its files; they are checked out after the lock is let go (that
    writes only the new worktree, and is what takes long in a big repository)."""
    mirrors = cache / "mirrors"
    mirrors.mkdir(parents=True, exist_ok=True)
    mirror = mirrors / (hashlib.sha1(remote.encode("utf-8")).hexdigest()[:16] + ".git")
    with open(str(mirror) + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (mirror / "HEAD").exists():
            git(mirrors, "init", "--quiet", "--bare", str(mirror))
            git(mirror, "remote", "add", "origin", remote)
        commit = _resolve(mirror, start) or _fetch_start(mirror, start, start_branch)
        if commit is None:
            raise RemoteError(f"{start} is not on the project's remote {remote}: push it before the job starts")
        path.parent.mkdir(parents=True, exist_ok=True)
        added = git(mirror, "worktree", "add", "--quiet", "--no-checkout", "-b", branch, str(path), commit, check=False)
        if added.returncode != 0:  # a worktree of an earlier job whose folder is gone may hold the path: prune,
            git(mirror, "worktree", "prune")  # and again (-B: the branch is this job's own, perhaps made just now)
            git(mirror, "worktree", "add", "--quiet", "--no-checkout", "-B", branch, str(path), commit)
    git(path, "reset", "--quiet", "--hard", commit)
    return commit


def _fetch_start(mirror: Path, start: str, start_branch: str) -> Optional[str]:
    """Fetch what `start` needs, the cheapest way first; the commit, or None if the remote lacks it."""
    if start_branch:
        tracking = "refs/remotes/origin/" + start_branch
        git(mirror, "fetch", "--quiet", "--no-tags", "origin", f"+refs/heads/{start_branch}:{tracking}", check=False)
        commit = _resolve(mirror, start)
        if commit is not None:
            return commit
    git(mirror, "fetch", "--quiet", "--no-tags", "origin", start, check=False)  # a commit no branch names (yet)
    commit = _resolve(mirror, start)
    if commit is not None:
        return commit
    git(mirror, "fetch", "--quiet", "--prune", "origin", "+refs/heads/*:refs/remotes/origin/*")
    return _resolve(mirror, start) or _resolve(mirror, "refs/remotes/origin/" + start)


def _resolve(repo: Path, name: str) -> Optional[str]:
    done = git(repo, "rev-parse", "--verify", "--quiet", name + "^{commit}", check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def commit_leftovers(worktree: Path, message: str) -> bool:
    """Commit what the worker left, untracked files too; True if there was anything."""
    if not git(worktree, "status", "--porcelain").stdout.strip():
        return False
    git(worktree, "add", "-A")
    if git(worktree, "diff", "--cached", "--quiet", check=False).returncode == 0:
        return False
    identity = () if git(worktree, "var", "GIT_COMMITTER_IDENT", check=False).returncode == 0 else FALLBACK_IDENTITY
    git(worktree, *NO_HOOKS, *identity, "commit", "--quiet", "--no-verify", "-m", message)
    return True


def progress_commit(worktree: Path, lines: Sequence[str]) -> str:
    """A parentless commit holding the attempt's update lines (the progress ref's content)."""
    blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=str(worktree), input="".join(lines),
                          capture_output=True, text=True, check=True).stdout.strip()
    tree = subprocess.run(["git", "mktree"], cwd=str(worktree), input=f"100644 blob {blob}\t{refs.PROGRESS_FILE}\n",
                          capture_output=True, text=True, check=True).stdout.strip()
    identity = () if git(worktree, "var", "GIT_COMMITTER_IDENT", check=False).returncode == 0 else FALLBACK_IDENTITY
    return git(worktree, *identity, "commit-tree", tree, "-m", "orchestrate-kit: task updates of this attempt"
               ).stdout.strip()


# ---------------------------------------------------------------- the worker's environment


def worker_environment(job: Mapping[str, Any], attempt_dir: Path, node_env: Mapping[str, str]) -> Dict[str, str]:
    # Ray's job variables (RAY_ADDRESS, RAY_JOB_ID, ...) are for the entrypoint, not the agent: a
    # project that uses Ray itself must not have its tests reach this cluster by accident.
    env = {k: v for k, v in node_env.items() if k not in _LOCAL_ONLY and not k.startswith("RAY_")}
    env.update({str(k): str(v) for k, v in job.get("env", {}).items()})
    env.update(STREAM_ID=str(job["stream"]), ORCHESTRATOR_ATTEMPT=str(job["attempt"]),
               ORCHESTRATE_KIT_TOKEN=str(job["token"]), ORCHESTRATE_TRACKER="node-" + job["tracker"]["generation"])
    env[TASKS_VARIABLE] = str(attempt_dir / "tasks.json")
    env[UPDATES_VARIABLE] = str(attempt_dir / "updates.jsonl")
    env["PATH"] = f"{attempt_dir / 'bin'}{os.pathsep}{node_env.get('PATH', os.defpath)}"
    env.pop("CLAUDECODE", None)
    return env


def install_shims(job: Mapping[str, Any], attempt_dir: Path, argv: List[str]) -> List[str]:
    """The task copy, `tc` on PATH, and for generation 1 the MCP stand-in in claude's argv."""
    (attempt_dir / "bin").mkdir(parents=True, exist_ok=True)
    NodeTasks.write(attempt_dir / "tasks.json", job["tracker"]["snapshot"])
    (attempt_dir / "updates.jsonl").touch()
    launcher = attempt_dir / "bin" / "tc"
    launcher.write_text(f"#!/bin/sh\nPYTHONPATH={_sh(str(PACKAGE_PARENT))}${{PYTHONPATH:+:$PYTHONPATH}} "
                        f"exec {_sh(sys.executable)} -m _orchestrate_kit.remote.tc_shim \"$@\"\n", encoding="utf-8")
    launcher.chmod(0o755)
    if job["tracker"]["generation"] != "mcp" or not argv or os.path.basename(argv[0]) != "claude":
        return argv
    config = {"mcpServers": {"task-copilot": {
        "command": sys.executable, "args": ["-m", "_orchestrate_kit.remote.mcp_shim"],
        "env": {"PYTHONPATH": str(PACKAGE_PARENT), TASKS_VARIABLE: str(attempt_dir / "tasks.json"),
                UPDATES_VARIABLE: str(attempt_dir / "updates.jsonl")}}}}
    path = attempt_dir / "mcp.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    # Only the stand-in: the project's own .mcp.json would start the real server on an empty database.
    return [argv[0], "--mcp-config", str(path), "--strict-mcp-config", *argv[1:]]


def _sh(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


# ---------------------------------------------------------------- output and updates into the log


class LogRelay:
    """The worker's output and the structured update lines, into our stdout (the job's log).

    The worker's output is passed on in pieces as it comes; a structured line goes in only where
    the worker's output stands at a line start, so neither is cut in two.
    """

    def __init__(self, job: Mapping[str, Any], updates: Path, out=None):
        self.job = job
        self.updates = updates
        self.out = out or sys.stdout.buffer
        self.lock = threading.Lock()
        self.at_line_start = True
        self.offset = 0
        self.seq = 0
        self.lines: List[str] = []  # every structured line, for the progress ref
        self._waiting_since: Optional[float] = None

    def forward(self, pipe) -> None:
        """Thread: copy the worker's output until it closes its end."""
        while True:
            piece = pipe.readline(65536)
            if not piece:
                return
            with self.lock:
                self.out.write(piece)
                self.out.flush()
                self.at_line_start = piece.endswith(b"\n")

    def relay(self, final: bool = False) -> None:
        """Print the update lines recorded since the last call (complete lines only)."""
        try:
            with open(self.updates, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except OSError:
            return
        complete = data[: data.rfind(b"\n") + 1]
        if not complete:
            return
        with self.lock:
            if not self.at_line_start:
                waited = time.monotonic() - (self._waiting_since or time.monotonic())
                self._waiting_since = self._waiting_since or time.monotonic()
                if not final and waited < 2.0:
                    return  # the worker is mid-line: wait for its newline, a little
                self.out.write(b"\n")
            self._waiting_since = None
            for raw in complete.splitlines():
                try:
                    update = json.loads(raw)
                except ValueError:
                    continue
                self.seq += 1
                line = protocol.update_line({
                    "kind": "task_update", "run": self.job["run"], "stream": self.job["stream"],
                    "attempt": self.job["attempt"], "token": self.job["token"], "seq": self.seq,
                    "task": update.get("task"), "fields": update.get("fields")}) + "\n"
                self.lines.append(line)
                self.out.write(line.encode("utf-8"))
            self.out.flush()
            self.at_line_start = True
            self.offset += len(complete)

    def structured(self, record: Mapping[str, Any]) -> None:
        with self.lock:
            if not self.at_line_start:
                self.out.write(b"\n")
            self.out.write((protocol.update_line(record) + "\n").encode("utf-8"))
            self.out.flush()
            self.at_line_start = True


# ---------------------------------------------------------------- the process tree


def tree_of(pgid: int, token: str) -> List[int]:
    """Every live process of the worker: its group, and whatever carries its token (left the group)."""
    found = set(processes.group_members(pgid)) | set(processes.token_carriers(token))
    found.discard(os.getpid())
    return sorted(found)


def reap_tree(pgid: int, token: str, grace: float, reap=lambda: None) -> List[int]:
    """TERM the worker's tree, wait up to `grace`, KILL what is left. Returns what was found running."""
    found = tree_of(pgid, token)
    if not found:
        return []
    processes.signal_members(found, signal.SIGTERM, pgid)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        reap()
        if not tree_of(pgid, token):
            return found
        time.sleep(0.1)
    processes.signal_members(tree_of(pgid, token), signal.SIGKILL, pgid)
    time.sleep(0.1)
    reap()
    return found


# ---------------------------------------------------------------- the job


class Stop:
    """TERM, INT or HUP from Ray (its stop) or the node: set a flag; the loop acts."""

    def __init__(self) -> None:
        self.signal: Optional[int] = None
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._handle)

    def _handle(self, signum, _frame) -> None:
        self.signal = signum


def run(job: Mapping[str, Any], node_env: Mapping[str, str], entered: Optional[float] = None) -> int:
    stop = Stop()
    times: Dict[str, float] = {"entered": round(entered or time.time(), 3)}  # the node's clock, in the result
    cache = node_cache(node_env)
    sid = f"{job['run']}-{job['name']}-{job['attempt']}"
    attempt_dir = cache / "attempts" / f"{sid}-{job['token'][:8]}"
    worktree = attempt_worktree(cache, job)
    attempt_dir.mkdir(parents=True, exist_ok=True)
    say(f"stream {job['stream']!r} attempt {job['attempt']} on {os.uname().nodename}: fetching {job['start'][:12]}")
    start = prepare_checkout(cache, job["remote"], job["start"], worktree, job["work_branch"],
                             str(job.get("start_branch") or ""))
    times["checked_out"] = round(time.time(), 3)
    argv = install_shims(job, attempt_dir, list(job["argv"]))
    env = worker_environment(job, attempt_dir, node_env)
    relay = LogRelay(job, attempt_dir / "updates.jsonl")
    if stop.signal is not None:
        return 128 + stop.signal
    folder = worktree / str(job.get("folder") or "")  # the project's folder in the repository (a monorepo)
    if not folder.is_dir():
        raise RemoteError(f"the project's folder {job.get('folder')!r} is not in commit {start[:12]}")
    child = subprocess.Popen(argv, cwd=str(folder), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True)
    times["worker_started"] = round(time.time(), 3)
    forwarder = threading.Thread(target=relay.forward, args=(child.stdout,), daemon=True)
    forwarder.start()
    grace = float(job.get("grace", 10))
    parent, orphaned = os.getppid(), False
    code: Optional[int] = None
    while code is None:
        relay.relay()
        if stop.signal is None and os.getppid() != parent:
            orphaned = True  # the entrypoint's shell is gone: the node's Ray died, or a stop missed us
            stop.signal = signal.SIGHUP
        if stop.signal is not None:
            say(f"stopping the worker (signal {stop.signal})")
            reap_tree(child.pid, job["token"], grace, reap=child.poll)
        code = child.poll()
        if code is None:
            time.sleep(0.2)
    times["worker_ended"] = round(time.time(), 3)
    # Said at once, so the orchestrator looks for the job's end sooner (the push and the exit follow).
    relay.structured({"kind": "ending", "run": job["run"], "stream": job["stream"], "attempt": job["attempt"],
                      "token": job["token"]})
    left = reap_tree(child.pid, job["token"], grace)  # what it left running after its exit
    if left:
        say(f"ended {len(left)} process(es) the worker left running")
    forwarder.join(5)
    relay.relay(final=True)
    exit_code = code if code >= 0 else 128 - code
    outcome: Dict[str, Any] = {"kind": "result", "run": job["run"], "stream": job["stream"],
                               "attempt": job["attempt"], "token": job["token"], "exit_code": exit_code,
                               "start": start, "updates": relay.seq}
    outcome.update(publish(job, worktree, relay.lines, move_branch=not orphaned))
    times["published"] = round(time.time(), 3)
    outcome["times"] = times
    relay.structured(outcome)
    if outcome.get("pushed"):
        tidy(worktree, attempt_dir)
    return exit_code


def attempt_worktree(cache: Path, job: Mapping[str, Any]) -> Path:
    """The attempt's folder on this node. A resume after a usage limit (the same attempt, pinned to this
    node) gets the folder its session began in: Claude Code finds a session to resume by its folder.
    One an earlier job kept (not clean, see tidy) is left alone: then a folder of this job's own."""
    folder = cache / "work" / job["run"] / f"{job['name']}-{job['attempt']}"
    return folder if not folder.exists() else folder.with_name(f"{folder.name}-{job['token'][:8]}")


def tidy(worktree: Path, attempt_dir: Path) -> None:
    """Once the work is on the remote: the attempt's worktree and folder go (never forced: a worktree
    git finds unclean stays, and is said so); the node's shared copy stays for the next job."""
    done = git(worktree, "worktree", "remove", str(worktree), check=False)
    if done.returncode != 0:
        say(f"kept {worktree}: {(done.stderr.strip().splitlines() or ['not clean'])[-1]}")
        return
    for name in ("tasks.json", "tasks.json.lock", "updates.jsonl", "mcp.json", "bin/tc"):
        try:
            (attempt_dir / name).unlink()
        except OSError:
            pass
    for folder in (attempt_dir / "bin", attempt_dir):
        try:
            folder.rmdir()
        except OSError:
            pass


def publish(job: Mapping[str, Any], worktree: Path, lines: Sequence[str], move_branch: bool = True) -> Dict[str, Any]:
    """Commit the leftovers; push the attempt ref and progress ref, then the stream branch (never forced).

    An attempt whose job is gone (`move_branch` False) keeps its work on its own ref only: the
    orchestrator has fenced it, and `stream/<name>` is for the attempt that replaces it."""
    result: Dict[str, Any] = {"pushed": False, "branch_pushed": False}
    try:
        result["committed_leftovers"] = commit_leftovers(
            worktree, f"Work left uncommitted by stream {str(job['stream'])[:200]} (attempt {job['attempt']})")
        head = git(worktree, "rev-parse", "HEAD").stdout.strip()
        result["commit"] = head
        own = [f"{head}:{job['attempt_ref']}"]
        if lines:
            own.append(f"{progress_commit(worktree, lines)}:{job['progress_ref']}")
        branch_ref = f"refs/heads/{job['branch']}"
        # One push for all (never forced: each ref is a new ref or a fast-forward, each accepted or
        # refused on its own); the attempt's refs alone again if a hook refused the whole push.
        done = git(worktree, "push", "--porcelain", "origin", *own, *([f"{head}:{branch_ref}"] if move_branch else []),
                   check=False)
        landed = pushed_refs(done.stdout)
        if job["attempt_ref"] not in landed:
            git(worktree, "push", "--quiet", "origin", *own)
        result["pushed"] = True
        if not move_branch:
            say(f"the job is gone: this attempt's work is on {job['attempt_ref']} only")
            return result
        result["branch_pushed"] = branch_ref in landed
        if branch_ref not in landed:
            say(f"{job['branch']} was not moved (another attempt pushed it; this attempt's work is on "
                f"{job['attempt_ref']})")
    except (RemoteError, subprocess.CalledProcessError) as error:
        result["error"] = str(error)
        say(f"could not publish the work: {error}")
    return result


def pushed_refs(porcelain: str) -> List[str]:
    """The remote refs `git push --porcelain` reports as now holding what was pushed: created (`*`),
    fast-forwarded (` `) or already there (`=`); never one refused (`!`)."""
    landed = []
    for line in porcelain.splitlines():
        flag, _, rest = line.partition("\t")
        refspec = rest.split("\t", 1)[0]
        if len(flag) == 1 and flag in "* =" and ":" in refspec:
            landed.append(refspec.split(":", 1)[1])
    return landed


def main() -> int:
    entered = time.time()
    try:
        job = protocol.decode_job(os.environ.get(protocol.JOB_VARIABLE, ""))
    except protocol.ProtocolError as error:
        say(f"{error} (is {protocol.JOB_VARIABLE} set by the orchestrator?)")
        return 2
    try:
        # A session of our own: when the node's Ray dies, its watcher kills the entrypoint's process
        # group; we outlive it to end the worker's tree and keep its work (see the loop in run).
        os.setsid()
    except OSError:
        pass
    try:
        return run(job, dict(os.environ), entered)
    except RemoteError as error:
        say(str(error))
        sys.stdout.write(protocol.update_line({"kind": "result", "run": job.get("run"), "stream": job.get("stream"),
                                               "attempt": job.get("attempt"), "token": job.get("token"),
                                               "error": str(error), "exit_code": 3}) + "\n")
        return 3


if __name__ == "__main__":
    sys.exit(main())
