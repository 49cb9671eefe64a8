"""The orchestrator's private package: not yours to edit; `orchestrate-kit upgrade` replaces it.

The files beside this folder are the public surface: `orchestrate.py` (the command
line), `task_copilot_client.py` (the documented client), `check_streams_data.py`,
`check-streams` and `watch-status` (the dashboard). Everything in here may change
between versions; its name starts with an underscore so that it never shadows a
module of your own project when `.claude/orchestrator/` is on `sys.path`.
Standard library only, Python 3.9+.
"""
