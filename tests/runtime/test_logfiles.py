"""Worker logs: the last lines read from the end of a large file, and rotation by size."""

import os
import tracemalloc

import pytest

from tests.runtime.runtime_import import logfiles

SAMPLES = [
    b"", b"\n", b"a", b"a\n", b"a\nb", b"\n\n\n", b"one\r\ntwo\r\nthree\r\n", b"x\r\n\r\ny",
    "caf\u00e9 \u20ac \U0001F600\nna\u00efve\n".encode(), b"bad \xff\xfe bytes\nok\n", b"a\rb\nc",
]


def reference(data: bytes, n: int) -> list:
    """The obvious way, reading everything: what tail_lines must agree with."""
    lines = data.split(b"\n") if data else []
    if data.endswith(b"\n"):
        lines.pop()
    return [line.removesuffix(b"\r").decode("utf-8", "replace") for line in lines][-n:] if n > 0 else []


@pytest.mark.parametrize("block", [1, 2, 3, 5, 64 * 1024])
@pytest.mark.parametrize("data", SAMPLES)
def test_tail_lines_agrees_with_reading_the_whole_file(tmp_path, data, block):
    path = tmp_path / "a.log"
    path.write_bytes(data)
    for n in range(0, 6):
        assert logfiles.tail_lines(path, n, block=block) == reference(data, n), (n, block)


def test_tail_lines_drops_crlf_keeps_a_last_line_without_newline_and_replaces_bad_bytes(tmp_path):
    path = tmp_path / "a.log"
    path.write_bytes(b"one\r\ntwo\r\nthree")
    assert logfiles.tail_lines(path, 2) == ["two", "three"]
    path.write_bytes("caf\u00e9\n".encode() + b"\xff\n")
    assert logfiles.tail_lines(path, 5) == ["caf\u00e9", "\ufffd"]


def test_tail_lines_of_a_200_mb_log_reads_only_its_end(tmp_path):
    path = tmp_path / "big.log"
    with open(path, "wb") as handle:
        handle.truncate(200 * 1024 * 1024)  # sparse: costs no disk and no time
        handle.seek(0, os.SEEK_END)
        handle.write(b"".join(b"line %d\n" % i for i in range(100_000)))
    tracemalloc.start()
    try:
        lines = logfiles.tail_lines(path, 2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert lines == ["line 99998", "line 99999"]
    assert peak < 512 * 1024, peak  # a block or two, not the 200 MB file


def fill(path, text: str, size: int = 0) -> None:
    path.write_text(text + "x" * size, encoding="utf-8")


def test_a_log_under_the_limit_is_left_alone(tmp_path):
    log = tmp_path / "A.log"
    fill(log, "small")
    assert logfiles.rotate_log(log, max_bytes=100, keep=3) is None
    assert log.read_text() == "small" and sorted(p.name for p in tmp_path.iterdir()) == ["A.log"]
    assert logfiles.rotate_log(tmp_path / "missing.log", 100, 3) is None


def test_a_large_log_is_shifted_and_the_oldest_dropped(tmp_path):
    log = tmp_path / "A.log"
    fill(log, "current", 200)
    for number in (1, 2, 3):
        fill(tmp_path / f"A.log.{number}", f"old {number}")
    assert logfiles.rotate_log(log, max_bytes=100, keep=3) is None
    assert not log.exists()
    assert (tmp_path / "A.log.1").read_text().startswith("current")
    assert [(tmp_path / f"A.log.{n}").read_text() for n in (2, 3)] == ["old 1", "old 2"]
    assert not (tmp_path / "A.log.4").exists()


def test_keep_zero_removes_the_large_log(tmp_path):
    log = tmp_path / "A.log"
    fill(log, "current", 200)
    assert logfiles.rotate_log(log, max_bytes=100, keep=0) is None
    assert list(tmp_path.iterdir()) == []


def test_rotation_never_follows_a_link_out_of_the_logs_folder(tmp_path):
    logs, outside = tmp_path / "logs", tmp_path / "outside"
    logs.mkdir()
    outside.mkdir()
    precious = outside / "precious.txt"
    fill(precious, "keep me", 500)
    (logs / "A.log").symlink_to(precious)
    message = logfiles.rotate_log(logs / "A.log", max_bytes=100, keep=3)
    assert message and "A.log" in message
    assert (logs / "A.log").is_symlink() and precious.read_text().startswith("keep me")

    (logs / "A.log").unlink()
    fill(logs / "B.log", "current", 200)
    (logs / "B.log.1").symlink_to(precious)  # shifted to .2, then dropped as the oldest
    fill(logs / "B.log.2", "old 2")
    assert logfiles.rotate_log(logs / "B.log", max_bytes=100, keep=2) is None
    assert (logs / "B.log.2").is_symlink() and precious.read_text().startswith("keep me")
    assert sorted(p.name for p in outside.iterdir()) == ["precious.txt"]


def test_a_failure_to_rotate_is_reported_not_raised(tmp_path):
    log = tmp_path / "A.log"
    fill(log, "current", 200)
    (tmp_path / "A.log.1").mkdir()
    (tmp_path / "A.log.1" / "inside").write_text("x")
    message = logfiles.rotate_log(log, max_bytes=100, keep=1)
    assert message is not None and message.startswith("could not rotate A.log:")
    assert log.read_text().startswith("current")
