# Shared by scripts/services.sh and the scripts beside this file (source it; it defines functions
# only). What a Docker engine can do is found out, never assumed: an engine that answers may still
# lack a compose command or any way to get the official images.
#
# Callers set ROOT (the repository) and STATE (its .services folder) and may define `log`.

: "${ROOT:?ROOT must be set before sourcing scripts/docker/lib.sh}"
: "${STATE:=$ROOT/.services}"
declare -F log >/dev/null || log() { printf 'docker: %s\n' "$*" >&2; }

# The images the local build makes (scripts/docker/build-images.sh) and the compose override file
# that points docker-compose.yml at them.
LOCAL_MYSQL_IMAGE=txconsume-local/mysql:9.7
LOCAL_REDIS_IMAGE=txconsume-local/redis:8
LOCAL_ROCKETMQ_IMAGE=txconsume-local/rocketmq:5.3.3
LOCAL_COMPOSE_OVERRIDE=$ROOT/scripts/docker/compose.local.yml

docker_engine_answers() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

# docker_engine_up installs Debian's docker.io when dockerd is missing and starts dockerd when no
# engine answers. Machines like CI's have no systemd: dockerd runs in the background with its log
# in $STATE/docker/dockerd.log, and stays up for later runs.
docker_engine_up() {
  docker_engine_answers && return 0
  local dir=$STATE/docker
  mkdir -p "$dir"
  if ! command -v dockerd >/dev/null 2>&1; then
    log "installing Debian's docker.io"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y -qq docker.io || { apt-get update -qq && apt-get install -y -qq docker.io; }; } \
      >"$dir/apt.log" 2>&1 || { log "FAILED: apt-get install docker.io"; tail -n 20 "$dir/apt.log" >&2; return 1; }
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

# compose_detect sets COMPOSE to the first compose command that runs here: the `docker compose`
# plugin, a `docker-compose` on PATH (Compose v2 standalone or Debian's 1.29), or the Compose v2
# that scripts/docker/compose-install.sh built into $STATE/docker/bin. It fails, setting
# COMPOSE_MISSING to the reason, when there is none: Debian's docker CLI has no compose
# subcommand and answers `docker compose -f` with "unknown shorthand flag".
compose_detect() {
  COMPOSE=()
  COMPOSE_MISSING=
  if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
  elif command -v docker-compose >/dev/null 2>&1 && docker-compose version >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
  elif [ -x "$STATE/docker/bin/docker-compose" ] && "$STATE/docker/bin/docker-compose" version >/dev/null 2>&1; then
    COMPOSE=("$STATE/docker/bin/docker-compose")
  else
    COMPOSE_MISSING="no compose command: neither \`docker compose\` nor \`docker-compose\` runs (install one, or run scripts/docker/compose-install.sh)"
    return 1
  fi
}

image_present() { docker image inspect "$1" >/dev/null 2>&1; }

# image_available reports whether an image is present or can be pulled. A pull that fails says
# why (Docker Hub unreachable, for one), which callers print.
image_available() {
  image_present "$1" && return 0
  docker pull -q "$1" >/dev/null 2>&1
}
