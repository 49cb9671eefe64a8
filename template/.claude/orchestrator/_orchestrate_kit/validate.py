"""Every setting's value checked one way, and the conf files read one way: for the runtime and the installer.

The runtime (`settings.py`, the command-line flags) and the installer (`orchestrate-kit config`,
`install --data`, the answers it checks) accept and refuse exactly the same values with the same
message, because they run this very file: the installer loads it from the template it carries.
So it imports nothing of the runtime and only the standard library (Python 3.9+).

Numbers are plain decimals, as people write them in a conf file and as `watch-status` (bash)
reads `refresh_interval`: digits, and for seconds, minutes and dollars one decimal point
(`0.5`, `.5`). Python's own `int()`/`float()` would also take `1_0`, `inf`, `nan`, `1e3` and
` +3`, which nobody means in a setting; they are refused, as are `0x10` and `-1`.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

Value = Union[int, float, bool, str]

# The number grammar, matched against the text with the spaces around it stripped. copier.yml's
# validators use these very patterns (`x | trim | regex_search(...)`: Jinja's trim is str.strip and
# its regex_search Python's `re`), so they are written without backslashes, which Jinja's string
# literals would take for escapes. At most 15 digits before the point: always finite.
WHOLE = "^[0-9]{1,15}$"
DECIMAL = "^([0-9]{1,15}([.][0-9]+)?|[.][0-9]+)$"


class InvalidValue(ValueError):
    """A value a setting cannot take; the message names the setting and what fits, e.g.
    "max_parallel must be 0 (unlimited) or a positive whole number, e.g. 4"."""


@dataclass(frozen=True)
class Rule:
    """What one setting takes. `kind`: whole (0 or more), decimal, boolean, choice, name (one word),
    command, optional (a command or nothing); `above_zero` refuses 0 for a decimal; `fits` says what
    fits, in words."""

    kind: str
    fits: str
    above_zero: bool = False
    choices: Tuple[str, ...] = ()


RULES: Dict[str, Rule] = {
    "worker_command": Rule("command", "a command line, e.g. claude --print -p"),
    "max_parallel": Rule("whole", "0 (unlimited) or a positive whole number, e.g. 4"),
    "max_restarts": Rule("whole", "0 or a positive whole number, e.g. 10"),
    "poll_interval": Rule("decimal", "a number of seconds above 0, e.g. 1 or 0.5", above_zero=True),
    "refresh_interval": Rule("decimal", "a number of seconds above 0, e.g. 15", above_zero=True),
    "restart_delay": Rule("decimal", "a number of seconds, 0 or more, e.g. 5"),
    "stop_grace": Rule("decimal", "a number of seconds, 0 or more, e.g. 10"),
    "finish_grace": Rule("decimal", "a number of seconds, 0 or more, e.g. 30"),
    "log_max_bytes": Rule("whole", "a number of bytes, 0 or more, e.g. 10485760"),
    "log_keep": Rule("whole", "0 or a positive whole number, e.g. 3"),
    "tracker": Rule("choice", "one of auto, mcp, tc", choices=("auto", "mcp", "tc")),
    "agent_events": Rule("boolean", "true or false"),
    "stall_timeout": Rule("decimal", "a number of minutes, 0 (never) or more, e.g. 20"),
    "spawn_gap": Rule("decimal", "a number of seconds, 0 or more, e.g. 2"),
    "max_cost_usd": Rule("decimal", "an amount in USD, 0 (no limit) or more, e.g. 25"),
    "on_event": Rule("optional", "a command on one line, or nothing"),
    "isolation": Rule("choice", "one of auto, worktree, none", choices=("auto", "worktree", "none")),
    "merge_check": Rule("optional", "a command on one line, or nothing"),
    "conflicts": Rule("choice", "one of agent, manual", choices=("agent", "manual")),
    # Gates before merge and the run's branches on a remote (issue 20).
    "merge_gate": Rule("choice", "one of auto, review, pr", choices=("auto", "review", "pr")),
    "push": Rule("choice", "one of none, integration, all", choices=("none", "integration", "all")),
    "push_remote": Rule("name", "a git remote's name, e.g. origin"),
    "merge_check_timeout": Rule("decimal", "a number of minutes, 0 or more (0 = never), e.g. 30 or 0.5"),
    "pr_poll_interval": Rule("decimal", "a number of seconds, e.g. 30 (each poll is one gh call per pull request)"),
    # The run report's: the workers' fallback model, spend caps across runs, the notification hooks' URLs.
    "fallback_model": Rule("optional", "model names on one line, e.g. sonnet or haiku,sonnet, or nothing"),
    "spend_cap_usd": Rule("decimal", "an amount in USD, 0 (no cap) or more, e.g. 25"),
    "spend_cap_period": Rule("choice", "one of day, week", choices=("day", "week")),
    "notify_slack_url": Rule("optional", "a webhook URL on one line, or nothing"),
    "notify_ntfy_url": Rule("optional", "an ntfy topic URL on one line, or nothing"),
    # Where workers run (issue 22): here, or as jobs on a Ray cluster (executor/ray/).
    "executor": Rule("choice", "one of local, ray", choices=("local", "ray")),
    "ray_address": Rule("optional", "the Ray head's dashboard URL on one line, e.g. http://head:8265, or nothing"),
    "ray_pending_timeout": Rule("decimal", "a number of minutes, 0 (never) or more, e.g. 10 or 0.5"),
}
CHOICES = {key: rule.choices for key, rule in RULES.items() if rule.kind == "choice"}
BOOLEANS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def number(text: str, whole: bool, above_zero: bool = False) -> Optional[Union[int, float]]:
    """`text` read as a plain decimal (a whole one for `whole`), spaces around it ignored; None when it
    is not one, or is 0 and must be `above_zero`. The one number grammar of every setting and flag."""
    text = text.strip()
    if not re.search(WHOLE if whole else DECIMAL, text):
        return None
    parsed: Union[int, float] = int(text) if whole else float(text)
    return None if above_zero and parsed == 0 else parsed


def check(key: str, text: str) -> Value:
    """The value of setting `key` written as `text` (spaces around it ignored), typed: int, float,
    bool or str. Raises InvalidValue; KeyError for a key that is no setting."""
    rule = RULES[key]
    value = text.strip()
    refused = InvalidValue(f"{key} must be {rule.fits}")
    if "\n" in value or "\r" in value:
        raise refused
    if rule.kind in ("whole", "decimal"):
        parsed = number(value, rule.kind == "whole", rule.above_zero)
        if parsed is None:
            raise refused
        return parsed
    if rule.kind == "boolean":
        if value.lower() not in BOOLEANS:
            raise refused
        return BOOLEANS[value.lower()]
    if rule.kind == "choice":
        if value not in rule.choices:
            raise refused
        return value
    if rule.kind == "name":
        if not value or any(c.isspace() for c in value):
            raise refused
        return value
    if rule.kind == "command" or (rule.kind == "optional" and value):
        try:
            words = shlex.split(value)
        except ValueError:
            words = []
        if not words:
            raise InvalidValue(f"{key} must be {rule.fits} (check its quotes)")
    return value


# ================================================================ the conf files


class ConfError(ValueError):
    """A line of a conf file that is not `key = value`: "PATH:LINE: expected `key = value`, got ..."."""


@dataclass(frozen=True)
class Line:
    """One `key = value` line of a conf file."""

    path: Path
    number: int
    key: str
    value: str

    @property
    def where(self) -> str:
        return f"{self.path}:{self.number}"


def read_conf(path: Path) -> List[Line]:
    """The `key = value` lines of one conf file (none when it is missing); `#` comments and blank
    lines skipped. Raises ConfError for any other line, OSError/UnicodeDecodeError if unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = (part.strip() for part in stripped.partition("="))
        if not sep or not key:
            raise ConfError(f"{path}:{number}: expected `key = value`, got {stripped!r}")
        lines.append(Line(path, number, key, value))
    return lines


def closest(key: str, known: List[str]) -> Optional[str]:
    """The known name `key` most likely misspells, if any is close."""
    import difflib  # only for a name that is not known: `status` and the dashboard need not load it

    found = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_key_warning(line: Line, known: List[str]) -> str:
    """What to tell the user about a key no setting has: read on, but never silently."""
    guess = closest(line.key, known)
    hint = f"; did you mean {guess}?" if guess else f"; the settings are: {', '.join(known)}"
    return f"{line.where}: {line.key} is not a setting, so it changes nothing{hint}"


def unknown_keys(lines: List[Line], known: Optional[List[str]] = None) -> List[str]:
    """A warning for each line whose key is no setting (a newer runtime's, or a typo)."""
    names = list(RULES) if known is None else known
    return [unknown_key_warning(line, names) for line in lines if line.key not in names]
