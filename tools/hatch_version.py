"""Hatchling metadata hook: the package version comes from git (see ``tools/package_version.py``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hatchling.metadata.plugin.interface import MetadataHookInterface

sys.path.insert(0, str(Path(__file__).resolve().parent))
from package_version import package_version  # noqa: E402


class VersionFromGit(MetadataHookInterface):
    """Sets ``version``, which pyproject.toml lists as dynamic."""

    def update(self, metadata: dict[str, Any]) -> None:
        metadata["version"] = package_version(Path(self.root))
