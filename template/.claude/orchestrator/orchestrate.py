#!/usr/bin/env python3
"""orchestrate: run Task Copilot streams in parallel, each as soon as its dependencies are complete.

    python3 .claude/orchestrator/orchestrate.py start [STREAM ...] [--detach] [--dry-run] [--retry-failed]
    python3 .claude/orchestrator/orchestrate.py status [--json]
    python3 .claude/orchestrator/orchestrate.py stop [STREAM] [--grace S]
    python3 .claude/orchestrator/orchestrate.py logs STREAM|orchestrator [-f] [-n N]
    python3 .claude/orchestrator/orchestrate.py plan [--json]
    python3 .claude/orchestrator/orchestrate.py land

The entry point only. Everything else lives in the private package `_orchestrate_kit/`
beside this file: not yours to edit, upgrades replace it. Standard library only, Python 3.9+.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _orchestrate_kit.cli import main  # noqa: E402  (the runtime folder is put on sys.path first)

if __name__ == "__main__":
    sys.exit(main())
