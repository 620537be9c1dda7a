#!/usr/bin/env bash
# Runs the tests once per database server of the matrix ("legs"): every package on the first
# server, and the packages whose tests touch the database again on each other server.
#
#   scripts/test-matrix.sh [go test flags...]      (make test runs it with -race -count=1)
#
# Reads, as `eval "$(scripts/services.sh env)"` exports them:
#   TXCONSUME_SERVERS           the legs, in order: "mariadb mysql" (default), or one of them
#   TXCONSUME_MARIADB_DSN       the DSN of the mariadb leg
#   TXCONSUME_ORACLE_MYSQL_DSN  the DSN of the mysql leg
#   TXCONSUME_MATRIX_PARALLEL   1 (default): the legs run at the same time (the tests mostly wait
#                               on the servers and the broker, so even on 2 cores this is faster);
#                               0: one after the other, for output that does not interleave
#   TXCONSUME_LEG_RESULTS       a file to which each leg appends one line (leg, passed or FAILED,
#                               seconds, packages), for make test's summary
#
# Each leg runs `go test` with TXCONSUME_MYSQL_DSN set to its server's DSN (the variable the tests
# read) and TXCONSUME_EXPECT_SERVER set to its name, which makes the tests fail if the DSN leads to
# the other kind of server. Output lines carry the leg's name; the run ends with one line per leg
# and a total, and fails if any leg failed. Under CI=true both legs must be in TXCONSUME_SERVERS.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/docker/lib.sh
. "$ROOT/scripts/docker/lib.sh"
read -r -a LEGS <<<"${TXCONSUME_SERVERS:-mariadb mysql}"
PARALLEL=${TXCONSUME_MATRIX_PARALLEL:-1}
GO_TEST_FLAGS=("$@")
LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT

say() { printf 'matrix: %s\n' "$*"; }

leg_dsn() {
  case $1 in
    mariadb) printf '%s' "${TXCONSUME_MARIADB_DSN:-}" ;;
    mysql) printf '%s' "${TXCONSUME_ORACLE_MYSQL_DSN:-}" ;;
    *) say "FAILED: unknown server '$1' in TXCONSUME_SERVERS (use mariadb, mysql or both)" >&2; exit 2 ;;
  esac
}

# database_packages lists the packages whose tests open a database through testenv, directly or
# through a helper package of this module that does.
database_packages() {
  local uses='testenv\.(MySQL|MySQLDSN|MySQLBaseDSN|OpenMySQL)\b'
  local helpers
  helpers=$(go list -f '{{.ImportPath}} {{.Dir}}{{range .GoFiles}} {{.}}{{end}}' ./... |
    while read -r pkg dir files; do
      for f in $files; do
        if grep -qE "$uses" "$dir/$f"; then echo "$pkg"; break; fi
      done
    done)
  go list -f '{{.ImportPath}} {{.Dir}} {{join .TestGoFiles ","}},{{join .XTestGoFiles ","}} {{join .TestImports ","}},{{join .XTestImports ","}}' ./... |
    while read -r pkg dir files imports; do
      local f h hit=
      for f in ${files//,/ }; do
        if grep -qE "$uses" "$dir/$f"; then hit=1; break; fi
      done
      for h in $helpers; do
        if [[ ",$imports," == *",$h,"* ]]; then hit=1; fi
      done
      if [ -n "$hit" ]; then echo "$pkg"; fi
    done
}

# run_leg runs one leg's go test, its output prefixed with the leg's name, and records its exit
# status and wall time.
run_leg() {
  local leg=$1 dsn=$2; shift 2
  local start=$SECONDS status=0 shown=$dsn
  if [[ $dsn =~ ^([^:@/]*):[^@]*@(.*)$ ]]; then shown="${BASH_REMATCH[1]}:***@${BASH_REMATCH[2]}"; fi
  say "$leg: go test ${GO_TEST_FLAGS[*]} on $shown, $# package pattern(s)"
  TXCONSUME_MYSQL_DSN=$dsn TXCONSUME_EXPECT_SERVER=$leg go test "${GO_TEST_FLAGS[@]}" "$@" 2>&1 |
    tee "$LOGS/$leg.log" | sed -u "s/^/[$leg] /" || status=$?
  echo "$status $((SECONDS - start))" >"$LOGS/$leg.result"
}

if [ "${CI:-}" = true ]; then
  # Under CI every server of the matrix runs its leg: a server left out is a failure, not a skip.
  for server in mariadb mysql; do
    [[ " ${LEGS[*]} " == *" $server "* ]] ||
      { say "FAILED: CI=true but TXCONSUME_SERVERS (${LEGS[*]}) leaves out the $server leg" >&2; exit 1; }
  done
fi
db_packages=$(database_packages)
[ -n "$db_packages" ] || { say "FAILED: found no package whose tests use the database" >&2; exit 1; }
pids=()
for i in "${!LEGS[@]}"; do
  leg=${LEGS[$i]}
  dsn=$(leg_dsn "$leg")
  [ -n "$dsn" ] || { say "FAILED: no DSN for the $leg leg (run: eval \"\$(scripts/services.sh env)\")" >&2; exit 1; }
  if [ "$i" -eq 0 ]; then
    set -- ./...
  else
    # shellcheck disable=SC2086 # one package per word
    set -- $db_packages
  fi
  if [ "$PARALLEL" = 1 ]; then
    run_leg "$leg" "$dsn" "$@" &
    pids+=($!)
  else
    run_leg "$leg" "$dsn" "$@"
  fi
done
for pid in "${pids[@]}"; do wait "$pid" || true; done

failed=0 passed_pkgs=0 failed_pkgs=0
for leg in "${LEGS[@]}"; do
  read -r status seconds <"$LOGS/$leg.result"
  ok=$(grep -c '^ok ' "$LOGS/$leg.log" || true)
  bad=$(grep -cE '^FAIL\s+\S' "$LOGS/$leg.log" || true)
  passed_pkgs=$((passed_pkgs + ok)) failed_pkgs=$((failed_pkgs + bad))
  if [ "$status" -eq 0 ]; then
    say "$leg leg passed: $ok packages in ${seconds}s"
    [ -z "${TXCONSUME_LEG_RESULTS:-}" ] ||
      printf 'matrix %s\tpassed\t%s\t%s packages\n' "$leg" "$seconds" "$ok" >>"$TXCONSUME_LEG_RESULTS"
  else
    say "$leg leg FAILED (go test exit $status): $bad packages failed, $ok passed, in ${seconds}s"
    [ -z "${TXCONSUME_LEG_RESULTS:-}" ] ||
      printf 'matrix %s\tFAILED\t%s\t%s packages failed, %s passed; failed: %s\n' "$leg" "$seconds" "$bad" "$ok" \
        "$(failed_tests "$LOGS/$leg.log")" >>"$TXCONSUME_LEG_RESULTS"
    grep -E '^(--- FAIL|FAIL)' "$LOGS/$leg.log" | sed "s/^/[$leg] /" || true
    failed=1
  fi
done
# One plain closing line for the whole matrix, counted in packages over all legs.
echo "matrix: $passed_pkgs passed, $failed_pkgs failed"
exit "$failed"
