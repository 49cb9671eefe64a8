"""Helpers that build real template versions, projects and git history for the installer tests.

A "version" is a folder laid out like the packaged template (``copier.yml`` + ``template/``),
copied from this repository and given a synthetic module, ``sample_module.py``, whose content
the tests own: the runtime files belong to other work and may change under us, so the merge
tests never depend on them.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrate_kit import store
from orchestrate_kit.main import main
from orchestrate_kit.store import PackagedTemplate

from . import prebuilt

REPO = Path(__file__).resolve().parents[2]
ANSWERS = ".claude/orchestrator/.copier-answers.yml"
SAMPLE = ".claude/orchestrator/sample_module.py"
NEW_IN_V2 = ".claude/orchestrator/NEW_IN_V2.md"

# Far apart on purpose: an edit near TIMEOUT and one in helper_a must not share a diff hunk.
SAMPLE_V1 = '''"""A module the installer tests own (version 1)."""

TIMEOUT = 30
{filler}

def helper_a():
    return "a"


def main():
    print("sample v1")
{filler}

def helper_z():
    return "z"
'''.replace("{filler}", "\n".join(f"# filler line {i}" for i in range(12)))


def sample_v2(text: str) -> str:
    """Version 2 of the sample: a new TIMEOUT and a new print line."""
    return text.replace("version 1", "version 2").replace("TIMEOUT = 30", "TIMEOUT = 60").replace(
        'print("sample v1")', 'print("sample v2")'
    )


def repo_template_files() -> list[str]:
    """copier.yml and template/ of this checkout, as git would commit them."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "copier.yml", "template"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout
    return sorted({n for n in out.split("\0") if n and os.path.lexists(REPO / n)})


def copy_template(dest: Path) -> None:
    """Copy this repository's template (copier.yml and template/) into ``dest``, links kept."""
    for rel in repo_template_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        source = REPO / rel
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)
    (dest / "template" / SAMPLE).write_text(SAMPLE_V1)


def v2_edit(template_dir: Path) -> None:
    """What version 2 changes: the sample module, and one new file."""
    sample = template_dir / SAMPLE
    sample.write_text(sample_v2(sample.read_text()))
    (template_dir / NEW_IN_V2).write_text("Added in version 2.\n")


def make_version(
    dest: Path, version: str, edit: Callable[[Path], None] | None = None, bundle: Path | None = None,
    released: bool = True,
) -> PackagedTemplate:
    """A packaged template folder at ``version``; ``edit`` changes its template/ folder.

    Like a real release, it carries a history bundle holding its own tag (the only source of
    release names in the store), unless ``bundle`` is given or ``released`` is False. Without a
    ``bundle`` of the test's, and with no edit or a module-level one (which edits the same way
    every time), it is a copy of one built once per test process (tests/installer/prebuilt.py):
    the same release, bundle and all, as every other test's.
    """
    edit_name = "unedited" if edit is None else _module_level_name(edit)
    if bundle is None and edit_name is not None:
        key = f"version-{version}-{'released' if released else 'unreleased'}-{edit_name}"
        made = prebuilt.built(key, lambda folder: _build_version(folder / "pkg", version, edit, None, released))
        if made is not None:
            prebuilt.copy(made / "pkg", dest)
            if released:
                bundle = dest.with_name(dest.name + ".bundle")
                shutil.copy2(made / "pkg.bundle", bundle)
            return PackagedTemplate(dest, version, bundle)
    return _build_version(dest, version, edit, bundle, released)


def _module_level_name(function: Callable[..., object]) -> str | None:
    """``module.name`` of a module-level function; None for a lambda, a nested function or anything else."""
    qualname = getattr(function, "__qualname__", "<")
    return None if "<" in qualname or "." in qualname else f"{function.__module__}.{qualname}"


def _build_version(
    dest: Path, version: str, edit: Callable[[Path], None] | None, bundle: Path | None, released: bool,
) -> PackagedTemplate:
    copy_template(dest)
    if edit is not None:
        edit(dest / "template")
    if bundle is None and released:
        bundle = own_bundle(dest, version)
    return PackagedTemplate(dest, version, bundle)


def own_bundle(packaged: Path, version: str) -> Path:
    """A history bundle with one tag, ``vVERSION``, holding the packaged folder's tree."""
    history = packaged.with_name(packaged.name + ".history")
    shutil.copytree(packaged, history, symlinks=True)
    init_repo(history)
    commit_all(history, f"release {version}")
    git(history, "tag", f"v{version}")
    bundle = packaged.with_name(packaged.name + ".bundle")
    build_bundle(history, bundle)
    return bundle


def use(monkeypatch: pytest.MonkeyPatch, template: PackagedTemplate) -> None:
    """Make the installer carry ``template`` (the one seam: where the packaged template is)."""
    monkeypatch.setattr(store, "packaged_template", lambda: template)


GITCONFIG = (
    "[user]\n\tname = Test User\n\temail = test@example.invalid\n"
    "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n"
)


def isolate_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``home`` (created if need be) HOME, with its own git identity, copier cache and no GIT_*,
    XDG_* or COPIER_* variable from the outside."""
    for name in list(os.environ):
        if name.startswith(("GIT_", "XDG_", "COPIER_")) or name in {"NO_COLOR", "TASK_DB_PATH", "WORKSPACE_ID"}:
            monkeypatch.delenv(name)
    home.mkdir(parents=True, exist_ok=True)
    gitconfig = home / ".gitconfig"
    gitconfig.write_text(GITCONFIG)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("COPIER_CACHE_DIR", str(home / ".cache" / "copier-git"))


def prebuilt_project(
    name: str, build: Callable[[Path, pytest.MonkeyPatch], None], dest: Path, home: Path,
) -> Path:
    """The project ``build(project, monkeypatch)`` makes, copied to ``dest``, and what it left in its HOME
    (the template store the install filled) copied into ``home``.

    It is built once per test process (tests/installer/prebuilt.py), in a HOME of its own and under a
    monkeypatch undone when it is done, so ``build`` does what a test's fixture would, and the copy is
    the project that fixture would have made. Its output goes nowhere: ``call``, not ``run``.
    """
    def build_in_a_home_of_its_own(folder: Path) -> None:
        with pytest.MonkeyPatch.context() as patch:
            isolate_home(folder / "home", patch)
            build(folder / "work" / dest.name, patch)

    made = prebuilt.built(name, build_in_a_home_of_its_own)
    assert made is not None, "prebuilt_project needs the `prebuilt` session fixture (tests/installer/conftest.py)"
    prebuilt.copy(made / "work" / dest.name, dest)
    prebuilt.copy(made / "home", home)
    return dest


def installed_v1(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Version 1.0.0 (``make_version``'s ``pkg-1`` beside it) installed with the defaults and committed."""
    use(monkeypatch, make_version(project.parent / "pkg-1", "1.0.0"))
    init_repo(project)
    installed = call("install", "--defaults", str(project))
    assert installed.code == 0, installed.err
    commit_all(project, "install")


@dataclass
class Result:
    code: int
    out: str
    err: str


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    """Run the CLI in-process, as a user would type it."""
    capsys.readouterr()
    code = main(list(argv))
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def call(*argv: str) -> Result:
    """Run the CLI in-process outside any test's capture (a prebuilt project's build), its output kept."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return Result(code, out.getvalue(), err.getvalue())


def git(path: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=path, capture_output=True, text=True, check=True).stdout


def init_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "--quiet")
    return path


def commit_all(path: Path, message: str = "commit") -> None:
    """Commit everything, with an identity of its own: a module-scoped fixture runs before the per-test
    HOME (and its git identity) exists."""
    git(path, "add", "-A")
    git(path, "-c", "user.name=Test User", "-c", "user.email=test@example.invalid", "commit", "--quiet",
        "--allow-empty", "-m", message)


def tagged_template_repo(path: Path, versions: list[tuple[str, Callable[[Path], None] | None]]) -> Path:
    """A git repository laid out like this one (copier.yml + template/), one tag per version."""
    init_repo(path)
    copy_template(path)
    for tag, edit in versions:
        if edit is not None:
            edit(path / "template")
        commit_all(path, f"template {tag}")
        git(path, "tag", tag)
    return path


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every path under ``root`` (outside .git) with its content (or link target) and mode."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] == ".git":
            continue
        if path.is_symlink():
            found[str(rel)] = ("-> " + os.readlink(path), 0)
        elif path.is_file():
            found[str(rel)] = (path.read_text(errors="replace"), path.stat().st_mode & 0o777)
        else:
            found[str(rel)] = ("<dir>", 0)
    return found


def store_dir(home: Path) -> Path:
    return home / ".local" / "share" / "orchestrate-kit" / "template"


def build_bundle(repo: Path, out: Path) -> list[str]:
    """tools/template_bundle.py's build_bundle (tools/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("template_bundle", REPO / "tools" / "template_bundle.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_bundle(repo, out)
