#!/usr/bin/env bash
# Brings up the real services that txconsume's tests and demo run against:
# a MySQL-compatible database, Redis, and a RocketMQ 5.x namesrv + broker, all on loopback.
#
#   scripts/services.sh up      start what is missing and wait until every service really answers
#   scripts/services.sh down    stop what `up` started (by pid, or the compose project), nothing else
#   scripts/services.sh env     print `export` lines for TXCONSUME_MYSQL_DSN, TXCONSUME_ROCKETMQ_NAMESRV,
#                               TXCONSUME_REDIS_ADDR (use: eval "$(scripts/services.sh env)")
#   scripts/services.sh status  say what runs
#   scripts/services.sh rocketmq-lib
#                               fetch the RocketMQ jars if needed and print their directory (tests start
#                               private namesrv and broker instances from it)
#
# Where each service comes from, in order:
#   1. its TXCONSUME_* variable is already set: that service is used as it is, nothing is started;
#   2. a Docker engine answers: docker compose (docker-compose.yml) starts mysql, rocketmq and redis;
#   3. otherwise: MariaDB and Redis from Debian packages and the RocketMQ jars from Maven Central,
#      installed when missing and started from data folders under .services/ (ignored by git).
#
# `up` is idempotent: a second call reuses whatever already runs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${TXCONSUME_SERVICES_DIR:-$ROOT/.services}
READY_TIMEOUT=${TXCONSUME_SERVICES_TIMEOUT:-180}

MYSQL_PORT=3306
REDIS_PORT=6379
NAMESRV_PORT=9876
BROKER_PORT=10911
ROCKETMQ_VERSION=5.3.3

DEFAULT_DSN="txconsume:txconsume@tcp(127.0.0.1:${MYSQL_PORT})/txconsume"
DEFAULT_NAMESRV="127.0.0.1:${NAMESRV_PORT}"
DEFAULT_REDIS="127.0.0.1:${REDIS_PORT}"

log() { printf 'services: %s\n' "$*" >&2; }

# fail names the service that did not come up and shows the end of its log.
fail() {
  local what=$1 logfile=${2:-}
  log "FAILED: $what"
  if [ -n "$logfile" ] && [ -f "$logfile" ]; then
    log "last lines of $logfile:"
    tail -n 40 "$logfile" >&2
  fi
  exit 1
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for runs a check until it succeeds or READY_TIMEOUT seconds pass.
wait_for() {
  local what=$1 logfile=$2; shift 2
  local deadline=$((SECONDS + READY_TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then fail "$what not ready after ${READY_TIMEOUT}s" "$logfile"; fi
    sleep 1
  done
}

apt_install() {
  log "installing Debian packages: $*"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq "$@" >"$STATE/apt.log" 2>&1; then
    apt-get update -qq >>"$STATE/apt.log" 2>&1 || true
    apt-get install -y -qq "$@" >>"$STATE/apt.log" 2>&1 || fail "apt-get install $*" "$STATE/apt.log"
  fi
}

docker_usable() {
  [ "${TXCONSUME_NO_DOCKER:-}" != "1" ] && command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

# ---------------------------------------------------------------- MariaDB

mysql_local_ready() {
  mariadb --protocol=tcp -h127.0.0.1 -P"$MYSQL_PORT" -utxconsume -ptxconsume -e 'SELECT 1'
}

# mysql_grant creates the txconsume user through the client command given as arguments. The tests
# create and drop a database each, so the user gets every privilege (as in docker-compose.yml).
mysql_grant() {
  "$@" <<'SQL'
CREATE USER IF NOT EXISTS 'txconsume'@'127.0.0.1' IDENTIFIED BY 'txconsume';
CREATE USER IF NOT EXISTS 'txconsume'@'localhost' IDENTIFIED BY 'txconsume';
GRANT ALL PRIVILEGES ON *.* TO 'txconsume'@'127.0.0.1' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO 'txconsume'@'localhost' WITH GRANT OPTION;
CREATE DATABASE IF NOT EXISTS txconsume;
SQL
}

mysql_up() {
  local dir=$STATE/mysql
  mkdir -p "$dir"
  if pid_alive "$dir/mysqld.pid" || mysql_local_ready >/dev/null 2>&1; then
    log "mysql: reusing the server on 127.0.0.1:$MYSQL_PORT"
    return
  fi
  command -v mariadbd >/dev/null 2>&1 || apt_install mariadb-server mariadb-client
  if port_open "$MYSQL_PORT"; then
    # A server we did not start holds the port (the package's own service, for one): give it our
    # user through its root socket rather than fail on the port.
    log "mysql: a server already listens on $MYSQL_PORT; adding the txconsume user to it"
    mysql_grant mariadb -uroot || fail "mysql on port $MYSQL_PORT does not accept the txconsume user and root is refused"
    wait_for "mysql (SELECT 1 over TCP)" "" mysql_local_ready
    log "mysql: ready"
    return
  fi
  if [ ! -d "$dir/data/mysql" ]; then
    log "mysql: initialising a data folder"
    mariadb-install-db --no-defaults --datadir="$dir/data" --user="$(id -un)" \
      --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1 ||
      fail "mariadb-install-db" "$dir/install.log"
  fi
  log "mysql: starting MariaDB on 127.0.0.1:$MYSQL_PORT"
  # Durability settings stay at the server defaults so that benchmarks see real commit costs.
  setsid nohup mariadbd --no-defaults --datadir="$dir/data" --user="$(id -un)" \
    --bind-address=127.0.0.1 --port="$MYSQL_PORT" --socket="$dir/mysqld.sock" \
    --pid-file="$dir/mysqld.pid" --log-error="$dir/mysqld.log" --skip-name-resolve \
    --max-connections=1000 --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
    </dev/null >/dev/null 2>&1 9>&- &
  wait_for "mysql socket" "$dir/mysqld.log" mariadb --socket="$dir/mysqld.sock" -uroot -e 'SELECT 1'
  mysql_grant mariadb --socket="$dir/mysqld.sock" -uroot || fail "mysql user set-up" "$dir/mysqld.log"
  wait_for "mysql (SELECT 1 over TCP)" "$dir/mysqld.log" mysql_local_ready
  log "mysql: ready"
}

# ---------------------------------------------------------------- Redis

redis_ready() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" PING 2>/dev/null)" = "PONG" ]; }

redis_up() {
  local dir=$STATE/redis
  mkdir -p "$dir"
  if pid_alive "$dir/redis.pid" || redis_ready; then
    log "redis: reusing the server on 127.0.0.1:$REDIS_PORT"
    return
  fi
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  log "redis: starting on 127.0.0.1:$REDIS_PORT"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --pidfile "$dir/redis.pid" \
    --logfile "$dir/redis.log" --dir "$dir" --save '' --appendonly no >/dev/null 9>&- ||
    fail "redis-server start" "$dir/redis.log"
  wait_for "redis PING" "$dir/redis.log" redis_ready
  log "redis: ready"
}

# ---------------------------------------------------------------- RocketMQ

java_flags() {
  local major
  major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
  printf '%s ' -Xms256m -Xmx512m -XX:+UseG1GC -Duser.home="$STATE/rocketmq/home"
  if [ "${major:-8}" -ge 9 ] 2>/dev/null; then
    printf '%s ' --add-exports java.base/sun.nio.ch=ALL-UNNAMED \
      --add-opens java.base/java.nio=ALL-UNNAMED --add-opens java.base/java.lang=ALL-UNNAMED
  fi
}

rocketmq_lib() {
  local lib=$STATE/rocketmq/lib-$ROCKETMQ_VERSION
  if [ ! -f "$lib/.complete" ]; then
    command -v java >/dev/null 2>&1 || apt_install openjdk-17-jre-headless
    command -v mvn >/dev/null 2>&1 || apt_install maven
    log "rocketmq: fetching namesrv, broker and tools $ROCKETMQ_VERSION from Maven Central"
    mkdir -p "$lib"
    mvn -q -B -f "$ROOT/scripts/rocketmq/pom.xml" -Drocketmq.version="$ROCKETMQ_VERSION" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$lib" \
      >"$STATE/rocketmq/mvn.log" 2>&1 || fail "maven fetch of RocketMQ jars" "$STATE/rocketmq/mvn.log"
    touch "$lib/.complete"
  fi
  printf '%s' "$lib"
}

broker_registered() {
  local lib=$1
  # shellcheck disable=SC2046
  java $(java_flags) -cp "$lib/*" org.apache.rocketmq.tools.command.MQAdminStartup clusterList \
    -n "127.0.0.1:$NAMESRV_PORT" 2>/dev/null | grep -q 'broker-a'
}

rocketmq_up() {
  local dir=$STATE/rocketmq lib
  mkdir -p "$dir/home/logs" "$dir/store"
  lib=$(rocketmq_lib)
  export ROCKETMQ_HOME=$dir/home

  if pid_alive "$dir/namesrv.pid" || port_open "$NAMESRV_PORT"; then
    log "rocketmq: reusing the namesrv on 127.0.0.1:$NAMESRV_PORT"
  else
    printf 'listenPort=%s\nbindAddress=127.0.0.1\n' "$NAMESRV_PORT" >"$dir/namesrv.conf"
    log "rocketmq: starting namesrv on 127.0.0.1:$NAMESRV_PORT"
    # shellcheck disable=SC2046
    setsid nohup java $(java_flags) -cp "$lib/*" org.apache.rocketmq.namesrv.NamesrvStartup \
      -c "$dir/namesrv.conf" </dev/null >"$dir/namesrv.log" 2>&1 9>&- &
    echo $! >"$dir/namesrv.pid"
    wait_for "rocketmq namesrv port $NAMESRV_PORT" "$dir/namesrv.log" port_open "$NAMESRV_PORT"
  fi

  if pid_alive "$dir/broker.pid" || port_open "$BROKER_PORT"; then
    log "rocketmq: reusing the broker on 127.0.0.1:$BROKER_PORT"
  else
    cat >"$dir/broker.conf" <<EOF
brokerClusterName=DefaultCluster
brokerName=broker-a
brokerId=0
brokerIP1=127.0.0.1
bindAddress=127.0.0.1
listenPort=$BROKER_PORT
namesrvAddr=127.0.0.1:$NAMESRV_PORT
storePathRootDir=$dir/store
storePathCommitLog=$dir/store/commitlog
# Tests create their topics explicitly; auto-creation stays on for retry and DLQ topics.
autoCreateTopicEnable=true
autoCreateSubscriptionGroup=true
# Small files and short retention: this broker only serves tests and the demo.
mappedFileSizeCommitLog=134217728
fileReservedTime=12
diskMaxUsedSpaceRatio=95
EOF
    log "rocketmq: starting broker on 127.0.0.1:$BROKER_PORT"
    # shellcheck disable=SC2046
    setsid nohup java $(java_flags) -cp "$lib/*" org.apache.rocketmq.broker.BrokerStartup \
      -c "$dir/broker.conf" </dev/null >"$dir/broker.log" 2>&1 9>&- &
    echo $! >"$dir/broker.pid"
  fi
  wait_for "rocketmq broker registered with namesrv" "$dir/broker.log" broker_registered "$lib"
  log "rocketmq: ready (broker-a registered with 127.0.0.1:$NAMESRV_PORT)"
}

# ---------------------------------------------------------------- Docker

compose_up() {
  log "docker: starting docker-compose.yml services"
  local svcs=()
  [ -n "${TXCONSUME_MYSQL_DSN:-}" ] || svcs+=(mysql)
  [ -n "${TXCONSUME_REDIS_ADDR:-}" ] || svcs+=(redis)
  [ -n "${TXCONSUME_ROCKETMQ_NAMESRV:-}" ] || svcs+=(namesrv broker)
  docker compose -f "$ROOT/docker-compose.yml" up -d --wait "${svcs[@]}" || fail "docker compose up"
  touch "$STATE/compose-started"
  if [[ " ${svcs[*]} " == *" broker "* ]]; then
    wait_for "rocketmq broker registered with namesrv" "" \
      sh -c "docker compose -f '$ROOT/docker-compose.yml' exec -T broker sh mqadmin clusterList -n namesrv:9876 | grep -q broker-a"
  fi
  log "docker: ready"
}

# ---------------------------------------------------------------- commands

cmd_up() {
  mkdir -p "$STATE"
  # Concurrent `up` calls wait for each other instead of racing. The daemons started below close
  # descriptor 9, so the lock ends with this script.
  exec 9>"$STATE/.lock"
  flock 9
  if [ -n "${TXCONSUME_MYSQL_DSN:-}" ] && [ -n "${TXCONSUME_ROCKETMQ_NAMESRV:-}" ] && [ -n "${TXCONSUME_REDIS_ADDR:-}" ]; then
    log "all TXCONSUME_* variables are set: using those services as they are"
    return
  fi
  if docker_usable; then
    compose_up
    return
  fi
  [ -n "${TXCONSUME_MYSQL_DSN:-}" ] && log "mysql: using TXCONSUME_MYSQL_DSN" || mysql_up
  [ -n "${TXCONSUME_REDIS_ADDR:-}" ] && log "redis: using TXCONSUME_REDIS_ADDR" || redis_up
  [ -n "${TXCONSUME_ROCKETMQ_NAMESRV:-}" ] && log "rocketmq: using TXCONSUME_ROCKETMQ_NAMESRV" || rocketmq_up
}

stop_pidfile() {
  local name=$1 pidfile=$2 i
  pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  local pid
  pid=$(cat "$pidfile")
  log "stopping $name (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for i in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

cmd_down() {
  if [ -f "$STATE/compose-started" ]; then
    docker compose -f "$ROOT/docker-compose.yml" down -v || true
    rm -f "$STATE/compose-started"
  fi
  stop_pidfile "rocketmq broker" "$STATE/rocketmq/broker.pid"
  stop_pidfile "rocketmq namesrv" "$STATE/rocketmq/namesrv.pid"
  stop_pidfile "redis" "$STATE/redis/redis.pid"
  stop_pidfile "mysql" "$STATE/mysql/mysqld.pid"
}

cmd_env() {
  printf 'export TXCONSUME_MYSQL_DSN=%q\n' "${TXCONSUME_MYSQL_DSN:-$DEFAULT_DSN}"
  printf 'export TXCONSUME_ROCKETMQ_NAMESRV=%q\n' "${TXCONSUME_ROCKETMQ_NAMESRV:-$DEFAULT_NAMESRV}"
  printf 'export TXCONSUME_REDIS_ADDR=%q\n' "${TXCONSUME_REDIS_ADDR:-$DEFAULT_REDIS}"
}

cmd_status() {
  mysql_local_ready >/dev/null 2>&1 && echo "mysql    up   127.0.0.1:$MYSQL_PORT" || echo "mysql    down"
  redis_ready && echo "redis    up   127.0.0.1:$REDIS_PORT" || echo "redis    down"
  port_open "$NAMESRV_PORT" && echo "namesrv  up   127.0.0.1:$NAMESRV_PORT" || echo "namesrv  down"
  port_open "$BROKER_PORT" && echo "broker   up   127.0.0.1:$BROKER_PORT" || echo "broker   down"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  env) cmd_env ;;
  status) cmd_status ;;
  rocketmq-lib) mkdir -p "$STATE/rocketmq"; rocketmq_lib; echo ;;
  *) echo "usage: $0 up|down|env|status|rocketmq-lib" >&2; exit 2 ;;
esac
