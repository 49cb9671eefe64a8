"""orchestrate-kit: install, upgrade and check the Task Copilot orchestrator in a project."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("orchestrate-kit")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0"
