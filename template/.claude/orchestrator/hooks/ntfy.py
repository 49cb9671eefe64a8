#!/usr/bin/env python3
"""A push notification through ntfy (ntfy.sh or your own server) when the run needs you or finishes.

The topic URL, e.g. https://ntfy.sh/a-topic-nobody-guesses, comes from NOTIFY_NTFY_URL in the orchestrator's
environment or `orchestrate-kit config notify_ntfy_url URL`; a protected topic's token from NOTIFY_NTFY_TOKEN. Then:
    orchestrate-kit config on_event "python3 .claude/orchestrator/hooks/ntfy.py"
`--all` tells every event; `--test` publishes a test message now. See ORCHESTRATION_GUIDE.md.
"""

import sys
from pathlib import Path

ORCHESTRATOR = Path(__file__).resolve().parents[1]  # .claude/orchestrator/, the runtime this hook came with
sys.path.insert(0, str(ORCHESTRATOR))

from _orchestrate_kit.alerts import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("ntfy", ORCHESTRATOR, sys.argv[1:]))
