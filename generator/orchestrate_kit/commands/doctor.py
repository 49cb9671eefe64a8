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

from .. import copier_runner, git, output, retired, settings, store
from ..errors import UserError
from ..project import (
    ORCHESTRATOR_DIR, STATE_DIRS, Layout, add_run_bit, fix_link, link_problems, scripts_without_run_bit,
)

OK, WARN, FAIL = "ok", "warn", "FAIL"
# The runtime supports these (the design): Python 3.9+ and bash 3.2+ (macOS defaults).
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
    source = Check(OK, "template source")
    if installed:
        answers = copier_runner.read_answers(project, answers_file, template.root)
        store_was_there = (store.store_path() / ".git").is_dir()
        layout = _layout(template, str(answers["_commit"]))
        source = _source(answers, store_was_there)
        if fix:
            for line in _fix(project, layout):
                output.info(line)
    checks = [_python(), _bash(), _git(project)]
    if not installed:
        checks.append(Check(FAIL, "orchestrator installed", f"no {answers_file} in {project}"))
    else:
        assert layout is not None
        markers = _conflict_markers(project, [*layout.files, answers_file, settings.LOCAL_CONF])
        checks += [
            _version(str(answers["_commit"]), template.version),
            source,
            _markers_check(markers),
            _files(project, layout),
            _old_modules(project, layout),
            _run_bits(project, layout),
            *_links(project, layout),
            _gitignore(project),
            _worker(project, _effective_worker_command(project, answers, template.root)),
            _local_settings(project, template.root),
            _runtime(project, markers),
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


def _old_modules(project: Path, layout: Layout) -> Check:
    """Flat modules of the layout before the private package, still in the project: an edited one an
    upgrade kept, or what a plain `copier update` left. Nothing imports them any more."""
    left = retired.leftovers(project, layout.modes)
    if left:
        return Check(WARN, "old modules", ", ".join(f"{rel} (its code is now in {retired.MOVED[rel]})" for rel in left)
                     + ": nothing runs them; carry any change of yours over, then delete them")
    return Check(OK, "old modules", "none")


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


def _worker(project: Path, command: str) -> Check:
    try:
        words = shlex.split(command)
    except ValueError:
        words = []
    if not words:
        return Check(FAIL, "worker command", f"cannot read {command!r}; fix worker_command (upgrade --data)")
    report = _runtime_preflight(project)
    if report is not None and report.get("executor") == "ray":
        return _cluster(report, words[0])
    found = shutil.which(words[0])
    if not found:
        return Check(FAIL, "worker command", f"{words[0]} is not on PATH (worker_command = {command})")
    return _preflight(report, words[0], found)


def _runtime_preflight(project: Path) -> dict[str, Any] | None:
    """The runtime's own check (``orchestrate.py preflight --json``), or None where it gave none."""
    runtime = project / ORCHESTRATOR_DIR / "orchestrate.py"
    if not runtime.is_file():
        return None
    try:
        result = subprocess.run(
            [shutil.which("python3") or "python3", str(runtime), "preflight", "--json"], cwd=project,
            capture_output=True, text=True, timeout=PLAN_TIMEOUT, stdin=subprocess.DEVNULL, check=False,
        )
        report = json.loads(result.stdout)
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    return report if isinstance(report, dict) and isinstance(report.get("problems"), list) else None


def _cluster(report: dict[str, Any], program: str) -> Check:
    """executor = ray: the workers run on the cluster's nodes, so the runtime checked the cluster
    (address, token, API version, a node advertising agent_slot, the git remote the nodes use)."""
    label = "Ray cluster"
    if report["problems"]:
        return Check(FAIL, label, f"{report['problems'][0].get('message')} (executor = ray)")
    said = "; ".join(str(c.get("message")) for c in report.get("cluster") or [])
    return Check(OK, label, f"{program} runs on its nodes: {said}")


def _preflight(report: dict[str, Any] | None, program: str, found: str) -> Check:
    """The runtime's own check of the worker command: it runs, it is logged in, it may run as this
    user. The same check `start` makes before it spawns."""
    label = "worker command"
    if report is None:
        return Check(OK, label, f"{program} at {found} (not checked further: this runtime has no preflight)")
    problems = report["problems"]
    if problems:
        first = problems[0]
        return Check(FAIL, label, f"{first['message']}; fix: {first['fix']}")
    version = f" {report['version']}" if report.get("version") else ""
    logged_in: Any = report.get("logged_in")
    login = {True: ", logged in", False: ", not logged in"}.get(logged_in, "")
    return Check(OK, label, f"{program}{version} at {found}{login}")


def _runtime(project: Path, markers: list[str]) -> Check:
    """The runtime's own check of its settings, database and graph: ``orchestrate.py plan --json``."""
    label = "settings and database"
    runtime = project / ORCHESTRATOR_DIR / "orchestrate.py"
    if not runtime.is_file():
        return Check(FAIL, label, f"cannot check: {runtime.relative_to(project)} is missing")
    if markers:
        return Check(FAIL, label, "not checked: the orchestrator cannot run until the conflict markers are resolved")
    python = shutil.which("python3") or "python3"
    try:
        result = subprocess.run(
            [python, str(runtime), "plan", "--json"], cwd=project, capture_output=True, text=True,
            timeout=PLAN_TIMEOUT, stdin=subprocess.DEVNULL, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return Check(FAIL, label, f"orchestrate.py plan did not finish: {error}")
    if result.returncode != 0:
        return Check(FAIL, label, f"orchestrate.py plan exited {result.returncode}: {_reason(result.stderr, project)}")
    return Check(OK, label, _describe_plan(result.stdout))


def _reason(stderr: str, project: Path) -> str:
    """The runtime's one-line error; for a crash (a traceback), its last line and where it happened."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if not lines:
        return "no message"
    places = re.findall(r'File "([^"]+)", line (\d+)', stderr)
    if not places:  # the runtime's own one-line error, which names a file and line itself
        return lines[0]
    path, number = places[-1]
    try:
        path = str(Path(path).resolve().relative_to(project.resolve()))
    except ValueError:
        pass
    return f"{lines[-1]} at {path}:{number}"


_MARKERS = ("<<<<<<< ", "=======", ">>>>>>> ")


def _conflict_markers(project: Path, rels: list[str]) -> list[str]:
    """``path:line`` of the first merge-conflict marker in each of these files that has one."""
    found = []
    for rel in rels:
        path = project / rel
        if not path.is_file() or path.is_symlink():
            continue
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if line.startswith(_MARKERS) and (line != "=======" or "<<<<<<< " in text):
                found.append(f"{rel}:{number}")
                break
    return found


def _markers_check(markers: list[str]) -> Check:
    if markers:
        return Check(FAIL, "conflict markers", ", ".join(markers)
                     + " (left by an upgrade: resolve them, then git add and commit)")
    return Check(OK, "conflict markers", "none")


def _effective_worker_command(project: Path, answers: dict[str, Any], template_root: Path) -> str:
    """worker_command as the runtime will read it: orchestrator.local.conf wins over the answers."""
    command = str(answers.get("worker_command", ""))
    try:
        lines = settings.read_conf(template_root, project / settings.LOCAL_CONF)
    except UserError:
        lines = []  # the settings check names the broken line
    for line in lines:
        if line.key == "worker_command":
            command = line.value
    return command


def _local_settings(project: Path, template_root: Path) -> Check:
    """Both conf files: every line is `key = value` and every key a setting (the runtime reads past
    others, so a misspelt one would change nothing unseen)."""
    label = "your settings"
    try:
        unknown = settings.unknown_keys(template_root, project)
        count = len(settings.read_conf(template_root, project / settings.LOCAL_CONF))
    except UserError as error:
        return Check(FAIL, label, error.message)
    if unknown:
        return Check(WARN, label, "; ".join(unknown))
    if not (project / settings.LOCAL_CONF).is_file():
        return Check(WARN, label, f"no {settings.LOCAL_CONF}; `orchestrate-kit config KEY VALUE` makes it")
    return Check(OK, label, f"{count} in {settings.LOCAL_CONF}")


def _source(answers: dict[str, Any], store_was_there: bool) -> Check:
    """Whether plain `copier update` can find the template this project names (and could before this run)."""
    label = "template source"
    recorded = str(answers["_src_path"])
    source = Path(recorded).expanduser()
    ours = source.resolve() == store.store_path().resolve()
    if not ours:
        if source.exists() or "://" in recorded or recorded.startswith("gh:"):
            return Check(OK, label, f"{recorded} (installed with plain copier; update it with copier)")
        return Check(FAIL, label, f"{recorded}, which this project was installed from with plain copier, is "
                     "not on this machine: `copier update` needs it there")
    if not store_was_there:
        return Check(WARN, label, f"{recorded} was missing on this machine, so plain `copier update` would have "
                     "failed (\"Local template must be a directory\"); orchestrate-kit has made it now")
    if not store.has_ref(str(answers["_commit"])):
        version = str(answers["_commit"]).lstrip("v")
        return Check(WARN, label, f"{recorded} has no {answers['_commit']}, the installed version, so upgrades "
                     f"cannot merge; run orchestrate-kit {version} once, which carries it: "
                     f"{store.older_release(str(answers['_commit']))}")
    return Check(OK, label, f"{recorded} has {answers['_commit']}")


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

