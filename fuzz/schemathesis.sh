#!/usr/bin/env bash
# Runs schemathesis (property-based API testing, from PyPI) against the OpenAPI document dormant
# serves, every operation, with the admin token: any 5xx or crash fails the run.
#
# It starts its own dormant on loopback ports with a temporary data dir and tiny container
# limits, and removes everything it made when it ends, however it ends: dormant itself, the
# containers and volumes labelled with its node id, and the data dir.
#
#   fuzz/schemathesis.sh [MAX_EXAMPLES]      (default 25 per operation; about 2-3 minutes)
#
# DORMANT_BIN picks the binary (default target/debug/dormant, built if missing);
# SCHEMATHESIS_VENV the virtualenv schemathesis is installed into (kept between runs).
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_EXAMPLES=${1:-25}
SCHEMATHESIS_VERSION=4.32.5
VENV=${SCHEMATHESIS_VENV:-$HOME/.cache/dormant-schemathesis}
BIN=${DORMANT_BIN:-target/debug/dormant}
# The whole run stops by itself after this long, whatever happens.
RUN_LIMIT=${SCHEMATHESIS_TIME_LIMIT:-600}

if [[ ! -x "$BIN" ]]; then
  echo "== building dormant"
  cargo build -p dormant
fi
if [[ "$("$VENV/bin/schemathesis" --version 2>/dev/null)" != *"$SCHEMATHESIS_VERSION"* ]]; then
  echo "== installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi

# Only the flags below configure this dormant, not a config file from the caller's environment.
unset DORMANT_CONFIG
WORK=$(mktemp -d -t dormant-schemathesis.XXXXXX)
DORMANT_PID=
NODE=
cleanup() {
  local status=$?
  if [[ -n "$DORMANT_PID" ]]; then
    kill -TERM "$DORMANT_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$DORMANT_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$DORMANT_PID" 2>/dev/null || true
  fi
  if [[ -n "$NODE" ]]; then
    local containers volumes
    containers=$(docker ps -aq --filter "label=dormant.node=$NODE")
    [[ -z "$containers" ]] || docker rm -f -v $containers >/dev/null
    volumes=$(docker volume ls -q --filter "label=dormant.node=$NODE")
    [[ -z "$volumes" ]] || docker volume rm -f $volumes >/dev/null
    left=$(docker ps -aq --filter "label=dormant.node=$NODE" | wc -l)
    echo "== cleaned up: containers of node $NODE left: $left"
  fi
  if [[ $status -ne 0 && -f "$WORK/dormant.log" ]]; then
    mkdir -p target/schemathesis
    cp "$WORK/dormant.log" target/schemathesis/dormant.log
    echo "== dormant's log: target/schemathesis/dormant.log; its last 20 lines:" >&2
    tail -20 "$WORK/dormant.log" >&2
  fi
  rm -rf "$WORK"
  exit $status
}
trap cleanup EXIT INT TERM

# The schema's example image: creates that pass validation start real, tiny containers.
"$BIN" demo-image >/dev/null 2>"$WORK/demo-image.log"

TOKEN=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
DORMANT_ADMIN_TOKEN=$TOKEN DORMANT_LOG=info "$BIN" serve \
  --data-dir "$WORK/data" \
  --api-addr 127.0.0.1:0 --proxy-addr 127.0.0.1:0 \
  --default-memory 16m --memory-budget 128m --max-running 4 \
  --wake-timeout 10s --idle-timeout 30s --stop-grace 1s \
  >"$WORK/stdout" 2>"$WORK/dormant.log" &
DORMANT_PID=$!
for _ in $(seq 1 300); do
  [[ -s "$WORK/stdout" ]] && break
  kill -0 "$DORMANT_PID" 2>/dev/null || { echo "dormant did not start" >&2; exit 1; }
  sleep 0.1
done
line=$(head -1 "$WORK/stdout")
API=$(grep -o 'api=http://[^ ]*' <<<"$line" | cut -d= -f2)
NODE=$(grep -o 'node=[^ ]*' <<<"$line" | cut -d= -f2)
[[ -n "$API" && -n "$NODE" ]] || { echo "cannot read dormant's start line: $line" >&2; exit 1; }
echo "== dormant at $API (node $NODE); schemathesis, $MAX_EXAMPLES examples per operation"

curl -fsS -H "Authorization: Bearer $TOKEN" "$API/v1/openapi.json" >"$WORK/openapi.json"
# From the scratch dir: schemathesis keeps a cache of failures in its working directory.
HOOKS_DIR=$PWD/fuzz
(cd "$WORK" && SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH=$HOOKS_DIR \
  timeout --signal=INT "$RUN_LIMIT" "$VENV/bin/schemathesis" run "$WORK/openapi.json" \
  --url "$API" \
  --header "Authorization: Bearer $TOKEN" \
  --checks no_server_error \
  --max-examples "$MAX_EXAMPLES" \
  --request-timeout 30 \
  --workers 2 \
  --seed "${SCHEMATHESIS_SEED:-$RANDOM}")

# A crash shows above as connection errors, which fail the run too; say it plainly.
kill -0 "$DORMANT_PID" 2>/dev/null || { echo "dormant died during the run" >&2; exit 1; }
echo "== schemathesis: no 5xx, dormant still up"
