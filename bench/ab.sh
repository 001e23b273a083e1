#!/usr/bin/env bash
# bench/ab.sh OLD_BINARY NEW_BINARY: POST /deploy throughput and latency of two builds, A/B in
# one run on one PostgreSQL (fsync on: a 202 means the row is committed), alternating
# old/new rounds so both see the same machine. Each round starts a fresh database and an
# API-only daemon (runner.max_concurrent = 0). Prints one line per round and the medians.
# Environment: ROUNDS (default 3), SECS per wrk run (default 15), CONNS (default "16 64").
set -euo pipefail
OLD=$(realpath "$1"); NEW=$(realpath "$2")
cd "$(dirname "$0")/.."
ROOT=$(pwd)
ROUNDS=${ROUNDS:-3}; SECS=${SECS:-15}; CONNS=${CONNS:-"16 64"}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
WORK=$(mktemp -d /tmp/mc-ab.XXXXXX); chmod 755 "$WORK"
DPID=
cleanup() {
  [ -n "$DPID" ] && kill "$DPID" 2>/dev/null || true
  sleep 1
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/pg"; chown postgres: "$WORK/pg"; chmod 700 "$WORK/pg"
runuser -u postgres -- "$PGBIN/initdb" -D "$WORK/pg/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/log" -w \
  -o "-c listen_addresses='' -k $WORK/pg -c max_connections=200 -c shared_buffers=256MB" start >/dev/null
chmod 755 "$WORK/pg"
PSQL=("$PGBIN/psql" -h "$WORK/pg" -U postgres -q -t -A)
cat >"$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"template_name":"storage-bucket","provider_type":"aws","parameters":{"bucket_name":"bench-bucket"}}'
LUA
declare -A RESULTS P99
# to_ms 850.00us|12.34ms|1.20s → milliseconds
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /[0-9]s$/ && v !~ /ms$/) n *= 1000; printf "%.2f", n }'; }
round() { # NAME BINARY ROUND
  local name=$1 bin=$2 r=$3 db="ab_${1}_$3" port
  "${PSQL[@]}" -c "CREATE DATABASE $db" postgres >/dev/null
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$WORK/$db"
  # In its own directory: each build reads only its own defaults (no config/default.toml).
  cd "$WORK/$db"
  env MULTICLOUD__SERVER__BIND=127.0.0.1:$port MULTICLOUD__DATABASE__URL="postgres:///$db?host=$WORK/pg&user=postgres" \
    MULTICLOUD__PATHS__DATA_DIR="$WORK/$db" MULTICLOUD__PATHS__TEMPLATES_DIR="$ROOT/templates" \
    MULTICLOUD__SERVER__DEPLOY_RATE_PER_MINUTE=0 MULTICLOUD__RUNNER__MAX_CONCURRENT=0 RUST_LOG=warn \
    "$bin" serve >"$WORK/$db.log" 2>&1 &
  DPID=$!
  cd "$ROOT"
  for _ in $(seq 1 200); do curl -sf "127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  curl -sf "127.0.0.1:$port/health" >/dev/null || { echo "$name did not start:"; cat "$WORK/$db.log"; exit 1; }
  for c in $CONNS; do
    wrk -t1 -c"$c" -d"${SECS}s" --latency -s "$WORK/post.lua" "http://127.0.0.1:$port/deploy" >"$WORK/$db.$c.txt"
    local rps p99
    rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$db.$c.txt"); p99=$(awk '$1=="99%" {print $2}' "$WORK/$db.$c.txt")
    echo "round $r $name c=$c: $rps req/s, p99 $p99"
    RESULTS["$name.$c"]+="$rps "
    P99["$name.$c"]+="$(to_ms "$p99") "
  done
  kill "$DPID"; wait "$DPID" 2>/dev/null || true; DPID=
  sleep 1; "${PSQL[@]}" -c "DROP DATABASE $db" postgres
}
for r in $(seq 1 "$ROUNDS"); do round old "$OLD" "$r"; round new "$NEW" "$r"; done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for c in $CONNS; do
  o=$(echo "${RESULTS[old.$c]}" | median); n=$(echo "${RESULTS[new.$c]}" | median)
  op=$(echo "${P99[old.$c]}" | median); np=$(echo "${P99[new.$c]}" | median)
  echo "median c=$c: old $o req/s, new $n req/s ($(echo "scale=3; $n / $o" | bc)x), p99 old $op ms, new $np ms"
done
