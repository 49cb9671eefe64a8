"""What runs on a cluster node for one stream attempt (standard library only, shipped as `py_modules`).

`worker` is a Ray job's entrypoint: it clones the project's git remote into a per-node cache, runs
the worker command in a worktree at the commit it is given, reaps its own process tree, commits and
pushes. `tc_shim` and `mcp_shim` stand in for Task Copilot on the node (the node cannot reach the
orchestrator's SQLite file): reads come from the task snapshot the job carries, updates become
structured lines in the job's log (`protocol`), which the orchestrator applies to the real database
(`trackers/apply.py`). `refs` names the per-attempt refs and tells which attempt is live.
"""
