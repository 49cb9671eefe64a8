"""The runtime must run on the Python users have: 3.9+, standard library only."""

import ast
import sys

import pytest

from tests.support.project import RUNTIME

RUNTIME_SOURCES = sorted(RUNTIME.glob("*.py"))
STDLIB = set(sys.stdlib_module_names) | {"__future__"}
OWN = {p.stem for p in RUNTIME_SOURCES}


@pytest.mark.parametrize("path", RUNTIME_SOURCES, ids=lambda p: p.name)
def test_parses_as_python_3_9(path):
    ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 9))


@pytest.mark.parametrize("path", RUNTIME_SOURCES, ids=lambda p: p.name)
def test_imports_only_the_standard_library(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert imported - STDLIB - OWN == set()
