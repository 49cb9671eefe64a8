"""atomic.write_text: the one way the runtime replaces a file other processes read."""

import pytest

from tests.runtime.runtime_import import atomic


def test_replaces_the_whole_file_and_leaves_nothing_beside_it(tmp_path):
    path = tmp_path / "run.json"
    path.write_text("old and longer than the new content\n")
    atomic.write_text(path, "new ✓\n")
    assert path.read_text(encoding="utf-8") == "new ✓\n"
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_a_write_that_cannot_finish_raises_and_removes_its_temporary_file(tmp_path):
    target = tmp_path / "busy"
    target.mkdir()
    (target / "inside").write_text("a folder cannot be replaced by a file\n")
    with pytest.raises(OSError):
        atomic.write_text(target, "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]
    assert (target / "inside").is_file()
