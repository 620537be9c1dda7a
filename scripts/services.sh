#!/usr/bin/env bash
# Brings up the real services that txconsume's tests and demo run against: the database servers
# of the test matrix (MariaDB and Oracle MySQL), Redis, and a RocketMQ 5.x namesrv + broker, all on
# loopback.
#
#   scripts/services.sh up      start what is missing and wait until every service really answers
#   scripts/services.sh down    stop what `up` started (by pid, or the compose project), nothing else
#   scripts/services.sh env     print `export` lines for TXCONSUME_MYSQL_DSN (the DSN the tests use),
#                               TXCONSUME_MARIADB_DSN, TXCONSUME_ORACLE_MYSQL_DSN, TXCONSUME_SERVERS,
#                               TXCONSUME_ROCKETMQ_NAMESRV, TXCONSUME_REDIS_ADDR
#                               (use: eval "$(scripts/services.sh env)")
#   scripts/services.sh status  say what runs
#   scripts/services.sh plan    say whether `up` would take the native or the compose path, and why
#   scripts/services.sh instance start|stop|kill|rm|pid <name> ...
#                               private servers for the fault-injection tests, on other ports
#                               (see "private instances" below)
#
# TXCONSUME_SERVERS lists the database servers to start and test on, default "mariadb mysql";
# TXCONSUME_MYSQL_DSN, unless already set, points at the first of them (so TXCONSUME_SERVERS=mysql
# makes `make demo` and `make bench` use Oracle MySQL).
#
# Where each service comes from, in order:
#   1. its TXCONSUME_* variable is already set (TXCONSUME_MARIADB_DSN, TXCONSUME_ORACLE_MYSQL_DSN,
#      TXCONSUME_REDIS_ADDR, TXCONSUME_ROCKETMQ_NAMESRV): that service is used as it is;
#   2. the compose path (docker-compose.yml starts mysql, rocketmq and redis), chosen by
#      TXCONSUME_SERVICES: "docker" takes it (starting dockerd, installing Debian's docker-compose
#      and building local images as needed, see scripts/docker/); "native" (or TXCONSUME_NO_DOCKER=1)
#      never does; unset or "auto" takes it only where apt-get is missing, a Docker engine answers,
#      a compose command runs (Compose v2, or docker-compose 1.27 or later) and the images are
#      present or pullable, and otherwise says in one line why not;
#   3. otherwise: MariaDB and Redis from Debian packages, Oracle MySQL from Debian sid's
#      mysql-server-core run in a chroot (a sid root file system made with debootstrap, so the
#      host's packages stay as they are), and the RocketMQ jars from Maven Central, installed when
#      missing and started from folders under .services/ (ignored by git).
#
# `up` is idempotent: a second call reuses whatever already runs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${TXCONSUME_SERVICES_DIR:-$ROOT/.services}
READY_TIMEOUT=${TXCONSUME_SERVICES_TIMEOUT:-180}

MYSQL_PORT=3306
ORACLE_MYSQL_PORT=${TXCONSUME_ORACLE_MYSQL_PORT:-3307}
REDIS_PORT=6379
NAMESRV_PORT=9876
BROKER_PORT=10911
ROCKETMQ_VERSION=5.3.3

# interpolateParams=true: one round trip per query instead of prepare + execute + close, as the
# README recommends.
DEFAULT_MARIADB_DSN="txconsume:txconsume@tcp(127.0.0.1:${MYSQL_PORT})/txconsume?interpolateParams=true"
DEFAULT_ORACLE_MYSQL_DSN="txconsume:txconsume@tcp(127.0.0.1:${ORACLE_MYSQL_PORT})/txconsume?interpolateParams=true"
# The database servers of the test matrix: "mariadb", "mysql" (Oracle MySQL), or both.
SERVERS=${TXCONSUME_SERVERS:-mariadb mysql}
# Debian sid is where Oracle MySQL (mysql-server-core, 9.7 at the time of writing) is packaged.
SID_MIRROR=${TXCONSUME_SID_MIRROR:-http://deb.debian.org/debian}
DEFAULT_NAMESRV="127.0.0.1:${NAMESRV_PORT}"
DEFAULT_REDIS="127.0.0.1:${REDIS_PORT}"

log() { printf 'services: %s\n' "$*" >&2; }
# shellcheck source=scripts/docker/lib.sh
. "$ROOT/scripts/docker/lib.sh"

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
  debian_install "$STATE/apt.log" "$@" || fail "apt-get install $*" "$STATE/apt.log"
}

# docker_usable decides whether `up` takes the compose path (see the top of this file) and prepares
# it: COMPOSE and COMPOSE_FILES are set for compose_up. Where it falls back to native services it
# says why in one line; with TXCONSUME_SERVICES=docker a path that does not work is a failure.
# `docker_usable --dry` decides without starting, installing or building anything (for `plan`).
docker_usable() {
  local dry=${1:-} mode=${TXCONSUME_SERVICES:-auto}
  [ "${TXCONSUME_NO_DOCKER:-}" = 1 ] && mode=native
  COMPOSE_FILES=(-f "$ROOT/docker-compose.yml")
  case $mode in
    native) return 1 ;;
    auto) ;;
    docker)
      compose_serves_servers || fail "TXCONSUME_SERVICES=docker: $SERVERS_MISSING"
      [ "$dry" = --dry ] && { log "docker: TXCONSUME_SERVICES=docker asks for docker-compose.yml"; return 0; }
      docker_engine_up || fail "TXCONSUME_SERVICES=docker: no Docker engine"
      compose_install || fail "TXCONSUME_SERVICES=docker: $COMPOSE_MISSING"
      compose_images || {
        log "docker: $IMAGES_MISSING; building local images"
        "$ROOT/scripts/docker/build-images.sh" || fail "TXCONSUME_SERVICES=docker: local images"
        COMPOSE_FILES+=(-f "$LOCAL_COMPOSE_OVERRIDE")
      }
      return 0 ;;
    *) fail "TXCONSUME_SERVICES=$mode: expected auto, native or docker" ;;
  esac
  docker_engine_answers || return 1
  if command -v apt-get >/dev/null 2>&1; then
    log "docker: an engine answers, but where apt-get installs them native services are the default (TXCONSUME_SERVICES=docker takes docker-compose.yml)"
    return 1
  fi
  if ! compose_serves_servers; then
    log "docker: falling back to native services: $SERVERS_MISSING"
    return 1
  fi
  if ! compose_detect; then
    log "docker: falling back to native services: $COMPOSE_MISSING"
    return 1
  fi
  if ! compose_images; then
    if image_present "$LOCAL_MYSQL_IMAGE" && image_present "$LOCAL_REDIS_IMAGE" && image_present "$LOCAL_ROCKETMQ_IMAGE"; then
      COMPOSE_FILES+=(-f "$LOCAL_COMPOSE_OVERRIDE")
    else
      log "docker: falling back to native services: $IMAGES_MISSING, and the local images are not built (scripts/docker/build-images.sh)"
      return 1
    fi
  fi
  log "docker: using ${COMPOSE[*]} with ${COMPOSE_FILES[*]}"
}

# compose_serves_servers reports whether docker-compose.yml has every database server of the test
# matrix that no variable names: its mysql service is Oracle MySQL, published where the matrix
# expects Oracle MySQL (ORACLE_MYSQL_PORT); it has no MariaDB.
compose_serves_servers() {
  SERVERS_MISSING=
  if [[ " $SERVERS " == *" mariadb "* ]] && [ -z "${TXCONSUME_MARIADB_DSN:-}" ]; then
    SERVERS_MISSING="docker-compose.yml has no MariaDB (TXCONSUME_SERVERS=mysql tests on its Oracle MySQL alone)"
    return 1
  fi
}

# compose_images reports whether the official images of docker-compose.yml are present or can be
# pulled; IMAGES_MISSING says which is not, and why.
compose_images() {
  local img why
  IMAGES_MISSING=
  for img in $(sed -n 's/^ *image: *//p' "$ROOT/docker-compose.yml" | sort -u); do
    image_present "$img" && continue
    if ! why=$(docker pull -q "$img" 2>&1); then
      IMAGES_MISSING="$img is not present and cannot be pulled ($(printf '%s' "$why" | tail -n 1))"
      return 1
    fi
  done
}

# ---------------------------------------------------------------- MariaDB (port 3306)

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
    log "mariadb: reusing the server on 127.0.0.1:$MYSQL_PORT"
    return
  fi
  command -v mariadbd >/dev/null 2>&1 || apt_install mariadb-server mariadb-client
  if port_open "$MYSQL_PORT"; then
    # A server we did not start holds the port (the package's own service, for one): give it our
    # user through its root socket rather than fail on the port.
    log "mariadb: a server already listens on $MYSQL_PORT; adding the txconsume user to it"
    mysql_grant mariadb -uroot || fail "mariadb on port $MYSQL_PORT does not accept the txconsume user and root is refused"
    wait_for "mariadb (SELECT 1 over TCP)" "" mysql_local_ready
    log "mariadb: ready"
    return
  fi
  if [ ! -d "$dir/data/mysql" ]; then
    log "mariadb: initialising a data folder"
    mariadb-install-db --no-defaults --datadir="$dir/data" --user="$(id -un)" \
      --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1 ||
      fail "mariadb-install-db" "$dir/install.log"
  fi
  log "mariadb: starting MariaDB on 127.0.0.1:$MYSQL_PORT"
  # Durability settings stay at the server defaults so that benchmarks see real commit costs.
  setsid nohup mariadbd --no-defaults --datadir="$dir/data" --user="$(id -un)" \
    --bind-address=127.0.0.1 --port="$MYSQL_PORT" --socket="$dir/mysqld.sock" \
    --pid-file="$dir/mysqld.pid" --log-error="$dir/mysqld.log" --skip-name-resolve \
    --max-connections=1000 --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
    </dev/null >/dev/null 2>&1 9>&- &
  wait_for "mariadb socket" "$dir/mysqld.log" mariadb --socket="$dir/mysqld.sock" -uroot -e 'SELECT 1'
  mysql_grant mariadb --socket="$dir/mysqld.sock" -uroot || fail "mariadb user set-up" "$dir/mysqld.log"
  wait_for "mariadb (SELECT 1 over TCP)" "$dir/mysqld.log" mysql_local_ready
  log "mariadb: ready"
}

# ---------------------------------------------------------------- Oracle MySQL (port 3307)
#
# Debian bookworm has no Oracle MySQL; sid has mysql-server-core. Installing sid packages on the
# host would pull a newer libc into it, so mysqld runs from a sid root file system of its own
# (debootstrap --variant=minbase plus mysql-server-core and mysql-client-core) as a plain chroot:
# same network (it listens on 127.0.0.1 like the others), no mounts, its data, log, pid file and
# socket inside the root file system under /srv/txconsume.

ORACLE_MYSQL_DIR=$STATE/oracle-mysql
ORACLE_MYSQL_ROOTFS=$ORACLE_MYSQL_DIR/rootfs
ORACLE_MYSQL_SRV=/srv/txconsume # as seen inside the chroot
ORACLE_MYSQL_HOST_SRV=$ORACLE_MYSQL_ROOTFS$ORACLE_MYSQL_SRV

# oracle_mysql_client runs a client as txconsume over TCP: the chroot's own when it is built,
# else the host's MariaDB client (which speaks to MySQL 9 too), so that a server on the port that
# this script did not start can be checked without building anything.
oracle_mysql_client() {
  local client=()
  if [ -f "$ORACLE_MYSQL_ROOTFS/.txconsume-complete" ]; then
    client=(chroot "$ORACLE_MYSQL_ROOTFS" mysql)
  elif command -v mariadb >/dev/null 2>&1; then
    client=(mariadb)
  else
    return 1
  fi
  MYSQL_PWD=txconsume "${client[@]}" --no-defaults --protocol=tcp -h127.0.0.1 -P"$ORACLE_MYSQL_PORT" -utxconsume "$@"
}

oracle_mysql_ready() { oracle_mysql_client -e 'SELECT 1'; }

# unmount_under detaches whatever is mounted below a directory (debootstrap mounts /proc and /sys
# in its target while it works, and a build that died may leave them), so that the directory can
# be removed without reaching into the host's file systems.
unmount_under() {
  local dir=$1 target
  [ -d "$dir" ] || return 0
  dir=$(cd "$dir" && pwd -P)
  awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r target; do
    umount -l "$target" 2>/dev/null || true
  done
}

# oracle_mysql_rootfs builds the sid root file system once; a build that did not finish is removed
# and started again.
oracle_mysql_rootfs() {
  [ -f "$ORACLE_MYSQL_ROOTFS/.txconsume-complete" ] && return
  command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || apt_install debootstrap
  local tmp=$ORACLE_MYSQL_DIR/rootfs.partial buildlog=$ORACLE_MYSQL_DIR/build.log start=$SECONDS
  unmount_under "$tmp"
  unmount_under "$ORACLE_MYSQL_ROOTFS"
  rm -rf "$tmp" "$ORACLE_MYSQL_ROOTFS"
  log "mysql: building a Debian sid root file system for Oracle MySQL (debootstrap, $SID_MIRROR)"
  PATH=$PATH:/usr/sbin:/sbin debootstrap --variant=minbase sid "$tmp" "$SID_MIRROR" >"$buildlog" 2>&1 || {
    unmount_under "$tmp"
    fail "mysql: debootstrap of Debian sid" "$buildlog"
  }
  unmount_under "$tmp"
  # sid's Release file may be past its Valid-Until date where the mirror is a snapshot.
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q -o Acquire::Check-Valid-Until=false)
  log "mysql: installing mysql-server-core and mysql-client-core from Debian sid into it"
  { chroot "$tmp" "${apt[@]}" update &&
    chroot "$tmp" "${apt[@]}" install -y --no-install-recommends mysql-server-core mysql-client-core &&
    chroot "$tmp" "${apt[@]}" clean; } >>"$buildlog" 2>&1 || fail "mysql: apt-get install in the sid chroot" "$buildlog"
  rm -rf "$tmp"/var/lib/apt/lists/*
  touch "$tmp/.txconsume-complete"
  mv "$tmp" "$ORACLE_MYSQL_ROOTFS"
  log "mysql: root file system built in $((SECONDS - start))s: $(chroot "$ORACLE_MYSQL_ROOTFS" mysqld --version)"
}

oracle_mysql_up() {
  local srv=$ORACLE_MYSQL_HOST_SRV in=$ORACLE_MYSQL_SRV
  mkdir -p "$ORACLE_MYSQL_DIR"
  if pid_alive "$srv/mysqld.pid"; then
    log "mysql: reusing the Oracle MySQL server on 127.0.0.1:$ORACLE_MYSQL_PORT"
    wait_for "mysql (SELECT 1 over TCP as txconsume)" "$srv/mysqld.log" oracle_mysql_ready
    return
  fi
  if port_open "$ORACLE_MYSQL_PORT"; then
    # A server this script did not start holds the port; it is used if it accepts our user.
    oracle_mysql_client -e 'SELECT 1' >/dev/null 2>&1 || oracle_mysql_rootfs
    oracle_mysql_ready >/dev/null 2>&1 ||
      fail "mysql: a server we did not start listens on $ORACLE_MYSQL_PORT and refuses txconsume/txconsume"
    log "mysql: using the server that already listens on 127.0.0.1:$ORACLE_MYSQL_PORT ($(oracle_mysql_client -N -e 'SELECT VERSION()' 2>/dev/null))"
    return
  fi
  oracle_mysql_rootfs
  mkdir -p "$srv/files"
  if [ ! -d "$srv/data/mysql" ]; then
    log "mysql: initialising a data folder"
    rm -rf "$srv/data"
    chroot "$ORACLE_MYSQL_ROOTFS" mysqld --no-defaults --initialize-insecure --user=root \
      --datadir="$in/data" --log-error="$in/install.log" >/dev/null 2>&1 ||
      fail "mysql: mysqld --initialize" "$srv/install.log"
  fi
  log "mysql: starting Oracle MySQL on 127.0.0.1:$ORACLE_MYSQL_PORT"
  # Durability settings stay at the server defaults (binary log on, flushed at every commit) so that
  # benchmarks see real commit costs; old binary logs are removed after a day. The X Protocol
  # listener is off: it would listen on every interface.
  rm -f "$srv/mysqld.log"
  setsid nohup chroot "$ORACLE_MYSQL_ROOTFS" /usr/sbin/mysqld --no-defaults --user=root \
    --datadir="$in/data" --bind-address=127.0.0.1 --port="$ORACLE_MYSQL_PORT" --mysqlx=OFF \
    --socket="$in/mysqld.sock" --pid-file="$in/mysqld.pid" --log-error="$in/mysqld.log" \
    --secure-file-priv="$in/files" --skip-name-resolve --max-connections=1000 \
    --character-set-server=utf8mb4 --binlog-expire-logs-seconds=86400 \
    </dev/null >/dev/null 2>&1 9>&- &
  local pid=$!
  # The wait ends early when mysqld exits, so that a server that cannot start fails at once.
  # shellcheck disable=SC2016 # the inner script expands its own arguments
  wait_for "mysql socket" "$srv/mysqld.log" bash -c 'pid=$1; shift; ! kill -0 "$pid" || "$@"' _ "$pid" \
    chroot "$ORACLE_MYSQL_ROOTFS" mysql --no-defaults --socket="$in/mysqld.sock" -uroot -e 'SELECT 1'
  kill -0 "$pid" 2>/dev/null || fail "mysql: mysqld exited while starting" "$srv/mysqld.log"
  mysql_grant chroot "$ORACLE_MYSQL_ROOTFS" mysql --no-defaults --socket="$in/mysqld.sock" -uroot ||
    fail "mysql user set-up" "$srv/mysqld.log"
  wait_for "mysql (SELECT 1 over TCP as txconsume)" "$srv/mysqld.log" oracle_mysql_ready
  log "mysql: ready ($(oracle_mysql_client -N -e 'SELECT VERSION()' 2>/dev/null))"
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

# java_flags prints the JVM options of a namesrv or broker; its logs go under the home given
# (default: the shared services' home).
java_flags() {
  local major home=${1:-$STATE/rocketmq/home}
  major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
  # tls.server.mode=disabled: nothing here speaks TLS, and the self-signed certificate a
  # permissive server makes costs seconds of start-up on every (re)start.
  printf '%s ' -Xms256m -Xmx512m -XX:+UseG1GC -Duser.home="$home" -Dtls.server.mode=disabled
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
    rocketmq_fetch "$ROCKETMQ_VERSION" "$lib" "$STATE/rocketmq/mvn.log" ||
      fail "maven fetch of RocketMQ jars" "$STATE/rocketmq/mvn.log"
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

# broker_conf prints the configuration of a broker of the cluster DefaultCluster: its name, port,
# name server and store folder.
broker_conf() {
  local name=$1 port=$2 namesrv=$3 store=$4
  cat <<EOF
brokerClusterName=DefaultCluster
brokerName=$name
brokerId=0
brokerIP1=127.0.0.1
bindAddress=127.0.0.1
listenPort=$port
namesrvAddr=$namesrv
storePathRootDir=$store
storePathCommitLog=$store/commitlog
# Tests create their topics explicitly; auto-creation stays on for retry and DLQ topics.
autoCreateTopicEnable=true
autoCreateSubscriptionGroup=true
# Small files and short retention: this broker only serves tests and the demo.
mappedFileSizeCommitLog=134217728
fileReservedTime=12
diskMaxUsedSpaceRatio=95
# A send waits in the broker's queue up to this long before the broker answers "busy" (default
# 200ms, which a loaded two-core machine exceeds: producers then fail with TIMEOUT_CLEAN_QUEUE).
# The same as the Docker brokers'.
waitTimeMillsInSendQueue=3000
EOF
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
    broker_conf broker-a "$BROKER_PORT" "127.0.0.1:$NAMESRV_PORT" "$dir/store" >"$dir/broker.conf"
    log "rocketmq: starting broker on 127.0.0.1:$BROKER_PORT"
    # shellcheck disable=SC2046
    setsid nohup java $(java_flags) -cp "$lib/*" org.apache.rocketmq.broker.BrokerStartup \
      -c "$dir/broker.conf" </dev/null >"$dir/broker.log" 2>&1 9>&- &
    echo $! >"$dir/broker.pid"
  fi
  wait_for "rocketmq broker registered with namesrv" "$dir/broker.log" broker_registered "$lib"
  log "rocketmq: ready (broker-a registered with 127.0.0.1:$NAMESRV_PORT)"
}

# ---------------------------------------------------------------- private instances
#
# The fault-injection tests stop, kill and restart servers. They never touch the shared services
# above, which other tests use at the same time: each gets private instances on loopback ports of
# its own, with data of their own under $STATE/instances/<name> (an Oracle MySQL instance keeps
# its data inside the sid root file system, under /srv/txconsume/instances/<name>).
#
#   instance start <name> <kind> <port> [<namesrv> [<broker name>]]
#       start the instance, or start it again with the data it had; kind is mariadb, mysql,
#       redis, namesrv or broker (a broker needs its namesrv's host:port); returns when it
#       answers (a database: SELECT 1 as txconsume; a broker: registered with its namesrv)
#   instance stop <name>     SIGTERM, then wait until the process has exited (SIGKILL after 60s)
#   instance kill <name>     SIGKILL, and wait until the process has gone
#   instance rm <name>       kill it and delete its data
#   instance pid <name>      print its process id, when it runs
#
# A new database instance starts from a template data folder made once per kind (the
# txconsume user and database already in it), so that it is up in seconds. Redis keeps an
# append-only file, so that a restarted Redis has what it had acknowledged.

INSTANCES=$STATE/instances
TEMPLATES=$STATE/templates
ORACLE_MYSQL_INSTANCES=$ORACLE_MYSQL_SRV/instances # as seen inside the chroot

# with_lock runs a command holding the lock file given (created when missing), so that parallel
# test processes prepare a template or install a package once.
with_lock() {
  local lock=$1; shift
  mkdir -p "$(dirname "$lock")"
  (
    exec 8>"$lock"
    flock 8
    "$@"
  )
}

# mariadb_template makes the template data folder of private MariaDB instances.
mariadb_template() {
  local tpl=$TEMPLATES/mariadb tmp=$TEMPLATES/mariadb.partial
  [ -f "$tpl/.complete" ] && return
  command -v mariadbd >/dev/null 2>&1 || with_lock "$STATE/.lock" apt_install mariadb-server mariadb-client
  rm -rf "$tmp"
  mkdir -p "$tmp"
  log "instance: making the MariaDB template data folder"
  mariadb-install-db --no-defaults --datadir="$tmp/data" --user="$(id -un)" \
    --auth-root-authentication-method=normal --skip-test-db >"$tmp/install.log" 2>&1 ||
    fail "mariadb-install-db (template)" "$tmp/install.log"
  setsid nohup mariadbd --no-defaults --datadir="$tmp/data" --user="$(id -un)" --skip-networking \
    --socket="$tmp/mysqld.sock" --pid-file="$tmp/mysqld.pid" --log-error="$tmp/mysqld.log" \
    </dev/null >/dev/null 2>&1 8>&- 9>&- &
  local pid=$!
  await_ready "$pid" "mariadb template" "$tmp/mysqld.log" mariadb --socket="$tmp/mysqld.sock" -uroot -e 'SELECT 1'
  mysql_grant mariadb --socket="$tmp/mysqld.sock" -uroot || fail "mariadb template user set-up" "$tmp/mysqld.log"
  mariadb-admin --socket="$tmp/mysqld.sock" -uroot shutdown || fail "mariadb template shutdown" "$tmp/mysqld.log"
  while pid_running "$pid"; do sleep 0.1; done
  rm -f "$tmp/mysqld.sock" "$tmp/mysqld.pid"
  touch "$tmp/.complete"
  rm -rf "$tpl"
  mv "$tmp" "$tpl"
}

# oracle_mysql_template makes the template data folder of private Oracle MySQL instances, inside
# the sid root file system.
oracle_mysql_template() {
  local tpl=$ORACLE_MYSQL_HOST_SRV/templates/mysql tmp=$ORACLE_MYSQL_HOST_SRV/templates/mysql.partial
  local in_tmp=$ORACLE_MYSQL_SRV/templates/mysql.partial
  [ -f "$tpl/.complete" ] && return
  mkdir -p "$ORACLE_MYSQL_DIR"
  with_lock "$STATE/.lock" oracle_mysql_rootfs
  rm -rf "$tmp"
  mkdir -p "$tmp"
  log "instance: making the Oracle MySQL template data folder"
  chroot "$ORACLE_MYSQL_ROOTFS" mysqld --no-defaults --initialize-insecure --user=root \
    --datadir="$in_tmp/data" --log-error="$in_tmp/install.log" >/dev/null 2>&1 ||
    fail "mysql: mysqld --initialize (template)" "$tmp/install.log"
  setsid nohup chroot "$ORACLE_MYSQL_ROOTFS" /usr/sbin/mysqld --no-defaults --user=root \
    --datadir="$in_tmp/data" --skip-networking --mysqlx=OFF --socket="$in_tmp/mysqld.sock" \
    --pid-file="$in_tmp/mysqld.pid" --log-error="$in_tmp/mysqld.log" --secure-file-priv=NULL \
    </dev/null >/dev/null 2>&1 8>&- 9>&- &
  local pid=$! client=(chroot "$ORACLE_MYSQL_ROOTFS" mysql --no-defaults --socket="$in_tmp/mysqld.sock" -uroot)
  await_ready "$pid" "mysql template" "$tmp/mysqld.log" "${client[@]}" -e 'SELECT 1'
  mysql_grant "${client[@]}" || fail "mysql template user set-up" "$tmp/mysqld.log"
  "${client[@]}" -e 'SHUTDOWN' || fail "mysql template shutdown" "$tmp/mysqld.log"
  while pid_running "$pid"; do sleep 0.1; done
  rm -f "$tmp/mysqld.sock" "$tmp/mysqld.pid"
  touch "$tmp/.complete"
  rm -rf "$tpl"
  mv "$tmp" "$tpl"
}

# await_ready runs a check until it succeeds, failing at once when the process given exits, or
# after READY_TIMEOUT seconds.
await_ready() {
  local pid=$1 what=$2 logfile=$3; shift 3
  local deadline=$((SECONDS + READY_TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    pid_running "$pid" || fail "$what: the process exited while starting" "$logfile"
    [ $SECONDS -lt $deadline ] || fail "$what not ready after ${READY_TIMEOUT}s" "$logfile"
    sleep 0.2
  done
}

# await_ready_or_exit is await_ready, except that it returns 1 when the process exits.
await_ready_or_exit() {
  local pid=$1 what=$2 logfile=$3; shift 3
  local deadline=$((SECONDS + READY_TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    pid_running "$pid" || return 1
    [ $SECONDS -lt $deadline ] || fail "$what not ready after ${READY_TIMEOUT}s" "$logfile"
    sleep 0.2
  done
}

# stop_pid sends SIGTERM and waits up to the seconds given for the process to exit, then sends
# SIGKILL and waits until it has gone.
stop_pid() {
  local pid=$1 seconds=$2 deadline
  kill "$pid" 2>/dev/null || return 0
  deadline=$((SECONDS + seconds))
  while pid_running "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
  kill_pid "$pid"
}

# kill_pid sends SIGKILL and waits until the process has gone.
kill_pid() {
  local pid=$1
  kill -9 "$pid" 2>/dev/null || return 0
  while pid_running "$pid"; do sleep 0.05; done
}

# pid_running reports whether a process runs. A process whose parent has gone may stay a zombie
# where nothing reaps orphans (a container without an init), and the zombie of a multi-threaded
# process (a JVM) holds its sockets until its last thread has exited: it has gone once it is a
# zombie with no other thread left.
pid_running() {
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 1
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] || return 0
  [ "$(find "/proc/$pid/task" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)" -gt 1 ]
}

instance_alive() {
  local dir=$INSTANCES/$1
  [ -f "$dir/pid" ] && pid_running "$(cat "$dir/pid")"
}

# tcp_select1 runs SELECT 1 over TCP as txconsume with the client command given.
tcp_select1() {
  local port=$1; shift
  MYSQL_PWD=txconsume "$@" --no-defaults --protocol=tcp -h127.0.0.1 -P"$port" -utxconsume -e 'SELECT 1'
}

# log_says reports whether a log file contains a line.
log_says() { [ -f "$1" ] && grep -q "$2" "$1"; }

# broker_registered_since reports whether a broker's log has more completed registrations with its
# name server than the count given.
broker_registered_since() {
  local n
  n=$(grep -c 'Registering current broker to name server completed' "$1" 2>/dev/null || true)
  [ "${n:-0}" -gt "$2" ]
}

# rocketmq_launch starts the JVM of a namesrv or broker instance for instance_start, whose pid
# and ready check it sets (from instance_start's name, kind, port, namesrv, broker_name, dir,
# logfile: bash's scoping is dynamic).
rocketmq_launch() {
  local lib
  lib=$(with_lock "$STATE/.lock" rocketmq_lib)
  mkdir -p "$dir/home/logs" "$dir/store"
  # Emptied here, not by the redirection of the background job, so that the check below never
  # reads the previous run's "boot success".
  : >"$logfile"
  if [ "$kind" = namesrv ]; then
    printf 'listenPort=%s\nbindAddress=127.0.0.1\n' "$port" >"$dir/namesrv.conf"
    # shellcheck disable=SC2046
    ROCKETMQ_HOME=$dir/home setsid nohup java $(java_flags "$dir/home") -cp "$lib/*" \
      org.apache.rocketmq.namesrv.NamesrvStartup -c "$dir/namesrv.conf" \
      </dev/null >>"$logfile" 2>&1 8>&- 9>&- &
    pid=$!
    ready=(log_says "$logfile" 'boot success')
  else
    [ -n "$namesrv" ] || { log "instance $name: a broker needs its namesrv's host:port"; exit 2; }
    broker_conf "$broker_name" "$port" "$namesrv" "$dir/store" >"$dir/broker.conf"
    # A broker says "boot success" before its registration with the name server, which
    # another thread does, has completed; that one it logs in its own log, which a restart
    # appends to: ready once one more such line is there.
    local blog=$dir/home/logs/rocketmqlogs/broker.log registered
    registered=$(grep -c 'Registering current broker to name server completed' "$blog" 2>/dev/null || true)
    # shellcheck disable=SC2046
    ROCKETMQ_HOME=$dir/home setsid nohup java $(java_flags "$dir/home") -cp "$lib/*" \
      org.apache.rocketmq.broker.BrokerStartup -c "$dir/broker.conf" \
      </dev/null >>"$logfile" 2>&1 8>&- 9>&- &
    pid=$!
    ready=(broker_registered_since "$blog" "${registered:-0}")
  fi
}

# instance_start starts the process of an instance in the background, with the pid in
# $dir/pid, and waits until it answers; a process that exits while starting fails at once.
instance_start() {
  local name=$1 kind=$2 port=$3 namesrv=${4:-} broker_name=${5:-$1}
  local dir=$INSTANCES/$name pid
  if [ -z "$name" ] || [ -z "$kind" ] || [ -z "$port" ]; then
    log "usage: $0 instance start <name> <kind> <port> [<namesrv> [<broker name>]]"
    exit 2
  fi
  mkdir -p "$dir"
  if instance_alive "$name"; then
    log "instance $name: already running (pid $(cat "$dir/pid"))"
    return
  fi
  port_open "$port" && fail "instance $name: port $port is taken by another process"
  printf '%s\n' "$kind" >"$dir/kind"
  local logfile=$dir/out.log ready=()
  case $kind in
    mariadb)
      if [ ! -d "$dir/data" ]; then
        with_lock "$TEMPLATES/.mariadb.lock" mariadb_template
        cp -a "$TEMPLATES/mariadb/data" "$dir/data"
      fi
      logfile=$dir/mysqld.log
      setsid nohup mariadbd --no-defaults --datadir="$dir/data" --user="$(id -un)" \
        --bind-address=127.0.0.1 --port="$port" --socket="$dir/mysqld.sock" \
        --pid-file="$dir/mysqld.pid" --log-error="$logfile" --skip-name-resolve \
        --max-connections=1000 --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
        </dev/null >/dev/null 2>&1 8>&- 9>&- &
      pid=$!
      ready=(tcp_select1 "$port" mariadb)
      ;;
    mysql)
      local host_data=$ORACLE_MYSQL_HOST_SRV/instances/$name in=$ORACLE_MYSQL_INSTANCES/$name
      if [ ! -d "$host_data/data" ]; then
        with_lock "$TEMPLATES/.mysql.lock" oracle_mysql_template
        mkdir -p "$host_data"
        cp -a "$ORACLE_MYSQL_HOST_SRV/templates/mysql/data" "$host_data/data"
      fi
      logfile=$host_data/mysqld.log
      rm -f "$logfile"
      setsid nohup chroot "$ORACLE_MYSQL_ROOTFS" /usr/sbin/mysqld --no-defaults --user=root \
        --datadir="$in/data" --bind-address=127.0.0.1 --port="$port" --mysqlx=OFF \
        --socket="$in/mysqld.sock" --pid-file="$in/mysqld.pid" --log-error="$in/mysqld.log" \
        --skip-name-resolve --max-connections=1000 --character-set-server=utf8mb4 --secure-file-priv=NULL \
        </dev/null >/dev/null 2>&1 8>&- 9>&- &
      pid=$!
      ready=(tcp_select1 "$port" chroot "$ORACLE_MYSQL_ROOTFS" mysql)
      ;;
    redis)
      command -v redis-server >/dev/null 2>&1 || with_lock "$STATE/.lock" apt_install redis-server
      setsid nohup redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --save '' \
        --appendonly yes --appendfsync everysec --logfile "$logfile" \
        </dev/null >/dev/null 2>&1 8>&- 9>&- &
      pid=$!
      ready=(sh -c "[ \"\$(redis-cli -h 127.0.0.1 -p $port PING)\" = PONG ]")
      ;;
    namesrv | broker)
      # A JVM that lists the network interfaces while another process adds or removes some
      # (containers starting and stopping) can die at start-up: RocketMQ's NetworkUtil gets no
      # address and throws. Such a start is tried again, up to three times.
      local attempt
      for attempt in 1 2 3; do
        rocketmq_launch
        echo "$pid" >"$dir/pid"
        await_ready_or_exit "$pid" "instance $name ($kind on 127.0.0.1:$port)" "$logfile" "${ready[@]}" && break
        [ "$attempt" -lt 3 ] || fail "instance $name ($kind on 127.0.0.1:$port): the process exited while starting, 3 times" "$logfile"
        log "instance $name: $kind exited while starting (attempt $attempt of 3), starting it again; last lines:"
        tail -n 5 "$logfile" >&2
      done
      ;;
    *) log "instance $name: unknown kind '$kind' (mariadb, mysql, redis, namesrv, broker)"; exit 2 ;;
  esac
  echo "$pid" >"$dir/pid"
  await_ready "$pid" "instance $name ($kind on 127.0.0.1:$port)" "$logfile" "${ready[@]}"
  log "instance $name: $kind ready on 127.0.0.1:$port (pid $pid)"
}

instance_stop() {
  local name=$1
  instance_alive "$name" || return 0
  stop_pid "$(cat "$INSTANCES/$name/pid")" 60
}

instance_kill() {
  local name=$1
  instance_alive "$name" || return 0
  kill_pid "$(cat "$INSTANCES/$name/pid")"
}

instance_rm() {
  local name=$1
  [ -n "$name" ] || return 0
  instance_kill "$name"
  rm -rf "${INSTANCES:?}/$name"
  rm -rf "${ORACLE_MYSQL_HOST_SRV:?}/instances/$name"
}

cmd_instance() {
  local sub=${1:-} name=${2:-}
  if [ -z "$sub" ] || [ -z "$name" ]; then
    echo "usage: $0 instance start|stop|kill|rm|pid <name> ..." >&2
    exit 2
  fi
  # Private instances never take the shared services' names.
  [[ $name =~ ^[A-Za-z0-9_.-]+$ ]] || { log "instance name '$name': letters, digits, . _ - only"; exit 2; }
  mkdir -p "$INSTANCES"
  case $sub in
    start) shift 2; instance_start "$name" "$@" ;;
    stop) instance_stop "$name" ;;
    kill) instance_kill "$name" ;;
    rm) instance_rm "$name" ;;
    pid) instance_alive "$name" && cat "$INSTANCES/$name/pid" ;;
    *) echo "usage: $0 instance start|stop|kill|rm|pid <name> ..." >&2; exit 2 ;;
  esac
}

# ---------------------------------------------------------------- Docker

compose_up() {
  local svcs=()
  [[ " $SERVERS " != *" mysql "* ]] || [ -n "${TXCONSUME_ORACLE_MYSQL_DSN:-}" ] || svcs+=(mysql)
  [ -n "${TXCONSUME_REDIS_ADDR:-}" ] || svcs+=(redis)
  [ -n "${TXCONSUME_ROCKETMQ_NAMESRV:-}" ] || svcs+=(namesrv broker)
  local svc port
  for svc in "${svcs[@]}"; do
    case $svc in mysql) port=$ORACLE_MYSQL_PORT ;; redis) port=$REDIS_PORT ;; namesrv) port=$NAMESRV_PORT ;; broker) port=$BROKER_PORT ;; esac
    if port_open "$port"; then
      fail "docker: 127.0.0.1:$port, where compose publishes $svc, is taken (by native services? see \`$0 status\`); make test-docker runs the stack on free ports instead"
    fi
  done
  log "docker: starting ${svcs[*]} from docker-compose.yml"
  # The stack publishes where `env` points: MySQL where the matrix has Oracle MySQL, the others on
  # their default ports, whatever TXCONSUME_COMPOSE_*_PORT say.
  # The project is named here (docker-compose.yml has no `name`, which docker-compose 1.29 rejects).
  local compose=(env -u TXCONSUME_COMPOSE_REDIS_PORT -u TXCONSUME_COMPOSE_NAMESRV_PORT -u TXCONSUME_COMPOSE_BROKER_PORT
    TXCONSUME_COMPOSE_MYSQL_PORT="$ORACLE_MYSQL_PORT" "${COMPOSE[@]}" -p txconsume "${COMPOSE_FILES[@]}")
  if ! { "${compose[@]}" up -d "${svcs[@]}" && COMPOSE_WAIT_SERVICES="${svcs[*]}" compose_wait "$READY_TIMEOUT" "${compose[@]}"; }; then
    "${compose[@]}" down -v >/dev/null 2>&1 || true
    fail "compose up (${COMPOSE[*]} -p txconsume ${COMPOSE_FILES[*]})"
  fi
  printf '%s\n' "${compose[@]}" >"$STATE/compose-started"
  if [[ " ${svcs[*]} " == *" broker "* ]]; then
    wait_for "rocketmq broker registered with namesrv" "" \
      sh -c "$(printf '%q ' "${compose[@]}") exec -T broker sh mqadmin clusterList -n namesrv:9876 | grep -q broker-a"
  fi
  log "docker: ready"
}

# compose_down takes down the stack that compose_up started, with the same command and files.
compose_down() {
  [ -f "$STATE/compose-started" ] || return 0
  local compose=()
  mapfile -t compose <"$STATE/compose-started"
  "${compose[@]}" down -v || true
  rm -f "$STATE/compose-started"
}

# ---------------------------------------------------------------- commands

# check_servers rejects a TXCONSUME_SERVERS entry that names no database server of the matrix.
check_servers() {
  local server
  [ -n "${SERVERS// /}" ] || { log "FAILED: TXCONSUME_SERVERS is empty (use mariadb, mysql or both)"; exit 1; }
  for server in $SERVERS; do
    case $server in
      mariadb | mysql) ;;
      *) log "FAILED: TXCONSUME_SERVERS names '$server': the database servers are mariadb and mysql"; exit 1 ;;
    esac
  done
}

# server_dsn prints the DSN of one database server of the matrix: its variable when set, else the
# local server's.
server_dsn() {
  case $1 in
    mariadb) printf '%s' "${TXCONSUME_MARIADB_DSN:-$DEFAULT_MARIADB_DSN}" ;;
    mysql) printf '%s' "${TXCONSUME_ORACLE_MYSQL_DSN:-$DEFAULT_ORACLE_MYSQL_DSN}" ;;
  esac
}

database_up() {
  case $1 in
    mariadb) if [ -n "${TXCONSUME_MARIADB_DSN:-}" ]; then log "mariadb: using TXCONSUME_MARIADB_DSN"; else mysql_up; fi ;;
    mysql) if [ -n "${TXCONSUME_ORACLE_MYSQL_DSN:-}" ]; then log "mysql: using TXCONSUME_ORACLE_MYSQL_DSN"; else oracle_mysql_up; fi ;;
  esac
}

cmd_up() {
  mkdir -p "$STATE"
  check_servers
  # Concurrent `up` calls wait for each other instead of racing. The daemons started below close
  # descriptor 9, so the lock ends with this script.
  exec 9>"$STATE/.lock"
  flock 9
  local server databases_set=true
  for server in $SERVERS; do
    case $server in
      mariadb) [ -n "${TXCONSUME_MARIADB_DSN:-}" ] || databases_set=false ;;
      mysql) [ -n "${TXCONSUME_ORACLE_MYSQL_DSN:-}" ] || databases_set=false ;;
    esac
  done
  if $databases_set && [ -n "${TXCONSUME_ROCKETMQ_NAMESRV:-}" ] && [ -n "${TXCONSUME_REDIS_ADDR:-}" ]; then
    log "all TXCONSUME_* variables are set: using those services as they are"
    return
  fi
  if docker_usable; then
    compose_up
    return
  fi
  local oracle_pid=
  for server in $SERVERS; do
    if [ "$server" = mysql ] && [ -z "${TXCONSUME_ORACLE_MYSQL_DSN:-}" ]; then
      # On a fresh machine the sid root file system takes most of a minute to build: it is built
      # and started while the other services come up. debootstrap is installed first, so that
      # apt-get never runs twice at once on the host.
      command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || apt_install debootstrap
      oracle_mysql_up &
      oracle_pid=$!
    else
      database_up "$server"
    fi
  done
  [ -n "${TXCONSUME_REDIS_ADDR:-}" ] && log "redis: using TXCONSUME_REDIS_ADDR" || redis_up
  [ -n "${TXCONSUME_ROCKETMQ_NAMESRV:-}" ] && log "rocketmq: using TXCONSUME_ROCKETMQ_NAMESRV" || rocketmq_up
  if [ -n "$oracle_pid" ]; then wait "$oracle_pid" || exit 1; fi
}

stop_pidfile() {
  local name=$1 pidfile=$2
  pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  local pid
  pid=$(cat "$pidfile")
  log "stopping $name (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

cmd_down() {
  compose_down
  stop_pidfile "rocketmq broker" "$STATE/rocketmq/broker.pid"
  stop_pidfile "rocketmq namesrv" "$STATE/rocketmq/namesrv.pid"
  stop_pidfile "redis" "$STATE/redis/redis.pid"
  stop_pidfile "mariadb" "$STATE/mysql/mysqld.pid"
  stop_pidfile "mysql (Oracle MySQL)" "$ORACLE_MYSQL_HOST_SRV/mysqld.pid"
  unmount_under "$ORACLE_MYSQL_ROOTFS"
}

cmd_env() {
  check_servers
  local servers
  read -r -a servers <<<"$SERVERS"
  printf 'export TXCONSUME_SERVERS=%q\n' "${servers[*]}"
  printf 'export TXCONSUME_MARIADB_DSN=%q\n' "$(server_dsn mariadb)"
  printf 'export TXCONSUME_ORACLE_MYSQL_DSN=%q\n' "$(server_dsn mysql)"
  # The DSN the tests use: `make test` sets it per leg; for everything else, the first server.
  printf 'export TXCONSUME_MYSQL_DSN=%q\n' "${TXCONSUME_MYSQL_DSN:-$(server_dsn "${servers[0]}")}"
  printf 'export TXCONSUME_ROCKETMQ_NAMESRV=%q\n' "${TXCONSUME_ROCKETMQ_NAMESRV:-$DEFAULT_NAMESRV}"
  printf 'export TXCONSUME_REDIS_ADDR=%q\n' "${TXCONSUME_REDIS_ADDR:-$DEFAULT_REDIS}"
}

cmd_status() {
  mysql_local_ready >/dev/null 2>&1 && echo "mariadb  up   127.0.0.1:$MYSQL_PORT" || echo "mariadb  down"
  if oracle_mysql_ready >/dev/null 2>&1; then
    echo "mysql    up   127.0.0.1:$ORACLE_MYSQL_PORT ($(oracle_mysql_client -N -e 'SELECT VERSION()' 2>/dev/null))"
  elif port_open "$ORACLE_MYSQL_PORT"; then
    echo "mysql    ?    127.0.0.1:$ORACLE_MYSQL_PORT open, not started here"
  else
    echo "mysql    down"
  fi
  redis_ready && echo "redis    up   127.0.0.1:$REDIS_PORT" || echo "redis    down"
  port_open "$NAMESRV_PORT" && echo "namesrv  up   127.0.0.1:$NAMESRV_PORT" || echo "namesrv  down"
  port_open "$BROKER_PORT" && echo "broker   up   127.0.0.1:$BROKER_PORT" || echo "broker   down"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  env) cmd_env ;;
  status) cmd_status ;;
  plan) if docker_usable --dry; then echo docker; else echo native; fi ;;
  instance) shift; cmd_instance "$@" ;;
  *) echo "usage: $0 up|down|env|status|plan|instance" >&2; exit 2 ;;
esac
