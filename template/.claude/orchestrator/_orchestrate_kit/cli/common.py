"""What several commands share: the program name, unknown-stream messages, the known streams."""

from __future__ import annotations

from typing import Iterable, List

from ..graph import close_matches
from ..lifecycle import load_table
from ..names import printable
from ..settings import Layout, UserError
from ..status import open_database, take_snapshot

PROG = "orchestrate"


def unknown_stream_message(names: Iterable[str], known: Iterable[str]) -> str:
    known = list(known)
    parts = []
    for name in names:
        close = close_matches(name, known)
        parts.append(printable(name) + (f" (did you mean {', '.join(printable(c) for c in close)}?)" if close else ""))
    listed = ", ".join(printable(s) for s in known[:20]) + (", ..." if len(known) > 20 else "")
    return "unknown stream(s): " + "; ".join(parts) + (f". Known: {listed}" if known else "")


def known_streams(layout: Layout) -> List[str]:
    """Every stream id the tracker or the saved run knows (for 'did you mean')."""
    known = set(load_table(layout.run_file)[0].rows)
    try:
        known |= set(take_snapshot(open_database(layout, None)).streams)
    except UserError:
        pass
    return sorted(known)
