"""The merge check's own record and status (git/check_record.py, git/check_wrapper.py): what a restarted
orchestrator reads back to take the verdict of a check a killed one left. Everything read back may have
been edited by an agent: a record of the wrong shape is absent with a warning, a status that is not
exactly the wrapper's, for this check, is unknown; nothing raises. The wrapper runs for real."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

import tests.runtime.runtime_import  # noqa: F401  (puts the runtime on sys.path)
from _orchestrate_kit.executor import Ended  # noqa: E402
from _orchestrate_kit.git import check_record as cr  # noqa: E402

NONCE = "0123456789abcdef"
RECORD = cr.CheckRecord("Stream-A", "make test", "orchestrate/run-1", "a" * 40, "b" * 40, 120, 1_790_000_000.5,
                        "4242@123", NONCE)


def write(state, name, text):
    (state / name).write_text(text, encoding="utf-8")


def test_a_saved_record_reads_back_as_it_was(tmp_path):
    cr.save_check(tmp_path / "state", RECORD)
    assert cr.load_check(tmp_path / "state") == (RECORD, None)


def test_no_record_is_no_check_and_no_warning(tmp_path):
    assert cr.load_check(tmp_path) == (None, None)


@pytest.mark.parametrize("text", ["", "{", "not json", "[1, 2]", "null", "\"a string\"", "[" * 100000 + "]" * 100000,
                                  "\udcff"])
def test_a_damaged_record_is_absent_with_a_warning(tmp_path, text):
    (tmp_path / cr.RECORD).write_bytes(text.encode("utf-8", "surrogateescape"))
    record, warning = cr.load_check(tmp_path)
    assert record is None and warning and cr.RECORD in warning


def good() -> dict:
    return dict(json.loads(json.dumps(RECORD.__dict__)), version=cr.VERSION)


@pytest.mark.parametrize("field, value", [
    ("version", 2), ("version", None), ("stream_id", ""), ("stream_id", 7), ("command", None), ("command", ["make"]),
    ("before", "HEAD"), ("tip", "b" * 39), ("tip", "B" * 40), ("before", "a" * 40 + "\n"), ("nonce", "xyz"),
    ("key", ""), ("offset", -1), ("offset", 1.5), ("offset", True), ("offset", "120"), ("started_at", float("nan")),
    ("started_at", float("inf")), ("started_at", True), ("started_at", "1790000000"), ("started_at", 0),
    ("integration_branch", {"a": 1}), ("stream_id", "x" * 5000),
])
def test_a_record_with_a_field_of_the_wrong_type_or_shape_is_absent_with_a_warning(tmp_path, field, value):
    data = good()
    data[field] = value
    write(tmp_path, cr.RECORD, json.dumps(data))
    record, warning = cr.load_check(tmp_path)
    assert record is None and "not one the orchestrator wrote" in warning


def test_a_record_with_a_field_missing_is_absent(tmp_path):
    data = good()
    del data["tip"]
    write(tmp_path, cr.RECORD, json.dumps(data))
    assert cr.load_check(tmp_path)[0] is None


def test_a_record_that_is_a_fifo_or_huge_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / cr.RECORD)
    record, warning = cr.load_check(tmp_path)
    assert record is None and "not a regular file" in warning
    os.unlink(tmp_path / cr.RECORD)
    write(tmp_path, cr.RECORD, " " * (cr.MAX_BYTES + 1) + json.dumps(good()))
    assert cr.load_check(tmp_path)[0] is None


@pytest.mark.parametrize("data, ended", [
    ({"nonce": NONCE, "exit_code": 0, "ended_at": 1_790_000_004.0}, Ended(exit_code=0)),
    ({"nonce": NONCE, "exit_code": 3, "ended_at": 1_790_000_004}, Ended(exit_code=3)),
    ({"nonce": NONCE, "signal": 15, "ended_at": 1_790_000_004.0}, Ended(signal=15)),
])
def test_a_status_the_wrapper_wrote_reads_as_how_the_check_ended(tmp_path, data, ended):
    write(tmp_path, cr.STATUS, json.dumps(data))
    status = cr.read_status(tmp_path, NONCE)
    assert status is not None and status.ended == ended and status.ended_at == float(data["ended_at"])


@pytest.mark.parametrize("text", [
    "", "0", "garbage", "[]", json.dumps({"nonce": "ffffffffffffffff", "exit_code": 0, "ended_at": 1_790_000_004}),
    json.dumps({"exit_code": 0, "ended_at": 1_790_000_004}),
    json.dumps({"nonce": NONCE, "exit_code": True, "ended_at": 1_790_000_004}),
    json.dumps({"nonce": NONCE, "exit_code": 256, "ended_at": 1_790_000_004}),
    json.dumps({"nonce": NONCE, "exit_code": -1, "ended_at": 1_790_000_004}),
    json.dumps({"nonce": NONCE, "exit_code": "0", "ended_at": 1_790_000_004}),
    json.dumps({"nonce": NONCE, "exit_code": 0.0, "ended_at": 1_790_000_004}),
    json.dumps({"nonce": NONCE, "exit_code": 0, "signal": 9, "ended_at": 1_790_000_004}),
    json.dumps({"nonce": NONCE, "signal": 0, "ended_at": 1_790_000_004}),
    json.dumps({"nonce": NONCE, "exit_code": 0}), json.dumps({"nonce": NONCE, "exit_code": 0, "ended_at": "soon"}),
    '{"nonce": "%s", "exit_code": 0, "ended_at": NaN}' % NONCE,
])
def test_a_status_that_is_missing_foreign_or_garbage_is_unknown(tmp_path, text):
    write(tmp_path, cr.STATUS, text)
    assert cr.read_status(tmp_path, NONCE) is None
    assert cr.read_status(tmp_path / "nowhere", NONCE) is None


def test_clearing_removes_the_record_and_the_status_and_never_raises(tmp_path):
    cr.save_check(tmp_path, RECORD)
    write(tmp_path, cr.STATUS, "{}")
    cr.clear_check(tmp_path)
    assert not (tmp_path / cr.RECORD).exists() and not (tmp_path / cr.STATUS).exists()
    cr.clear_check(tmp_path / "nowhere")


def run_wrapped(tmp_path, script):
    argv = cr.wrapped(["/bin/sh", "-c", script], tmp_path, NONCE)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("code", [0, 3])
def test_the_wrapper_ends_as_its_command_did_and_writes_the_status(tmp_path, code):
    done = run_wrapped(tmp_path, f"echo checked; exit {code}")
    assert done.returncode == code and done.stdout == "checked\n"
    assert cr.read_status(tmp_path, NONCE).ended == Ended(exit_code=code)
    assert [p.name for p in tmp_path.iterdir()] == [cr.STATUS]  # no temporary file left


def test_a_command_killed_by_a_signal_is_a_signal_in_the_status_and_for_whoever_waits(tmp_path):
    done = run_wrapped(tmp_path, "kill -TERM $$")
    assert done.returncode == -signal.SIGTERM
    assert cr.read_status(tmp_path, NONCE).ended == Ended(signal=signal.SIGTERM)


def test_a_command_that_cannot_run_ends_127_with_a_reason(tmp_path):
    argv = cr.wrapped([str(tmp_path / "no-such-shell"), "-c", "true"], tmp_path, NONCE)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 127 and "cannot run the merge check" in done.stderr
    assert cr.read_status(tmp_path, NONCE).ended == Ended(exit_code=127)
