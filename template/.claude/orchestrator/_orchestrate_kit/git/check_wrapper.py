"""The merge check's wrapper: runs the user's check command, then writes how it ended to a status file.

    python -I -S check_wrapper.py STATUS NONCE COMMAND...

The local executor starts this (in the check's own session, with its token) instead of the
user's shell; the shell runs as its child. When COMMAND ends, one JSON object is written to
STATUS through a temporary file and a rename: {"nonce": NONCE, "exit_code": N} or {"nonce":
NONCE, "signal": N}, with "ended_at" (unix seconds). A restarted orchestrator that adopted the
check cannot wait for an exit code (the check is not its child), so it reads the verdict here
(git/check_record.py); NONCE says which check wrote it. The wrapper then ends as COMMAND did:
the same code, or the same signal. A check KILLed as a whole (timeout, shutdown) writes nothing:
its verdict is unknown. It runs by path under -I -S, so it imports nothing of the runtime;
standard library only, Python 3.9+.
"""

import json
import os
import signal
import subprocess
import sys
import time


def write_status(path: str, nonce: str, returncode: int) -> None:
    """How the command ended, replaced whole (a reader sees no status or all of it)."""
    how = {"signal": -returncode} if returncode < 0 else {"exit_code": returncode}
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(dict(how, nonce=nonce, ended_at=time.time()), handle)
        os.replace(tmp, path)
    except OSError as error:
        sys.stderr.write(f"orchestrate: cannot record the merge check's status in {path}: {error}\n")
        try:
            os.unlink(tmp)
        except OSError:
            pass


def main(argv: list) -> int:
    if len(argv) < 3:
        sys.stderr.write("usage: check_wrapper.py STATUS NONCE COMMAND...\n")
        return 2
    status, nonce, command = argv[0], argv[1], argv[2:]
    try:
        code = subprocess.call(command, stdin=subprocess.DEVNULL)
    except OSError as error:
        sys.stderr.write(f"orchestrate: cannot run the merge check with {command[0]!r}: {error}\n")
        code = 127
    write_status(status, nonce, code)
    if code < 0:  # end by the same signal, so whoever waits for us sees what the check saw
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
