"""`status`: every stream's state, as a table or as JSON."""

from __future__ import annotations

import argparse
import json

from ..settings import EXIT_OK, Layout
from ..status import collect_status, one_read, render_status


def cmd_status(args: argparse.Namespace, layout: Layout) -> int:
    with one_read():
        return _status(args, layout)


def _status(args: argparse.Namespace, layout: Layout) -> int:
    report = collect_status(layout, args.db, args.tracker)
    if args.json:
        from ..git import merging  # worktrees and branches: only the JSON names them

        report.places = merging.stream_places(layout.root, report.table.run, report.board.views)
        print(json.dumps(report.to_json(), indent=2))
        return EXIT_OK
    print(render_status(report))
    return EXIT_OK
