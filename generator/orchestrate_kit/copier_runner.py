"""The one module that talks to copier.

A run's options are gathered in one frozen ``RunOptions``; ``copy`` and ``update`` hand them to
copier's Python API and turn copier's exceptions into ``UserError`` with a sentence a user can
act on. This module also reads ``copier.yml`` (the questions and their types) and checks
``--data`` answers and a project's answers file against it before copier writes anything.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import copier
import yaml
from copier.errors import CopierError, CopierWarning, InteractiveSessionError

from . import output, settings
from .errors import UserError

# The conflict style copier leaves in files: inline git markers. "rej" drops nearby edits
# into .rej files (measured), so never use it.
CONFLICT_STYLE: Final = "inline"
_CASTS: dict[str, type] = {"int": int, "float": float, "str": str}
_TYPE_WORDS = {"int": "a whole number", "float": "a number", "str": "text", "bool": "true or false"}


@dataclass(frozen=True)
class RunOptions:
    """Everything one copier run needs."""

    project: Path
    src: str  # the template repository, as the answers file should record it
    ref: str  # the template tag to render
    answers_file: str
    data: Mapping[str, Any] = field(default_factory=dict)
    defaults: bool = True  # False: ask the questions on the terminal
    exclude: tuple[str, ...] = ()  # project paths not to write (the user's own files)
    quiet: bool = True


def copy(options: RunOptions) -> None:
    """Render the template into the project for the first time."""
    with _translated_errors():
        copier.run_copy(
            options.src,
            options.project,
            overwrite=False,
            cleanup_on_error=False,  # the install command removes what it created itself
            **_shared_arguments(options),
        )


def update(options: RunOptions) -> None:
    """copier's three-way update of the project to ``options.ref``."""
    with _translated_errors():
        copier.run_update(
            options.project,
            overwrite=True,  # copier's API refuses to update without it
            conflict=CONFLICT_STYLE,
            **_shared_arguments(options),
        )


def _shared_arguments(options: RunOptions) -> dict[str, Any]:
    return {
        "data": dict(options.data),
        "answers_file": options.answers_file,
        "vcs_ref": options.ref,
        "defaults": options.defaults,
        "exclude": options.exclude,
        "quiet": options.quiet,
        "unsafe": False,  # never run template code: the template has no tasks or migrations
    }


@contextmanager
def _translated_errors() -> Iterator[None]:
    """Turn copier's exceptions into UserError; pass copier's warnings to the output module."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except KeyboardInterrupt:
            raise  # copier's answer interrupt is one too; main() turns it into exit 130
        except InteractiveSessionError:
            raise UserError(
                "The install questions need a terminal, and this is not one.",
                hint="pass --defaults, plus --data KEY=VALUE for any answer you want to change",
            ) from None
        except ValueError as error:
            raise _from_value_error(error) from None
        except CopierError as error:
            raise UserError(f"copier stopped: {error}") from None
        finally:
            for warning in caught:
                if issubclass(warning.category, CopierWarning):
                    output.warn(str(warning.message))


def _from_value_error(error: ValueError) -> Exception:
    """The UserError for copier's ValueErrors we know; anything else stays a bug."""
    text = str(error)
    if text.startswith("Unknown revision:"):
        version = text.split(":", 1)[1].strip().strip("'")
        return UserError(
            f"The template history has no version {version}, which this project was installed with.",
            hint=f"run `orchestrate-kit upgrade` once with orchestrate-kit {version.lstrip('v')}, "
            "whose package carries it, or reinstall the orchestrator",
        )
    if text.startswith("Validation error for question"):
        return UserError(text.replace("Validation error for question", "Bad answer for", 1) + ".")
    return error


def questions(template_root: Path) -> dict[str, dict[str, Any]]:
    """The template's questions (copier.yml keys without a leading underscore)."""
    config = _load_config(template_root)
    return {k: (v if isinstance(v, dict) else {"default": v}) for k, v in config.items() if not k.startswith("_")}


def answers_file_name(template_root: Path) -> str:
    """Where the template keeps its answers in a project (``_answers_file``)."""
    return str(_load_config(template_root).get("_answers_file", ".copier-answers.yml"))


def _load_config(template_root: Path) -> dict[str, Any]:
    data = yaml.safe_load((template_root / "copier.yml").read_text())
    return data if isinstance(data, dict) else {}


def check_data(data: Mapping[str, str], template_root: Path) -> dict[str, Any]:
    """Check ``--data`` answers against the questions and give them their types."""
    known = questions(template_root)
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise UserError(
            f"Unknown --data key{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}.",
            hint=f"the questions are: {', '.join(sorted(known))}",
        )
    # Settings get the same check as `orchestrate-kit config` (one message for a typo or a bad number).
    rules = settings.known(template_root, known)
    return {key: settings.check_value(template_root, rules[key], value) if key in rules and isinstance(value, str)
            else _cast(key, value, known[key]) for key, value in data.items()}


def _cast(key: str, value: Any, question: Mapping[str, Any]) -> Any:
    kind = str(question.get("type", "str"))
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if str(value).lower() in {"true", "yes", "1"}:
            return True
        if str(value).lower() in {"false", "no", "0"}:
            return False
    elif kind in _CASTS and not (kind != "str" and isinstance(value, bool)):
        try:
            return _CASTS[kind](value)
        except (TypeError, ValueError):
            pass
    else:
        return value
    raise UserError(f"{key} must be {_TYPE_WORDS.get(kind, kind)}, not {value!r}.")


def read_answers(project: Path, answers_file: str, template_root: Path) -> dict[str, Any]:
    """Read a project's answers file, refusing one that copier could not use."""
    path = project / answers_file
    how_to_fix = f"restore it with `git checkout -- {answers_file}`, or fix it by hand"
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UserError(f"{answers_file} is not valid YAML{where}.", hint=how_to_fix) from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"Cannot read {answers_file}: {error}.", hint=how_to_fix) from None
    if not isinstance(data, dict):
        raise UserError(f"{answers_file} should hold `key: value` answers, but it does not.", hint=how_to_fix)
    for key in ("_commit", "_src_path"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise UserError(
                f"{answers_file} has no {key}, so the installed version is unknown.", hint=how_to_fix
            )
    known = questions(template_root)
    rules = settings.known(template_root, known)
    for key, value in data.items():
        if key in known:
            try:
                _cast(key, value, known[key])
                if key in rules and value is not None:
                    settings.check_value(template_root, rules[key], str(value))
            except UserError as error:
                raise UserError(f"{answers_file}: {error.message}", hint=how_to_fix) from None
    return data
