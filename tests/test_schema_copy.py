"""The packaged schema must stay a verbatim copy of the shared Task Copilot schema."""

from pathlib import Path

import pytest

from tests.support.taskdb import schema_sql

SHARED = Path(__file__).resolve().parents[2] / "shared" / "task-copilot-schema.sql"


@pytest.mark.skipif(not SHARED.is_file(), reason="../shared/ is not beside this checkout")
def test_packaged_schema_matches_shared_copy():
    assert schema_sql() == SHARED.read_text(encoding="utf-8")
