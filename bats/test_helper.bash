# Shared set-up for the dashboard's bats tests.
#
# Every test gets a fresh project in $BATS_TEST_TMPDIR/project: the runtime
# copied from template/ into .claude/orchestrator/ (tests/support/project.py's
# install_runtime, with a refresh_interval of 1 s), the root ./watch-status
# symlink taken from the template itself, and TASK_DB_PATH/WORKSPACE_ID pointing
# at $BATS_TEST_TMPDIR/tasks/demo-ws/tasks.db, which no test has until it makes
# one with real_db (the shared schema, through tests/support/taskdb.py).
# shellcheck shell=bash

bats_require_minimum_version 1.5.0

REPO=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
FIXTURE="$REPO/bats/fixture.py"
PTY_RUN="$REPO/bats/pty_run.py"
PYTHON=${PYTHON:-python3}

setup_project() {
  PROJECT="$BATS_TEST_TMPDIR/project"
  RUNTIME="$PROJECT/.claude/orchestrator"
  DB="$BATS_TEST_TMPDIR/tasks/demo-ws/tasks.db"
  WORKER_PIDS=''
  "$PYTHON" -c 'import sys; sys.path.insert(0, sys.argv[1])
from pathlib import Path
from tests.support.project import install_runtime
install_runtime(Path(sys.argv[2]))' "$REPO" "$RUNTIME"
  cp -P "$REPO/template/watch-status" "$PROJECT/watch-status"
  mkdir -p "$BATS_TEST_TMPDIR/home" "$BATS_TEST_TMPDIR/elsewhere"
  export HOME="$BATS_TEST_TMPDIR/home"
  export TASK_DB_PATH="$BATS_TEST_TMPDIR/tasks" WORKSPACE_ID=demo-ws
  export COLUMNS=100 LC_ALL
  LC_ALL=$(utf8_locale)
  unset NO_COLOR LINES CHECK_STREAMS_DEBUG WATCH_STATUS_DEBUG
  cd "$PROJECT" || return 1
}

teardown_project() {
  local pid
  if [ -d "${RUNTIME:-/nonexistent}/state" ]; then
    "$PYTHON" "$RUNTIME/orchestrate.py" stop --grace 1 >/dev/null 2>&1 || true
  fi
  for pid in ${WORKER_PIDS:-}; do
    kill "$pid" 2>/dev/null || true
  done
}

utf8_locale() {  # a UTF-8 locale this machine has (C.UTF-8 on Linux, en_US.UTF-8 on macOS)
  local name
  for name in C.UTF-8 C.utf8 en_US.UTF-8 en_US.utf8; do
    if locale -a 2>/dev/null | grep -qx "$name"; then
      printf '%s\n' "$name"
      return 0
    fi
  done
  printf 'C.UTF-8\n'
}

# ------------------------------------------------------------------ fixtures

real_db() {  # real_db SPEC_JSON: the database, built from a tests/support/taskdb.py spec
  printf '%s' "$1" | "$PYTHON" "$FIXTURE" db "$DB"
}

diamond_db() {  # the documented example: A; then B and C together; then Z
  real_db '{"streams": [
    {"id": "Stream-A", "name": "Foundation", "deps": []},
    {"id": "Stream-B", "name": "API Implementation", "deps": ["Stream-A"]},
    {"id": "Stream-C", "name": "UI Components", "deps": ["Stream-A"]},
    {"id": "Stream-Z", "name": "Integration", "deps": ["Stream-B", "Stream-C"]}]}'
}

set_status() {  # set_status STREAM STATUS: every task of STREAM
  "$PYTHON" "$FIXTURE" set-status "$DB" "$1" "$2"
}

fake_worker() {  # fake_worker STREAM: a live process carrying a worker token, and a pid file naming it
  local token
  token=$(printf '%s' "$1" | cksum | cut -d' ' -f1)
  ORCHESTRATE_KIT_TOKEN="bats$token" sleep 600 >/dev/null 2>&1 3>&- &
  WORKER_PIDS="$WORKER_PIDS $!"
  "$PYTHON" "$FIXTURE" worker "$RUNTIME" "$1" "$!" 2 "bats$token"
}

failed_stream() {  # failed_stream STREAM LAST_LOG_LINE: given up on after 3 attempts, with a log
  mkdir -p "$RUNTIME/logs"
  printf 'starting\n%s\n\n' "$2" >"$RUNTIME/logs/$1.log"
  "$PYTHON" "$FIXTURE" failed "$RUNTIME" "$1" 3 "worker exited with code 1"
}

# ------------------------------------------------------------------ running the dashboard

# shellcheck disable=SC2120  # tests pass it options (--db PATH)
frame() {  # frame [ARG...]: one frame through the root symlink, as a user runs it
  "$PROJECT/watch-status" --once "$@"
}

on_terminal() {  # on_terminal [pty_run.py option...] -- COMMAND...: run on a pseudo-terminal
  "$PYTHON" "$PTY_RUN" "$@"
}

# ------------------------------------------------------------------ assertions

fail() {
  printf '%s\n' "$@" >&2
  return 1
}

contains() {  # contains TEXT: $output holds TEXT
  case $output in
    *"$1"*) return 0 ;;
  esac
  fail "expected to find: $1" "in output:" "$output"
}

lacks() {  # lacks TEXT: $output does not hold TEXT
  case $output in
    *"$1"*) fail "expected not to find: $1" "in output:" "$output" ;;
  esac
}

is_row_of() {  # is_row_of LINE STREAM: LINE is STREAM's row ("  G WORD ...  STREAM[  name]")
  case $1 in
    "  "[![:space:]]" "*) ;;
    *) return 1 ;;
  esac
  case $1 in
    *"  $2" | *"  $2  "*) return 0 ;;
  esac
  return 1
}

# shellcheck disable=SC2034  # row and detail are for the tests to read
row_of() {  # row_of STREAM: the frame line that shows STREAM, in $row; the line under it in $detail
  local line found=''
  row='' detail=''
  while IFS= read -r line; do
    if [ -n "$found" ]; then
      case $line in
        "      "*) detail=${line#"      "} ;;
      esac
      return 0
    fi
    if is_row_of "$line" "$1"; then
      row=$line found=1
    fi
  done <<<"$output"
  [ -n "$found" ] || fail "no row for stream $1 in:" "$output"
}

shows_state() {  # shows_state STREAM GLYPH WORD: STREAM's row starts with GLYPH and WORD
  row_of "$1" || return 1
  case $row in
    "  $2 $3 "*) return 0 ;;
  esac
  fail "stream $1: expected '$2 $3', got:" "$row"
}

no_escape_codes() {  # $output holds no ESC byte at all
  case $output in
    *$'\033'*) fail "expected no escape codes, got:" "$(printf '%s' "$output" | cat -v)" ;;
  esac
}

status_states() {  # "stream<TAB>state" lines from `orchestrate.py status --json`
  "$PYTHON" "$RUNTIME/orchestrate.py" status --json | "$PYTHON" "$FIXTURE" states
}

agrees_with_status() {  # every stream's word in the frame is its state in `orchestrate.py status --json`
  local states sid state word
  states=$(status_states) || fail "orchestrate.py status --json failed"
  [ -n "$states" ] || fail "status --json listed no streams"
  output=$(COLUMNS=200 NO_COLOR=1 frame || true)
  while IFS=$'\t' read -r sid state; do
    case $state in
      complete) word=DONE ;;
      running) word=RUN ;;
      ready) word=READY ;;
      waiting) word=WAIT ;;
      failed) word=FAIL ;;
      *) word=INVALID ;;
    esac
    row_of "$sid" || return 1
    case $row in
      "  "?" $word "*) ;;
      *) fail "stream $sid is $state in status --json, but the dashboard shows:" "$row" || return 1 ;;
    esac
  done <<<"$states"
}
