#!/usr/bin/env python3
"""A message to a Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat) when the run needs you or finishes.

The webhook URL is a secret: give it in the orchestrator's environment, NOTIFY_SLACK_URL=https://hooks.slack.com/...
(or `orchestrate-kit config notify_slack_url URL`, which is committed with the project). Then:
    orchestrate-kit config on_event "python3 .claude/orchestrator/hooks/slack.py"
`--all` tells every event; `--test` posts a test message now. See ORCHESTRATION_GUIDE.md.
"""

import sys
from pathlib import Path

ORCHESTRATOR = Path(__file__).resolve().parents[1]  # .claude/orchestrator/, the runtime this hook came with
sys.path.insert(0, str(ORCHESTRATOR))

from _orchestrate_kit.alerts import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("slack", ORCHESTRATOR, sys.argv[1:]))
