"""The dashboard's stream lines, drawn here for check-streams: the column titles, a heading per level,
one row per stream and the detail line under it.

At 10,000 streams a bash loop turn per line was most of a frame, so check-streams asks
check_streams_data.py for these lines ready-drawn (`--draw`) and draws the rest itself (header,
totals, notes). Text arrives escaped (inert) and is only fitted here: bash counts characters, and so
does this, with the double-width ones counted twice. Standard library only.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

LABEL_ROOM = 20  # columns a stream's id and name keep before TRY and TIME give way
LABEL_WANT = 40  # columns of the widest id and name the progress bar gives way to
BAR_MAX = 10
RESET, BOLD, DIM = "\033[0m", "\033[1m", "\033[2m"
# state: (word, colour, glyph, the glyph in plain ASCII)
STYLES = {
    "complete": ("DONE", "\033[32m", "✔", "+"),
    "running": ("RUN", "\033[36m", "▶", ">"),
    "starting": ("START", "\033[36m", "▷", ">"),
    "merging": ("MERGE", "\033[36m", "⇢", ">"),
    "ready": ("READY", "\033[34m", "○", "o"),
    "waiting": ("WAIT", "\033[33m", "…", "."),
    "backoff": ("RETRY", "\033[33m", "↻", "~"),
    "stopping": ("STOP", "\033[33m", "■", "="),
    "rate_limited": ("LIMIT", "\033[33m", "⏸", "~"),
    "held": ("HELD", DIM, "‖", "="),
    "failed": ("FAIL", "\033[31m", "✖", "x"),
    "merge_conflict": ("CONFLCT", "\033[31m", "✖", "x"),
    "check_failed": ("CHECK", "\033[31m", "✖", "x"),
    "awaiting_review": ("REVIEW", "\033[35m", "◆", "?"),
    "awaiting_pr": ("PR", "\033[35m", "◆", "?"),
    "pr_closed": ("PRCLOSD", "\033[31m", "✖", "x"),
    "invalid": ("INVALID", "\033[35m", "!", "!"),
}


def fit(text: str, wide: Sequence[int], room: int, ellipsis: str) -> str:
    """`text` cut with an ellipsis to fit `room` columns; `wide`: where its double-width characters are."""
    if len(text) + len(wide) <= room:
        return text
    keep = room - len(ellipsis)
    if keep < 0:
        return ""
    for index in wide:
        if index < keep:
            keep -= 1
    return text[:keep] + ellipsis


class Drawing:
    """The lines of one frame's streams at `width` columns, in plain ASCII or not, coloured or not."""

    def __init__(self, width: int, ascii_only: bool, colour: bool):
        self.width = width
        self.ellipsis, full, empty, self.arrow = ("...", "#", ".", "->") if ascii_only else ("…", "█", "░", "↳")
        self.full, self.empty = full * BAR_MAX, empty * BAR_MAX
        self.reset, self.bold, self.dim = (RESET, BOLD, DIM) if colour else ("", "", "")
        self.heads: Dict[str, str] = {}
        self.tints: Dict[str, str] = {}
        for state, (word, tint, glyph, plain) in STYLES.items():
            tint = tint if colour else ""
            self.heads[state] = f"{tint}{plain if ascii_only else glyph} {word:<7}{self.reset}"
            self.tints[state] = tint
        self.count_width, self.attempts_width, self.meta, self.bar, self.room = 5, 3, True, 0, width
        self.bars: List[str] = []

    def layout(self, count_width: int, attempts_width: int, label_width: int = LABEL_WANT) -> None:
        """Column widths for the rows, as the widest count (finished/total), attempt and label need.

        The names come first: a narrow terminal shrinks and then drops the progress bar to keep the
        widest id and name whole (up to LABEL_WANT columns), and drops TRY and TIME only when even
        without the bar a name would keep fewer than LABEL_ROOM columns."""
        self.count_width, self.attempts_width = max(count_width, 5), max(attempts_width, 3)  # TASKS, TRY
        want = min(max(label_width, 6), LABEL_WANT)  # "STREAM"
        # "  G STATE__ " then [bar "  "] count "  " [try " " time "  "] name
        fixed = 12 + self.count_width + 2 + self.attempts_width + 1 + 6 + 2
        self.meta = self.width >= fixed + min(LABEL_ROOM, want)
        if not self.meta:
            fixed = 12 + self.count_width + 2
        self.bar = min(self.width - fixed - 2 - want, BAR_MAX)
        if self.bar < 4:
            self.bar = 0
        else:
            fixed += self.bar + 2
        self.room = self.width - fixed
        self.bars = [f"{self.full[:filled]}{self.reset}{self.dim}{self.empty[:self.bar - filled]}{self.reset}  "
                     for filled in range(self.bar + 1)]

    def columns_line(self) -> str:
        """The grey line naming the columns."""
        line = f"  {'STATE':<10}"
        if self.bar:
            line += f"{'PROGRESS' if self.bar >= 8 else 'PROG':<{self.bar}}  "  # a whole word, never PROGRES
        line += f"{'TASKS':>{self.count_width}}"
        if self.meta:
            line += f"  {'TRY':>{self.attempts_width}} {'TIME':>6}"
        return self.text(self.dim, "", line + "  STREAM", ())

    def text(self, style: str, indent: str, text: str, wide: Sequence[int]) -> str:
        """A line of text cut to the width."""
        return f"{indent}{style}{fit(text, wide, self.width - len(indent), self.ellipsis)}{self.reset}"

    def heading(self, level: str) -> str:
        return self.text(self.bold, "", "Cannot run (invalid dependencies)" if level == "-" else f"Level {level}", ())

    def row(self, state: str, finished: int, total: int, attempts: str, running: str, label: str,
            wide: Sequence[int]) -> str:
        """One stream's line."""
        bar = f"{self.tints[state]}{self.bars[finished * self.bar // total if total > 0 else 0]}" if self.bar else ""
        name = label if not wide and len(label) <= self.room else fit(label, wide, self.room, self.ellipsis)
        count = f"{finished}/{total}"
        if self.meta:
            return (f"  {self.heads[state]} {bar}{count:>{self.count_width}}  {attempts:>{self.attempts_width}} "
                    f"{running:>6}  {name}")
        return f"  {self.heads[state]} {bar}{count:>{self.count_width}}  {name}"

    def detail(self, text: str, wide: Sequence[int]) -> str:
        """The line under a stream: what it waits on, why it failed, what its agent does."""
        return self.text(self.dim, f"      {self.arrow} ", text, wide)
