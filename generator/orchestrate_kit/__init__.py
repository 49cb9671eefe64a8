"""orchestrate-kit: install, upgrade and check the Task Copilot orchestrator in a project."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    """`__version__`, read from the package's metadata when first asked for: importlib.metadata is a
    heavy import, and the modules that never need the version (taskdb, which the tests' fake
    `claude` imports in each of its thousands of starts) do without it."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("orchestrate-kit")
    except PackageNotFoundError:  # running from a checkout that was never installed
        found = "0.0.0"
    globals()["__version__"] = found
    return found
