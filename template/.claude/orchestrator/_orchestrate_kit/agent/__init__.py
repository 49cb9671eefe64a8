"""Agent workers: Claude Code's output, arguments, preflight."""
