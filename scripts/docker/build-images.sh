#!/usr/bin/env bash
# Builds local stand-ins for the official images, for machines where Docker Hub does not answer:
#
#   txconsume-local/debian:sid        Debian sid minbase from debootstrap, loaded with `docker import`
#   txconsume-local/mysql:9.7         Oracle MySQL 9.7 (mysql-server-core), entrypoint as mysql:8.4's
#   txconsume-local/redis:8           redis-server, entrypoint as redis:7's
#   txconsume-local/rocketmq:5.3.3    namesrv, broker and mqadmin jars from Maven Central on JDK 17,
#                                     laid out as apache/rocketmq's
#
# One sid base serves all three: sid is the only suite with Oracle MySQL, and one debootstrap is
# the slowest step. Each image carries the hash of its recipe (this script, images/base and its own
# images/NAME folder) in the label org.txconsume.recipe; an image whose label matches is kept, so
# a second run costs seconds. TXCONSUME_DEBIAN_MIRROR picks the Debian mirror.
#
#   scripts/docker/build-images.sh            build what is missing or out of date (starting the
#                                             engine, installing docker.io when needed)
#   scripts/docker/build-images.sh --force    rebuild everything
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${TXCONSUME_SERVICES_DIR:-$ROOT/.services}
log() { printf 'images: %s\n' "$*" >&2; }
# shellcheck source=scripts/docker/lib.sh
. "$ROOT/scripts/docker/lib.sh"

RECIPES=$ROOT/scripts/docker/images
WORK=$STATE/images
MIRROR=${TXCONSUME_DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_IMAGE=txconsume-local/debian:sid
ROCKETMQ_VERSION=${LOCAL_ROCKETMQ_IMAGE##*:}
LABEL=org.txconsume.recipe
FORCE=0
[ "${1:-}" = --force ] && FORCE=1

fail() { log "FAILED: $1"; [ -n "${2:-}" ] && [ -f "$2" ] && tail -n 30 "$2" >&2; exit 1; }

# recipe_hash hashes this script, the base recipe and the named recipe folders, file names included.
recipe_hash() {
  local dir
  {
    sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1
    echo "$MIRROR $ROCKETMQ_VERSION"
    for dir in base "$@"; do
      (cd "$RECIPES" && find "$dir" -type f -print0 | sort -z | xargs -0 sha256sum)
    done
  } | sha256sum | cut -c1-16
}

image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }

# drop_replaced removes the image that a rebuild of ref replaced, unless something still uses it.
drop_replaced() {
  local old=$1 ref=$2
  if [ -n "$old" ] && [ "$old" != "$(image_id "$ref")" ]; then docker rmi "$old" >/dev/null 2>&1 || true; fi
}

current() { [ $FORCE = 0 ] && [ "$(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null)" = "$2" ]; }

build_base() {
  local hash rootfs=$WORK/rootfs-sid
  hash=$(recipe_hash)
  if current "$BASE_IMAGE" "$hash"; then log "$BASE_IMAGE is up to date"; return; fi
  command -v debootstrap >/dev/null 2>&1 || {
    log "installing debootstrap"
    debian_install "$WORK/apt.log" debootstrap || fail "apt-get install debootstrap" "$WORK/apt.log"
  }
  log "debootstrap --variant=minbase sid from $MIRROR"
  rm -rf "$rootfs"
  debootstrap --variant=minbase sid "$rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
    fail "debootstrap" "$WORK/debootstrap.log"
  install -m 0644 "$RECIPES/base/apt.conf" "$rootfs/etc/apt/apt.conf.d/99txconsume"
  install -m 0644 "$RECIPES/base/dpkg-nodoc.cfg" "$rootfs/etc/dpkg/dpkg.cfg.d/99txconsume-nodoc"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
  # Without manual pages, update-alternatives (the JDK's, for one) still wants their folder.
  mkdir -p "$rootfs/usr/share/man/man1"
  log "docker import $BASE_IMAGE"
  local old
  old=$(image_id "$BASE_IMAGE")
  tar -C "$rootfs" -c . | docker import -c "LABEL $LABEL=$hash" -c 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null ||
    fail "docker import"
  rm -rf "$rootfs"
  drop_replaced "$old" "$BASE_IMAGE"
}

# rocketmq_jars copies the namesrv, broker and tools jars of ROCKETMQ_VERSION (as scripts/services.sh
# runs them natively) into the build context given.
rocketmq_jars() {
  command -v mvn >/dev/null 2>&1 || debian_install "$WORK/apt.log" maven || fail "apt-get install maven" "$WORK/apt.log"
  log "fetching RocketMQ $ROCKETMQ_VERSION jars from Maven Central"
  rocketmq_fetch "$ROCKETMQ_VERSION" "$1/lib" "$WORK/mvn.log" || fail "maven fetch of RocketMQ jars" "$WORK/mvn.log"
}

build_image() {
  local name=$1 ref=$2 hash ctx
  hash=$(recipe_hash "$name")
  if current "$ref" "$hash"; then log "$ref is up to date"; return; fi
  ctx=$WORK/context-$name
  rm -rf "$ctx"
  cp -r "$RECIPES/$name" "$ctx"
  [ "$name" = rocketmq ] && rocketmq_jars "$ctx"
  log "docker build $ref"
  local old
  old=$(image_id "$ref")
  docker build --force-rm --label "$LABEL=$hash" --build-arg BASE="$BASE_IMAGE" \
    --build-arg ROCKETMQ_VERSION="$ROCKETMQ_VERSION" -t "$ref" "$ctx" >"$WORK/build-$name.log" 2>&1 ||
    fail "docker build $ref" "$WORK/build-$name.log"
  rm -rf "$ctx"
  drop_replaced "$old" "$ref"
}

mkdir -p "$WORK"
docker_engine_up || fail "no Docker engine"
start=$SECONDS
# The images are the machine's, not the checkout's: two builds at once (two clones, or make test
# beside make docker-images) take turns, and the second finds the images up to date.
exec 8>"${TMPDIR:-/tmp}/txconsume-images.lock"
flock 8
build_base
build_image mysql "$LOCAL_MYSQL_IMAGE"
build_image redis "$LOCAL_REDIS_IMAGE"
build_image rocketmq "$LOCAL_ROCKETMQ_IMAGE"
log "ready in $((SECONDS - start))s: $LOCAL_MYSQL_IMAGE $LOCAL_REDIS_IMAGE $LOCAL_ROCKETMQ_IMAGE"
