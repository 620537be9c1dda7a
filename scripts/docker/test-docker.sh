#!/usr/bin/env bash
# The Docker leg of the tests (`make test-docker`), beside whatever native services run:
#
#   1. a Docker engine runs (Debian's docker.io installed and dockerd started when missing) and a
#      Compose v2 command exists (built from its Go module when missing, in the background);
#   2. images: the official ones where they are present or can be pulled, otherwise the local
#      stand-ins of scripts/docker/build-images.sh; TXCONSUME_MYSQL_IMAGE, TXCONSUME_REDIS_IMAGE and
#      TXCONSUME_ROCKETMQ_IMAGE choose others;
#   3. testcontainers: the packages in TXCONSUME_DOCKER_PACKAGES (default: core, idem and the
#      RocketMQ end-to-end tests) run with every service variable unset, so testenv starts MySQL,
#      Redis, namesrv and broker through testcontainers-go; under CI=true a container that does not
#      start fails the tests; the database must be Oracle MySQL (TXCONSUME_EXPECT_SERVER=mysql),
#      which mysql:8.4 and the local image are;
#   4. compose: docker-compose.yml comes up as project txconsume-test on free loopback ports (the
#      default ones may be held by native services), `make demo`'s driver runs against it, and the
#      stack is taken down, also when something failed.
#
# Each step prints its wall time.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${TXCONSUME_SERVICES_DIR:-$ROOT/.services}
log() { printf 'test-docker: %s\n' "$*" >&2; }
# shellcheck source=scripts/docker/lib.sh
. "$ROOT/scripts/docker/lib.sh"
cd "$ROOT"

PACKAGES=${TXCONSUME_DOCKER_PACKAGES:-./txconsume/ ./txconsume/idem/ ./integration/}
PROJECT=txconsume-test
declare -A took

step() { # step NAME COMMAND...: runs a step and records its wall time
  local name=$1 start=$SECONDS
  shift
  log "-- $name"
  "$@"
  took[$name]=$((SECONDS - start))
  log "-- $name: ${took[$name]}s"
}

# engine_and_compose makes sure an engine answers and starts building Compose v2 in the background
# when no Compose v2 command exists: the build (minutes on a new machine) overlaps the image build
# and the testcontainers leg, which do not need it.
COMPOSE_BUILD_PID=
engine_and_compose() {
  docker_engine_up
  if compose_detect; then
    log "compose: ${COMPOSE[*]} ($("${COMPOSE[@]}" version --short))"
  else
    log "$COMPOSE_MISSING: building Compose $COMPOSE_VERSION in the background"
    (start=$SECONDS; compose_install >/dev/null 2>&1; rc=$?; echo "$((SECONDS - start))" >"$STATE/docker/compose-build.seconds"; exit $rc) &
    COMPOSE_BUILD_PID=$!
  fi
}

compose_ready() {
  if [ -n "$COMPOSE_BUILD_PID" ]; then
    wait "$COMPOSE_BUILD_PID" || { log "FAILED: building Compose $COMPOSE_VERSION"; tail -n 20 "$STATE/docker/compose-build.log" >&2; return 1; }
    log "compose: built in $(cat "$STATE/docker/compose-build.seconds")s (in the background)"
  fi
  compose_detect || { log "FAILED: $COMPOSE_MISSING"; return 1; }
  log "compose: ${COMPOSE[*]} ($("${COMPOSE[@]}" version --short))"
}

# choose_images sets the TXCONSUME_*_IMAGE variables that the user left unset: the official images
# where all of them are present or pullable, else the local ones (built when out of date).
COMPOSE_FILES=(-f docker-compose.yml)
choose_images() {
  local official=(mysql:8.4 redis:7 apache/rocketmq:5.3.1) img
  if [ -n "${TXCONSUME_MYSQL_IMAGE:-}${TXCONSUME_REDIS_IMAGE:-}${TXCONSUME_ROCKETMQ_IMAGE:-}" ]; then
    log "images as set: ${TXCONSUME_MYSQL_IMAGE:-(official)} ${TXCONSUME_REDIS_IMAGE:-(official)} ${TXCONSUME_ROCKETMQ_IMAGE:-(official)}"
  else
    for img in "${official[@]}"; do
      if ! image_available "$img"; then
        log "$img is not present and cannot be pulled: using local images"
        "$ROOT/scripts/docker/build-images.sh"
        export TXCONSUME_MYSQL_IMAGE=$LOCAL_MYSQL_IMAGE TXCONSUME_REDIS_IMAGE=$LOCAL_REDIS_IMAGE \
          TXCONSUME_ROCKETMQ_IMAGE=$LOCAL_ROCKETMQ_IMAGE
        break
      fi
    done
  fi
  if [ "${TXCONSUME_MYSQL_IMAGE:-}" = "$LOCAL_MYSQL_IMAGE" ]; then COMPOSE_FILES+=(-f "$LOCAL_COMPOSE_OVERRIDE"); fi
  log "testcontainers images: ${TXCONSUME_MYSQL_IMAGE:-mysql:8.4} ${TXCONSUME_REDIS_IMAGE:-redis:7} ${TXCONSUME_ROCKETMQ_IMAGE:-apache/rocketmq:5.3.1}"
}

testcontainers_leg() {
  # shellcheck disable=SC2086
  env -u TXCONSUME_MYSQL_DSN -u TXCONSUME_REDIS_ADDR -u TXCONSUME_ROCKETMQ_NAMESRV -u TXCONSUME_ROCKETMQ_BROKER \
    TXCONSUME_TESTCONTAINERS=1 TXCONSUME_EXPECT_SERVER="${TXCONSUME_EXPECT_SERVER-mysql}" \
    go test -race -count=1 -timeout 30m $PACKAGES
}

# free_port prints the first port from $1 up on which nothing listens on loopback.
free_port() {
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}

compose() { "${COMPOSE[@]}" -p "$PROJECT" "${COMPOSE_FILES[@]}" "$@"; }

compose_leg() {
  export TXCONSUME_COMPOSE_MYSQL_PORT TXCONSUME_COMPOSE_REDIS_PORT TXCONSUME_COMPOSE_NAMESRV_PORT TXCONSUME_COMPOSE_BROKER_PORT
  TXCONSUME_COMPOSE_MYSQL_PORT=$(free_port 23306)
  TXCONSUME_COMPOSE_REDIS_PORT=$(free_port 26379)
  TXCONSUME_COMPOSE_NAMESRV_PORT=$(free_port 29876)
  TXCONSUME_COMPOSE_BROKER_PORT=$(free_port 30911)
  trap 'log "taking the compose stack down"; compose down -v --remove-orphans >/dev/null 2>&1 || true' EXIT
  log "compose up: mysql :$TXCONSUME_COMPOSE_MYSQL_PORT, redis :$TXCONSUME_COMPOSE_REDIS_PORT, namesrv :$TXCONSUME_COMPOSE_NAMESRV_PORT, broker :$TXCONSUME_COMPOSE_BROKER_PORT"
  compose up -d --wait --quiet-pull
  local deadline=$((SECONDS + 120))
  until compose exec -T broker sh mqadmin clusterList -n namesrv:9876 2>/dev/null |
    grep -q "broker-a .*127.0.0.1:$TXCONSUME_COMPOSE_BROKER_PORT "; do
    [ $SECONDS -lt $deadline ] || { log "FAILED: the broker did not register 127.0.0.1:$TXCONSUME_COMPOSE_BROKER_PORT"; compose logs broker | tail -n 30 >&2; return 1; }
    sleep 1
  done
  TXCONSUME_MYSQL_DSN="txconsume:txconsume@tcp(127.0.0.1:$TXCONSUME_COMPOSE_MYSQL_PORT)/txconsume" \
    TXCONSUME_REDIS_ADDR=127.0.0.1:$TXCONSUME_COMPOSE_REDIS_PORT \
    TXCONSUME_ROCKETMQ_NAMESRV=127.0.0.1:$TXCONSUME_COMPOSE_NAMESRV_PORT \
    TXCONSUME_ROCKETMQ_BROKER=127.0.0.1:$TXCONSUME_COMPOSE_BROKER_PORT \
    go run ./examples/order-service/cmd/demo
  compose down -v --remove-orphans
  trap - EXIT
}

# sweep removes what test binaries killed before their end left behind: testenv labels its
# containers and networks with the host and pid of the binary that started them.
sweep() {
  local label=org.txconsume.testenv.owner id owner
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
}

mkdir -p "$STATE/docker"
total=$SECONDS
step engine engine_and_compose
step images choose_images
step testcontainers testcontainers_leg
sweep
step compose-wait compose_ready
step compose compose_leg
log "passed in $((SECONDS - total))s: engine ${took[engine]}s, images ${took[images]}s, testcontainers ${took[testcontainers]}s, waiting for the Compose build ${took[compose-wait]}s, compose+demo ${took[compose]}s"
