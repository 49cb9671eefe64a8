"""``orchestrate-kit doctor [PROJECT] [--fix]``: check that the orchestrator can run here.

Each check gives ``ok``, ``warn`` (worth knowing, not wrong) or ``FAIL``; any FAIL makes the exit
code 1. ``--fix`` repairs only what is always safe (the root symlink when nothing of the user's
is in its place, and run bits) and then checks again. The database check runs the installed
runtime (``orchestrate.py plan --json``) as a subprocess: the installer never imports it.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import copier_runner, git, output, store
from ..project import (
    ORCHESTRATOR_DIR, STATE_DIRS, Layout, add_run_bit, fix_link, link_problems, scripts_without_run_bit,
)

OK, WARN, FAIL = "ok", "warn", "FAIL"
# The runtime supports these (DESIGN.md): Python 3.9+ and bash 3.2+ (macOS defaults).
MIN_PYTHON = (3, 9)
MIN_BASH = (3, 2)
PLAN_TIMEOUT = 60  # seconds; a plan reads one database snapshot


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    status: str
    label: str
    detail: str = ""


def doctor(*, project: Path, fix: bool) -> int:
    """Check ``project``; with ``fix``, repair the safe problems first. Exit 1 on any FAIL."""
    template = store.packaged_template()
    answers_file = copier_runner.answers_file_name(template.root)
    installed = (project / answers_file).is_file()
    layout = None
    answers: dict[str, Any] = {}
    if installed:
        answers = copier_runner.read_answers(project, answers_file, template.root)
        layout = _layout(template, str(answers["_commit"]))
        if fix:
            for line in _fix(project, layout):
                output.info(line)
    checks = [_python(), _bash(), _git(project)]
    if not installed:
        checks.append(Check(FAIL, "orchestrator installed", f"no {answers_file} in {project}"))
    else:
        assert layout is not None
        checks += [
            _version(str(answers["_commit"]), template.version),
            _files(project, layout),
            _run_bits(project, layout),
            *_links(project, layout),
            _gitignore(project),
            _worker(str(answers.get("worker_command", ""))),
            _database(project),
        ]
    for check in checks:
        _print(check)
    failed = [c for c in checks if c.status == FAIL]
    if not installed:
        output.error(f"The orchestrator is not installed in {project}.", hint=f"orchestrate-kit install {project}")
    elif failed:
        fixable = any(c.label in {"run bits", "symlink ./watch-status"} for c in failed) and not fix
        output.error(
            f"{len(failed)} problem(s) found.",
            hint="orchestrate-kit doctor --fix repairs the symlink and run bits" if fixable else None,
        )
    else:
        output.success("Everything looks right.")
    return 1 if failed else 0


def _print(check: Check) -> None:
    output.check(check.status, check.label, check.detail)


def _layout(template: store.PackagedTemplate, installed: str) -> Layout:
    """The files of the installed version, or of this installer's when the store lacks it."""
    ref = store.sync(template)
    return store.layout(installed if store.has_ref(installed) else ref)


def _fix(project: Path, layout: Layout) -> list[str]:
    done = []
    for rel, problem in link_problems(project, layout).items():
        if fix_link(project, rel, layout.links[rel]):
            done.append(f"fixed: {rel} ({problem}) now links to {layout.links[rel]}")
    for rel in scripts_without_run_bit(project, layout):
        add_run_bit(project, rel)
        done.append(f"fixed: {rel} can be run again")
    return done


def _version_of_program(argv: list[str], pattern: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(pattern, out)
    return tuple(int(part) for part in match.groups()) if match else None


def _python() -> Check:
    found = shutil.which("python3")
    if not found:
        return Check(FAIL, "python3", "not on PATH; the runtime needs Python 3.9 or newer")
    version = _version_of_program([found, "--version"], r"(\d+)\.(\d+)")
    if version is None or version < MIN_PYTHON:
        return Check(FAIL, "python3", f"{found} is too old or unreadable; the runtime needs 3.9 or newer")
    return Check(OK, "python3", f"{'.'.join(map(str, version))} at {found}")


def _bash() -> Check:
    found = shutil.which("bash")
    if not found:
        return Check(FAIL, "bash", "not on PATH; ./watch-status needs bash 3.2 or newer")
    version = _version_of_program([found, "-c", "echo $BASH_VERSION"], r"(\d+)\.(\d+)")
    if version is None or version < MIN_BASH:
        return Check(FAIL, "bash", f"{found} is too old or unreadable; ./watch-status needs 3.2 or newer")
    return Check(OK, "bash", f"{'.'.join(map(str, version))} at {found}")


def _git(project: Path) -> Check:
    found = shutil.which("git")
    if not found:
        return Check(FAIL, "git", "not on PATH; install and upgrade need it")
    if git.toplevel(project) is None:
        return Check(WARN, "git", f"{project} is not a git repository, so upgrades cannot merge your edits")
    return Check(OK, "git", found)


def _version(installed: str, installer: str) -> Check:
    mine = store.version_of(installer)
    theirs = store.version_of(installed)
    if theirs is None or mine is None:
        return Check(WARN, "version", f"installed {installed}, cannot compare with orchestrate-kit {installer}")
    if theirs.public < mine.public:
        return Check(WARN, "version", f"installed {installed}; orchestrate-kit {installer} can upgrade it")
    if theirs.public > mine.public:
        return Check(WARN, "version", f"installed {installed} is newer than orchestrate-kit {installer}")
    return Check(OK, "version", f"installed {installed}, orchestrate-kit {installer}")


def _files(project: Path, layout: Layout) -> Check:
    missing = [rel for rel in layout.files if not (project / rel).exists()]
    if missing:
        return Check(FAIL, "files", "missing " + ", ".join(missing))
    return Check(OK, "files", f"{len(layout.files)} present")


def _run_bits(project: Path, layout: Layout) -> Check:
    stuck = scripts_without_run_bit(project, layout)
    if stuck:
        return Check(FAIL, "run bits", "not executable: " + ", ".join(stuck))
    return Check(OK, "run bits", ", ".join(layout.scripts) or "no scripts")


def _links(project: Path, layout: Layout) -> list[Check]:
    problems = link_problems(project, layout)
    checks = []
    for rel, target in sorted(layout.links.items()):
        label = f"symlink ./{rel}"
        if rel not in problems:
            checks.append(Check(OK, label, f"-> {target}"))
        elif (project / rel).exists() and not (project / rel).is_symlink():
            checks.append(Check(WARN, label, problems[rel]))  # the user's own file: theirs to keep
        else:
            checks.append(Check(FAIL, label, problems[rel]))
    return checks


def _gitignore(project: Path) -> Check:
    path = project / ORCHESTRATOR_DIR / ".gitignore"
    lines = {line.strip().strip("/") for line in path.read_text().splitlines()} if path.is_file() else set()
    missing = [d + "/" for d in STATE_DIRS if d not in lines]
    if missing:
        return Check(FAIL, ".gitignore", f"{ORCHESTRATOR_DIR}/.gitignore does not ignore {', '.join(missing)}")
    return Check(OK, ".gitignore", "ignores " + ", ".join(d + "/" for d in STATE_DIRS))


def _worker(command: str) -> Check:
    try:
        words = shlex.split(command)
    except ValueError:
        words = []
    if not words:
        return Check(FAIL, "worker command", f"cannot read {command!r}; fix worker_command (upgrade --data)")
    found = shutil.which(words[0])
    if not found:
        return Check(FAIL, "worker command", f"{words[0]} is not on PATH (worker_command = {command})")
    return Check(OK, "worker command", f"{words[0]} at {found}")


def _database(project: Path) -> Check:
    runtime = project / ORCHESTRATOR_DIR / "orchestrate.py"
    if not runtime.is_file():
        return Check(FAIL, "database", f"cannot check: {runtime.relative_to(project)} is missing")
    python = shutil.which("python3") or "python3"
    try:
        result = subprocess.run(
            [python, str(runtime), "plan", "--json"], cwd=project, capture_output=True, text=True,
            timeout=PLAN_TIMEOUT, stdin=subprocess.DEVNULL, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return Check(FAIL, "database", f"orchestrate.py plan did not finish: {error}")
    if result.returncode != 0:
        reason = next((line for line in result.stderr.splitlines() if line.strip()), "no message")
        return Check(FAIL, "database", f"orchestrate.py plan exited {result.returncode}: {reason.strip()}")
    return Check(OK, "database", _describe_plan(result.stdout))


def _describe_plan(text: str) -> str:
    """Path and stream count from the plan, read leniently: its JSON shape belongs to the runtime."""
    try:
        plan = json.loads(text)
    except json.JSONDecodeError:
        return "graph valid"
    if not isinstance(plan, dict):
        return "graph valid"
    parts = []
    path = next((plan[k] for k in ("db_path", "database", "db", "path") if isinstance(plan.get(k), str)), None)
    if path:
        found_by = plan.get("database_found_by")
        tracker = plan.get("tracker")
        parts.append(f"{path} ({tracker}: {found_by})" if isinstance(found_by, str) and isinstance(tracker, str)
                     else str(path))
    streams = plan.get("streams")
    count = len(streams) if isinstance(streams, (list, dict)) else streams if isinstance(streams, int) else None
    if count is None and isinstance(plan.get("levels"), list):
        count = sum(len(level) for level in plan["levels"] if isinstance(level, list))
    if count is not None:
        parts.append(f"{count} stream{'s' if count != 1 else ''}")
    parts.append("graph valid")
    return ", ".join(parts)

