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

import dataclasses
import functools
import hashlib
import importlib.util
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
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

# The runtime's own module that checks every setting's value and reads the conf files: the installer
# runs it from the template it carries, so both accept and refuse exactly the same values.
VALIDATE = f"template/{ORCHESTRATOR_DIR}/_orchestrate_kit/validate.py"
# Settings the runtime reads that are not install questions (their defaults are the runtime's).
RUNTIME_ONLY = {
    "restart_delay": ("5", "seconds before the first restart of a failed worker; doubles each time"),
    "stop_grace": ("10", "seconds between TERM and KILL when stopping a worker"),
    "finish_grace": ("30", "seconds a worker may run on after its stream is complete"),
    "log_max_bytes": ("10485760", "a stream's log is rotated before an attempt once it is this many bytes"),
    "log_keep": ("3", "rotated logs kept per stream (<stream>.log.1 ...)"),
    "spawn_gap": ("2", "up to 8 ready streams start at once; the rest of a larger wave one every this many seconds"),
    # The run's branches on a remote, and the merge check's limit (gates, issue 20).
    "push": ("none", "push the run's branches to push_remote, never forced: none, integration (after each "
                     "merge) or all (each stream branch too)"),
    "push_remote": ("origin", "the git remote that push and merge_gate = pr use"),
    "merge_check_timeout": ("30", "minutes a merge check may run before it is ended with everything it "
                                  "started (0 = never)"),
    "pr_poll_interval": ("30", "seconds between asking GitHub about the pull requests of merge_gate = pr"),
    # The run report's (issue 21): spend caps across runs, and where the ready-made notification
    # hooks (.claude/orchestrator/hooks/) send.
    "spend_cap_usd": ("0", "the most all runs of this project may spend in USD in the last spend_cap_period "
                           "(0 = no cap); at the cap no new worker starts"),
    "spend_cap_period": ("day", "day or week: the rolling window spend_cap_usd counts over"),
    "notify_slack_url": ("", "the Slack-compatible incoming webhook hooks/slack.py posts to (a secret: prefer "
                             "NOTIFY_SLACK_URL in the environment)"),
    "notify_ntfy_url": ("", "the ntfy topic URL hooks/ntfy.py publishes to, e.g. https://ntfy.sh/your-topic"),
    # Where workers run (issue 22; docs/RAY.md): local processes, or Ray jobs on a cluster's nodes.
    "executor": ("local", "where workers run: local (processes here) or ray (jobs on the Ray cluster at ray_address)"),
    "ray_address": ("", "the Ray head's dashboard URL, e.g. http://head:8265 (the token comes from RAY_AUTH_TOKEN, "
                        "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token, as for Ray's own tools)"),
    "ray_pending_timeout": ("10", "minutes a Ray job may wait for a node with a free agent_slot before it counts as a "
                                  "failed attempt (0 = never)"),
}


def runtime_validate(template_root: Path) -> ModuleType:
    """``validate.py`` of the runtime in the template at ``template_root``, loaded once per path."""
    return _load_validate(str((template_root / VALIDATE).resolve()))


@functools.lru_cache(maxsize=None)
def _load_validate(path: str) -> ModuleType:
    name = "orchestrate_kit._validate_" + hashlib.sha256(path.encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None or not os.path.isfile(path):
        raise UserError(f"This orchestrate-kit's template has no {VALIDATE} (a broken build or install).",
                        hint="reinstall it: pip install --force-reinstall orchestrate-kit")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


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
    rules = runtime_validate(template_root).RULES
    found = {}
    for key, question in questions.items():
        if key not in in_conf:
            continue
        choices = question.get("choices") or ()
        values = tuple(str(v) for v in (choices.values() if isinstance(choices, dict) else choices))
        # A question not asked at install has no choices of its own: the runtime's rule has them.
        values = values or (tuple(rules[key].choices) if key in rules else ())
        found[key] = Setting(key, str(question.get("default", "")), str(question.get("help", "")), values)
    for key, (default, text) in RUNTIME_ONLY.items():
        found[key] = Setting(key, default, text, tuple(rules[key].choices) if key in rules else ())
    return found


def check_value(template_root: Path, setting: Setting, value: str) -> str:
    """The value as it will be written (stripped), or a UserError that says what fits: the runtime's own
    check (validate.py), so a value the installer writes is one the runtime reads."""
    validate = runtime_validate(template_root)
    value = value.strip()
    try:
        if setting.key in validate.RULES:
            validate.check(setting.key, value)
        elif "\n" in value or not value or (setting.choices and value not in setting.choices):
            raise validate.InvalidValue(f"{setting.key} must be "
                                        + (f"one of {', '.join(setting.choices)}" if setting.choices else
                                           "text on one line"))
    except validate.InvalidValue as error:
        raise UserError(f"{error}, not {value!r}.") from None
    return value


def read_conf(template_root: Path, path: Path) -> list[Any]:
    """The ``key = value`` lines of a conf file (none if missing), read by the runtime's own reader;
    a UserError names a line that is not ``key = value``."""
    validate = runtime_validate(template_root)
    try:
        return list(validate.read_conf(path))
    except validate.ConfError as error:
        raise UserError(str(error) + ".", hint="fix that line, or remove it") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"Cannot read {path}: {error}.") from None


def unknown_keys(template_root: Path, project: Path) -> list[str]:
    """A warning for each key of the project's conf files that no setting has (file, line, did you mean)."""
    validate = runtime_validate(template_root)
    lines = [dataclasses.replace(line, path=Path(rel))  # named as the user sees them, from the project
             for rel in (CONF, LOCAL_CONF) for line in read_conf(template_root, project / rel)]
    return list(validate.unknown_keys(lines))


def effective(template_root: Path, project: Path, settings: Mapping[str, Setting]) -> dict[str, tuple[str, str]]:
    """Each setting's value and where it comes from, as the runtime will see it."""
    values = {key: (s.default, "default") for key, s in settings.items()}
    for rel in (CONF, LOCAL_CONF):
        for line in read_conf(template_root, project / rel):
            if line.key in settings:
                values[line.key] = (line.value, Path(rel).name)
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
