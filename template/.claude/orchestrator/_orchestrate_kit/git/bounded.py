"""One git or gh command run with a deadline and bounded output: what the remote, gate and pull request steps share.

A command that talks to a remote can wait for ever: a credential prompt, an ssh host key
question, a server that accepts the connection and then says nothing. So every command
here runs in a session of its own (no controlling terminal: ssh cannot ask for a password,
git cannot prompt), with prompts switched off in its environment, and is ended with its
whole process group at its deadline. Its output goes to temporary files, not pipes, so a
helper that outlives it (an ssh ControlPersist master keeps the pipe open) cannot block the
read, and only the first `limit` bytes are kept. Standard library only, Python 3.9+.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

from ..executor.processes import group_members

OUTPUT_LIMIT = 1024 * 1024  # bytes of stdout (and of stderr) kept from one command
END_GROUP_SECONDS = 5.0  # how long end_group waits for a killed group to be gone
LOCAL_TIMEOUT = 60.0  # seconds a git command that touches no network may take
# What git must not take from the caller's environment: it would point it at another repository.
GIT_CONTEXT = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_PREFIX", "GIT_OBJECT_DIRECTORY")
NO_PROMPTS = {
    "GIT_TERMINAL_PROMPT": "0",  # git's own username/password prompt
    "GIT_ASKPASS": "",  # an empty value switches off core.askPass and SSH_ASKPASS programs too
    "SSH_ASKPASS_REQUIRE": "never",  # OpenSSH 8.4+: never a graphical password dialog
    "GCM_INTERACTIVE": "never",  # Git Credential Manager: stored credentials only, no sign-in window
    "GH_PROMPT_DISABLED": "1",  # gh: never ask
    "GIT_EDITOR": ":",
    "GIT_MERGE_AUTOEDIT": "no",
}


@dataclass(frozen=True)
class Ran:
    """How one command ended: its exit code (None when it could not start or was ended at its deadline)."""

    code: Optional[int]
    stdout: str
    stderr: str
    timed_out: bool = False
    stdout_size: int = 0  # bytes the command wrote to stdout (more than `stdout` holds when it was cut)

    @property
    def ok(self) -> bool:
        return self.code == 0

    def reason(self) -> str:
        """The line of the command's output that says what went wrong."""
        if self.timed_out:
            return self.stderr
        lines = [ln.strip() for ln in (self.stderr + "\n" + self.stdout).splitlines() if ln.strip()]
        for line in lines:
            if line.lower().startswith(("fatal:", "error:")):
                return line
        return lines[0] if lines else f"exit status {self.code}"


def quiet_environment(extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The caller's environment without git's repository context and with every prompt switched off."""
    env = {k: v for k, v in os.environ.items() if k not in GIT_CONTEXT}
    env.update(NO_PROMPTS)
    env.update(extra or {})
    return env


def run(argv: Sequence[str], cwd: Path, timeout: float, env: Optional[Mapping[str, str]] = None,
        limit: int = OUTPUT_LIMIT, stdin: str = "") -> Ran:
    """Run `argv` in `cwd` (no shell), ended with its process group after `timeout` seconds; `stdin`
    is its input (none when empty)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as given:
        given.write(stdin.encode("utf-8"))
        given.seek(0)
        try:
            process = subprocess.Popen(list(argv), cwd=str(cwd), env=dict(env) if env is not None else quiet_environment(),
                                       stdin=given if stdin else subprocess.DEVNULL, stdout=out, stderr=err,
                                       start_new_session=True)
        except OSError as error:
            where = "" if Path(cwd).is_dir() else f" (folder {cwd} is missing)"
            return Ran(None, "", f"cannot run {argv[0]}: {error.strerror}{where}")
        try:
            code: Optional[int] = process.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            end_group(process)
            code, timed_out = None, True
        size = out.seek(0, os.SEEK_END)
        stdout, stderr = read_head(out, limit), read_head(err, limit)
    if timed_out:
        stderr = f"{Path(argv[0]).name} {_subcommand(argv)} did not finish within {timeout:g} s and was ended"
    return Ran(code, stdout, stderr, timed_out, size)


def git(cwd: Path, *args: str, timeout: float = LOCAL_TIMEOUT, limit: int = OUTPUT_LIMIT, stdin: str = "") -> Ran:
    """`git ARGS` in `cwd`, bounded like `run`."""
    return run(["git", *args], Path(cwd), timeout, limit=limit, stdin=stdin)


def rev(cwd: Path, ref: str) -> str:
    """The commit `ref` names, or '' when it names none."""
    done = git(cwd, "rev-parse", "--verify", "-q", ref + "^{commit}")
    return done.stdout.strip() if done.ok else ""


def end_group(process: subprocess.Popen) -> None:
    """KILL a command's whole process group (it was started in a session of its own), reap it, and
    return once nothing of the group is alive (a KILL is delivered asynchronously)."""
    give_up = time.monotonic() + END_GROUP_SECONDS
    while True:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if process.poll() is not None and not group_members(process.pid) or time.monotonic() > give_up:
            break
        time.sleep(0.01)
    process.wait()


def read_head(handle, limit: int) -> str:
    handle.seek(0)
    return handle.read(limit).decode("utf-8", "replace")


def _subcommand(argv: Sequence[str]) -> str:
    """The command's name past options such as `-c name=value` (for messages)."""
    i = 1
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in ("-c", "-C") else 1
    return argv[i] if i < len(argv) else ""
