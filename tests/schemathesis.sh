#!/usr/bin/env bash
# Property-based OpenAPI test: starts the built daemon and lets schemathesis generate requests
# (valid and invalid) for every operation of /openapi.json, checking that no answer is a 5xx
# and that every status code, content type, header and body is the one the document declares.
#
# Usage: tests/schemathesis.sh [path/to/multicloud]      (default: target/debug/multicloud)
# Environment:
#   MULTICLOUD__DATABASE__URL  a PostgreSQL database to use (default: the embedded one)
#   ST_MAX_EXAMPLES            test cases per operation and phase (default: 40)
#   ST_SEED                    schemathesis seed (default: random; printed in the output)
#   ST_REPORT_DIR              where to keep the reports (JUnit, HAR) and the daemon's log
#   ST_EXTRA_ARGS              more `schemathesis run` options (word-split)
# Exits non-zero on any failure. Needs `schemathesis` (pip install schemathesis) and curl.
#
# The daemon runs as an API-only node (runner.max_concurrent = 0): accepted deployments stay
# queued and nothing is executed; webhooks it registers are never called (delivery_workers = 0:
# generated URLs name hosts off this machine). No Azure credentials are configured, so the Azure routes
# answer 422 provider_not_configured. `GET /deployments/{id}/logs?follow=true` on a deployment that
# never runs streams until the request timeout (3 s): schemathesis checks the events it got.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=$(realpath -- "${1:-target/debug/multicloud}" 2>/dev/null || true)
[ -n "$BIN" ] && [ -x "$BIN" ] || { echo "schemathesis.sh: ${1:-target/debug/multicloud} is not an executable (cargo build first)" >&2; exit 2; }
command -v schemathesis >/dev/null || { echo "schemathesis.sh: schemathesis is not installed" >&2; exit 2; }

WORK=$(mktemp -d /tmp/mc-st.XXXXXX)
chmod 755 "$WORK" # the embedded PostgreSQL runs as the postgres user when we are root
REPORT_DIR=${ST_REPORT_DIR:-$WORK/report}
mkdir -p "$REPORT_DIR"
DAEMON_PID=
cleanup() {
  if [ -n "$DAEMON_PID" ]; then
    # A graceful stop (it also stops an embedded PostgreSQL); streams the client left open keep
    # it up to actix's 30 s shutdown timeout.
    kill -TERM "$DAEMON_PID" 2>/dev/null || true
    for _ in $(seq 1 450); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$DAEMON_PID" 2>/dev/null; then
      echo "schemathesis.sh: the daemon did not stop within 45 s; killed" >&2
      kill -KILL "$DAEMON_PID" 2>/dev/null || true
    fi
    { wait "$DAEMON_PID"; } 2>/dev/null || true
  fi
  [ -n "${ST_REPORT_DIR:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"

env -u MULTICLOUD__AZURE__TENANT_ID -u MULTICLOUD__AZURE__CLIENT_ID -u MULTICLOUD__AZURE__CLIENT_SECRET \
  -u AZURE_TENANT_ID -u AZURE_CLIENT_ID -u AZURE_CLIENT_SECRET \
  MULTICLOUD__SERVER__BIND="127.0.0.1:$PORT" \
  MULTICLOUD__PATHS__DATA_DIR="$WORK/data" \
  MULTICLOUD__PATHS__TEMPLATES_DIR="$PWD/templates" \
  MULTICLOUD__TERRAFORM__CLI_CONFIG_FILE="$PWD/config/terraformrc.mirror" \
  MULTICLOUD__RUNNER__MAX_CONCURRENT=0 \
  MULTICLOUD__WEBHOOKS__DELIVERY_WORKERS=0 \
  "$BIN" serve >"$REPORT_DIR/daemon.log" 2>&1 &
DAEMON_PID=$!

for _ in $(seq 1 600); do
  curl -sf "$BASE/health" >/dev/null 2>&1 && break
  kill -0 "$DAEMON_PID" 2>/dev/null || { echo "schemathesis.sh: the daemon exited:" >&2; cat "$REPORT_DIR/daemon.log" >&2; exit 1; }
  sleep 0.2
done
curl -sf "$BASE/health" >/dev/null || { echo "schemathesis.sh: the daemon did not become healthy" >&2; cat "$REPORT_DIR/daemon.log" >&2; exit 1; }

SEED_ARGS=()
[ -n "${ST_SEED:-}" ] && SEED_ARGS=(--seed "$ST_SEED")

rc=0
# Run from the scratch directory: schemathesis keeps a .schemathesis/ cache where it runs.
(cd "$WORK" && schemathesis run "$BASE/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --mode all \
  --phases examples,coverage,fuzzing \
  --max-examples "${ST_MAX_EXAMPLES:-40}" \
  --workers 1 \
  --request-timeout 3 \
  --generation-database none \
  --no-color \
  --report junit,har --report-junit-path "$REPORT_DIR/junit.xml" --report-har-path "$REPORT_DIR/requests.har" \
  "${SEED_ARGS[@]}" ${ST_EXTRA_ARGS:-}) || rc=$?

if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
  echo "schemathesis.sh: the daemon died during the run" >&2
  rc=1
fi
if [ "$rc" -ne 0 ]; then
  echo "schemathesis.sh: FAILED (exit $rc); daemon log: $REPORT_DIR/daemon.log" >&2
  [ -n "${ST_REPORT_DIR:-}" ] || tail -n 50 "$REPORT_DIR/daemon.log" >&2
fi
exit "$rc"
