"""Git: stream worktrees, the integration branch, merges, land."""
