#!/usr/bin/env bats
# check-streams: one frame of the dashboard, drawn through the root ./watch-status
# symlink (watch-status --once) as a user runs it, against real-schema databases.

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

every_state_db() {  # every_state_db [MORE_STREAMS [MORE_KEYS]]: one stream in each state the dashboard knows
  real_db '{"streams": [
    {"id": "S-done", "name": "Finished work", "tasks": 3, "statuses": ["completed", "completed", "cancelled"]},
    {"id": "S-run", "name": "Being worked on", "tasks": 4, "statuses": ["completed", "in_progress"]},
    {"id": "S-ready", "tasks": 2},
    {"id": "S-wait", "name": "Needs S-run", "deps": ["S-run", "S-done"], "tasks": 2},
    {"id": "S-fail", "name": "Broken", "tasks": 2, "statuses": ["completed", "blocked"]},
    {"id": "S-bad", "name": "Depends on a ghost", "deps": ["S-ghost"], "tasks": 1}'"${1:-}"']'"${2:-}"'}'
  fake_worker S-run
  failed_stream S-fail "error: the build broke on line 42"
}

@test "every state is shown with its glyph, word, counts and details" {
  every_state_db
  run -0 frame
  shows_state S-done ✔ DONE
  [ "${row#*3/3}" != "$row" ]
  shows_state S-run ▶ RUN
  case $row in *"1/4    2  1m1"[5-9]"s  S-run  Being worked on") ;; *) fail "running row: $row" ;; esac
  shows_state S-ready ○ READY
  shows_state S-wait … WAIT
  [ "$detail" = "↳ waiting on S-run" ]
  shows_state S-fail ✖ FAIL
  case $row in *"1/2    3      -  S-fail  Broken") ;; *) fail "failed row: $row" ;; esac
  [ "$detail" = "↳ last log: error: the build broke on line 42" ]
  shows_state S-bad '!' INVALID
  [ "$detail" = "↳ invalid: depends on unknown stream 'S-ghost'" ]
  contains "Cannot run (invalid dependencies)"
  contains "Stream 'S-bad' depends on unknown stream 'S-ghost'"
  contains "Tasks     5/14 done (36%), 1 in progress, 7 pending, 1 blocked"
  contains "Streams   1/6 complete, 1 worker running, orchestrator not running"
}

@test "streams are grouped by dependency level, invalid ones last" {
  every_state_db
  run -0 frame
  levels=$(printf '%s\n' "$output" | grep -E '^(Level|Cannot run)')
  [ "$levels" = "$(printf 'Level 0\nLevel 1\nCannot run (invalid dependencies)')" ]
  order=$(printf '%s\n' "$output" | grep -oE '  S-[a-z]+' | tr -d ' ' | tr '\n' ' ')
  [ "$order" = "S-done S-fail S-ready S-run S-wait S-bad " ]
}

@test "the frame and orchestrate.py status --json agree on every stream's state" {
  every_state_db
  agrees_with_status
}

@test "the documented diamond, at several moments of a real run" {
  diamond_db
  # Before the run: A can start, the others wait for what they depend on.
  run -0 frame
  shows_state Stream-A ○ READY
  shows_state Stream-B … WAIT
  [ "$detail" = "↳ waiting on Stream-A" ]
  shows_state Stream-Z … WAIT
  [ "$detail" = "↳ waiting on Stream-B, Stream-C" ]
  contains "The orchestrator is not running"
  agrees_with_status

  # A real orchestrator and the fake claude: A completes, B's worker hangs, C's fails for good.
  printf '{"Stream-A": ["ok"], "Stream-B": ["hang"], "Stream-C": ["fail"]}' >"$BATS_TEST_TMPDIR/plan.json"
  printf 'max_restarts = 0\npoll_interval = 0.2\nrestart_delay = 0.2\n' >>"$RUNTIME/orchestrator.conf"
  # IS_SANDBOX: CI runs as root, where Claude Code (and so the preflight) accepts skipping permissions only in a sandbox
  export PATH="$REPO/tests/support/bin:$PATH" FAKE_CLAUDE_PLAN="$BATS_TEST_TMPDIR/plan.json" FAKE_CLAUDE_DELAY=0.05 \
    IS_SANDBOX=1
  run -0 "$PYTHON" "$RUNTIME/orchestrate.py" start --detach
  for _ in $(seq 150); do
    [ "$(status_states | tr '\n\t' ' :')" = "Stream-A:complete Stream-B:running Stream-C:failed Stream-Z:waiting " ] && break
    sleep 0.2
  done
  run -0 frame
  shows_state Stream-A ✔ DONE
  shows_state Stream-B ▶ RUN
  case $row in *"0/2    1     "[0-9]"s  Stream-B  API Implementation") ;; *) fail "B: $row" ;; esac
  shows_state Stream-C ✖ FAIL
  case $detail in "↳ worker exited with code 1"*"fake claude: failing on purpose") ;; *) fail "C: $detail" ;; esac
  shows_state Stream-Z … WAIT
  [ "$detail" = "↳ waiting on Stream-B, Stream-C" ]
  contains "1 worker running, orchestrator pid"
  agrees_with_status

  # Stopped; B and C finished by hand: Z is next.
  run -0 "$PYTHON" "$RUNTIME/orchestrate.py" stop --grace 1
  set_status Stream-B completed
  set_status Stream-C completed
  run -0 frame
  shows_state Stream-B ✔ DONE
  shows_state Stream-C ✔ DONE
  shows_state Stream-Z ○ READY
  contains "Streams   3/4 complete, 0 workers running, orchestrator not running"
  agrees_with_status

  # Z done: the run is over.
  set_status Stream-Z completed
  run -0 frame
  shows_state Stream-Z ✔ DONE
  contains "Tasks     8/8 done (100%)"
  contains "All 4 stream(s) complete."
  lacks "The orchestrator is not running"
  agrees_with_status
}

@test "hostile stream names are printed inert and nothing in them is executed" {
  real_db '{"streams": [
    {"id": "$(touch pwned-dollar)", "name": "`touch pwned-backtick`; touch pwned-semicolon"},
    {"id": "esc", "name": "\u001b[31mRED\u001b[0m \u001b]0;title\u0007 \u001b[2J"},
    {"id": "tab\tand\nnewline", "name": "cr\rlf\u2028rtl\u202eevil"},
    {"id": "slash", "name": "back\\slash \\x1b not an escape", "deps": ["$(touch pwned-dollar)"]},
    {"id": "long", "name": "'"$(printf 'x%.0s' $(seq 300))"'"},
    {"id": "unicode", "name": "Ünïcødé 名前 ✓ café"}]}'
  failed_stream esc $'\033[41mlog with escapes\033[0m and a \a bell'
  mkdir -p "$BATS_TEST_TMPDIR/elsewhere/cwd"
  cd "$BATS_TEST_TMPDIR/elsewhere/cwd"
  COLUMNS=200 run -0 "$PROJECT/watch-status" --once
  [ -z "$(find "$BATS_TEST_TMPDIR" -name 'pwned*')" ]
  no_escape_codes
  case $output in *$'\a'* | *$'\r'* | *$'\t'*) fail "raw control characters in the frame" ;; esac
  row_of '$(touch pwned-dollar)'
  contains '`touch pwned-backtick`; touch pwned-semicolon'
  row_of esc
  contains '\x1b[31mRED\x1b[0m \x1b]0;title\x07 \x1b[2J'
  [ "$detail" = '↳ last log: \x1b[41mlog with escapes\x1b[0m and a \x07 bell' ]
  row_of 'tab\tand\nnewline'
  contains 'cr\rlf\u2028rtl\u202eevil'
  contains 'back\\slash \\x1b not an escape'
  row_of slash
  contains '↳ waiting on $(touch pwned-dollar)'
  row_of long
  case $row in *"long  xxxxxxxx"*"x…") ;; *) fail "long name not cut: $row" ;; esac
  row_of unicode
  contains "unicode  Ünïcødé 名前 ✓ café"
  [ "$(printf '%s\n' "$output" | grep -c '^  [^ ] ')" -eq 6 ]
}

@test "a hostile workspace name is printed inert too" {
  WORKSPACE_ID=$'ws\033[2J$(touch pwned)' run -1 frame
  no_escape_codes
  contains 'ws\x1b[2J$(touch'  # the message is wrapped at the space
  [ -z "$(find "$BATS_TEST_TMPDIR" -name 'pwned*')" ]
}

@test "COLUMNS=60 keeps every line within 60 columns" {
  every_state_db ',
    {"id": "a-very-long-stream-identifier-that-goes-on-and-on", "name": "and a long name as well, longer than any terminal is wide"},
    {"id": "wide", "name": "名前名前名前名前名前名前名前名前名前名前名前名前名前名前"},
    {"id": "waits", "deps": ["a-very-long-stream-identifier-that-goes-on-and-on", "wide", "S-one-more-dependency"]}' ', "raw": [["pending", "not json"]]'
  failed_stream wide "$(printf 'error %.0s' $(seq 40))"
  for width in 60 45 30; do
    COLUMNS=$width run -0 frame
    [ "$(printf '%s\n' "$output" | "$PYTHON" "$FIXTURE" columns)" -le "$width" ] ||
      fail "a line is wider than $width columns:" "$output"
  done
  COLUMNS=60 run -0 frame
  contains "…"
  contains "its metadata is not valid"
  row_of wide
  contains "wide  名前"
}

@test "the column titles stay whole words at 60 columns and below" {
  every_state_db
  for width in 80 60 50; do
    COLUMNS=$width run -0 frame
    printf '%s\n' "$output" | grep -Eq '^  STATE +((PROGRESS|PROG) +)?TASKS( +TRY +TIME)? +STREAM$' ||
      fail "the column titles are cut at $width columns:" "$output"
  done
  COLUMNS=64 run -0 frame  # a bar of 6: its title shortened, never cut
  contains "PROG "
  COLUMNS=200 run -0 frame
  contains "PROGRESS"
}

@test "at 60 columns names stay whole (the bar gives way first) and the start command stays one line" {
  diamond_db
  COLUMNS=60 run -0 frame
  for label in "Stream-A  Foundation" "Stream-B  API Implementation" "Stream-C  UI Components" \
    "Stream-Z  Integration"; do
    row_of "${label%% *}"
    case $row in
      *"  $label") ;;
      *) fail "cut at 60 columns: $label" "$output" ;;
    esac
  done
  contains "  STATE     TASKS  TRY   TIME  STREAM"  # TRY and TIME kept
  printf '%s\n' "$output" | grep -qx '  python3 .claude/orchestrator/orchestrate.py start' ||
    fail "the start command is not a line of its own:" "$output"
  [ "$(printf '%s\n' "$output" | "$PYTHON" "$FIXTURE" columns)" -le 60 ]
}

@test "COLUMNS=60 holds on a terminal with colours too" {
  every_state_db
  run -0 on_terminal --cols 60 -- env COLUMNS=60 "$RUNTIME/check-streams"
  contains $'\033['
  [ "$(printf '%s\n' "$output" | tr -d '\r' | "$PYTHON" "$FIXTURE" columns)" -le 60 ]
}

@test "colours only on a terminal, never with NO_COLOR, and --color chooses" {
  every_state_db
  run -0 frame
  no_escape_codes
  run -0 on_terminal -- "$RUNTIME/check-streams"
  contains $'\033[32m✔ DONE'
  contains $'\033[31m✖ FAIL'
  run -0 on_terminal -- env NO_COLOR=1 "$RUNTIME/check-streams"
  no_escape_codes
  contains "✔ DONE"
  run -0 "$RUNTIME/check-streams" --color always
  contains $'\033[36m▶ RUN'
  NO_COLOR=1 run -0 "$RUNTIME/check-streams" --color=always
  no_escape_codes
  run -0 on_terminal -- "$RUNTIME/check-streams" --color never
  no_escape_codes
  TERM=dumb run -0 on_terminal -- "$RUNTIME/check-streams"
  no_escape_codes
}

@test "plain ASCII when the locale is not UTF-8" {
  every_state_db ', {"id": "unicode", "name": "Ünïcødé 名前"}'
  LC_ALL=C run -0 frame
  shows_state S-done + DONE
  shows_state S-run '>' RUN
  shows_state S-ready o READY
  shows_state S-wait . WAIT
  [ "$detail" = "-> waiting on S-run" ]
  shows_state S-fail x FAIL
  shows_state S-bad '!' INVALID
  contains '\xdcn\xefc\xf8d\xe9 \u540d\u524d'
  contains "  + DONE    ##########"
  [ -z "$(printf '%s' "$output" | LC_ALL=C tr -d '\n -~')" ]
}

@test "no database: says where it looked and how to point at one" {
  run -1 --separate-stderr frame
  contains "No Task Copilot database yet"
  contains "$BATS_TEST_TMPDIR/tasks/demo-ws/tasks.db"
  contains "TASK_DB_PATH"
  contains "WORKSPACE_ID"
  contains "--db PATH"
  [ -z "$stderr" ]
  diamond_db
  mv "$DB" "$BATS_TEST_TMPDIR/elsewhere/mine.db"
  run -0 frame --db "$BATS_TEST_TMPDIR/elsewhere/mine.db"
  shows_state Stream-A ○ READY
}

@test "an unreadable database is reported, not a traceback" {
  mkdir -p "$(dirname "$DB")"
  printf 'this is not sqlite, just text long enough to look like a header %.0s' $(seq 20) >"$DB"
  run -1 --separate-stderr frame
  contains "Cannot read the Task Copilot database"
  contains "not a readable SQLite database"
  lacks "Traceback"
  [ -z "$stderr" ]
}

@test "no streams: says what stream metadata looks like" {
  real_db '{"raw": [["pending", "{\"title\": \"no stream here\"}"], ["pending", null]]}'
  run -0 frame
  contains "No streams found in Task Copilot database $DB."
  contains '{"streamId": "Stream-A", "streamName": "Foundation", "dependencies": []}'
  lacks "STATE"
}

@test "all complete says so" {
  diamond_db
  for s in Stream-A Stream-B Stream-C Stream-Z; do set_status "$s" completed; done
  run -0 frame
  contains "All 4 stream(s) complete."
  contains "Streams   4/4 complete"
}

@test "one helper process per frame, whatever the number of streams" {
  real_db "{\"streams\": [$(for i in $(seq 200); do printf '{"id": "S%03d", "deps": ["S%03d"]},' "$i" $((i - 1)); done)
    {\"id\": \"S000\"}]}"
  mkdir -p "$BATS_TEST_TMPDIR/bin"
  printf '#!/bin/sh\necho x >>"%s/calls"\nexec %s "$@"\n' "$BATS_TEST_TMPDIR" "$(command -v "$PYTHON")" >"$BATS_TEST_TMPDIR/bin/python3"
  chmod +x "$BATS_TEST_TMPDIR/bin/python3"
  PATH="$BATS_TEST_TMPDIR/bin:$PATH" run -0 "$RUNTIME/check-streams"
  [ "$(wc -l <"$BATS_TEST_TMPDIR/calls")" -eq 1 ]
  [ "$(printf '%s\n' "$output" | grep -c '^  [^ ] ')" -eq 201 ]
}

@test "--help prints the usage; bad arguments are usage errors" {
  run -0 "$RUNTIME/check-streams" --help
  [ "${lines[0]}" = "Usage: check-streams [--db PATH] [--color WHEN]" ]
  contains "NO_COLOR"
  run -2 --separate-stderr "$RUNTIME/check-streams" --bogus
  [ "$stderr" = "check-streams: unknown argument: --bogus (see --help)" ]
  run -2 --separate-stderr "$RUNTIME/check-streams" --color sometimes
  [ "$stderr" = "check-streams: --color takes auto, always or never, not: sometimes" ]
  run -2 --separate-stderr "$RUNTIME/check-streams" --db
  [ "$stderr" = "check-streams: --db needs a path (see --help)" ]
}

@test "a missing python3 is said plainly" {
  diamond_db
  CS_PYTHON=no-such-python run -1 --separate-stderr "$RUNTIME/check-streams"
  [ "$stderr" = "check-streams: no-such-python not found on PATH; the dashboard reads the database with Python 3.9+" ]
}
