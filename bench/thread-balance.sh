#!/usr/bin/env bash
# bench/thread-balance.sh — do dormant's proxy threads share the work?
#
# Starts one dormant (its own data dir and ports: API 127.0.0.1:17270, proxy
# 17280), one demo container, and runs `wrk -t2 -c64 -d5s` against it ROUNDS
# times (default 3), printing req/s, p99 and the CPU clock ticks each
# `dormant-proxy-N` thread spent in that round (from /proc/PID/task/*/stat).
# Even ticks: the connections were spread. Used for the accept loop that hands
# each connection to the thread with the fewest open (proxy/spread.rs).
#
# Usage: bench/thread-balance.sh [DORMANT_BIN]   (default target/release/dormant)
# Needs: Docker, wrk, curl. Everything runs on loopback; the container is
# removed on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(realpath "${1:-$ROOT/target/release/dormant}")
ROUNDS=${ROUNDS:-3}
WORK=$(mktemp -d /tmp/dormant-balance.XXXXXX)
NAME=balance-$$
"$BIN" serve --data-dir "$WORK" --api-addr 127.0.0.1:17270 --proxy-addr 127.0.0.1:17280 --nap-after 0 >"$WORK/log" 2>&1 &
PID=$!
cleanup() {
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  docker rm -f $(docker ps -aq --filter "label=dormant.name=$NAME") >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
export DORMANT_URL=http://127.0.0.1:17270 DORMANT_DATA_DIR=$WORK
for _ in $(seq 100); do curl -sf "$DORMANT_URL/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
"$BIN" demo-image >/dev/null
"$BIN" create --image dormant-demo:latest --name "$NAME" --idle-timeout 1h >/dev/null
curl -sf -H "Host: $NAME.localhost" http://127.0.0.1:17280/ >/dev/null
ticks() { for task in /proc/"$PID"/task/*; do
  [[ $(cat "$task/comm") == dormant-proxy* ]] && echo "$(cat "$task/comm") $(awk '{ print $14 + $15 }' "$task/stat")"
done; }
for round in $(seq "$ROUNDS"); do
  before=$(ticks)
  result=$(wrk -t2 -c64 -d5s --latency -H "Host: $NAME.localhost" http://127.0.0.1:17280/)
  after=$(ticks)
  echo "round $round: $(awk '/Requests\/sec/ { print $2 " req/s" }' <<<"$result"), p99 $(awk '$1 == "99%" { print $2 }' <<<"$result")"
  join <(sort <<<"$before") <(sort <<<"$after") | awk '{ printf "  %s %d ticks\n", $1, $3 - $2 }'
done
