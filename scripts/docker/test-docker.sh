#!/usr/bin/env bash
# The Docker leg of the tests, beside whatever native services run:
#
#   1. engine: a Docker engine runs (Debian's docker.io installed and dockerd started when missing)
#      and a compose command exists: Compose v2 where there is one, else Debian's docker-compose
#      1.29 (installed when missing);
#   2. images: the official ones where they are present or can be pulled, otherwise the local
#      stand-ins of scripts/docker/build-images.sh; TXCONSUME_MYSQL_IMAGE, TXCONSUME_REDIS_IMAGE and
#      TXCONSUME_ROCKETMQ_IMAGE choose others;
#   3. testcontainers: the packages in TXCONSUME_DOCKER_PACKAGES (default: core, idem and the
#      RocketMQ end-to-end tests) run with every service variable unset, so testenv starts MySQL,
#      Redis, namesrv and broker through testcontainers-go; under CI=true a container that does not
#      start fails the tests; the database must be Oracle MySQL (TXCONSUME_EXPECT_SERVER=mysql),
#      which mysql:8.4 and the local image are;
#   4. compose: docker-compose.yml comes up as a project of its own (txconsume-test-PID) on free
#      loopback ports (the default ones may be held by native services), the script waits for every
#      container's health check, runs `make demo`'s driver against the stack and takes it down,
#      also when something failed.
#
#   scripts/docker/test-docker.sh                 all four (make test-docker)
#   scripts/docker/test-docker.sh prepare         1 and 2 (make test runs it while the native
#                                                 services come up)
#   scripts/docker/test-docker.sh testcontainers  3, after 1 and 2
#   scripts/docker/test-docker.sh compose         4, after 1 and 2
#
# Each step prints its wall time. With TXCONSUME_LEG_RESULTS naming a file, steps 3 and 4 append
# one line each to it (leg, passed or FAILED, seconds, what ran), for make test's summary.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${TXCONSUME_SERVICES_DIR:-$ROOT/.services}
log() { printf 'test-docker: %s\n' "$*" >&2; }
# shellcheck source=scripts/docker/lib.sh
. "$ROOT/scripts/docker/lib.sh"
cd "$ROOT"

PACKAGES=${TXCONSUME_DOCKER_PACKAGES:-./txconsume/ ./txconsume/idem/ ./integration/}
# The images step's choice, for the steps that run later in another process.
IMAGES_ENV=$STATE/docker/images.env
declare -A took

step() { # step NAME COMMAND...: runs a step and records its wall time
  local name=$1 start=$SECONDS status=0
  shift
  log "-- $name"
  "$@" || status=$?
  took[$name]=$((SECONDS - start))
  if [ "$status" -ne 0 ]; then
    log "-- $name FAILED after ${took[$name]}s"
    return "$status"
  fi
  log "-- $name: ${took[$name]}s"
}

# result LEG STATUS SECONDS WHAT: one line for make test's summary.
result() {
  [ -n "${TXCONSUME_LEG_RESULTS:-}" ] || return 0
  printf '%s\t%s\t%s\t%s\n' "$@" >>"$TXCONSUME_LEG_RESULTS"
}

engine_and_compose() {
  docker_engine_up || return 1
  compose_install || { log "FAILED: $COMPOSE_MISSING"; return 1; }
  log "compose: ${COMPOSE[*]} ($("${COMPOSE[@]}" version --short))"
}

# choose_images sets the TXCONSUME_*_IMAGE variables that the user left unset: the official images
# where all of them are present or pullable, else the local ones (built when out of date). The
# choice is written to IMAGES_ENV.
choose_images() {
  local official=(mysql:8.4 redis:7 apache/rocketmq:5.3.1) img
  if [ -n "${TXCONSUME_MYSQL_IMAGE:-}${TXCONSUME_REDIS_IMAGE:-}${TXCONSUME_ROCKETMQ_IMAGE:-}" ]; then
    log "images as set: ${TXCONSUME_MYSQL_IMAGE:-(official)} ${TXCONSUME_REDIS_IMAGE:-(official)} ${TXCONSUME_ROCKETMQ_IMAGE:-(official)}"
  else
    for img in "${official[@]}"; do
      if ! image_available "$img"; then
        log "$img is not present and cannot be pulled: using local images"
        "$ROOT/scripts/docker/build-images.sh" || return 1
        export TXCONSUME_MYSQL_IMAGE=$LOCAL_MYSQL_IMAGE TXCONSUME_REDIS_IMAGE=$LOCAL_REDIS_IMAGE \
          TXCONSUME_ROCKETMQ_IMAGE=$LOCAL_ROCKETMQ_IMAGE
        break
      fi
    done
  fi
  mkdir -p "$(dirname "$IMAGES_ENV")"
  for img in TXCONSUME_MYSQL_IMAGE TXCONSUME_REDIS_IMAGE TXCONSUME_ROCKETMQ_IMAGE; do
    [ -z "${!img:-}" ] || printf 'export %s=%q\n' "$img" "${!img}"
  done >"$IMAGES_ENV"
  log "images: ${TXCONSUME_MYSQL_IMAGE:-mysql:8.4} ${TXCONSUME_REDIS_IMAGE:-redis:7} ${TXCONSUME_ROCKETMQ_IMAGE:-apache/rocketmq:5.3.1}"
}

prepare() {
  step engine engine_and_compose && step images choose_images
}

# prepared loads what prepare found, and prepares again when that is missing or out of date.
prepared() {
  local img
  if [ -f "$IMAGES_ENV" ] && docker_engine_answers && compose_detect; then
    # shellcheck source=/dev/null
    . "$IMAGES_ENV"
    for img in "${TXCONSUME_MYSQL_IMAGE:-}" "${TXCONSUME_REDIS_IMAGE:-}" "${TXCONSUME_ROCKETMQ_IMAGE:-}"; do
      [ -z "$img" ] || image_present "$img" || { prepare; return; }
    done
  else
    prepare
  fi
}

testcontainers_leg() {
  local start=$SECONDS status=0 out=$STATE/docker/testcontainers.log
  mkdir -p "$(dirname "$out")"
  # shellcheck disable=SC2086 # one package per word
  env -u TXCONSUME_MYSQL_DSN -u TXCONSUME_REDIS_ADDR -u TXCONSUME_ROCKETMQ_NAMESRV -u TXCONSUME_ROCKETMQ_BROKER \
    TXCONSUME_TESTCONTAINERS=1 TXCONSUME_EXPECT_SERVER="${TXCONSUME_EXPECT_SERVER-mysql}" \
    go test -race -count=1 -timeout 30m $PACKAGES 2>&1 | tee "$out" || status=$?
  local what="go test -race $PACKAGES with ${TXCONSUME_MYSQL_IMAGE:-mysql:8.4}, ${TXCONSUME_REDIS_IMAGE:-redis:7}, ${TXCONSUME_ROCKETMQ_IMAGE:-apache/rocketmq:5.3.1}"
  if [ "$status" -eq 0 ]; then
    result "docker testcontainers" passed $((SECONDS - start)) "$what"
  else
    # The summary comes last in make test's output: it names what failed, so that the end of a
    # long log is enough to know where to look.
    result "docker testcontainers" FAILED $((SECONDS - start)) "$what (go test exit $status; failed: $(failed_tests "$out"))"
  fi
  return "$status"
}

# free_port prints the first port from $1 up on which nothing listens on loopback.
free_port() {
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}

# The compose project of this run: its own name, so that runs from two clones never take down each
# other's stack (and its pid, so that a run killed before its cleanup is swept by a later one).
PROJECT=txconsume-test-$$
COMPOSE_FILES=(-f docker-compose.yml)
compose() { "${COMPOSE[@]}" -p "$PROJECT" "${COMPOSE_FILES[@]}" "$@"; }

compose_leg() {
  local start=$SECONDS status=0
  if [ "${TXCONSUME_MYSQL_IMAGE:-}" = "$LOCAL_MYSQL_IMAGE" ]; then COMPOSE_FILES+=(-f "$LOCAL_COMPOSE_OVERRIDE"); fi
  compose_and_demo || status=$?
  local what
  what="${COMPOSE[*]} $("${COMPOSE[@]}" version --short) with ${COMPOSE_FILES[*]}, then the demo"
  if [ "$status" -eq 0 ]; then
    result "docker compose + demo" passed $((SECONDS - start)) "$what"
  else
    result "docker compose + demo" FAILED $((SECONDS - start)) "$what"
  fi
  return "$status"
}

compose_and_demo() {
  export TXCONSUME_COMPOSE_MYSQL_PORT TXCONSUME_COMPOSE_REDIS_PORT TXCONSUME_COMPOSE_NAMESRV_PORT TXCONSUME_COMPOSE_BROKER_PORT
  # Free ports from a base that varies per run, so that two runs rarely race for the same one.
  local spread=$((RANDOM % 1000))
  TXCONSUME_COMPOSE_MYSQL_PORT=$(free_port $((23306 + spread)))
  TXCONSUME_COMPOSE_REDIS_PORT=$(free_port $((26379 + spread)))
  TXCONSUME_COMPOSE_NAMESRV_PORT=$(free_port $((29876 + spread)))
  TXCONSUME_COMPOSE_BROKER_PORT=$(free_port $((30911 + spread)))
  trap 'log "taking the compose stack down"; compose down -v --remove-orphans >/dev/null 2>&1 || true' EXIT
  log "compose up ($PROJECT): mysql :$TXCONSUME_COMPOSE_MYSQL_PORT, redis :$TXCONSUME_COMPOSE_REDIS_PORT, namesrv :$TXCONSUME_COMPOSE_NAMESRV_PORT, broker :$TXCONSUME_COMPOSE_BROKER_PORT"
  local start=$SECONDS
  compose up -d --quiet-pull || { log "FAILED: ${COMPOSE[*]} up"; return 1; }
  log "containers started in $((SECONDS - start))s"
  compose_wait "${TXCONSUME_COMPOSE_TIMEOUT:-300}" compose || return 1
  log "every container is up and healthy after $((SECONDS - start))s"
  local deadline=$((SECONDS + 120))
  until compose exec -T broker sh mqadmin clusterList -n namesrv:9876 2>/dev/null |
    grep -q "broker-a .*127.0.0.1:$TXCONSUME_COMPOSE_BROKER_PORT "; do
    [ $SECONDS -lt $deadline ] || { log "FAILED: the broker did not register 127.0.0.1:$TXCONSUME_COMPOSE_BROKER_PORT"; compose logs broker | tail -n 30 >&2; return 1; }
    sleep 1
  done
  log "the broker is registered with the namesrv after $((SECONDS - start))s; running the demo"
  start=$SECONDS
  TXCONSUME_MYSQL_DSN="txconsume:txconsume@tcp(127.0.0.1:$TXCONSUME_COMPOSE_MYSQL_PORT)/txconsume" \
    TXCONSUME_REDIS_ADDR=127.0.0.1:$TXCONSUME_COMPOSE_REDIS_PORT \
    TXCONSUME_ROCKETMQ_NAMESRV=127.0.0.1:$TXCONSUME_COMPOSE_NAMESRV_PORT \
    TXCONSUME_ROCKETMQ_BROKER=127.0.0.1:$TXCONSUME_COMPOSE_BROKER_PORT \
    go run ./examples/order-service/cmd/demo || { log "FAILED: the demo against the compose stack"; return 1; }
  log "the demo passed in $((SECONDS - start))s"
  compose down -v --remove-orphans
  trap - EXIT
}

# sweep removes what runs killed before their cleanup left behind: testenv labels its containers
# and networks with the host and pid of the test binary that started them, and the compose legs'
# projects carry the pid of their script.
sweep() {
  local label=org.txconsume.testenv.owner id owner project
  for id in $(docker ps -aq --filter "label=$label"); do
    owner=$(docker inspect -f "{{index .Config.Labels \"$label\"}}" "$id")
    if [ "${owner%%/*}" = "$(hostname)" ] && ! kill -0 "${owner##*/}" 2>/dev/null; then
      log "removing container $id of ended test binary ${owner##*/}"
      docker rm -f -v "$id" >/dev/null
    fi
  done
  for id in $(docker network ls -q --filter "label=$label"); do
    owner=$(docker network inspect -f "{{index .Labels \"$label\"}}" "$id")
    if [ "${owner%%/*}" = "$(hostname)" ] && ! kill -0 "${owner##*/}" 2>/dev/null; then
      docker network rm "$id" >/dev/null
    fi
  done
  for id in $(docker ps -aq --filter label=com.docker.compose.project); do
    project=$(docker inspect -f '{{index .Config.Labels "com.docker.compose.project"}}' "$id")
    if [[ $project =~ ^txconsume-test-([0-9]+)$ ]] && [ "$project" != "$PROJECT" ] && ! kill -0 "${BASH_REMATCH[1]}" 2>/dev/null; then
      log "removing container $id of ended compose run $project"
      docker rm -f -v "$id" >/dev/null
      docker network rm "${project}_default" >/dev/null 2>&1 || true
    fi
  done
}

mkdir -p "$STATE/docker"
total=$SECONDS
case ${1:-all} in
  prepare) prepare ;;
  testcontainers) prepared && step testcontainers testcontainers_leg ;;
  compose) prepared && step compose compose_leg ;;
  all)
    prepare
    step testcontainers testcontainers_leg
    sweep
    step compose compose_leg
    log "passed in $((SECONDS - total))s: engine ${took[engine]}s, images ${took[images]}s, testcontainers ${took[testcontainers]}s, compose+demo ${took[compose]}s" ;;
  *) echo "usage: $0 [all|prepare|testcontainers|compose]" >&2; exit 2 ;;
esac
