"""Wheel and sdist build hook: put the template and its release history into the package.

The wheel gets ``orchestrate_kit/_template/`` (``copier.yml`` and ``template/``) and
``orchestrate_kit/template-history.bundle``. Wheels cannot hold symlinks (a build would store a
copy of the link's target instead), so symlinks are left out and listed in
``_template/symlinks.txt`` (``path<TAB>target`` per line); the installer's template store puts
them back. An editable install needs none of this: it reads the template from the checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

sys.path.insert(0, str(Path(__file__).resolve().parent))
from template_bundle import DEFAULT_OUT, build_bundle  # noqa: E402

PACKAGE = "orchestrate_kit"
SKIP_DIRS = {"__pycache__", ".git"}
SKIP_SUFFIXES = (".pyc", ".pyo")


class CustomBuildHook(BuildHookInterface):
    """Adds the template tree, its symlink list and the history bundle to the build."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name == "wheel" and version == "editable":
            return
        root = Path(self.root)
        self._scratch = tempfile.TemporaryDirectory(prefix="orchestrate-kit-build.")
        scratch = Path(self._scratch.name)
        include = build_data["force_include"]
        bundle = self._bundle(root, scratch)
        if self.target_name == "sdist":
            # A wheel built later from this sdist has no .git: hand it the bundle ready-made.
            if bundle:
                include[str(bundle)] = str(DEFAULT_OUT)
            return
        prefix = f"{PACKAGE}/_template"
        links = []
        for rel in template_files(root):
            path = root / rel
            if path.is_symlink():
                links.append(f"{rel}\t{os.readlink(path)}\n")
            else:
                include[str(path)] = f"{prefix}/{rel}"
        manifest = scratch / "symlinks.txt"
        manifest.write_text("".join(sorted(links)))
        include[str(manifest)] = f"{prefix}/symlinks.txt"
        if bundle:
            include[str(bundle)] = f"{PACKAGE}/template-history.bundle"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        scratch = getattr(self, "_scratch", None)
        if scratch is not None:
            scratch.cleanup()

    def _bundle(self, root: Path, scratch: Path) -> Path | None:
        """Build the bundle from the repository's tags, or reuse the one an sdist carried."""
        if (root / ".git").exists():
            out = scratch / "template-history.bundle"
            return out if build_bundle(root, out) else None
        shipped = root / DEFAULT_OUT
        return shipped if shipped.is_file() else None


def template_files(root: Path) -> list[str]:
    """Relative paths of copier.yml and every file under template/ worth shipping."""
    if (root / ".git").exists():
        # What git would commit: tracked and new files, never ignored ones (bytecode, logs).
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--",
             "copier.yml", "template"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout
        names = sorted({n for n in out.split("\0") if n})
        return [n for n in names if os.path.lexists(root / n)]
    found = ["copier.yml"]
    for dirpath, dirnames, filenames in os.walk(root / "template"):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            if not name.endswith(SKIP_SUFFIXES):
                found.append(str((Path(dirpath) / name).relative_to(root)))
    return found
