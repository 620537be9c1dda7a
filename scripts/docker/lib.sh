# shellcheck shell=bash disable=SC2034  # the variables set here are read by the scripts that source it
# Shared by scripts/services.sh and the scripts beside this file (source it; it defines functions
# only). What a Docker engine can do is found out, never assumed: an engine that answers may still
# lack a compose command or any way to get the official images.
#
# Callers set ROOT (the repository) and STATE (its .services folder) and may define `log`.

: "${ROOT:?ROOT must be set before sourcing scripts/docker/lib.sh}"
: "${STATE:=$ROOT/.services}"
declare -F log >/dev/null || log() { printf 'docker: %s\n' "$*" >&2; }

# `make test` prepares the native services and the Docker leg at the same time, so installs and
# downloads that share machine-wide state take turns through these lock files.
DEBIAN_INSTALL_LOCK=${TMPDIR:-/tmp}/txconsume-apt.lock
MAVEN_FETCH_LOCK=${TMPDIR:-/tmp}/txconsume-maven.lock

# debian_install LOG PACKAGE...: apt-get install (apt-get update first only when the install fails),
# its output appended to LOG. Waits for this repository's other installs and for any apt-get or
# dpkg that holds dpkg's lock, instead of failing on it.
debian_install() {
  local logfile=$1
  shift
  local apt=(apt-get -y -qq -o DPkg::Lock::Timeout=600)
  (
    flock 8
    export DEBIAN_FRONTEND=noninteractive
    "${apt[@]}" install "$@" || { "${apt[@]}" update && "${apt[@]}" install "$@"; }
  ) 8>"$DEBIAN_INSTALL_LOCK" >>"$logfile" 2>&1
}

# rocketmq_fetch VERSION DIR LOG: the RocketMQ namesrv, broker and tools jars of VERSION with their
# runtime dependencies, from Maven Central (through the local Maven repository) into DIR; Maven's
# output goes to LOG. Fetches take turns, so the second one only copies what the first downloaded.
rocketmq_fetch() {
  local version=$1 dir=$2 logfile=$3
  mkdir -p "$dir"
  (
    flock 8
    mvn -q -B -f "$ROOT/scripts/rocketmq/pom.xml" -Drocketmq.version="$version" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dir"
  ) 8>"$MAVEN_FETCH_LOCK" >"$logfile" 2>&1
}

# The images the local build makes (scripts/docker/build-images.sh) and the compose override file
# that points docker-compose.yml at them.
LOCAL_MYSQL_IMAGE=txconsume-local/mysql:9.7
LOCAL_REDIS_IMAGE=txconsume-local/redis:8
LOCAL_ROCKETMQ_IMAGE=txconsume-local/rocketmq:5.3.3
LOCAL_COMPOSE_OVERRIDE=$ROOT/scripts/docker/compose.local.yml

docker_engine_answers() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

# docker_can_run reports whether this machine has a Docker engine or can get one: an engine
# answers, or (as root) dockerd is installed or apt-get has a docker.io package to install.
# DOCKER_CANNOT_RUN says why not.
docker_can_run() {
  DOCKER_CANNOT_RUN=
  docker_engine_answers && return 0
  local why="no Docker engine answers"
  if [ "$(id -u)" -ne 0 ]; then
    DOCKER_CANNOT_RUN="$why, and starting dockerd (or installing docker.io) needs root"
  elif command -v dockerd >/dev/null 2>&1; then
    return 0
  elif ! command -v apt-get >/dev/null 2>&1; then
    DOCKER_CANNOT_RUN="$why, dockerd is not installed and there is no apt-get to install docker.io"
  elif ! apt-cache policy docker.io 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    DOCKER_CANNOT_RUN="$why, dockerd is not installed and apt knows no docker.io package (apt-get update?)"
  else
    return 0
  fi
  return 1
}

# docker_engine_up installs Debian's docker.io when dockerd is missing and starts dockerd when no
# engine answers. Machines like CI's have no systemd: dockerd runs in the background with its log
# in $STATE/docker/dockerd.log, and stays up for later runs.
docker_engine_up() {
  docker_engine_answers && return 0
  local dir=$STATE/docker
  mkdir -p "$dir"
  if ! command -v dockerd >/dev/null 2>&1; then
    log "installing Debian's docker.io"
    debian_install "$dir/apt.log" docker.io || { log "FAILED: apt-get install docker.io"; tail -n 20 "$dir/apt.log" >&2; return 1; }
  fi
  if [ -S /var/run/docker.sock ] && pgrep -x dockerd >/dev/null 2>&1; then
    log "dockerd runs but does not answer yet"
  else
    log "starting dockerd (log: $dir/dockerd.log)"
    setsid nohup dockerd </dev/null >"$dir/dockerd.log" 2>&1 9>&- &
    echo $! >"$dir/dockerd.pid"
  fi
  local deadline=$((SECONDS + ${TXCONSUME_DOCKER_TIMEOUT:-90}))
  until docker_engine_answers; do
    if [ $SECONDS -ge $deadline ]; then
      log "FAILED: no answer from dockerd after ${TXCONSUME_DOCKER_TIMEOUT:-90}s"
      tail -n 20 "$dir/dockerd.log" >&2 2>/dev/null || true
      return 1
    fi
    sleep 1
  done
  log "engine ready: $(docker version --format 'server {{.Server.Version}}, API {{.Server.APIVersion}}')"
}

# compose_version_at_least MIN COMMAND...: the command answers `version --short` with MIN or later
# (MIN is MAJOR or MAJOR.MINOR).
compose_version_at_least() {
  local min=$1 v major minor
  shift
  v=$("$@" version --short 2>/dev/null) || return 1
  v=${v#v}
  IFS=. read -r major minor _ <<<"$v"
  [[ $major =~ ^[0-9]+$ && ${minor:-0} =~ ^[0-9]+$ ]] || return 1
  local want_major=${min%%.*} want_minor=0
  [[ $min == *.* ]] && want_minor=${min#*.}
  ((major > want_major || (major == want_major && ${minor:-0} >= want_minor)))
}

# compose_detect sets COMPOSE to a compose command that reads docker-compose.yml: Compose v2 (the
# `docker compose` plugin, or a v2 `docker-compose`) where there is one, else Debian's
# docker-compose 1.29 (1.27 and later read a file without a `version` key as the Compose
# Specification). When there is none it fails with COMPOSE_MISSING saying what it found: Debian's
# docker CLI answers `docker compose -f` with "unknown shorthand flag".
compose_detect() {
  COMPOSE=()
  COMPOSE_MISSING=
  if compose_version_at_least 2 docker compose; then
    COMPOSE=(docker compose)
  elif command -v docker-compose >/dev/null 2>&1 && compose_version_at_least 1.27 docker-compose; then
    COMPOSE=(docker-compose)
  else
    COMPOSE_MISSING="no compose command: \`docker compose\` is not a docker subcommand here"
    if command -v docker-compose >/dev/null 2>&1; then
      COMPOSE_MISSING+=", and docker-compose is $(docker-compose version --short 2>/dev/null || echo unknown) (1.27 or later reads docker-compose.yml)"
    else
      COMPOSE_MISSING+=" and docker-compose is not installed"
    fi
    return 1
  fi
}

# compose_install installs Debian's docker-compose when compose_detect finds no compose command.
compose_install() {
  compose_detect && return 0
  command -v apt-get >/dev/null 2>&1 || { COMPOSE_MISSING+=" (no apt-get to install it)"; return 1; }
  local dir=$STATE/docker
  mkdir -p "$dir"
  log "installing Debian's docker-compose"
  debian_install "$dir/apt.log" docker-compose || {
    COMPOSE_MISSING+=" (apt-get install docker-compose failed: see $dir/apt.log)"
    return 1
  }
  compose_detect
}

# compose_wait SECONDS COMMAND...: waits until every container of the compose project that COMMAND
# (the compose command with its -p and -f options) names is running, and healthy where it has a
# health check, and every service has a container: what Compose v2's `up --wait` does, which
# docker-compose 1.29 lacks. COMPOSE_WAIT_SERVICES, when set, lists the services that must have a
# container instead of all of them. A container that exits or turns unhealthy fails the wait at
# once, and so does the deadline, naming the service, its state and the end of its log.
compose_wait() {
  local timeout=$1
  shift
  local deadline=$((SECONDS + timeout)) required id svc state health waiting line
  required=${COMPOSE_WAIT_SERVICES:-$("$@" config --services)} || return 1
  while :; do
    waiting=()
    local -A seen=() ids=()
    for id in $("$@" ps -a -q); do
      line=$(container_state "$id") || continue
      read -r svc state health <<<"$line"
      seen[$svc]=1
      case $state/$health in
        running/healthy | running/none) ;;
        running/unhealthy | exited/* | dead/*)
          compose_wait_failed "$id"
          return 1 ;;
        *)
          waiting+=("$svc ($state$([ "$health" = none ] || printf ', %s' "$health"))")
          ids[$svc]=$id ;;
      esac
    done
    for svc in $required; do
      [ -n "${seen[$svc]:-}" ] || waiting+=("$svc (no container)")
    done
    [ ${#waiting[@]} -eq 0 ] && return 0
    if [ $SECONDS -ge $deadline ]; then
      log "FAILED: compose services not ready after ${timeout}s: ${waiting[*]}"
      for id in "${ids[@]}"; do compose_wait_failed "$id"; done
      return 1
    fi
    sleep 2
  done
}

# container_state prints a container's compose service, its state and its health (none without a
# health check).
container_state() {
  docker inspect -f '{{index .Config.Labels "com.docker.compose.service"}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$1" 2>/dev/null
}

# compose_wait_failed names a container's service and state, its last health check output and the
# end of its log.
compose_wait_failed() {
  local id=$1 svc state health probe
  read -r svc state health <<<"$(container_state "$id")"
  [ "$health" = none ] && health= || health=", $health"
  [ "$state" = exited ] && state+=" (exit code $(docker inspect -f '{{.State.ExitCode}}' "$id" 2>/dev/null))"
  log "FAILED: compose service $svc is $state$health"
  probe=$(docker inspect -f '{{if .State.Health}}{{range .State.Health.Log}}{{printf "%s\x1e" .Output}}{{end}}{{end}}' "$id" 2>/dev/null |
    awk 'BEGIN { RS = "\x1e" } /[^[:space:]]/ { last = $0 } END { printf "%s", last }')
  [ -z "$probe" ] || log "last health check output of $svc: $probe"
  log "last lines of the log of $svc:"
  docker logs --tail 30 "$id" 2>&1 | sed "s/^/  [$svc] /" >&2
}

image_present() { docker image inspect "$1" >/dev/null 2>&1; }

# image_available reports whether an image is present or can be pulled. A pull that fails says
# why (Docker Hub unreachable, for one), which callers print.
image_available() {
  image_present "$1" && return 0
  docker pull -q "$1" >/dev/null 2>&1
}

# failed_tests LOG prints on one line the tests that a go test log reports failed (at most ten,
# the subtests with their parents), or the failed packages when no test is named (a panic, a
# build failure, a timeout).
failed_tests() {
  local names
  names=$(sed -nE 's/^ *--- FAIL: ([^ ]+).*/\1/p' "$1" | awk '!seen[$0]++' | head -n 10 | paste -sd' ' -)
  [ -n "$names" ] || names=$(sed -nE 's/^FAIL[[:space:]]+([^[:space:]]+).*/\1/p' "$1" | awk '!seen[$0]++' | paste -sd' ' -)
  printf '%s\n' "${names:-none named (see the log above)}"
}
