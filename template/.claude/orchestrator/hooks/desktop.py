#!/usr/bin/env python3
"""A desktop notification when the run needs you or finishes: notify-send on Linux, osascript on macOS.

Use it as the orchestrator's on_event hook (from the project's root folder):
    orchestrate-kit config on_event "python3 .claude/orchestrator/hooks/desktop.py"
`--all` tells every event; `--test` shows a notification now. See ORCHESTRATION_GUIDE.md.
"""

import sys
from pathlib import Path

ORCHESTRATOR = Path(__file__).resolve().parents[1]  # .claude/orchestrator/, the runtime this hook came with
sys.path.insert(0, str(ORCHESTRATOR))

from _orchestrate_kit.alerts import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("desktop", ORCHESTRATOR, sys.argv[1:]))
