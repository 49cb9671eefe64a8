"""`report [RUN] [--json] [--out FILE]`: a run's report from its journal, as one HTML page or as JSON.

Without `--out` the page goes to `.claude/orchestrator/reports/<run id>.html` (and its path is
printed), the JSON to standard output; `--out -` prints either. RUN is a run id (or a unique
start of one, as `history` lists them); the latest run by default.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..names import printable
from ..report import load_report, render_html, render_json, resolve_run, write_report
from ..settings import EXIT_OK, EXIT_STUCK, Layout, UserError
from .common import PROG


def cmd_report(args: argparse.Namespace, layout: Layout) -> int:
    run_id = resolve_run(layout, args.run)

    def warn(message: str) -> None:
        print(f"{PROG}: warning: {printable(message)}", file=sys.stderr)

    if args.out == "-":
        report = load_report(layout, run_id, warn)
        sys.stdout.write(render_json(report) if args.json else render_html(report))
        return EXIT_OK
    if args.json and args.out is None:
        sys.stdout.write(render_json(load_report(layout, run_id, warn)))
        return EXIT_OK
    out = Path(args.out) if args.out else None
    try:
        path = write_report(layout, run_id, out=out, as_json=args.json, warn=warn)
    except OSError as exc:
        where = out or layout.reports
        raise UserError(f"cannot write the report to {where}: {exc.strerror or exc}", EXIT_STUCK) from None
    relative = os.path.relpath(path)
    print(f"report of run {run_id}: {relative if not relative.startswith('..') else path}")
    return EXIT_OK
