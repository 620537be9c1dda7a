# shellcheck shell=bash disable=SC2034  # the variables set here are read by the scripts that source it
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

# Compose v2 built from its Go module where no compose command is installed (Debian's docker CLI
# has no compose subcommand; Debian's docker-compose 1.29 cannot read docker-compose.yml's `name`).
# It is kept outside the checkout, per version, so that every clone on the machine reuses it.
COMPOSE_VERSION=v2.40.3
COMPOSE_BUILT=${TXCONSUME_COMPOSE_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/txconsume/compose-$COMPOSE_VERSION/docker-compose}

# compose_v2 reports whether the command given is Compose v2 or later.
compose_v2() {
  local v
  v=$("$@" version --short 2>/dev/null) || return 1
  v=${v#v}
  [ "${v%%.*}" -ge 2 ] 2>/dev/null
}

# compose_detect sets COMPOSE to the first Compose v2 command that runs here: the `docker compose`
# plugin, `docker-compose` on PATH, or the one compose_install built. When there is none it fails
# with COMPOSE_MISSING saying what it found: Debian's docker CLI answers `docker compose -f` with
# "unknown shorthand flag".
compose_detect() {
  COMPOSE=()
  COMPOSE_MISSING=
  if compose_v2 docker compose; then
    COMPOSE=(docker compose)
  elif command -v docker-compose >/dev/null 2>&1 && compose_v2 docker-compose; then
    COMPOSE=(docker-compose)
  elif [ -x "$COMPOSE_BUILT" ] && compose_v2 "$COMPOSE_BUILT"; then
    COMPOSE=("$COMPOSE_BUILT")
  else
    COMPOSE_MISSING="no Compose v2: \`docker compose\` is not a docker subcommand here (make test-docker builds one)"
    if command -v docker-compose >/dev/null 2>&1; then
      COMPOSE_MISSING+=", and docker-compose is $(docker-compose version --short 2>/dev/null || echo unknown), which cannot read docker-compose.yml"
    fi
    return 1
  fi
}

# compose_install builds Compose v2 from its Go module (through the Go module proxy) into
# COMPOSE_BUILT, once per machine; minutes on two cores with an empty module cache.
compose_install() {
  compose_detect && return 0
  command -v go >/dev/null 2>&1 || { log "FAILED: building Compose $COMPOSE_VERSION needs Go"; return 1; }
  local dir=$STATE/docker src
  mkdir -p "$dir" "$(dirname "$COMPOSE_BUILT")"
  log "building Compose $COMPOSE_VERSION from its Go module (log: $dir/compose-build.log)"
  # `go install` refuses the module (its go.mod has exclude directives): build it in its own folder.
  src=$(go mod download -json "github.com/docker/compose/v2@$COMPOSE_VERSION" 2>>"$dir/compose-build.log" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p') || true
  if [ -z "$src" ] || ! (cd "$src" && CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" \
    -o "$COMPOSE_BUILT" ./cmd) >>"$dir/compose-build.log" 2>&1; then
    log "FAILED: building Compose $COMPOSE_VERSION"
    tail -n 20 "$dir/compose-build.log" >&2
    return 1
  fi
  compose_detect
}

image_present() { docker image inspect "$1" >/dev/null 2>&1; }

# image_available reports whether an image is present or can be pulled. A pull that fails says
# why (Docker Hub unreachable, for one), which callers print.
image_available() {
  image_present "$1" && return 0
  docker pull -q "$1" >/dev/null 2>&1
}
