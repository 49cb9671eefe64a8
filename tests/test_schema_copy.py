"""The packaged schema's statements must stay a verbatim copy of the shared Task Copilot schema's.

Its leading comment (where the database is, what counts as finished) is ours, kept true to the
runtime; the statements are Task Copilot's interface and never change here alone.
"""

from pathlib import Path

import pytest

from tests.support.taskdb import schema_sql

SHARED = Path(__file__).resolve().parents[2] / "shared" / "task-copilot-schema.sql"


@pytest.mark.skipif(not SHARED.is_file(), reason="../shared/ is not beside this checkout")
def test_packaged_schema_matches_shared_copy():
    assert statements(schema_sql()) == statements(SHARED.read_text(encoding="utf-8"))
    assert "else the project folder's name." not in schema_sql()  # the default workspace is the MD5 one


def statements(sql: str) -> str:
    """The schema after its leading comment block."""
    lines = sql.splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("--"))
    return "".join(lines[first:])
