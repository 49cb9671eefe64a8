"""Helpers that build real template versions, projects and git history for the installer tests.

A "version" is a folder laid out like the packaged template (``copier.yml`` + ``template/``),
copied from this repository and given a synthetic module, ``sample_module.py``, whose content
the tests own: the runtime files belong to other work and may change under us, so the merge
tests never depend on them.
"""

from __future__ import annotations

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
    release names in the store), unless ``bundle`` is given or ``released`` is False.
    """
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
