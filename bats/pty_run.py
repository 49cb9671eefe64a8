"""Run a command on a pseudo-terminal (or a pipe) and act on it step by step, as a person would.

    pty_run.py [--cols N] [--rows N] [--pipe] [--timeout S] STEP... -- COMMAND [ARG...]

Steps, in order:
    --wait TEXT      until the output since the last --wait holds TEXT
    --frames N       until N more frames are drawn (each ends with clear-to-end-of-screen)
    --run SHELL      run a shell command (e.g. create the database) and wait for it
    --keys TEXT      type TEXT (Python escapes: '\\x03' is Ctrl-C, which the terminal turns into SIGINT)
    --signal NAME    send signal NAME (TERM, INT, ...) to the command's process alone
After the steps it reads until the command exits. Everything the command wrote
goes to stdout as it was (escape codes included); the exit status is the
command's (128 + N when signal N killed it); 124 after --timeout seconds (the
command is killed and a line says which step was waiting). --pipe gives the
command a pipe instead of a terminal, to see what it does when not on one.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time

FRAME_END = b"\x1b[J"  # watch-status ends every frame by clearing the rest of the screen


class Session:
    def __init__(self, argv, cols: int, rows: int, pipe: bool, deadline: float):
        self.deadline = deadline
        self.output = b""
        self.mark = 0
        env = {**os.environ, "TERM": os.environ.get("TERM") or "xterm"}
        if pipe:
            read_fd, write_fd = os.pipe()
            self.master = read_fd
            slave = write_fd
        else:
            self.master, slave = pty.openpty()
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc = subprocess.Popen(argv, stdin=slave if not pipe else subprocess.DEVNULL, stdout=slave,
                                     stderr=slave, env=env, start_new_session=True,
                                     preexec_fn=None if pipe else _take_terminal)
        os.close(slave)

    def pump(self, timeout: float) -> int:
        """Read what comes within `timeout`: bytes read, 0 for none, -1 at the end of output."""
        ready, _, _ = select.select([self.master], [], [], max(timeout, 0))
        if not ready:
            return 0
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the terminal's last writer is gone
            chunk = b""
        self.output += chunk
        return len(chunk) or -1

    def until(self, done, what: str) -> None:
        while not done():
            if time.monotonic() > self.deadline:
                self.fail(f"timed out waiting for {what}")
            if self.pump(0.05) < 0 and not done():
                self.fail(f"the command ended while waiting for {what}")

    def fail(self, message: str) -> None:
        sys.stdout.buffer.write(self.output)
        sys.stdout.flush()
        print(f"\npty_run.py: {message}", file=sys.stderr)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        sys.exit(124)

    def finish(self) -> int:
        while self.proc.poll() is None:
            if time.monotonic() > self.deadline:
                self.fail("timed out waiting for the command to exit")
            self.pump(0.05)
        while self.pump(0.2) > 0:  # what it wrote last; a leftover child must not hold us
            pass
        sys.stdout.buffer.write(self.output)
        code = self.proc.returncode
        return 128 - code if code < 0 else code


def _take_terminal() -> None:
    """In the child: make the pty on stdin its controlling terminal (as a terminal emulator does)."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cols", type=int, default=100)
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--pipe", action="store_true")
    parser.add_argument("--timeout", type=float, default=30)
    for step in ("wait", "frames", "run", "keys", "signal"):
        parser.add_argument(f"--{step}", dest="steps", action="append", type=lambda v, s=step: (s, v))
    parser.add_argument("command", nargs="+")
    args = parser.parse_args()
    session = Session(args.command, args.cols, args.rows, args.pipe, time.monotonic() + args.timeout)
    for step, value in args.steps or []:
        if step == "wait":
            session.until(lambda: value.encode() in session.output[session.mark:], repr(value))
            session.mark = session.output.index(value.encode(), session.mark) + len(value.encode())
        elif step == "frames":
            goal = session.output.count(FRAME_END) + int(value)
            session.until(lambda: session.output.count(FRAME_END) >= goal, f"{value} more frame(s)")
            session.mark = len(session.output)
        elif step == "run":
            subprocess.run(value, shell=True, check=True, stdout=subprocess.DEVNULL)
        elif step == "keys":
            os.write(session.master, value.encode().decode("unicode_escape").encode())
        elif step == "signal":
            session.proc.send_signal(getattr(signal, f"SIG{value}"))
    return session.finish()


if __name__ == "__main__":
    sys.exit(main())
