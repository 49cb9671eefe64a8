"""The runtime must run on the Python users have: 3.9+, standard library only."""

import ast
import sys

import pytest

from tests.support.project import PACKAGE, RUNTIME

RUNTIME_SOURCES = sorted(RUNTIME.rglob("*.py"))
STDLIB = set(sys.stdlib_module_names) | {"__future__"}
OWN = {p.stem for p in RUNTIME.glob("*.py")} | {PACKAGE}


def source_id(path):
    return str(path.relative_to(RUNTIME))


@pytest.mark.parametrize("path", RUNTIME_SOURCES, ids=source_id)
def test_parses_as_python_3_9(path):
    ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 9))


@pytest.mark.parametrize("path", RUNTIME_SOURCES, ids=source_id)
def test_imports_only_the_standard_library(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert imported - STDLIB - OWN == set()
