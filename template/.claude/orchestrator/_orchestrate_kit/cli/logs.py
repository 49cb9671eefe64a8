"""`logs STREAM [-f]`: a stream's log (or the orchestrator's), read from its end."""

from __future__ import annotations

import argparse
import os
import sys
import time

from ..logfiles import tail_lines
from ..names import printable
from ..settings import EXIT_OK, EXIT_STUCK, Layout, NotAFolder, UserError, blocking_part
from .common import PROG, known_streams, unknown_stream_message

def cmd_logs(args: argparse.Namespace, layout: Layout) -> int:
    path = layout.orchestrator_log if args.stream == "orchestrator" else layout.log_for(args.stream)
    blocked = blocking_part(layout.logs)
    if blocked.exists() and not blocked.is_dir():
        raise NotAFolder(blocked)  # no log can ever be there: say so, never wait for one
    if path.exists() and not path.is_file():
        raise UserError(f"{path} is not a log file (it is a folder or a special file): move it away", EXIT_STUCK)
    if not path.is_file():
        known = known_streams(layout) if args.stream != "orchestrator" else [args.stream]
        if args.stream not in known:
            raise UserError(unknown_stream_message([args.stream], known), EXIT_STUCK)
        if not args.follow:
            raise UserError(f"no log for stream {printable(args.stream)} yet (looked for {path})", EXIT_STUCK)
        print(f"{PROG}: {printable(args.stream)} has not started yet; waiting for its log (Ctrl-C ends)",
              file=sys.stderr, flush=True)
        try:
            while not path.is_file():
                time.sleep(0.2)
        except KeyboardInterrupt:
            return EXIT_OK
    with open(path, "rb") as handle:
        shown = handle.seek(0, os.SEEK_END)  # the tail is what is there now; -f prints the rest from here
        for line in tail_lines(path, args.lines, end=shown):
            print(printable(line), flush=args.follow)
        if not args.follow:
            return EXIT_OK
        buffered = ""
        try:
            while True:
                chunk = handle.read().decode("utf-8", "replace")
                if not chunk:
                    time.sleep(0.2)
                    continue
                buffered += chunk
                *complete, buffered = buffered.split("\n")
                for line in complete:
                    print(printable(line), flush=True)
        except KeyboardInterrupt:
            return EXIT_OK
