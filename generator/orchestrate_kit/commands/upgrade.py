"""``orchestrate-kit upgrade [PROJECT]``: copier's three-way update to this installer's version.

The project must be a git repository with a clean tree: copier merges the template's changes
with the user's committed edits, and git is both the merge base and the way back. Overlapping
edits become inline conflict markers; copier still exits 0 then, so conflicts are found with
git and reported with exit 1. Runtime state (``logs/``, ``pids/``, ``state/``) is ignored by git
and never touched. The user's own ``./watch-status`` or slash command, kept by the install, is
kept here too (a command file without our mark is theirs).

An upgrade leaves a mark in the git folder while copier writes. A SIGTERM, SIGHUP or Ctrl-C rolls
the tree back; a SIGKILL or a crash cannot, so the next upgrade finds the mark and says how to
restore the committed state.
"""

from __future__ import annotations

import hashlib
import signal
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sh

from .. import copier_runner, git, output, retired, settings, store
from ..errors import UserError
from ..project import COMMAND_FILE, Layout, refuse_unwritable, users_own
from .install_command import MARK

# What puts a project back as it was committed: the tree was clean before the upgrade started.
RESTORE = "git reset --quiet -- . && git checkout -- . && git clean -d --force --quiet -- ."


def upgrade(*, project: Path, data: Mapping[str, str], to: str | None) -> int:
    """Update the orchestrator in ``project``; return the exit code (1 when conflicts remain)."""
    template = store.packaged_template()
    answers_file = copier_runner.answers_file_name(template.root)
    new_answers = copier_runner.check_data(data, template.root)
    if not (project / answers_file).is_file():
        raise UserError(
            f"The orchestrator is not installed in {project} ({answers_file} is missing).",
            hint=f"install it first: orchestrate-kit install {project}",
        )
    _check_interrupted(project)
    answers = copier_runner.read_answers(project, answers_file, template.root)
    _check_git(project)
    current = store.sync(template)
    target = _target(to, current)
    installed = answers["_commit"]
    _check_source(answers)
    if not store.has_ref(installed):
        raise UserError(
            f"This machine's template history has no {installed}, the version {project} was installed with.",
            hint=f"run orchestrate-kit {installed.lstrip('v')} once, which carries it: {store.older_release(installed)}; "
            "then reinstall this version and run the upgrade again",
        )
    _check_direction(installed, target, to)
    if installed == target and not new_answers:
        output.info(f"Already at {target}; nothing to do.")
        return 0

    layout = store.layout(target)
    own = _users_own(project, layout)
    refuse_unwritable(project, [rel for rel in [*layout.modes, answers_file] if rel not in own], "upgrade")
    for rel in own:
        output.warn(f"kept your own {rel}; the orchestrator's version was not written there")

    options = copier_runner.RunOptions(
        project=project,
        src=answers["_src_path"],
        ref=target,
        answers_file=answers_file,
        data=new_answers,
        defaults=True,  # keep the previous answers; new questions take their defaults
        exclude=tuple("/" + rel for rel in own),  # anchored, as at install
    )
    kept = retired.edited_dropped(project, installed, target, answers)  # before copier removes them
    mark = _mark_path(project)
    mark.write_text(f"{installed} -> {target}\n")
    with _local_settings_aside(project, mark):  # put back after any roll-back, which would undo it
        try:
            with _stops_as_interrupts():
                copier_runner.update(options)
        except BaseException as error:
            if _roll_back(project):
                mark.unlink(missing_ok=True)
            if isinstance(error, OSError):
                raise UserError(f"Cannot write to {project}: {error.strerror or error}; it was put back as it "
                                "was.", hint="make it writable (chmod -R u+w), or upgrade as its owner") from None
            raise
    mark.unlink(missing_ok=True)
    retired.put_back(project, kept)
    settings.ensure_local(project)  # a project installed before orchestrator.local.conf existed gets one
    return _report(project, installed, target, kept)


def _users_own(project: Path, layout: Layout) -> list[str]:
    """The root link and slash command where the user has a file of their own: never updated."""
    own = []
    for rel in users_own(project, layout):
        path = project / rel
        if rel == COMMAND_FILE and path.is_file() and MARK in path.read_text(errors="replace"):
            continue  # ours, perhaps edited by the user: merged like every other file
        own.append(rel)
    return own


def _mark_path(project: Path) -> Path:
    """Where an upgrade in progress is noted: in the git folder, one name per project folder."""
    git_dir = Path(git.git("rev-parse", "--absolute-git-dir", cwd=project).strip())
    name = hashlib.sha256(str(project.resolve()).encode()).hexdigest()[:12]
    return git_dir / f"orchestrate-kit-upgrade-{name}"


@contextmanager
def _local_settings_aside(project: Path, mark: Path) -> Iterator[None]:
    """orchestrator.local.conf as the last commit has it while copier runs, the user's again after.

    Upgrades never write the user's settings file, so a change to it (``orchestrate-kit config``
    writes one) must not stop an upgrade; but copier refuses any uncommitted change. Its text waits
    beside the upgrade's mark, so even a SIGKILL loses nothing (the next upgrade puts it back).
    """
    path = project / settings.LOCAL_CONF
    if not _local_settings_changed(project):
        yield
        return
    aside = _aside_path(mark)
    aside.write_bytes(path.read_bytes())
    if _committed(project, settings.LOCAL_CONF):
        git.git("checkout", "--quiet", "--", settings.LOCAL_CONF, cwd=project)
    else:
        path.unlink()
    try:
        yield
    finally:
        _put_local_settings_back(project, aside)


def _local_settings_changed(project: Path) -> bool:
    return any(line[3:] == settings.LOCAL_CONF for line in git.dirty_files(project))


def _aside_path(mark: Path) -> Path:
    return mark.with_name(mark.name + ".local.conf")


def _put_local_settings_back(project: Path, aside: Path) -> None:
    if aside.is_file():
        path = project / settings.LOCAL_CONF
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(aside.read_bytes())
        aside.unlink()


def _committed(project: Path, rel: str) -> bool:
    try:
        git.git("cat-file", "-e", f"HEAD:{rel}", cwd=project)
    except sh.ErrorReturnCode:
        return False
    return True


def _check_interrupted(project: Path) -> None:
    """An earlier upgrade that was killed while copier wrote: say how to restore, or forget it."""
    if git.toplevel(project) is None:
        return
    mark = _mark_path(project)
    aside = _aside_path(mark)
    if not mark.exists() and not aside.exists():
        return  # nothing to look at (and nothing to write: the project may be read-only)
    dirty = _blocking(git.dirty_files(project)) if mark.exists() else []
    if not dirty:
        mark.unlink(missing_ok=True)  # it stopped before writing, or the user restored the tree
        if aside.is_file() and not _local_settings_changed(project):
            _put_local_settings_back(project, aside)  # the user's settings, which that upgrade kept aside
        elif aside.is_file():
            output.warn(f"{aside} holds your {settings.LOCAL_CONF} from an interrupted upgrade; the file has "
                        "changed since, so it was left there for you to compare")
        return
    kept = f" Your uncommitted {settings.LOCAL_CONF} waits in {aside} and comes back then." if aside.is_file() else ""
    raise UserError(
        f"An earlier upgrade ({mark.read_text().strip()}) was interrupted while it wrote, and may have "
        "left the project half-upgraded; nothing changed now. Files that differ from your last commit:",
        details=dirty,
        hint=f"restore the committed state with `{RESTORE}` (in {project}), then upgrade again.{kept}",
    )


@contextmanager
def _stops_as_interrupts() -> Iterator[None]:
    """SIGTERM and SIGHUP (a `kill`, a closed terminal) roll back like Ctrl-C, instead of stopping mid-write."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, interrupt)
    except ValueError:  # not the main thread: signals stay as they are
        pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _check_git(project: Path) -> None:
    if git.toplevel(project) is None:
        raise UserError(
            f"{project} is not a git repository, and upgrades need git to merge your edits.",
            hint="git init && git add -A && git commit -m 'Before orchestrate-kit upgrade', then upgrade again",
        )
    dirty = _blocking(git.dirty_files(project))
    if dirty:
        raise UserError(
            "The project has uncommitted changes, and an upgrade merges into a clean tree; nothing changed:",
            details=dirty,
            hint="commit them (git add -A && git commit) or put them aside (git stash -u), then upgrade again",
        )


def _blocking(dirty: list[str]) -> list[str]:
    """The uncommitted changes an upgrade must refuse: all but the user's settings file, never written."""
    return [line for line in dirty if line[3:] != settings.LOCAL_CONF]


def _target(to: str | None, current: str) -> str:
    if to is None:
        return current
    tag = store.tag_for(to)
    if not store.has_ref(tag):
        known = ", ".join(t.lstrip("v") for t in store.tags()) or "none"
        raise UserError(f"There is no template version {to}.", hint=f"versions known here: {known}")
    return tag


def _check_source(answers: Mapping[str, Any]) -> None:
    """Refuse a project that plain copier installed from somewhere else."""
    source = Path(str(answers["_src_path"])).expanduser()
    if source.resolve() != store.store_path().resolve():
        raise UserError(
            f"This project was installed from {answers['_src_path']} with plain copier, not by orchestrate-kit.",
            hint="update it the same way: copier update -a .claude/orchestrator/.copier-answers.yml --defaults",
        )


def _check_direction(installed: str, target: str, to: str | None) -> None:
    """Refuse a downgrade. Builds of one release (dev, local) may move either way: a real merge."""
    old, new = store.version_of(installed), store.version_of(target)
    if old is None or new is None or old.public <= new.public or old.release == new.release:
        return
    if to is not None:
        newer = [t.lstrip("v") for t in store.tags() if (v := store.version_of(t)) and v >= old]
        hint = (f"pass --to {installed.lstrip('v')} or newer ({', '.join(newer)}), or leave --to out; "
                "to undo an upgrade you committed, git revert its commit")
    else:
        hint = "upgrade orchestrate-kit itself first (pipx upgrade orchestrate-kit), then run this again"
    raise UserError(f"The project has {installed}, newer than {target}; downgrades are not supported.", hint=hint)


def _roll_back(project: Path) -> bool:
    """Put the tree back as it was: it was clean and committed before copier started."""
    try:
        git.git("reset", "--quiet", "--", ".", cwd=project)
        git.git("checkout", "--quiet", "--", ".", cwd=project)
        git.git("clean", "-d", "--force", "--quiet", "--", ".", cwd=project)
    except sh.ErrorReturnCode as error:
        output.warn(f"could not restore the tree after the failed upgrade: {error.stderr.decode().strip()}; "
                    f"restore it with `{RESTORE}`")
        return False
    return True


def _report(project: Path, installed: str, target: str, kept: list[retired.Kept]) -> int:
    for item in kept:
        output.warn(item.advice(target))
    conflicts = git.conflicted_files(project)
    # copier can leave .rej files even in inline mode (copier issue #2386): count them too.
    rejects = sorted(line[3:] for line in git.dirty_files(project) if line.endswith(".rej"))
    if conflicts or rejects:
        output.error(
            f"The upgrade from {installed} to {target} is not finished: {len(conflicts) + len(rejects)} "
            "file(s) have conflicts between your edits and the new version:",
            details=conflicts + rejects,
            hint="edit out the <<<<<<< before updating / >>>>>>> after updating markers (and any .rej), "
            "then git add and commit; to abort instead: git reset --hard && git clean -fd",
        )
        return 1
    if installed == target:
        output.success(f"Updated the answers of {project} (still {target})")
    else:
        output.success(f"Upgraded {project} from {installed} to {target}")
    changed = git.changed_paths(project)
    if changed:
        output.info("Files changed:")
        for rel in changed:
            output.item(rel)
    output.info("Review with `git diff`, then commit.")
    return 0
