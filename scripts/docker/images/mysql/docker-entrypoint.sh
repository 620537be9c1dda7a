#!/bin/bash
# Entrypoint of the local MySQL image: the part of the official mysql image's entrypoint that
# docker-compose.yml and testcontainers-go's MySQL module rely on.
#
#   MYSQL_ROOT_PASSWORD | MYSQL_ALLOW_EMPTY_PASSWORD | MYSQL_RANDOM_ROOT_PASSWORD   (one is required)
#   MYSQL_ROOT_HOST (default %), MYSQL_DATABASE, MYSQL_USER + MYSQL_PASSWORD
#   /docker-entrypoint-initdb.d/*.sh, *.sql, *.sql.gz run once, on an empty data directory
#   arguments starting with "-" are mysqld options; any other command runs as it is
set -eo pipefail

note() { printf '%s [Note] [Entrypoint]: %s\n' "$(date -u +%FT%TZ)" "$*" >&2; }
die() { printf '%s [ERROR] [Entrypoint]: %s\n' "$(date -u +%FT%TZ)" "$*" >&2; exit 1; }

if [ "${1:0:1}" = '-' ]; then set -- mysqld "$@"; fi
if [ "$1" != mysqld ] || printf '%s\n' "$@" | grep -qE '^--(help|verbose|version)$'; then exec "$@"; fi

DATADIR=/var/lib/mysql
SOCKET=/var/run/mysqld/mysqld.sock
mkdir -p "$DATADIR" /var/run/mysqld
chown mysql:mysql "$DATADIR" /var/run/mysqld

sql_escape() { printf '%s' "$1" | sed "s/\\\\/\\\\\\\\/g; s/'/\\\\'/g"; }

init_datadir() {
  if [ -z "$MYSQL_ROOT_PASSWORD" ] && [ -z "$MYSQL_ALLOW_EMPTY_PASSWORD" ] && [ -z "$MYSQL_RANDOM_ROOT_PASSWORD" ]; then
    die 'Database is uninitialized and password option is not specified
    You need to specify one of the following as an environment variable:
    - MYSQL_ROOT_PASSWORD
    - MYSQL_ALLOW_EMPTY_PASSWORD
    - MYSQL_RANDOM_ROOT_PASSWORD'
  fi
  if [ -n "$MYSQL_USER" ] && [ "$MYSQL_USER" = root ]; then
    die 'MYSQL_USER="root", MYSQL_USER and MYSQL_PASSWORD are for configuring a regular user and cannot be used for the root user'
  fi
  note "Initializing database files"
  "$@" --initialize-insecure --user=mysql --datadir="$DATADIR"
  note "Database files initialized"

  note "Starting temporary server"
  "$@" --user=mysql --datadir="$DATADIR" --skip-networking --socket="$SOCKET" --mysqlx=OFF &
  local pid=$!
  for _ in $(seq 120); do
    mysql --protocol=socket --socket="$SOCKET" -uroot -e 'SELECT 1' >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || die "temporary server exited during start-up"
    sleep 0.5
  done
  mysql --protocol=socket --socket="$SOCKET" -uroot -e 'SELECT 1' >/dev/null || die "temporary server did not answer"
  note "Temporary server started."

  local client=(mysql --protocol=socket --socket="$SOCKET" -uroot)
  local root_password=$MYSQL_ROOT_PASSWORD root_host=${MYSQL_ROOT_HOST:-%}
  if [ -n "$MYSQL_RANDOM_ROOT_PASSWORD" ]; then
    root_password=$(head -c 18 /dev/urandom | base64)
    note "GENERATED ROOT PASSWORD: $root_password"
  fi
  local pw
  pw=$(sql_escape "$root_password")
  {
    echo "SET @@SESSION.SQL_LOG_BIN=0;"
    if [ "$root_host" != localhost ]; then
      echo "CREATE USER 'root'@'$(sql_escape "$root_host")' IDENTIFIED BY '$pw';"
      echo "GRANT ALL ON *.* TO 'root'@'$(sql_escape "$root_host")' WITH GRANT OPTION;"
    fi
    echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '$pw';"
    if [ -n "$MYSQL_DATABASE" ]; then
      note "Creating database ${MYSQL_DATABASE}"
      echo "CREATE DATABASE IF NOT EXISTS \`$MYSQL_DATABASE\`;"
    fi
    if [ -n "$MYSQL_USER" ] && [ -n "$MYSQL_PASSWORD" ]; then
      note "Creating user ${MYSQL_USER}"
      echo "CREATE USER '$(sql_escape "$MYSQL_USER")'@'%' IDENTIFIED BY '$(sql_escape "$MYSQL_PASSWORD")';"
      if [ -n "$MYSQL_DATABASE" ]; then
        note "Giving user ${MYSQL_USER} access to schema ${MYSQL_DATABASE}"
        echo "GRANT ALL ON \`$MYSQL_DATABASE\`.* TO '$(sql_escape "$MYSQL_USER")'@'%';"
      fi
    fi
  } | "${client[@]}"
  if [ -n "$root_password" ]; then client+=("-p$root_password"); fi
  [ -n "$MYSQL_DATABASE" ] && client+=("$MYSQL_DATABASE")

  local f
  # shellcheck disable=SC1090  # sources the user's init scripts
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) note "$0: running $f"; if [ -x "$f" ]; then "$f"; else . "$f"; fi ;;
      *.sql) note "$0: running $f"; "${client[@]}" <"$f" ;;
      *.sql.gz) note "$0: running $f"; gunzip -c "$f" | "${client[@]}" ;;
      *) [ -e "$f" ] && note "$0: ignoring $f" ;;
    esac
  done

  note "Stopping temporary server"
  kill "$pid"
  wait "$pid" || true
  note "Temporary server stopped"
  note "MySQL init process done. Ready for start up."
}

if [ ! -d "$DATADIR/mysql" ]; then init_datadir "$@"; fi

# Debian builds mysqld with the version comment "(Debian)", so its ready line ends in
# "port: 3306  (Debian)". The official image's line, which testcontainers-go's MySQL module waits
# for, reads "port: 3306  MySQL Community Server - GPL.": once the networked server (port > 0)
# reports ready, one more line in that form follows. mysqld stays PID 1 and gets docker's signals.
exec "$@" --user=mysql --datadir="$DATADIR" --socket="$SOCKET" \
  2> >(sed -u -E '/mysqld: ready for connections.*port: [1-9][0-9]*/{p;s/.*port: ([0-9]+).*/[Entrypoint] mysqld is ready for connections. port: \1  MySQL Community Server - GPL (Oracle MySQL built by Debian)./;}' >&2)
