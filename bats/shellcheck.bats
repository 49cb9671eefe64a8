#!/usr/bin/env bats
# Static checks of the dashboard's bash: ShellCheck, and nothing newer than bash 3.2 (macOS).

load test_helper

setup() {
  SCRIPTS="$REPO/template/.claude/orchestrator"
}

@test "shellcheck passes on check-streams and watch-status" {
  command -v shellcheck >/dev/null || skip "shellcheck is not installed (make setup installs it)"
  cd "$SCRIPTS"
  run -0 shellcheck --external-sources check-streams watch-status
}

@test "shellcheck passes on the bats suite itself" {
  command -v shellcheck >/dev/null || skip "shellcheck is not installed (make setup installs it)"
  cd "$REPO/bats"
  run -0 shellcheck --external-sources test_helper.bash ./*.bats
}

@test "no bash 4+ features in the dashboard scripts (bash 3.2 is macOS's)" {
  # declare -A / local -A, mapfile/readarray, case changes, ;& and ;;& fall-through,
  # |&, &>>, coproc, ${x@Q}, namerefs, wait -n, [[ -v ]], printf '%(...)T'.
  run -1 grep -nE 'declare -[a-zA-Z]*A|local -[a-zA-Z]*[An]|mapfile|readarray|\$\{[a-zA-Z_]+(,,|\^\^|,|\^)\}|;;&|;&|\|&|&>>|coproc|@[QEPAa]\}|wait -n|-v [a-zA-Z_]+ *\]\]|%\(' \
    "$SCRIPTS/check-streams" "$SCRIPTS/watch-status"
  [ -z "$output" ]
}
