"""The orchestrator's settings in a project, and the file that holds the user's own.

Two files of ``key = value`` lines (``#`` comments and blank lines allowed), both read by the
runtime, the second after the first so that its keys win:

- ``orchestrator.conf`` is rendered from the install answers. It belongs to the template:
  upgrades rewrite and merge it, so a hand edit there can conflict with a new version.
- ``orchestrator.local.conf`` is the user's own. It is not in the template, so copier never
  writes, merges or conflicts over it. ``install`` creates it with only a comment,
  ``orchestrate-kit config KEY VALUE`` writes it, and it is committed with the project
  like any other file (a team shares its settings; nothing in it is secret).
"""

from __future__ import annotations

import math
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError
from .project import ORCHESTRATOR_DIR

CONF = f"{ORCHESTRATOR_DIR}/orchestrator.conf"
LOCAL_CONF = f"{ORCHESTRATOR_DIR}/orchestrator.local.conf"
LOCAL_HEADER = """\
# Your own orchestrator settings: `key = value`, one per line. Each one here wins over
# orchestrator.conf (your install answers, which upgrades rewrite). Set them with
# `orchestrate-kit config KEY VALUE`, or edit this file; upgrades never write it.
"""

# How each setting's value is checked; install questions not named here are text (or choices).
RULES = {
    "worker_command": "command",
    "max_parallel": "count",
    "max_restarts": "count",
    "poll_interval": "interval",
    "refresh_interval": "interval",
    "restart_delay": "seconds",
    "stop_grace": "seconds",
    "finish_grace": "seconds",
    "log_max_bytes": "count",
    "log_keep": "count",
    "agent_events": "boolean",
    "stall_timeout": "seconds",
    "spawn_gap": "seconds",
    "max_cost_usd": "seconds",
    "on_event": "optional",  # a command, or empty for none
    "isolation": "choice",
    "merge_check": "optional",  # a command, or empty for none
    "conflicts": "choice",
}
# Settings the runtime reads that are not install questions (their defaults are the runtime's).
RUNTIME_ONLY = {
    "restart_delay": ("5", "seconds before the first restart of a failed worker; doubles each time"),
    "stop_grace": ("10", "seconds between TERM and KILL when stopping a worker"),
    "finish_grace": ("30", "seconds a worker may run on after its stream is complete"),
    "log_max_bytes": ("10485760", "a stream's log is rotated before an attempt once it is this many bytes"),
    "log_keep": ("3", "rotated logs kept per stream (<stream>.log.1 ...)"),
    "spawn_gap": ("2", "seconds between two worker starts, so a wave of ready streams is staggered"),
}
_RULE_WORDS = {
    "boolean": "true or false",
    "count": "0 or a positive whole number",
    "interval": "a number of seconds above 0, e.g. 1 or 0.5",
    "seconds": "a number of seconds, 0 or more",
}
# Gates before merge and the run's branches on a remote: merge_gate is an install answer; push,
# push_remote and merge_check_timeout are the runtime's own (their choices are listed here).
RULES.update(merge_gate="choice", push="choice", push_remote="text", merge_check_timeout="minutes")
RUNTIME_ONLY.update({
    "push": ("none", "push the run's branches to push_remote, never forced: none, integration (after each "
                     "merge) or all (each stream branch too)"),
    "push_remote": ("origin", "the git remote that push and merge_gate = pr use"),
    "merge_check_timeout": ("30", "minutes a merge check may run before it is ended with everything it "
                                  "started (0 = never)"),
})
RUNTIME_CHOICES: dict[str, tuple[str, ...]] = {"push": ("none", "integration", "all")}
_RULE_WORDS["minutes"] = "a number of minutes, 0 or more, e.g. 30 or 0.5"
# The run report's settings (issue 21): the Claude Code fallback model (an install question), spend
# caps across runs, and where the ready-made notification hooks (.claude/orchestrator/hooks/) send.
RULES.update({"fallback_model": "optional", "spend_cap_usd": "usd", "spend_cap_period": "choice",
              "notify_slack_url": "optional", "notify_ntfy_url": "optional"})
RUNTIME_ONLY.update({
    "spend_cap_usd": ("0", "the most all runs of this project may spend in USD in the last spend_cap_period "
                           "(0 = no cap); at the cap no new worker starts"),
    "spend_cap_period": ("day", "day or week: the rolling window spend_cap_usd counts over"),
    "notify_slack_url": ("", "the Slack-compatible incoming webhook hooks/slack.py posts to (a secret: prefer "
                             "NOTIFY_SLACK_URL in the environment)"),
    "notify_ntfy_url": ("", "the ntfy topic URL hooks/ntfy.py publishes to, e.g. https://ntfy.sh/your-topic"),
})
RUNTIME_CHOICES["spend_cap_period"] = ("day", "week")
_RULE_WORDS["usd"] = "an amount in USD, 0 or more, e.g. 25"


@dataclass(frozen=True)
class Setting:
    """One setting a project's conf files may hold."""

    key: str
    default: str
    help: str
    choices: tuple[str, ...] = ()


def known(template_root: Path, questions: Mapping[str, Mapping[str, Any]]) -> dict[str, Setting]:
    """Every setting: the install questions that orchestrator.conf holds, and the runtime's own.

    (Questions that only shape another answer, such as worker_permissions, are not settings.)
    """
    conf = (template_root / "template" / (CONF + ".jinja")).read_text(encoding="utf-8")
    in_conf = set(re.findall(r"(?m)^([a-z_]+) = \{\{", conf))
    found = {}
    for key, question in questions.items():
        if key not in in_conf:
            continue
        choices = question.get("choices") or ()
        values = tuple(str(v) for v in (choices.values() if isinstance(choices, dict) else choices))
        found[key] = Setting(key, str(question.get("default", "")), str(question.get("help", "")), values)
    for key, (default, text) in RUNTIME_ONLY.items():
        found[key] = Setting(key, default, text, RUNTIME_CHOICES.get(key, ()))
    return found


def check_value(setting: Setting, value: str) -> str:
    """The value as it will be written (stripped), or a UserError that says what fits."""
    value = value.strip()
    rule = RULES.get(setting.key, "choice" if setting.choices else "text")
    if "\n" in value or (not value and rule != "optional"):
        raise UserError(f"{setting.key} needs a value on one line.", hint=f"e.g. {setting.key} {setting.default}")
    if rule == "command":
        try:
            ok = bool(shlex.split(value))
        except ValueError:
            ok = False
        if not ok:
            raise UserError(f"worker_command {value!r} is not a command line (check its quotes).")
    elif rule == "choice" and value not in setting.choices:
        raise UserError(f"{setting.key} must be one of {', '.join(setting.choices)}, not {value!r}.")
    elif rule in _RULE_WORDS and not _fits(rule, value):
        raise UserError(f"{setting.key} must be {_RULE_WORDS[rule]}, not {value!r}.")
    return value


def _fits(rule: str, value: str) -> bool:
    if rule == "count":
        return value.isascii() and value.isdigit()
    if rule == "boolean":
        return value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0")
    try:
        number = float(value)
    except ValueError:
        return False
    return math.isfinite(number) and (number > 0 if rule == "interval" else number >= 0)


def read_conf(path: Path) -> list[tuple[int, str, str]]:
    """``(line number, key, value)`` for each ``key = value`` line of a conf file (none if missing)."""
    if not path.is_file():
        return []
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        key, sep, value = line.strip().partition("=")
        if sep and not line.lstrip().startswith("#"):
            found.append((number, key.strip(), value.strip()))
    return found


def effective(project: Path, settings: Mapping[str, Setting]) -> dict[str, tuple[str, str]]:
    """Each setting's value and where it comes from, as the runtime will see it."""
    values = {key: (s.default, "default") for key, s in settings.items()}
    for rel in (CONF, LOCAL_CONF):
        for _, key, value in read_conf(project / rel):
            values[key] = (value, Path(rel).name)
    return values


def ensure_local(project: Path) -> bool:
    """Create orchestrator.local.conf with its comment if it is missing; True if created."""
    path = project / LOCAL_CONF
    if path.exists():
        return False
    _write(path, LOCAL_HEADER)
    return True


def set_value(project: Path, key: str, value: str | None) -> None:
    """Write ``key = value`` into orchestrator.local.conf (replacing its line), or remove it (None)."""
    path = project / LOCAL_CONF
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True) if path.is_file() else [LOCAL_HEADER]
    kept = [
        line for line in lines
        if line.lstrip().startswith("#") or line.partition("=")[0].strip() != key or "=" not in line
    ]
    if value is not None:
        if kept and not kept[-1].endswith("\n"):
            kept[-1] += "\n"
        kept.append(f"{key} = {value}\n")
    _write(path, "".join(kept))


def _write(path: Path, text: str) -> None:
    """Write through a temporary file, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
