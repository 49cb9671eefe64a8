"""The package version, worked out from git: a release only at its tag, a dev version anywhere else.

- A clean checkout whose HEAD carries the tag ``vX.Y.Z`` builds ``X.Y.Z``.
- Anything else (an untagged commit, uncommitted changes) builds
  ``NEXT.devN+g<commit>`` (``.dirty`` added for uncommitted changes), where NEXT is the next
  release and N counts the commits since the last release tag. PEP 440 sorts it before NEXT,
  so a dev build never passes for the release it leads to, and its template is tagged in the
  per-user template store under a name no release will ever take.
- NEXT is ``[tool.orchestrate-kit] next-release`` of pyproject.toml, or the last release with
  its last number raised when that is not newer.
- An sdist has no .git: its PKG-INFO already holds the version it was built with.

Standard library and ``packaging`` only: the hatchling metadata hook (``tools/hatch_version.py``)
and ``make dist`` both use it. ``python tools/package_version.py [--release]`` prints the version.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from packaging.version import InvalidVersion, Version

# What goes into the package: a change here makes a build a dev build.
PACKAGED_PATHS = ("pyproject.toml", "copier.yml", "template", "generator", "tools")


def _git(root: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    except OSError:  # no git here: not a checkout we can read
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _release(tag: str) -> Version | None:
    """The version a ``vX.Y.Z`` tag names; None for other tags (dev, local, not a version)."""
    try:
        version = Version(tag[1:]) if tag.startswith("v") else None
    except InvalidVersion:
        return None
    return version if version is not None and not (version.is_devrelease or version.local) else None


def next_release_setting(root: Path) -> Version:
    """``[tool.orchestrate-kit] next-release`` from pyproject.toml (read without a TOML parser for 3.10)."""
    text = (root / "pyproject.toml").read_text(encoding="utf-8")
    section = re.search(r"(?ms)^\[tool\.orchestrate-kit\]\s*$(.*?)(?=^\[|\Z)", text)
    match = re.search(r'(?m)^next-release\s*=\s*"([^"]+)"', section.group(1)) if section else None
    return Version(match.group(1)) if match else Version("0.1.0")


def _bump(version: Version) -> Version:
    parts = list(version.release)
    parts[-1] += 1
    return Version(".".join(map(str, parts)))


def from_git(root: Path) -> str | None:
    """The version of the checkout at ``root``, or None when it is not a git checkout."""
    head = _git(root, "rev-parse", "--short=7", "HEAD")
    if head is None:
        return None
    dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=normal", "--", *PACKAGED_PATHS))
    at_head = [v for t in (_git(root, "tag", "--points-at", "HEAD", "--list", "v*") or "").split()
               if (v := _release(t)) is not None]
    if at_head and not dirty:
        return str(max(at_head))
    described = _git(root, "describe", "--tags", "--abbrev=0", "--match", "v[0-9]*", "HEAD")
    last = _release(described) if described else None
    since = f"{described}..HEAD" if last is not None else "HEAD"
    count = int(_git(root, "rev-list", "--count", since) or 0)
    upcoming = next_release_setting(root)
    if last is not None and upcoming <= last:
        upcoming = _bump(last)
    return f"{upcoming}.dev{count}+g{head}" + (".dirty" if dirty else "")


def from_pkg_info(root: Path) -> str | None:
    """The version an sdist recorded in its PKG-INFO."""
    pkg_info = root / "PKG-INFO"
    if not pkg_info.is_file():
        return None
    match = re.search(r"(?m)^Version:\s*(\S+)", pkg_info.read_text(encoding="utf-8"))
    return match.group(1) if match else None


def package_version(root: Path) -> str:
    """The version to build ``root`` as."""
    return from_pkg_info(root) or from_git(root) or f"{next_release_setting(root)}.dev0"


def is_release(version: str) -> bool:
    """True for ``X.Y.Z``; False for dev and local versions."""
    parsed = Version(version)
    return not (parsed.is_devrelease or parsed.is_prerelease or parsed.local)


def main(argv: list[str]) -> int:
    """Print the version; with ``--release``, fail unless it is a release (for ``make publish``)."""
    root = Path(__file__).resolve().parents[1]
    version = package_version(root)
    if "--release" in argv and not is_release(version):
        print(f"package_version: {version} is a dev version; tag the release first "
              "(git tag vX.Y.Z on a clean checkout), then make publish", file=sys.stderr)
        return 1
    print(version)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
