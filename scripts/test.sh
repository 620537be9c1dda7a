#!/usr/bin/env bash
# Everything `make test` runs (and CI, through .ci/run), arranged for the shortest wall time on a
# two-core machine. Three things start at once, and become two lanes:
#
#   compile      everything the tests import is compiled with -race (as the legs run them), and
#                the demo and its service without: minutes of CPU on a new machine, which the
#                lanes' first steps, mostly network and disk, leave free;
#   databases    the native services come up (scripts/services.sh up); once compiled, the server
#                matrix runs (scripts/test-matrix.sh: every test on MariaDB, the database tests
#                again on Oracle MySQL); then docker-compose.yml comes up with the demo against
#                it (scripts/docker/test-docker.sh compose);
#   containers   the Docker leg prepares its engine, compose command and images
#                (test-docker.sh prepare); once compiled, the testcontainers tests run
#                (test-docker.sh testcontainers), beside the matrix.
#
# The tests mostly wait on servers, brokers and containers, so the matrix and the testcontainers
# tests side by side take much less than one after the other, even on two cores (README, "What
# make test runs"). The run ends with one line per leg and a last line that says PASSED or
# FAILED: any failed leg fails it.
#
#   scripts/test.sh [go test flags for the matrix...]    (make test: -race -count=1 -timeout 40m)
#
# The Docker leg runs where Docker can run: an engine answers, or (as root) dockerd is installed or
# docker.io can be installed with apt-get. Elsewhere it is NOT RUN, which is said at the start and
# in the summary, and the other legs decide the result. TXCONSUME_DOCKER_LEG=1 makes it run (not
# getting an engine is then a failure); TXCONSUME_DOCKER_LEG=0 leaves it out, said as loudly.
# Under CI=true the Docker leg always runs: TXCONSUME_DOCKER_LEG=0, or a machine where it cannot
# run, fails the run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck disable=SC2034 # read by scripts/docker/lib.sh
STATE=${TXCONSUME_SERVICES_DIR:-$ROOT/.services}
log() { printf 'test: %s\n' "$*" >&2; }
# shellcheck source=scripts/docker/lib.sh
. "$ROOT/scripts/docker/lib.sh"
cd "$ROOT"

MATRIX_FLAGS=("$@")
RUN=$(mktemp -d)
export TXCONSUME_LEG_RESULTS=$RUN/results
: >"$TXCONSUME_LEG_RESULTS"
declare -A took
total=$SECONDS

banner() { # banner TEXT: a line that does not get lost in the output
  log "*****************************************************************************************"
  log "$*"
  log "*****************************************************************************************"
}

# prefixed LABEL COMMAND...: runs the command with each line of its output prefixed by [LABEL].
prefixed() {
  local label=$1
  shift
  "$@" 2>&1 | sed -u "s/^/[$label] /"
}

# timed NAME COMMAND...: runs the command and records its wall time in took[NAME] (in this shell)
# and in $RUN/NAME.seconds (for a command run in the background).
timed() {
  local name=$1 start=$SECONDS status=0
  shift
  "$@" || status=$?
  took[$name]=$((SECONDS - start))
  echo "${took[$name]}" >"$RUN/$name.seconds"
  return "$status"
}

seconds_of() { cat "$RUN/$1.seconds" 2>/dev/null || echo '?'; }

# result LEG STATUS SECONDS WHAT: a line of the summary.
result() { printf '%s\t%s\t%s\t%s\n' "$@" >>"$TXCONSUME_LEG_RESULTS"; }

# compile_ahead compiles every package the tests import, with -race as the legs run them, and the
# demo and the services it runs without (as the compose leg runs them). On a new machine that is
# minutes of CPU that would otherwise start only when the services are up; where the build cache
# is warm it takes a second.
compile_ahead() {
  local pkgs
  pkgs=$(go list -deps -test -f '{{if and (not .ForTest) (ne .Name "main")}}{{.ImportPath}}{{end}}' ./...) || return 1
  # shellcheck disable=SC2086 # one package per word
  go build -race $pkgs &&
    go build -o /dev/null ./examples/order-service/cmd/demo &&
    go build -o /dev/null ./examples/order-service/cmd/order-service &&
    go build -o /dev/null ./examples/order-service/cmd/shipping-service
}

# ---------------------------------------------------------------- is there a Docker leg?

docker_leg=run docker_why=
case ${TXCONSUME_DOCKER_LEG:-} in
  1) ;;
  0) docker_leg=skip docker_why="TXCONSUME_DOCKER_LEG=0" ;;
  '') docker_can_run || { docker_leg=skip docker_why=$DOCKER_CANNOT_RUN; } ;;
  *) log "FAILED: TXCONSUME_DOCKER_LEG=$TXCONSUME_DOCKER_LEG: expected 0, 1 or unset"; exit 2 ;;
esac
if [ "$docker_leg" = skip ]; then
  if [ "${CI:-}" = true ]; then
    banner "FAILED: CI=true, and the Docker leg (testcontainers, compose + demo) cannot be left out: $docker_why"
    exit 1
  fi
  banner "THE DOCKER LEG (testcontainers, compose + demo) IS NOT RUN: $docker_why"
fi

# ---------------------------------------------------------------- the two lanes

# wait_for_file FILE PID: waits until FILE exists or the process PID has ended.
wait_for_file() {
  while [ ! -e "$1" ] && kill -0 "$2" 2>/dev/null; do sleep 1; done
  [ -e "$1" ]
}

log "compiling the tests' packages in the background (lines marked [compile])"
{ prefixed compile timed compile compile_ahead || true; } &
compile_pid=$!

# The containers lane: the Docker leg's preparation, then (once the packages are compiled, so
# that nothing is compiled twice) the testcontainers tests. Its steps leave their status in $RUN
# for the databases lane, which runs the compose leg.
containers_lane() {
  local status=0
  prefixed docker timed docker-prepare scripts/docker/test-docker.sh prepare || status=$?
  echo "$status" >"$RUN/docker-prepare.status"
  [ "$status" -eq 0 ] || return 0
  wait_for_file "$RUN/compile.seconds" "$compile_pid" || true
  prefixed testcontainers timed testcontainers scripts/docker/test-docker.sh testcontainers || true
}
lane_pid=''
if [ "$docker_leg" = run ]; then
  log "preparing the Docker leg, then running its testcontainers tests, in the background (lines marked [docker], [testcontainers])"
  containers_lane &
  lane_pid=$!
fi

# The databases lane: the native services, the server matrix, then the compose leg.
services_ok=true
timed services scripts/services.sh up || services_ok=false
wait "$compile_pid"
took[compile]=$(seconds_of compile)
if $services_ok; then
  eval "$(scripts/services.sh env)"
  timed matrix scripts/test-matrix.sh "${MATRIX_FLAGS[@]}" || true
  grep -q '^matrix ' "$TXCONSUME_LEG_RESULTS" || result "matrix" FAILED "${took[matrix]}" "stopped before its legs ran (see matrix: above)"
else
  result "matrix" FAILED "${took[services]}" "not run: scripts/services.sh up failed (see services: above)"
fi

if [ "$docker_leg" = run ]; then
  wait_for_file "$RUN/docker-prepare.status" "$lane_pid" || true
  if [ "$(cat "$RUN/docker-prepare.status" 2>/dev/null)" = 0 ]; then
    prefixed compose timed compose scripts/docker/test-docker.sh compose || true
  fi
  wait "$lane_pid" || true
  took[docker-prepare]=$(seconds_of docker-prepare)
  took[testcontainers]=$(seconds_of testcontainers) took[compose]=$(seconds_of compose)
  if [ "$(cat "$RUN/docker-prepare.status" 2>/dev/null)" = 0 ]; then
    grep -q '^docker testcontainers' "$TXCONSUME_LEG_RESULTS" ||
      result "docker testcontainers" FAILED "${took[testcontainers]}" "stopped before its tests ran (see [testcontainers] above)"
    grep -q '^docker compose' "$TXCONSUME_LEG_RESULTS" ||
      result "docker compose + demo" FAILED "${took[compose]}" "stopped before compose ran (see [compose] above)"
  else
    result "docker" FAILED "${took[docker-prepare]}" "engine, compose or images not ready (see [docker] above; TXCONSUME_DOCKER_LEG=0 leaves the Docker leg out)"
  fi
else
  result "docker" "NOT RUN" - "$docker_why"
fi

# ---------------------------------------------------------------- 4. summary

failed=0
log "================================ summary ================================"
while IFS=$'\t' read -r leg status seconds what; do
  [ "$status" = FAILED ] && failed=1
  [ "$seconds" = - ] && seconds= || seconds=${seconds}s
  log "$(printf '%-8s %-22s %6s  %s' "$status" "$leg" "$seconds" "$what")"
done <"$TXCONSUME_LEG_RESULTS"
times="services up ${took[services]}s, compiling ahead ${took[compile]}s, matrix ${took[matrix]:-?}s"
[ "$docker_leg" = run ] &&
  times+="; beside those: Docker prepared in ${took[docker-prepare]}s, testcontainers ${took[testcontainers]}s; then compose + demo ${took[compose]}s"
rm -rf "$RUN"
if [ "$failed" -ne 0 ]; then
  log "FAILED in $((SECONDS - total))s ($times)"
  exit 1
fi
[ "$docker_leg" = run ] || banner "PASSED WITHOUT THE DOCKER LEG: $docker_why"
log "PASSED in $((SECONDS - total))s ($times)"
