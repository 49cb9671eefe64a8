"""Placeholder: one snapshot as lines for check-streams (built in issue 4)."""
