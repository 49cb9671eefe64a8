#!/usr/bin/env bats
# watch-status: the dashboard redrawn in place, run through the root ./watch-status
# symlink, on a real pseudo-terminal where the terminal matters (bats/pty_run.py).

# shellcheck disable=SC2016,SC2030,SC2031,SC2154
# (SC2016: single-quoted $(...) and backticks are test data, never to run; SC2030/SC2031: bats
# runs each test in a subshell, so its exports are meant to stay there; SC2154: row and detail
# are set by test_helper.bash's row_of.)

load test_helper

setup() {
  setup_project
}

teardown() {
  teardown_project
}

diamond_spec='{"streams": [{"id": "Stream-A", "name": "Foundation"}, {"id": "Stream-B", "deps": ["Stream-A"]}]}'

@test "--once draws the check-streams frame through the root symlink" {
  diamond_db
  run -0 "$PROJECT/watch-status" --once
  no_escape_codes
  shows_state Stream-A ○ READY
  once=$output
  run -0 "$RUNTIME/check-streams"
  [ "$(printf '%s\n' "$once" | sed 1d)" = "$(printf '%s\n' "$output" | sed 1d)" ]
}

@test "runs from any folder, through the symlink by any path, and finds the project's database" {
  unset WORKSPACE_ID # the workspace is then the project folder's name, wherever we stand
  DB="$BATS_TEST_TMPDIR/tasks/project/tasks.db"
  diamond_db
  mkdir -p "$BATS_TEST_TMPDIR/elsewhere/bin"
  ln -s "$PROJECT/watch-status" "$BATS_TEST_TMPDIR/elsewhere/bin/ws"
  cd "$BATS_TEST_TMPDIR/elsewhere"
  for command in "$PROJECT/watch-status" ../project/watch-status bin/ws; do
    run -0 "$command" --once
    contains "Streams of project at"
    shows_state Stream-B … WAIT
  done
  PATH="$BATS_TEST_TMPDIR/elsewhere/bin:$PATH" run -0 ws --once
  shows_state Stream-A ○ READY
}

@test "started before the database and the orchestrator exist, it picks them up" {
  [ ! -e "$DB" ]
  [ ! -e "$RUNTIME/state" ]
  make_db="printf %s $(printf '%q' "$diamond_spec") | $PYTHON $FIXTURE db $DB"
  run -0 on_terminal --frames 1 --run "$make_db" --wait "Stream-A" --frames 1 --keys '\x03' \
    -- "$PROJECT/watch-status" 0.2
  contains "No Task Copilot database yet"
  contains "$DB"
  contains "○ READY"
  case ${output%%Stream-A*} in
    *"No Task Copilot database yet"*) ;;
    *) fail "the missing database was not shown before the streams" ;;
  esac
}

@test "Ctrl-C restores the cursor and exits 0" {
  diamond_db
  run -0 on_terminal --frames 1 --keys '\x03' -- "$PROJECT/watch-status" 600
  contains $'\033[?25l'
  case ${output##*$'\033[?25l'} in *$'\033[?25h'*) ;; *) fail "no cursor show after the last hide" ;; esac
}

@test "a TERM signal restores the cursor and exits 0, at once even with a long interval" {
  run -0 on_terminal --timeout 10 --frames 1 --signal TERM -- "$PROJECT/watch-status" 600
  case ${output##*$'\033[?25l'} in *$'\033[?25h'*) ;; *) fail "the cursor was left hidden" ;; esac
  case $output in *$'\033[?25h\r') ;; *) fail "the cursor show is not the last thing written" ;; esac
}

@test "redraws in place: cursor home and clear to the end, one full clear only" {
  diamond_db
  run -0 on_terminal --frames 3 --signal TERM -- "$PROJECT/watch-status" 0.2
  [ "$(printf '%s' "$output" | grep -o $'\033\\[2J' | wc -l)" -eq 1 ]
  [ "$(printf '%s' "$output" | grep -o $'\033\\[H' | wc -l)" -ge 4 ]
  contains $'\033[K\r\n'
  contains $'\033[K\033[J'
}

@test "a resized window is redrawn at once" {
  diamond_db
  run -0 on_terminal --timeout 10 --frames 1 --signal WINCH --frames 1 --signal TERM -- "$PROJECT/watch-status" 600
}

@test "the interval defaults to refresh_interval in orchestrator.conf" {
  diamond_db
  printf 'refresh_interval = 0.2\n' >>"$RUNTIME/orchestrator.conf"
  run -0 on_terminal --timeout 8 --frames 4 --signal TERM -- "$PROJECT/watch-status"
  printf 'refresh_interval = 7\n' >"$RUNTIME/orchestrator.conf"
  run -0 bash -c '. "$1"; ws_configured_interval; echo "$WS_INTERVAL"' _ "$RUNTIME/watch-status"
  [ "$output" = 7 ]
  rm "$RUNTIME/orchestrator.conf"
  run -0 bash -c '. "$1"; ws_configured_interval; echo "$WS_INTERVAL"' _ "$RUNTIME/watch-status"
  [ "$output" = 15 ]
  printf 'refresh_interval = soon\n' >"$RUNTIME/orchestrator.conf"
  run -2 --separate-stderr "$PROJECT/watch-status"
  [ "$stderr" = "watch-status: refresh_interval in $RUNTIME/orchestrator.conf must be a number of seconds above 0, not: soon" ]
}

@test "orchestrator.local.conf, the user's own settings, wins over orchestrator.conf" {
  printf 'refresh_interval = 7\n' >"$RUNTIME/orchestrator.conf"
  printf '# mine\nrefresh_interval = 3\n' >"$RUNTIME/orchestrator.local.conf"
  run -0 bash -c '. "$1"; ws_configured_interval; echo "$WS_INTERVAL"' _ "$RUNTIME/watch-status"
  [ "$output" = 3 ]
  printf 'refresh_interval = never\n' >"$RUNTIME/orchestrator.local.conf"
  run -2 --separate-stderr "$PROJECT/watch-status"
  [ "$stderr" = "watch-status: refresh_interval in $RUNTIME/orchestrator.local.conf must be a number of seconds above 0, not: never" ]
}

@test "not on a terminal: frames one after another, without escape codes" {
  diamond_db
  run -0 on_terminal --pipe --wait "Streams of" --wait "Streams of" --signal TERM -- "$PROJECT/watch-status" 0.2
  no_escape_codes
  [ "$(printf '%s\n' "$output" | grep -c '^Streams of demo-ws')" -ge 2 ]
}

@test "a window smaller than the frame shows what fits and says how much is hidden" {
  real_db "{\"streams\": [$(for i in $(seq 30); do printf '{"id": "S%02d"},' "$i"; done) {\"id\": \"last\"}]}"
  run -0 on_terminal --rows 12 --frames 1 --signal TERM -- "$PROJECT/watch-status" 600
  first=${output#*$'\033[2J'}
  first=${first%%$'\033[J'*}
  [ "$(printf '%s' "$first" | grep -c '')" -le 12 ]
  case $first in *"more line(s): make the window taller, or run check-streams"*) ;; *) fail "$first" ;; esac
}

@test "--help, and bad arguments are usage errors" {
  run -0 "$PROJECT/watch-status" --help
  [ "${lines[0]}" = "Usage: watch-status [--db PATH] [INTERVAL]" ]
  for bad in 0 -1 abc 1.2.3 . 5. 0.0; do
    run -2 --separate-stderr "$PROJECT/watch-status" -- "$bad"
    [ -n "$stderr" ]
  done
  run -2 --separate-stderr "$PROJECT/watch-status" abc
  [ "$stderr" = "watch-status: INTERVAL must be a number of seconds above 0, not: abc" ]
  run -2 --separate-stderr "$PROJECT/watch-status" 1 2
  [ "$stderr" = "watch-status: one INTERVAL only, got 1 and 2 (see --help)" ]
  run -2 --separate-stderr "$PROJECT/watch-status" --fast
  [ "$stderr" = "watch-status: unknown option: --fast (see --help)" ]
}

@test "--once with no database exits 1 and says where it looked" {
  run -1 "$PROJECT/watch-status" --once
  contains "No Task Copilot database found. Looked at: $DB"
}

conflict_in() {  # conflict_in FILE LINE: merge-conflict markers as copier's upgrade leaves them, after LINE
  "$PYTHON" - "$1" "$2" <<'PY'
import sys
path, after = sys.argv[1], int(sys.argv[2])
lines = open(path, encoding="utf-8").read().splitlines(keepends=True)
lines[after:after] = ["<<<<<<< before updating\n", "old_setting=1\n", "=======\n", "new_setting=2\n",
                      ">>>>>>> after updating\n"]
open(path, "w", encoding="utf-8").writelines(lines)
PY
}

@test "conflict markers an upgrade left name the file and line, as doctor does, never a bash syntax error" {
  diamond_db
  local file line
  for file in watch-status check-streams check_streams_data.py _orchestrate_kit/status.py; do
    cp -a "$RUNTIME" "$BATS_TEST_TMPDIR/saved"
    line=$(($(wc -l <"$RUNTIME/$file") / 2))  # the middle of the file: past anything run before it
    conflict_in "$RUNTIME/$file" "$line"
    run -1 --separate-stderr "$PROJECT/watch-status" --once
    [ "$stderr" = "${stderr#*syntax error}" ] || fail "$file: a bash syntax error:" "$stderr"
    case $stderr in
      *"conflict markers at $RUNTIME/$file:$((line + 1)) (left by an upgrade: resolve them, then git add and commit"*) ;;
      *) fail "$file: the marker was not named with its line ($((line + 1))):" "$stderr" ;;
    esac
    rm -rf "$RUNTIME"
    mv "$BATS_TEST_TMPDIR/saved" "$RUNTIME"
  done
  run -0 "$PROJECT/watch-status" --once  # resolved: the frame is back
}
