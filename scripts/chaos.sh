#!/usr/bin/env bash
# Runs the long form of the fault-injection suite (integration/chaos) once per database server of
# the matrix, one server after the other (the scenarios measure recovery times, which a second run
# at the same time would distort), and prints the summary tables at the end.
#
#   scripts/chaos.sh [go test flags...]        (make chaos runs it)
#
# Reads, as `eval "$(scripts/services.sh env)"` exports them: TXCONSUME_SERVERS,
# TXCONSUME_MARIADB_DSN, TXCONSUME_ORACLE_MYSQL_DSN, TXCONSUME_ROCKETMQ_NAMESRV, TXCONSUME_REDIS_ADDR.
# TXCONSUME_CHAOS_SEED replays an earlier run (every random choice derives from it); otherwise a
# new seed is drawn and printed first.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
read -r -a LEGS <<<"${TXCONSUME_SERVERS:-mariadb mysql}"
SEED=${TXCONSUME_CHAOS_SEED:-$(( $(date +%s%N) % 1000000000 ))}
SUMMARY=$ROOT/.services/chaos-summary.txt
mkdir -p "$ROOT/.services"
: >"$SUMMARY"

say() { printf 'chaos: %s\n' "$*"; }

say "seed $SEED (replay this run with: TXCONSUME_CHAOS_SEED=$SEED make chaos)"
failed=0
for leg in "${LEGS[@]}"; do
  case $leg in
    mariadb) dsn=${TXCONSUME_MARIADB_DSN:-} ;;
    mysql) dsn=${TXCONSUME_ORACLE_MYSQL_DSN:-} ;;
    *) say "FAILED: unknown server '$leg' in TXCONSUME_SERVERS (use mariadb, mysql or both)"; exit 2 ;;
  esac
  [ -n "$dsn" ] || { say "FAILED: no DSN for the $leg leg (run: eval \"\$(scripts/services.sh env)\")"; exit 1; }
  say "$leg: long form, every scenario (this takes a while; progress below)"
  start=$SECONDS
  status=0
  # -v for the progress lines; the full log stays in .services/chaos-<leg>.log.
  TXCONSUME_MYSQL_DSN=$dsn TXCONSUME_EXPECT_SERVER=$leg TXCONSUME_CHAOS=long TXCONSUME_CHAOS_SEED=$SEED \
    TXCONSUME_CHAOS_SUMMARY=$SUMMARY go test -count=1 -timeout 120m -v "$@" ./integration/chaos/ \
    >"$ROOT/.services/chaos-$leg.log" 2>&1 &
  pid=$!
  tail -n +1 -f "$ROOT/.services/chaos-$leg.log" --pid "$pid" |
    grep --line-buffered -E '^(--- |ok |FAIL)|every queue delivered again|Error:|Error Trace|Messages:' |
    sed -u "s/^/[$leg] /" || true
  wait "$pid" || status=$?
  if [ "$status" -eq 0 ]; then
    say "$leg: passed in $((SECONDS - start))s"
  else
    say "$leg: FAILED (go test exit $status) after $((SECONDS - start))s; log: .services/chaos-$leg.log"
    failed=1
  fi
done
cat "$SUMMARY"
exit "$failed"
