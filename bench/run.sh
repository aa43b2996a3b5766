#!/usr/bin/env bash
# bench/run.sh — dormant's side-by-side benchmark, in one run on this host.
#
# Measures dormant against real peers and writes bench/RESULTS.md
# (bench/RESULTS-quick.md with --quick, so CI never overwrites real results).
# Two dormants run side by side, one per upstream mode: "network" (the default on
# a local daemon: the proxy reaches each container at its address on a Docker
# network, no published port) and "published" (a port published on 127.0.0.1 per
# container, so one docker-proxy process each).
#   proxy      wrk GET / direct to the container (its address / its published port),
#              through nginx and through dormant, for each mode;
#              WebSocket echo round trips direct and through dormant
#   wake       asleep -> first response through dormant, against the floor: start a
#              stopped reference container and poll it until it answers; both modes
#   nap        napping (paused) -> first response through dormant, against the floor:
#              docker unpause of a paused reference container + one request to it
#   restore    archived -> first response (an empty diff, also with 1 GB of unrelated
#              dirty data on Docker's filesystem, and a big one: archive and restore
#              MB/s), against the floor: docker create + start + first answer
#   herd       many concurrent requests to one asleep container: one start, no errors
#   density    many registered, sleeping containers: dormant's RSS, list and wake times
#   memory     per running container: dormant's RSS and Docker's helper processes
#              (docker-proxy, containerd-shim, fuse-overlayfs), both modes
# Herd, density, restore and nap run on network mode only.
#
# Usage: bench/run.sh [--quick] [--only SECTION]
#   --only SECTION (nap, herd, restore, wake or proxy; also --only=SECTION) runs that one
#   section and prints its figures instead of writing a results file.
# Needs: Docker, cargo; installs wrk, nginx, jq, curl from Debian's packages if missing.
# Everything runs on loopback and on the bench's own containers (dormant 127.0.0.1:
# 17070/17080 network mode and 17071/17082 published mode, nginx 17081/17083, a
# reference container on 17090, a Docker network of the run's own) and is torn down
# on exit, however the run ends.
# Takes about 3 minutes with --quick and 16 without, plus any build.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"
COMMAND="bench/run.sh${*:+ $*}"
QUICK=0
ONLY=""
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    --only) ONLY=next ;;
    --only=nap | --only=herd | --only=restore | --only=wake | --only=proxy) ONLY=${arg#--only=} ;;
    nap | herd | restore | wake | proxy)
      [[ $ONLY == next ]] || { echo "unknown argument: $arg (try --help)" >&2; exit 2; }
      ONLY=$arg ;;
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done
[[ $ONLY != next ]] || { echo "--only needs a section: nap, herd, restore, wake or proxy" >&2; exit 2; }

# --- parameters ----------------------------------------------------------------
if ((QUICK)); then
  WRK_SECONDS=3 WARMUP_SECONDS=1 WS_ROUND_TRIPS=500 WAKE_RUNS=5 PROXY_ROUNDS=1 NAP_RUNS=10
  HERD=200 DENSITY=50 DENSITY_WAKE=10
  RESTORE_RUNS=2 BIG_FILES=5 RUNNING=10
  RESULTS="$BENCH/RESULTS-quick.md"
else
  WRK_SECONDS=10 WARMUP_SECONDS=2 WS_ROUND_TRIPS=2000 WAKE_RUNS=20 PROXY_ROUNDS=3 NAP_RUNS=50
  HERD=1000 DENSITY=1000 DENSITY_WAKE=50
  RESTORE_RUNS=5 BIG_FILES=20 RUNNING=50
  RESULTS="$BENCH/RESULTS.md"
fi
BIG_FILE_MB=10                # the big diff: BIG_FILES files of this size
BATCH=100                     # containers per create request (the API's maximum)
DENSITY_BATCH=$((DENSITY < BATCH ? DENSITY : BATCH))
PARALLEL=8                    # concurrent API calls when sleeping/deleting many
# Small enough that the density wake and the running containers of "memory" stay
# inside the default memory budget (80% of the host) without evictions.
MEMORY=256m
declare -A API=([net]=127.0.0.1:17070 [pub]=127.0.0.1:17071)
declare -A PROXY=([net]=17080 [pub]=17082)
declare -A NGINX=([net]=17081 [pub]=17083)
REF_PORT=17090                # the published-mode reference container of the wake floor
IMAGE=dormant-demo:latest
BIN="$ROOT/target/release/dormant"
TOKEN="bench-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
# Docker names are host-wide: our containers' names start with this run's own prefix.
RUN="b$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
# The network-mode dormant's network: the run's own, so that cleaning up never
# touches the `dormant` network that other dormants (or the tests) on this host use.
NET="dormant-bench-$RUN"
HERD_NAME="$RUN-herd"

declare -A R=()               # every figure, by name, for the report
declare -A PID=()             # the dormants' process ids, by mode
T_START=$(date +%s)

say() { printf '[%4ss] %s\n' "$(($(date +%s) - T_START))" "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }
py() { timeout 180 python3 "$BENCH/load.py" "$@"; }

# --- set-up --------------------------------------------------------------------

ensure_tools() {
  local missing=() pair
  for pair in wrk:wrk nginx:nginx jq:jq curl:curl python3:python3; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  ((${#missing[@]})) || return 0
  say "installing ${missing[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
    apt-get update -qq
  fi
  # Install without starting any system service (nginx would start on :80).
  local policy=/usr/sbin/policy-rc.d added=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added=1
  fi
  apt-get install -y -qq "${missing[@]}" >/dev/null || { ((added)) && rm -f "$policy"; die "apt-get install ${missing[*]}"; }
  ((added)) && rm -f "$policy"
  return 0
}

build() {
  say "building dormant (release) and the demo image"
  (cd "$ROOT" && cargo build --release --quiet -p dormant)
  "$BIN" demo-image --tag "$IMAGE" >"$WORK/demo-image.log" 2>&1 \
    || { tail -20 "$WORK/demo-image.log" >&2; die "dormant demo-image"; }
}

check_ports_free() {
  local port
  for port in "${API[net]##*:}" "${API[pub]##*:}" "${PROXY[@]}" "${NGINX[@]}" "$REF_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      die "port $port on 127.0.0.1 is in use (another bench run?)"
    fi
  done
}

stop_dormant() { # MODE
  local pid=${PID[$1]:-}
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  PID[$1]=
}

cleanup() {
  local status=$? node mode
  set +e
  trap - EXIT INT TERM
  say "cleaning up"
  [[ -n ${DIRTY_FILE:-} ]] && rm -f "$DIRTY_FILE"
  if [[ -n ${NGINX_PID:-} ]]; then kill "$NGINX_PID" 2>/dev/null; wait "$NGINX_PID" 2>/dev/null; fi
  for mode in "${!API[@]}"; do stop_dormant "$mode"; done
  for mode in "${!API[@]}"; do
    [[ -f ${WORK:-/nonexistent}/$mode/node-id ]] || continue
    node=$(cat "$WORK/$mode/node-id")
    docker ps -aq --filter "label=dormant.node=$node" | xargs -r docker rm -f >/dev/null
    docker volume ls -q --filter "label=dormant.node=$node" | xargs -r docker volume rm >/dev/null
  done
  docker ps -aq --filter label=dormant.bench=true | xargs -r docker rm -f >/dev/null
  # Only this run's network, once nothing is on it.
  if docker network inspect "$NET" >/dev/null 2>&1; then docker network rm "$NET" >/dev/null; fi
  if ((status != 0)); then
    for mode in "${!API[@]}"; do
      [[ -s ${WORK:-/nonexistent}/dormant-$mode.log ]] || continue
      say "last lines of the $mode-mode dormant's log:"; tail -15 "$WORK/dormant-$mode.log" >&2
    done
  fi
  [[ -n ${WORK:-} ]] && rm -rf "$WORK"
  say "done (exit $status)"
  exit "$status"
}

# --- dormant, its API, nginx ---------------------------------------------------------

api() { # MODE METHOD PATH [curl args...]: JSON on stdout, fails on HTTP errors
  local mode=$1 method=$2 path=$3
  shift 3
  curl -sS --fail-with-body --max-time 300 -X "$method" \
    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    "http://${API[$mode]}$path" "$@"
}

start_dormant() { # MODE: net (--upstream network) or pub (--upstream published)
  local mode=$1 upstream=(--upstream network --network "$NET")
  [[ $mode == pub ]] && upstream=(--upstream published)
  # The wake limits are off: the wake, restore and density runs wake
  # containers from one address as fast as they can, on purpose.
  say "starting dormant ${upstream[*]} on ${API[$mode]} (proxy :${PROXY[$mode]})"
  DORMANT_ADMIN_TOKEN="$TOKEN" DORMANT_LOG=warn "$BIN" serve \
    --data-dir "$WORK/$mode" --api-addr "${API[$mode]}" --proxy-addr "127.0.0.1:${PROXY[$mode]}" \
    --default-memory "$MEMORY" "${upstream[@]}" \
    --wake-rate off --max-wake-rate off >"$WORK/dormant-$mode.log" 2>&1 &
  PID[$mode]=$!
  for _ in $(seq 1 300); do
    curl -sf --max-time 1 "http://${API[$mode]}/healthz" >/dev/null 2>&1 && return 0
    kill -0 "${PID[$mode]}" 2>/dev/null || die "the $mode-mode dormant exited at start-up"
    sleep 0.1
  done
  die "the $mode-mode dormant did not answer /healthz within 30 s"
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/${PID[${1:-net}]}/status"; } # [MODE]

# Containers never nap on their own in the bench (the nap section asks with POST
# /nap): a section that leaves one idle for a minute, as the proxy rounds do the
# published-mode one, would measure a paused app. Empty for builds that predate
# naps (bench/proxy-ab.sh with an old binary).
NAP_AFTER_FIELD=${NAP_AFTER_FIELD-,\"nap_after\":\"0\"}

create() { # MODE NAME [COUNT]: creates NAME (or NAME-1..NAME-COUNT), idle timeout 1 h, no naps
  local body="{\"image\":\"$IMAGE\",\"name\":\"$2\",\"idle_timeout\":\"1h\"$NAP_AFTER_FIELD"
  [[ -n ${3:-} ]] && body+=",\"count\":$3"
  api "$1" POST /v1/containers -d "$body}" >/dev/null
}

sleep_container() { # MODE NAME: forces sleep, checks it took
  local state
  state=$(api "$1" POST "/v1/containers/$2/sleep" | jq -r .state)
  [[ $state == asleep ]] || die "$2 is $state after POST /sleep"
}

reference_container() { # NAME [PORT]: runs an unmanaged twin of a dormant container
  # Same image and limits as dormant gives its containers; with a PORT, that port
  # published on loopback (as --upstream published), else on the bench's network.
  local where=(--network "$NET")
  [[ -n ${2:-} ]] && where+=(-p "127.0.0.1:$2:8080")
  docker run -d --name "$1" --label dormant.bench=true "${where[@]}" \
    --memory "$MEMORY" --memory-swap "$MEMORY" --pids-limit 1024 --security-opt no-new-privileges \
    "$IMAGE" >/dev/null
}

published_port() { # DOCKER-NAME: the host port of its 8080/tcp
  docker port "$1" 8080/tcp | head -1 | sed 's/.*://'
}

container_ip() { # DOCKER-NAME: its address on its network
  docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1"
}

start_nginx() { # NETWORK-UPSTREAM PUBLISHED-UPSTREAM (host:port each)
  mkdir -p "$WORK/nginx"
  cat >"$WORK/nginx/nginx.conf" <<CONF
# Generated by bench/run.sh: nginx as the reverse proxy to compare dormant with.
worker_processes auto;
worker_rlimit_nofile 65536;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header Host \$host;
  # To the container's address on its Docker network (as --upstream network).
  upstream network {
    server $1;
    keepalive 128;
  }
  # To its port published on loopback, through docker-proxy (as --upstream published).
  upstream published {
    server $2;
    keepalive 128;
  }
  server {
    listen 127.0.0.1:${NGINX[net]};
    location / { proxy_pass http://network; }
  }
  server {
    listen 127.0.0.1:${NGINX[pub]};
    location / { proxy_pass http://published; }
  }
}
CONF
  nginx -t -q -e "$WORK/nginx/error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" \
    || die "nginx rejected its config"
  nginx -e "$WORK/nginx/error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
  NGINX_PID=$!
  local mode
  for mode in net pub; do
    for _ in $(seq 1 100); do
      curl -sf --max-time 1 "http://127.0.0.1:${NGINX[$mode]}/" >/dev/null 2>&1 && continue 2
      sleep 0.1
    done
    die "nginx did not answer on :${NGINX[$mode]}"
  done
}

# --- a. proxy ------------------------------------------------------------------

to_ms() { # wrk's "512.00us" / "2.10ms" / "1.02s" -> milliseconds
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n *= 1; else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000
    printf "%.2f", n }'
}

run_wrk() { # LABEL URL [wrk args]: warm-up, then the measured run
  local label=$1 url=$2 out
  shift 2
  timeout $((WARMUP_SECONDS + 30)) wrk -t2 -c64 -d"${WARMUP_SECONDS}s" "$@" "$url" >/dev/null
  out=$(timeout $((WRK_SECONDS + 30)) wrk -t2 -c64 -d"${WRK_SECONDS}s" --latency "$@" "$url")
  echo "$out" >"$WORK/wrk-$label.txt"
  R[${label}_rps]=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' <<<"$out")
  R[${label}_p50]=$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
  R[${label}_p99]=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
  R[${label}_errors]=$(awk '/Non-2xx|Socket errors/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) s += $i } END { print s + 0 }' <<<"$out")
  say "  $label: ${R[${label}_rps]} req/s, p50 ${R[${label}_p50]} ms, p99 ${R[${label}_p99]} ms, errors ${R[${label}_errors]}"
}

bench_proxy() {
  say "a. proxy: wrk -t2 -c64 -d${WRK_SECONDS}s GET / (direct, nginx, dormant; network and published mode)"
  create net "$RUN-web"
  create pub "$RUN-pweb"
  local ip port mode
  ip=$(container_ip "dormant-$RUN-web")
  port=$(published_port "dormant-$RUN-pweb")
  [[ -n $ip && -n $port ]] || die "no address ($ip) or published port ($port) for the web containers"
  start_nginx "$ip:8080" "127.0.0.1:$port"
  run_wrk direct_net "http://$ip:8080/"
  # Network mode is the headline: nginx and dormant alternate over
  # $PROXY_ROUNDS rounds (the order swapped each round) and the medians count.
  local round first
  for round in $(seq 1 "$PROXY_ROUNDS"); do
    for first in nginx dormant; do
      if [[ $((round % 2)) == 0 ]]; then first=$([[ $first == nginx ]] && echo dormant || echo nginx); fi
      if [[ $first == nginx ]]; then
        run_wrk "nginx_net_r$round" "http://127.0.0.1:${NGINX[net]}/"
      else
        run_wrk "dormant_net_r$round" "http://127.0.0.1:${PROXY[net]}/" -H "Host: $RUN-web.localhost"
      fi
    done
  done
  local target field
  for target in nginx_net dormant_net; do
    for field in rps p50 p99 errors; do
      R[${target}_$field]=$(for round in $(seq 1 "$PROXY_ROUNDS"); do echo "${R[${target}_r${round}_$field]}"; done | median)
    done
    R[${target}_rounds]=$(for round in $(seq 1 "$PROXY_ROUNDS"); do printf '%s / %s, ' "${R[${target}_r${round}_rps]}" "${R[${target}_r${round}_p99]}"; done | sed 's/, $//')
  done
  say "  medians over $PROXY_ROUNDS rounds: nginx ${R[nginx_net_rps]} req/s p99 ${R[nginx_net_p99]} ms; dormant ${R[dormant_net_rps]} req/s p99 ${R[dormant_net_p99]} ms"
  run_wrk direct_pub "http://127.0.0.1:$port/"
  run_wrk nginx_pub "http://127.0.0.1:${NGINX[pub]}/"
  run_wrk dormant_pub "http://127.0.0.1:${PROXY[pub]}/" -H "Host: $RUN-pweb.localhost"
  for mode in net pub; do
    R[rps_vs_nginx_$mode]=$(calc "${R[dormant_${mode}_rps]} / ${R[nginx_${mode}_rps]}")
    R[rps_vs_direct_$mode]=$(calc "${R[dormant_${mode}_rps]} / ${R[direct_${mode}_rps]}")
    R[p99_vs_nginx_$mode]=$(calc "${R[dormant_${mode}_p99]} / ${R[nginx_${mode}_p99]}")
    R[p99_vs_direct_$mode]=$(calc "${R[dormant_${mode}_p99]} / ${R[direct_${mode}_p99]}")
  done
  R[rps_net_vs_pub]=$(calc "${R[dormant_net_rps]} / ${R[dormant_pub_rps]}")

  say "a. WebSocket echo: $WS_ROUND_TRIPS sequential round trips (direct, dormant; both modes)"
  local label json
  for label in direct_net dormant_net direct_pub dormant_pub; do
    case $label in
      direct_net) json=$(py ws "$ip:8080" localhost "$WS_ROUND_TRIPS") ;;
      dormant_net) json=$(py ws "${PROXY[net]}" "$RUN-web.localhost" "$WS_ROUND_TRIPS") ;;
      direct_pub) json=$(py ws "$port" localhost "$WS_ROUND_TRIPS") ;;
      dormant_pub) json=$(py ws "${PROXY[pub]}" "$RUN-pweb.localhost" "$WS_ROUND_TRIPS") ;;
    esac
    R[ws_${label}_p50]=$(jq -r .p50 <<<"$json")
    R[ws_${label}_p99]=$(jq -r .p99 <<<"$json")
    say "  $label: p50 ${R[ws_${label}_p50]} ms, p99 ${R[ws_${label}_p99]} ms"
  done
}

# --- b. wake -------------------------------------------------------------------

median() { # the median of the numbers on stdin
  sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

percentiles() { # P...: nearest-rank percentiles of the numbers on stdin
  sort -n | awk -v ps="$*" '{ v[NR] = $1 } END {
    n = split(ps, p, " ")
    for (i = 1; i <= n; i++) { k = int(p[i] / 100 * NR + 0.999999); if (k < 1) k = 1; printf "%s%s", v[k], (i < n ? " " : "\n") } }'
}

overhead_pct() { # MEASURED FLOOR: "+12.3" / "-4.0"
  local pct
  pct=$(calc "($1 / $2 - 1) * 100" 1)
  [[ $pct == -* ]] || pct="+$pct"
  echo "$pct"
}

wake_once() { # MODE NAME: sleep it, then one timed GET through the proxy
  local json
  sleep_container "$1" "$2"
  sleep 0.3
  json=$(py get "${PROXY[$1]}" "$2.localhost")
  [[ $(jq -r .status <<<"$json") == 200 ]] || die "wake of $2 answered $json"
  jq -r .ms <<<"$json" >>"$WORK/wake-$1.txt"
  api "$1" GET "/v1/containers/$2" | jq -r .last_wake_ms >>"$WORK/wake-self-$1.txt"
}

floor_once() { # MODE: stop the reference container, then time its start until it answers
  local ref=$RUN-ref-$1 target=$REF_PORT
  [[ $1 == net ]] && target=ip:8080
  docker stop -t 10 "$ref" >/dev/null
  sleep 0.3
  py floor "$ref:$target" | jq -r .ms >>"$WORK/floor-$1.txt"
}

bench_wake() {
  say "b. wake: $WAKE_RUNS runs each of dormant (sleep, GET through the proxy) and the floor (docker stop; start + poll), both modes"
  create net "$RUN-wake"
  create pub "$RUN-pwake"
  reference_container "$RUN-ref-net"
  reference_container "$RUN-ref-pub" "$REF_PORT"
  local i mode ip
  ip=$(container_ip "$RUN-ref-net")
  for _ in $(seq 1 100); do
    curl -sf --max-time 1 "http://127.0.0.1:$REF_PORT/" >/dev/null && curl -sf --max-time 1 "http://$ip:8080/" >/dev/null && break
    sleep 0.1
  done
  for mode in net pub; do : >"$WORK/wake-$mode.txt" && : >"$WORK/floor-$mode.txt" && : >"$WORK/wake-self-$mode.txt"; done
  for i in $(seq 1 "$WAKE_RUNS"); do
    # Alternate all four so that any drift in the machine's load hits them alike.
    wake_once net "$RUN-wake"
    floor_once net
    wake_once pub "$RUN-pwake"
    floor_once pub
    say "  run $i: network: dormant $(tail -1 "$WORK/wake-net.txt") ms, floor $(tail -1 "$WORK/floor-net.txt") ms;" \
      "published: dormant $(tail -1 "$WORK/wake-pub.txt") ms, floor $(tail -1 "$WORK/floor-pub.txt") ms"
  done
  for mode in net pub; do
    read -r "R[wake_${mode}_p50]" "R[wake_${mode}_p95]" < <(percentiles 50 95 <"$WORK/wake-$mode.txt")
    read -r "R[floor_${mode}_p50]" "R[floor_${mode}_p95]" < <(percentiles 50 95 <"$WORK/floor-$mode.txt")
    read -r "R[wake_self_${mode}_p50]" "R[wake_self_${mode}_p95]" < <(percentiles 50 95 <"$WORK/wake-self-$mode.txt")
    R[wake_ratio_${mode}_p50]=$(calc "${R[wake_${mode}_p50]} / ${R[floor_${mode}_p50]}")
    R[wake_ratio_${mode}_p95]=$(calc "${R[wake_${mode}_p95]} / ${R[floor_${mode}_p95]}")
    R[wake_overhead_${mode}_pct]=$(overhead_pct "${R[wake_${mode}_p50]}" "${R[floor_${mode}_p50]}")
  done
  docker rm -f "$RUN-ref-net" "$RUN-ref-pub" >/dev/null
}

# --- b2. nap ------------------------------------------------------------------

nap_once() { # NAME: pause it (POST /nap), then one timed GET through the proxy
  local json state
  state=$(api net POST "/v1/containers/$1/nap" | jq -r .state)
  [[ $state == napping ]] || die "$1 is $state after POST /nap"
  sleep 0.3
  json=$(py get "${PROXY[net]}" "$1.localhost")
  [[ $(jq -r .status <<<"$json") == 200 ]] || die "the nap's wake of $1 answered $json"
  jq -r .ms <<<"$json" >>"$WORK/nap.txt"
}

unpause_floor_once() { # pause the reference container, then time unpause + one GET to it
  local json
  json=$(py unpause "$RUN-ref-nap" 8080)
  jq -r .ms <<<"$json" >>"$WORK/nap-floor.txt"
  jq -r .unpause_ms <<<"$json" >>"$WORK/nap-unpause.txt"
}

bench_nap() {
  say "b2. nap: $NAP_RUNS runs each of dormant (POST /nap, GET through the proxy) and the floor (docker pause; unpause + GET direct), network mode"
  create net "$RUN-nap"
  reference_container "$RUN-ref-nap"
  local i ip
  ip=$(container_ip "$RUN-ref-nap")
  for _ in $(seq 1 100); do
    curl -sf --max-time 1 "http://$ip:8080/" >/dev/null && break
    sleep 0.1
  done
  : >"$WORK/nap.txt" && : >"$WORK/nap-floor.txt" && : >"$WORK/nap-unpause.txt"
  for i in $(seq 1 "$NAP_RUNS"); do
    # Alternate, so that any drift in the machine's load hits both alike.
    nap_once "$RUN-nap"
    unpause_floor_once
    ((i % 10)) || say "  run $i: dormant $(tail -1 "$WORK/nap.txt") ms, floor $(tail -1 "$WORK/nap-floor.txt") ms"
  done
  read -r "R[nap_p50]" "R[nap_p99]" < <(percentiles 50 99 <"$WORK/nap.txt")
  read -r "R[nap_floor_p50]" "R[nap_floor_p99]" < <(percentiles 50 99 <"$WORK/nap-floor.txt")
  read -r "R[nap_unpause_p50]" "R[nap_unpause_p99]" < <(percentiles 50 99 <"$WORK/nap-unpause.txt")
  R[nap_ratio_p50]=$(calc "${R[nap_p50]} / ${R[nap_floor_p50]}")
  R[nap_ratio_p99]=$(calc "${R[nap_p99]} / ${R[nap_floor_p99]}")
  R[nap_unpauses]=$(curl -sf "http://${API[net]}/metrics" | awk '/^dormant_unpauses_total/ { print $2 }')
  docker rm -f "$RUN-ref-nap" >/dev/null
}

print_nap() { # the nap section's figures, for --only nap
  cat <<TXT
nap ($NAP_RUNS runs each, network mode; machine shared unless you made sure it was not):
  dormant: napping -> first response through the proxy   p50 ${R[nap_p50]} ms, p99 ${R[nap_p99]} ms
  floor: docker unpause + first response direct          p50 ${R[nap_floor_p50]} ms, p99 ${R[nap_floor_p99]} ms
    of which the unpause call                            p50 ${R[nap_unpause_p50]} ms, p99 ${R[nap_unpause_p99]} ms
  ratio dormant / floor                                  p50 ${R[nap_ratio_p50]}, p99 ${R[nap_ratio_p99]}
  dormant's unpauses (metric): ${R[nap_unpauses]} for $NAP_RUNS naps
TXT
}

# --- c. restore from archive ---------------------------------------------------

archive() { # NAME JSON-OUT: POST /archive on the network-mode dormant; prints seconds taken
  local seconds state
  seconds=$(api net POST "/v1/containers/$1/archive" -o "$2" -w '%{time_total}') \
    || die "archive of $1 failed: $(cat "$2")"
  state=$(jq -r .state "$2")
  [[ $state == archived ]] || die "$1 is $state after POST /archive: $(cat "$2")"
  echo "$seconds"
}

flush() { # the host's dirty pages to disk, before a timed archive, restore or floor
  # An archive fsyncs its snapshot, and an fsync may wait on other dirty data too: without
  # this, times would include flushing whatever else was written lately (by us: the big
  # files) on that filesystem. The "dirty" restores below measure that case on purpose.
  timeout 120 sync || true
}

dirty_gigabyte() { # 1 GB written, not synced, beside Docker's data (same filesystem)
  dd if=/dev/zero of="$DIRTY_FILE" bs=1M count=1024 status=none || die "dd to $DIRTY_FILE failed"
}

restore_request() { # NAME: one timed GET / through the proxy, which restores it; prints ms
  local json
  json=$(py get "${PROXY[net]}" "$1.localhost")
  [[ $(jq -r .status <<<"$json") == 200 ]] || die "the restoring request for $1 answered $json"
  jq -r .ms <<<"$json"
}

make_big_files() { # BIG_FILES files of BIG_FILE_MB MB: 3 in 4 random, 1 in 4 log-like text
  local i
  mkdir -p "$WORK/big"
  : >"$WORK/big/list.txt"
  for i in $(seq -w 1 "$BIG_FILES"); do
    if ((10#$i % 4 == 0)); then
      # Log lines of random words and numbers: compresses about as well as real logs.
      awk -v seed="$i" 'BEGIN {
        srand(seed); split("GET PUT POST user session cache miss hit request served from upstream in ms bytes ok error retry", w, " ")
        for (;;) { printf "2026-11-28T%02d:%02d:%02d.%03dZ %s %s /api/v1/items/%d %d %s %s %d\n",
          rand() * 24, rand() * 60, rand() * 60, rand() * 1000, w[int(rand() * 18) + 1], w[int(rand() * 18) + 1],
          rand() * 100000, rand() * 600, w[int(rand() * 18) + 1], w[int(rand() * 18) + 1], rand() * 1e6 } }' \
        2>/dev/null | head -c "$((BIG_FILE_MB * 1048576))" >"$WORK/big/f$i.txt" || true
      echo "f$i.txt" >>"$WORK/big/list.txt"
    else
      head -c "$((BIG_FILE_MB * 1048576))" /dev/urandom >"$WORK/big/f$i.bin"
      echo "f$i.bin" >>"$WORK/big/list.txt"
    fi
  done
  BIG_BYTES=$(cat "$WORK/big"/f* | wc -c)
  CHECK_FILE=$(head -1 "$WORK/big/list.txt")
  CHECK_SHA=$(sha256sum "$WORK/big/$CHECK_FILE" | cut -d' ' -f1)
}

bench_restore() {
  local i name memory seconds ms mb t0 json f write_s got size
  say "c. restore, empty diff: $RESTORE_RUNS runs each of dormant (archive a fresh container, GET through the proxy), the same with 1 GB of unrelated dirty data, and the floor (create + start + poll)"
  : >"$WORK/restore.txt" && : >"$WORK/restore-self.txt" && : >"$WORK/cold.txt" && : >"$WORK/cold-create.txt"
  : >"$WORK/restore-dirty.txt" && : >"$WORK/flush-dirty.txt"
  DIRTY_FILE="$(docker info -f '{{.DockerRootDir}}')/dormant-bench-dirty-$RUN"
  for i in $(seq 1 "$RESTORE_RUNS"); do
    name=$RUN-e$i
    create net "$name"
    memory=$(docker inspect -f '{{.HostConfig.Memory}}' "dormant-$name")
    flush
    archive "$name" "$WORK/archive.json" >/dev/null
    R[empty_snapshot_bytes]=$(jq -r .snapshot.bytes "$WORK/archive.json")
    R[empty_snapshot_files]=$(jq -r .snapshot.files "$WORK/archive.json")
    flush
    sleep 0.3
    restore_request "$name" >>"$WORK/restore.txt"
    api net GET "/v1/containers/$name" | jq -r .last_wake_ms >>"$WORK/restore-self.txt"
    flush
    json=$(py cold "$RUN-cold-$i" "$IMAGE" "$memory" "$NET" 8080)
    jq -r .ms <<<"$json" >>"$WORK/cold.txt"
    jq -r .create_ms <<<"$json" >>"$WORK/cold-create.txt"
    api net DELETE "/v1/containers/$name" >/dev/null
    # The same restore while 1 GB that has nothing to do with it waits to be written back
    # on the filesystem holding Docker's data; the file goes (unwritten) right after.
    name=$RUN-x$i
    create net "$name"
    flush
    archive "$name" "$WORK/archive.json" >/dev/null
    flush
    sleep 0.3
    dirty_gigabyte
    restore_request "$name" >>"$WORK/restore-dirty.txt"
    # Off the request's path, the restore's flush then drops the snapshot.
    t0=$(date +%s.%N)
    for _ in $(seq 1 600); do
      [[ $(api net GET "/v1/containers/$name" | jq -r .snapshot) == null ]] && break
      sleep 0.05
    done
    echo "$(calc "($(date +%s.%N) - $t0) * 1000" 0)" >>"$WORK/flush-dirty.txt"
    rm -f "$DIRTY_FILE"
    api net DELETE "/v1/containers/$name" >/dev/null
    say "  run $i: dormant $(tail -1 "$WORK/restore.txt") ms (snapshot ${R[empty_snapshot_bytes]} B)," \
      "with 1 GB dirty $(tail -1 "$WORK/restore-dirty.txt") ms (snapshot dropped $(tail -1 "$WORK/flush-dirty.txt") ms after)," \
      "floor $(tail -1 "$WORK/cold.txt") ms"
  done
  read -r 'R[restore_dirty_p50]' 'R[restore_dirty_max]' < <(percentiles 50 100 <"$WORK/restore-dirty.txt")
  read -r 'R[flush_dirty_p50]' 'R[flush_dirty_max]' < <(percentiles 50 100 <"$WORK/flush-dirty.txt")
  read -r 'R[restore_p50]' 'R[restore_max]' < <(percentiles 50 100 <"$WORK/restore.txt")
  read -r 'R[restore_self_p50]' 'R[restore_self_max]' < <(percentiles 50 100 <"$WORK/restore-self.txt")
  read -r 'R[cold_p50]' 'R[cold_max]' < <(percentiles 50 100 <"$WORK/cold.txt")
  read -r 'R[cold_create_p50]' < <(percentiles 50 <"$WORK/cold-create.txt")
  R[restore_ratio_p50]=$(calc "${R[restore_p50]} / ${R[cold_p50]}")
  R[restore_overhead_pct]=$(overhead_pct "${R[restore_p50]}" "${R[cold_p50]}")
  R[restore_dirty_ratio]=$(calc "${R[restore_dirty_p50]} / ${R[restore_p50]}")

  make_big_files
  R[big_mb]=$(calc "$BIG_BYTES / 1048576" 0)
  say "c. restore, ${R[big_mb]} MB diff ($BIG_FILES files of $BIG_FILE_MB MB, 1 in 4 text): $RESTORE_RUNS runs"
  : >"$WORK/big-runs.txt"
  for i in $(seq 1 "$RESTORE_RUNS"); do
    name=$RUN-big$i
    create net "$name"
    t0=$(date +%s.%N)
    while read -r f; do
      curl -sS --fail --max-time 120 -o /dev/null -X PUT --data-binary "@$WORK/big/$f" \
        -H "Host: $name.localhost" "http://127.0.0.1:${PROXY[net]}/files/data/bench/$f" \
        || die "PUT /files/data/bench/$f to $name failed"
    done <"$WORK/big/list.txt"
    write_s=$(calc "$(date +%s.%N) - $t0" 3)
    sleep_container net "$name"
    flush
    seconds=$(archive "$name" "$WORK/archive.json")
    seconds=$(calc "$seconds" 3)
    flush
    sleep 0.3
    ms=$(restore_request "$name")
    # The restored container serves one of the big files, whole.
    size=$(curl -sS --fail --max-time 120 -H "Host: $name.localhost" -o "$WORK/check.bin" -w '%{size_download}' \
      "http://127.0.0.1:${PROXY[net]}/files/data/bench/$CHECK_FILE") || die "GET $CHECK_FILE from restored $name failed"
    got=$(sha256sum "$WORK/check.bin" | cut -d' ' -f1)
    rm -f "$WORK/check.bin"
    [[ $size == $(stat -c %s "$WORK/big/$CHECK_FILE") && $got == "$CHECK_SHA" ]] \
      || die "restored $name serves $CHECK_FILE with $size bytes, sha256 $got (want $CHECK_SHA)"
    # write s, archive s, restore ms, snapshot bytes, snapshot entries, dormant's last_wake_ms
    echo "$write_s $seconds $ms $(jq -r '"\(.snapshot.bytes) \(.snapshot.files)"' "$WORK/archive.json")" \
      "$(api net GET "/v1/containers/$name" | jq -r .last_wake_ms)" >>"$WORK/big-runs.txt"
    api net DELETE "/v1/containers/$name" >/dev/null
    read -r write_s seconds ms mb _ < <(tail -1 "$WORK/big-runs.txt")
    say "  run $i: write ${write_s} s, archive ${seconds} s ($(calc "$BIG_BYTES / 1048576 / $seconds" 0) MB/s)," \
      "restore ${ms} ms ($(calc "$BIG_BYTES / 1048576 / ($ms / 1000)" 0) MB/s), snapshot $(calc "$mb / 1048576" 1) MB; $CHECK_FILE intact"
  done
  # Medians over the runs (nearest rank).
  R[big_write_s]=$(awk '{ print $1 }' "$WORK/big-runs.txt" | percentiles 50)
  R[big_archive_s]=$(awk '{ print $2 }' "$WORK/big-runs.txt" | percentiles 50)
  R[big_archive_max_s]=$(awk '{ print $2 }' "$WORK/big-runs.txt" | percentiles 100)
  R[big_restore_ms]=$(awk '{ print $3 }' "$WORK/big-runs.txt" | percentiles 50)
  R[big_restore_max_ms]=$(awk '{ print $3 }' "$WORK/big-runs.txt" | percentiles 100)
  R[big_restore_self_ms]=$(awk '{ print $6 }' "$WORK/big-runs.txt" | percentiles 50)
  R[big_snapshot_bytes]=$(awk '{ print $4 }' "$WORK/big-runs.txt" | percentiles 50)
  R[big_snapshot_files]=$(awk '{ print $5 }' "$WORK/big-runs.txt" | percentiles 50)
  R[big_snapshot_mb]=$(calc "${R[big_snapshot_bytes]} / 1048576" 1)
  R[big_ratio]=$(calc "$BIG_BYTES / ${R[big_snapshot_bytes]}")
  R[big_archive_mbps]=$(calc "$BIG_BYTES / 1048576 / ${R[big_archive_s]}" 0)
  R[big_restore_mbps]=$(calc "$BIG_BYTES / 1048576 / (${R[big_restore_ms]} / 1000)" 0)
  R[big_write_mbps]=$(calc "$BIG_BYTES / 1048576 / ${R[big_write_s]}" 0)
  # The data's own share: the time beyond an empty diff's restore.
  R[big_restore_extra_ms]=$(calc "${R[big_restore_ms]} - ${R[restore_p50]}" 0)
  if awk "BEGIN { exit !(${R[big_restore_extra_ms]} > 0) }"; then
    R[big_restore_data_mbps]=$(calc "$BIG_BYTES / 1048576 / (${R[big_restore_extra_ms]} / 1000)" 0)
  else
    R[big_restore_data_mbps]="n/a"
  fi
  rm -rf "$WORK/big"
}

# --- d. herd -------------------------------------------------------------------

bench_herd() {
  say "d. herd: $HERD concurrent requests to one asleep container (network mode)"
  create net "$HERD_NAME"
  sleep_container net "$HERD_NAME"
  sleep 0.5
  local since json
  since=$(date +%s.%N)
  json=$(py herd "${PROXY[net]}" "$HERD_NAME.localhost" "$HERD")
  sleep 1
  R[herd_starts]=$(timeout 30 docker events --since "$since" --until "$(date +%s.%N)" \
    --filter "container=dormant-$HERD_NAME" --filter event=start --format '{{.ID}}' | wc -l)
  R[herd_ok]=$(jq -r .ok <<<"$json")
  R[herd_errors]=$(jq -r .errors <<<"$json")
  R[herd_p50]=$(jq -r .p50 <<<"$json")
  R[herd_p99]=$(jq -r .p99 <<<"$json")
  R[herd_max]=$(jq -r .max <<<"$json")
  R[herd_connect_ms]=$(jq -r .connect_ms <<<"$json")
  R[herd_first]=$(jq -r .min <<<"$json")
  say "  starts ${R[herd_starts]}, ok ${R[herd_ok]}, errors ${R[herd_errors]}, p50 ${R[herd_p50]} ms, p99 ${R[herd_p99]} ms"
  ((R[herd_errors] == 0)) || say "  first errors: $(jq -c .first_errors <<<"$json")"
  # Against one wake of the same container, just before (its p50 over 3).
  local i
  for i in 1 2 3; do
    sleep_container net "$HERD_NAME"
    sleep 0.3
    py get "${PROXY[net]}" "$HERD_NAME.localhost" | jq -r .ms
  done >"$WORK/herd-single.txt"
  read -r "R[herd_single]" < <(percentiles 50 <"$WORK/herd-single.txt")
  R[herd_ratio_p50]=$(calc "${R[herd_p50]} / ${R[herd_single]}")
  R[herd_ratio_p99]=$(calc "${R[herd_p99]} / ${R[herd_single]}")
  R[herd_spread]=$(calc "${R[herd_p99]} / ${R[herd_first]}")
  say "  one wake ${R[herd_single]} ms: herd p50 x${R[herd_ratio_p50]}, p99 x${R[herd_ratio_p99]}; herd p99 / first answer x${R[herd_spread]}"
  # The same herd on the running container: through dormant, and direct.
  local ip target
  ip=$(container_ip "dormant-$HERD_NAME")
  for target in through direct; do
    if [[ $target == through ]]; then
      json=$(py herd "${PROXY[net]}" "$HERD_NAME.localhost" "$HERD")
    else
      json=$(py herd "$ip:8080" "$HERD_NAME.localhost" "$HERD")
    fi
    R[herd_running_${target}_p50]=$(jq -r .p50 <<<"$json")
    R[herd_running_${target}_p99]=$(jq -r .p99 <<<"$json")
    R[herd_running_${target}_errors]=$(jq -r .errors <<<"$json")
  done
  say "  running: through dormant p50 ${R[herd_running_through_p50]} / p99 ${R[herd_running_through_p99]} ms, direct p50 ${R[herd_running_direct_p50]} / p99 ${R[herd_running_direct_p99]} ms"
}

# --- e. density ----------------------------------------------------------------

post_each() { # MODE METHOD SUFFIX: the request for every name on stdin, $PARALLEL at a time; prints failures
  xargs -P "$PARALLEL" -I{} curl -sS -o /dev/null -w '%{http_code} {}\n' --max-time 120 -X "$2" \
    -H "Authorization: Bearer $TOKEN" "http://${API[$1]}/v1/containers/{}$3" | awk '$1 !~ /^2/' || true
}

bench_density() {
  local per=$DENSITY_BATCH batches=$((DENSITY / DENSITY_BATCH)) b t0 t1 failed asleep create_s=0 sleep_s=0
  say "e. density: $DENSITY containers in $batches batches of $per, each batch put to sleep before the next (network mode)"
  : >"$WORK/density-names.txt"
  t0=$(date +%s.%N)
  for b in $(seq 1 "$batches"); do
    t1=$(date +%s.%N)
    create net "$RUN-d$b" "$per"
    create_s=$(calc "$create_s + $(date +%s.%N) - $t1")
    seq 1 "$per" | sed "s/^/$RUN-d$b-/" | tee -a "$WORK/density-names.txt" >"$WORK/batch.txt"
    t1=$(date +%s.%N)
    failed=$(post_each net POST /sleep <"$WORK/batch.txt")
    [[ -z $failed ]] || die "sleep failed: $(head -3 <<<"$failed")"
    sleep_s=$(calc "$sleep_s + $(date +%s.%N) - $t1")
    say "  batch $b/$batches created and asleep"
  done
  R[density_all_s]=$(calc "$(date +%s.%N) - $t0" 0)
  R[density_create_s]=$(calc "$create_s" 0)
  R[density_sleep_s]=$(calc "$sleep_s" 0)
  for _ in $(seq 1 60); do
    asleep=$(api net GET /v1/containers | jq '[.containers[] | select(.state == "asleep")] | length')
    ((asleep >= DENSITY)) && break
    sleep 1
  done
  ((asleep >= DENSITY)) || die "only $asleep of $DENSITY containers are asleep"
  sleep 2
  R[rss_loaded_kb]=$(rss_kb net)
  R[rss_per_container_b]=$(calc "(${R[rss_loaded_kb]} - ${R[rss_idle_kb]}) * 1024 / $DENSITY" 0)
  R[rss_per_1000_mb]=$(calc "${R[rss_per_container_b]} * 1000 / 1048576" 1)

  local times=() i
  for i in 1 2 3; do
    times+=("$(api net GET /v1/containers -o "$WORK/list.json" -w '%{time_total}')")
  done
  R[list_ms]=$(printf '%s\n' "${times[@]}" | percentiles 50 | awk '{ printf "%.1f", $1 * 1000 }')
  R[list_bytes]=$(stat -c %s "$WORK/list.json")

  # The floor for waking several at once: as many stopped reference containers on
  # the same network, all started at once. Made (and stopped) before, so it costs
  # dormant nothing.
  local hosts json refs=() pairs=()
  for i in $(seq 1 "$DENSITY_WAKE"); do
    reference_container "$RUN-many-$i"
    refs+=("$RUN-many-$i")
    pairs+=("$RUN-many-$i:ip:8080")
  done
  docker stop -t 10 "${refs[@]}" >/dev/null
  sleep 1

  hosts=$(shuf -n "$DENSITY_WAKE" "$WORK/density-names.txt" | sed 's/$/.localhost/' | paste -sd,)
  json=$(py herd "${PROXY[net]}" "$hosts" "$DENSITY_WAKE")
  R[dwake_wall]=$(jq -r .wall_ms <<<"$json")
  R[dwake_p50]=$(jq -r .p50 <<<"$json")
  R[dwake_max]=$(jq -r .max <<<"$json")
  R[dwake_errors]=$(jq -r .errors <<<"$json")
  sleep 1
  json=$(py floor "$(IFS=,; echo "${pairs[*]}")")
  R[dfloor_wall]=$(jq -r .ms <<<"$json")
  R[dfloor_p50]=$(jq -r .p50 <<<"$json")
  R[dfloor_max]=$(jq -r .max <<<"$json")
  docker rm -f "${refs[@]}" >/dev/null
  say "  RSS ${R[rss_loaded_kb]} kB (idle ${R[rss_idle_kb]} kB): ${R[rss_per_container_b]} B per container;" \
    "list ${R[list_ms]} ms; $DENSITY_WAKE wakes at once: ${R[dwake_wall]} ms (floor ${R[dfloor_wall]} ms), errors ${R[dwake_errors]}"

  t0=$(date +%s.%N)
  failed=$(post_each net DELETE "" <"$WORK/density-names.txt")
  [[ -z $failed ]] || say "  some deletes failed: $(head -3 <<<"$failed")"
  R[density_delete_s]=$(calc "$(date +%s.%N) - $t0" 0)
  sleep 1
  R[rss_after_delete_kb]=$(rss_kb net)
}

# --- f. memory per running container -------------------------------------------

bench_memory() { # MODE
  local mode=$1 names=() rss0 rss1 before after i failed
  say "f. memory: $RUNNING running containers ($mode mode)"
  # One container made and deleted first, so that dormant's first-use allocations
  # (Docker client, store) are not counted as the running containers' cost.
  create "$mode" "$RUN-w$mode"
  api "$mode" DELETE "/v1/containers/$RUN-w$mode" >/dev/null
  sleep 1
  before=$(py helpers)
  rss0=$(rss_kb "$mode")
  create "$mode" "$RUN-m$mode" "$RUNNING"
  for i in $(seq 1 "$RUNNING"); do names+=("dormant-$RUN-m$mode-$i"); done
  sleep 2
  rss1=$(rss_kb "$mode")
  after=$(py helpers "${names[@]}")
  ((${#names[@]} == $(jq -r .containers <<<"$after"))) || die "found $(jq -r .containers <<<"$after") of $RUNNING containers"
  R[mem_${mode}_dormant_kb]=$((rss1 - rss0))
  R[mem_${mode}_proxy_kb]=$(jq -r .docker_proxy.kb <<<"$after")
  R[mem_${mode}_proxies]=$(jq -r .docker_proxy.n <<<"$after")
  R[mem_${mode}_all_before]=$(jq -r .all_docker_proxy.n <<<"$before")
  R[mem_${mode}_all_after]=$(jq -r .all_docker_proxy.n <<<"$after")
  R[mem_${mode}_all_before_kb]=$(jq -r .all_docker_proxy.kb <<<"$before")
  R[mem_${mode}_all_after_kb]=$(jq -r .all_docker_proxy.kb <<<"$after")
  R[mem_${mode}_shim_kb]=$(jq -r .shim.kb <<<"$after")
  R[mem_${mode}_fuse_kb]=$(jq -r .fuse_overlayfs.kb <<<"$after")
  R[mem_${mode}_fuse_n]=$(jq -r .fuse_overlayfs.n <<<"$after")
  # Per running container: dormant's growth plus this mode's own helper, docker-proxy.
  R[mem_${mode}_per_b]=$(calc "(${R[mem_${mode}_dormant_kb]} + ${R[mem_${mode}_proxy_kb]}) * 1024 / $RUNNING" 0)
  R[mem_${mode}_dormant_per_b]=$(calc "${R[mem_${mode}_dormant_kb]} * 1024 / $RUNNING" 0)
  R[mem_${mode}_proxy_per_b]=$(calc "${R[mem_${mode}_proxy_kb]} * 1024 / $RUNNING" 0)
  # ... and with the helpers every container has in either mode.
  R[mem_${mode}_shim_per_b]=$(calc "${R[mem_${mode}_shim_kb]} * 1024 / $RUNNING" 0)
  R[mem_${mode}_fuse_per_b]=$(calc "${R[mem_${mode}_fuse_kb]} * 1024 / $RUNNING" 0)
  R[mem_${mode}_all_per_b]=$(calc "(${R[mem_${mode}_dormant_kb]} + ${R[mem_${mode}_proxy_kb]} + ${R[mem_${mode}_shim_kb]} + ${R[mem_${mode}_fuse_kb]}) * 1024 / $RUNNING" 0)
  say "  dormant +${R[mem_${mode}_dormant_kb]} kB, ${R[mem_${mode}_proxies]} docker-proxy (${R[mem_${mode}_proxy_kb]} kB):" \
    "$(calc "${R[mem_${mode}_per_b]} / 1024" 0) kB per container; with shims and fuse-overlayfs $(calc "${R[mem_${mode}_all_per_b]} / 1024" 0) kB;" \
    "docker-proxy processes on the host ${R[mem_${mode}_all_before]} -> ${R[mem_${mode}_all_after]}"
  failed=$(seq 1 "$RUNNING" | sed "s/^/$RUN-m$mode-/" | post_each "$mode" DELETE "")
  [[ -z $failed ]] || say "  some deletes failed: $(head -3 <<<"$failed")"
}

# --- report --------------------------------------------------------------------

judge() { # ACTUAL OP TARGET UNIT: "met" or "missed by ..."
  local actual=$1 op=$2 target=$3
  if awk "BEGIN { exit !($actual $op $target) }"; then echo "met"
  else echo "missed by $(calc "($actual > $target ? $actual / $target - 1 : 1 - $actual / $target) * 100" 1)%"; fi
}

kib() { calc "$1 / 1024" "${2:-0}"; } # BYTES -> kB (of 1024 B, as /proc counts them)

write_results() {
  local docker_version cpu mem commit scale="" driver
  docker_version=$(docker version --format '{{.Server.Version}}')
  driver=$(docker info --format '{{.Driver}}')
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
  git -C "$ROOT" diff --quiet HEAD -- crates 2>/dev/null || commit+=" (with uncommitted changes in crates/)"
  ((DENSITY == 1000)) || scale=" (extrapolated from $DENSITY, which overstates it: fixed costs dominate)"
  local herd_ok=met
  ((R[herd_starts] == 1 && R[herd_errors] == 0)) \
    || herd_ok="missed: ${R[herd_starts]} starts, ${R[herd_errors]} errors"

  cat >"$RESULTS" <<MD
# dormant benchmark results$( ((QUICK)) && echo " (quick run: short and small, for CI; the numbers are indicative only)")

- Date: $(date -u '+%Y-%m-%d %H:%M UTC')
- Command: \`$COMMAND\` (took $(($(date +%s) - T_START)) s, of which ${R[build_s]} s building)
- Machine: $(nproc) cores ($cpu), $mem, Linux $(uname -r), Docker $docker_version (storage driver $driver)
- dormant: commit $commit, release build; workload: \`$IMAGE\` (\`dormant demo-image\`), containers' memory limit $MEMORY
- dormant's log (\`DORMANT_LOG=warn\`): ${R[log_lines_net]} line(s) from the network-mode one, ${R[log_lines_pub]} from the published-mode one

Everything ran on loopback on this one machine, load generator included. Two dormants
ran side by side, one per upstream mode: **network** (\`--upstream network\`, the default
on a local daemon: the proxy connects to the container's address on a Docker bridge
network, no published port) and **published** (\`--upstream published\`: the container's
port is published on 127.0.0.1, so Docker runs a \`docker-proxy\` process for it). The
headline figures — herd, density, restore and the targets without a mode — are network mode's.

## Targets

| target | result | verdict |
| --- | --- | --- |
| proxy throughput ≥ nginx's, network mode | ${R[dormant_net_rps]} vs ${R[nginx_net_rps]} req/s (×${R[rps_vs_nginx_net]}) | $(judge "${R[dormant_net_rps]}" '>=' "${R[nginx_net_rps]}") |
| proxy p99 no worse than nginx's, network mode | ${R[dormant_net_p99]} vs ${R[nginx_net_p99]} ms | $(judge "${R[dormant_net_p99]}" '<=' "${R[nginx_net_p99]}") |
| proxy throughput ≥ nginx's, published mode | ${R[dormant_pub_rps]} vs ${R[nginx_pub_rps]} req/s (×${R[rps_vs_nginx_pub]}) | $(judge "${R[dormant_pub_rps]}" '>=' "${R[nginx_pub_rps]}") |
| proxy p99 no worse than nginx's, published mode | ${R[dormant_pub_p99]} vs ${R[nginx_pub_p99]} ms | $(judge "${R[dormant_pub_p99]}" '<=' "${R[nginx_pub_p99]}") |
| wake overhead over the floor < 10% (p50), network mode | ${R[wake_net_p50]} vs ${R[floor_net_p50]} ms (${R[wake_overhead_net_pct]}%) | $(judge "${R[wake_net_p50]}" '<' "$(calc "${R[floor_net_p50]} * 1.1" 3)") |
| napping → first response p50 ≤ 30 ms, network mode | ${R[nap_p50]} ms (floor: unpause + first response ${R[nap_floor_p50]} ms) | $(judge "${R[nap_p50]}" '<=' 30) |
| wake overhead over the floor < 10% (p50), published mode | ${R[wake_pub_p50]} vs ${R[floor_pub_p50]} ms (${R[wake_overhead_pub_pct]}%) | $(judge "${R[wake_pub_p50]}" '<' "$(calc "${R[floor_pub_p50]} * 1.1" 3)") |
| restore of an empty diff vs docker create+start (p50) | ${R[restore_p50]} vs ${R[cold_p50]} ms (${R[restore_overhead_pct]}%) | informational |
| empty-diff restore with 1 GB of unrelated dirty data within 10% of without (p50) | ${R[restore_dirty_p50]} vs ${R[restore_p50]} ms (×${R[restore_dirty_ratio]}) | $(judge "${R[restore_dirty_p50]}" '<=' "$(calc "${R[restore_p50]} * 1.1" 3)") |
| ${R[big_mb]} MB diff restore ≥ 200 MB/s | ${R[big_restore_mbps]} MB/s | $(judge "${R[big_restore_mbps]}" '>=' 200) |
| memory per running container, dormant + docker-proxy | network $(kib "${R[mem_net_per_b]}" 1) kB, published $(kib "${R[mem_pub_per_b]}" 1) kB | informational |
| 1,000 registered containers cost < 50 MB RSS | ${R[rss_per_1000_mb]} MB per 1,000$scale | $(judge "${R[rss_per_1000_mb]}" '<' 50) |
| a herd of $HERD: one start, no errors | ${R[herd_starts]} start(s), ${R[herd_errors]} errors | $herd_ok |

## a. Proxy

\`wrk -t2 -c64 -d${WRK_SECONDS}s --latency\`, \`GET /\` of the demo app (after a ${WARMUP_SECONDS} s warm-up).
Two running containers: one made by the network-mode dormant, reached at its address on
the Docker network (port 8080) by all three "network" paths; one made by the
published-mode dormant, reached at its published loopback port (through \`docker-proxy\`)
by all three "published" paths. nginx: \`worker_processes auto\`, HTTP/1.1 keepalive
upstream pool, \`access_log off\`, one server block per path. Network mode's nginx and
dormant rows are medians of $PROXY_ROUNDS alternating rounds (req/s / p99 ms per round: nginx
${R[nginx_net_rounds]}; dormant ${R[dormant_net_rounds]}).

| path | req/s | p50 ms | p99 ms | errors |
| --- | ---: | ---: | ---: | ---: |
| direct → container address | ${R[direct_net_rps]} | ${R[direct_net_p50]} | ${R[direct_net_p99]} | ${R[direct_net_errors]} |
| nginx → container address | ${R[nginx_net_rps]} | ${R[nginx_net_p50]} | ${R[nginx_net_p99]} | ${R[nginx_net_errors]} |
| dormant, network mode | ${R[dormant_net_rps]} | ${R[dormant_net_p50]} | ${R[dormant_net_p99]} | ${R[dormant_net_errors]} |
| direct → published port (docker-proxy) | ${R[direct_pub_rps]} | ${R[direct_pub_p50]} | ${R[direct_pub_p99]} | ${R[direct_pub_errors]} |
| nginx → published port | ${R[nginx_pub_rps]} | ${R[nginx_pub_p50]} | ${R[nginx_pub_p99]} | ${R[nginx_pub_errors]} |
| dormant, published mode | ${R[dormant_pub_rps]} | ${R[dormant_pub_p50]} | ${R[dormant_pub_p99]} | ${R[dormant_pub_errors]} |

| ratio (same path to the container) | req/s | p99 |
| --- | ---: | ---: |
| dormant / nginx, network mode | ${R[rps_vs_nginx_net]} | ${R[p99_vs_nginx_net]} |
| dormant / direct, network mode | ${R[rps_vs_direct_net]} | ${R[p99_vs_direct_net]} |
| dormant / nginx, published mode | ${R[rps_vs_nginx_pub]} | ${R[p99_vs_nginx_pub]} |
| dormant / direct, published mode | ${R[rps_vs_direct_pub]} | ${R[p99_vs_direct_pub]} |
| dormant network mode / dormant published mode | ${R[rps_net_vs_pub]} | |

WebSocket echo on \`/ws\`: $WS_ROUND_TRIPS sequential round trips of a 19-byte text
message on one connection (\`bench/load.py ws\`).

| path | p50 ms | p99 ms |
| --- | ---: | ---: |
| direct → container address | ${R[ws_direct_net_p50]} | ${R[ws_direct_net_p99]} |
| dormant, network mode | ${R[ws_dormant_net_p50]} | ${R[ws_dormant_net_p99]} |
| direct → published port | ${R[ws_direct_pub_p50]} | ${R[ws_direct_pub_p99]} |
| dormant, published mode | ${R[ws_dormant_pub_p50]} | ${R[ws_dormant_pub_p99]} |

## b. Wake

$WAKE_RUNS runs each, the four alternating. dormant: \`POST /v1/containers/<name>/sleep\`,
then one \`GET /\` through the proxy, timed from connect to the end of the response.
Floor: a reference container (same image, memory limit, pids limit and security
options) is stopped with \`docker stop\`, then timed from the Engine API's start call
(what \`docker start\` sends, without the CLI's own start-up) until the first \`200\`,
polling every 2 ms (\`bench/load.py floor\`). Network mode's reference container is on
the same Docker network and is polled at its address, looked up (inspect) after the
start as dormant must; published mode's has a fixed published loopback port.

| | network p50 ms | network p95 ms | published p50 ms | published p95 ms |
| --- | ---: | ---: | ---: | ---: |
| dormant: asleep → first response | ${R[wake_net_p50]} | ${R[wake_net_p95]} | ${R[wake_pub_p50]} | ${R[wake_pub_p95]} |
| floor: start → first response | ${R[floor_net_p50]} | ${R[floor_net_p95]} | ${R[floor_pub_p50]} | ${R[floor_pub_p95]} |
| ratio dormant / floor | ${R[wake_ratio_net_p50]} | ${R[wake_ratio_net_p95]} | ${R[wake_ratio_pub_p50]} | ${R[wake_ratio_pub_p95]} |
| dormant's own \`last_wake_ms\` | ${R[wake_self_net_p50]} | ${R[wake_self_net_p95]} | ${R[wake_self_pub_p50]} | ${R[wake_self_pub_p95]} |

## b2. Nap

Network mode, $NAP_RUNS runs each, alternating. dormant: \`POST /v1/containers/<name>/nap\`
(Docker pauses it), 300 ms, then one \`GET /\` through the proxy, timed from connect to the
end of the response: dormant's single unpause, then the request forwarded. Floor: a
reference container on the same network is paused through the Engine API, then timed
from its unpause call until one \`GET /\` straight to its address has answered
(\`bench/load.py unpause\`). dormant counted ${R[nap_unpauses]} unpauses.

| | p50 ms | p99 ms |
| --- | ---: | ---: |
| dormant: napping → first response | ${R[nap_p50]} | ${R[nap_p99]} |
| floor: unpause → first response | ${R[nap_floor_p50]} | ${R[nap_floor_p99]} |
| of which Docker's unpause call | ${R[nap_unpause_p50]} | ${R[nap_unpause_p99]} |
| ratio dormant / floor | ${R[nap_ratio_p50]} | ${R[nap_ratio_p99]} |

## c. Restore from archive

Network mode. **Empty diff**, $RESTORE_RUNS runs, alternating: a freshly created container is
archived (\`POST /v1/containers/<name>/archive\`: a snapshot of ${R[empty_snapshot_bytes]} bytes,
entries: ${R[empty_snapshot_files]}), then one \`GET /\` through the proxy restores it (a new
container, the snapshot written into it, started, ready), timed from connect to the end
of the response. Floor: \`docker create\` + \`docker start\` of the same image and settings
(memory limit without swap, pids limit, \`no-new-privileges\`, the same network) through
the Engine API, then an inspect for its address and \`GET /\` every 2 ms until the first
\`200\` (\`bench/load.py cold\`). The host's dirty pages are flushed (\`sync\`) before every
timed archive, restore and floor. **With 1 GB dirty**: each run also restores a second
fresh container right after \`dd\` wrote 1 GB (not synced) to a file on the filesystem
holding Docker's data, deleted after; a restore makes only its own files durable, after
the response, so it should not wait for those pages. "Snapshot dropped" is when the API
shows the snapshot gone, from the end of the response: the restore's flush, off its path.

| | p50 ms | max ms |
| --- | ---: | ---: |
| dormant: archived → first response | ${R[restore_p50]} | ${R[restore_max]} |
| … with 1 GB of unrelated dirty data | ${R[restore_dirty_p50]} | ${R[restore_dirty_max]} |
| … then its snapshot dropped (after the flush), from the response | ${R[flush_dirty_p50]} | ${R[flush_dirty_max]} |
| floor: create + start → first response | ${R[cold_p50]} | ${R[cold_max]} |
| … of which the create call (p50) | ${R[cold_create_p50]} | |
| ratio dormant / floor | ${R[restore_ratio_p50]} | |
| dormant's own \`last_wake_ms\` | ${R[restore_self_p50]} | ${R[restore_self_max]} |

**A ${R[big_mb]} MB diff**, $RESTORE_RUNS runs: a fresh container is given $BIG_FILES files of $BIG_FILE_MB MB
(\`PUT /files/data/bench/...\` through the proxy; 3 in 4 random bytes, 1 in 4 log-like
text), put to sleep, then archived (timed: the \`POST .../archive\` call) and restored by
one \`GET /\` through the proxy (timed as above). Each restored container then served
\`$CHECK_FILE\` whole (size and SHA-256 checked). Medians of the runs; MB/s is the diff's
size over the time.

| figure | value |
| --- | ---: |
| diff written (${R[big_mb]} MB through the proxy) | ${R[big_write_s]} s (${R[big_write_mbps]} MB/s) |
| archive (container asleep → archived), median / max | ${R[big_archive_s]} s / ${R[big_archive_max_s]} s |
| archive throughput | ${R[big_archive_mbps]} MB/s |
| snapshot | ${R[big_snapshot_mb]} MB, ${R[big_snapshot_files]} entries |
| compression ratio (diff / snapshot) | ${R[big_ratio]} |
| restore (archived → first response), median / max | ${R[big_restore_ms]} ms / ${R[big_restore_max_ms]} ms |
| restore throughput | ${R[big_restore_mbps]} MB/s |
| … counting only the time beyond an empty diff's restore (${R[big_restore_extra_ms]} ms) | ${R[big_restore_data_mbps]} MB/s |
| dormant's own \`last_wake_ms\` (median) | ${R[big_restore_self_ms]} ms |

## d. Herd

Network mode. $HERD requests to one asleep container, all connections opened first
(${R[herd_connect_ms]} ms), then every request written at once (\`bench/load.py herd\`).
Starts counted with \`docker events --filter event=start\` over the run.

| Docker starts | ok | errors | first answer ms | p50 ms | p99 ms | max ms |
| ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| ${R[herd_starts]} | ${R[herd_ok]} | ${R[herd_errors]} | ${R[herd_first]} | ${R[herd_p50]} | ${R[herd_p99]} | ${R[herd_max]} |

Against one wake of the same container (p50 of 3, right after): ${R[herd_single]} ms.

| figure | value | target |
| --- | ---: | --- |
| herd p50 / one wake | ${R[herd_ratio_p50]} | ≤ 1.1: $(judge "${R[herd_ratio_p50]}" '<=' 1.1) |
| herd p99 / one wake | ${R[herd_ratio_p99]} | ≤ 1.3: $(judge "${R[herd_ratio_p99]}" '<=' 1.3) |
| herd p99 / its first answer | ${R[herd_spread]} | ≤ 1.3: $(judge "${R[herd_spread]}" '<=' 1.3) |

The same herd once the container runs, through dormant and direct to its address:

| target | p50 ms | p99 ms | errors |
| --- | ---: | ---: | ---: |
| through dormant | ${R[herd_running_through_p50]} | ${R[herd_running_through_p99]} | ${R[herd_running_through_errors]} |
| direct | ${R[herd_running_direct_p50]} | ${R[herd_running_direct_p99]} | ${R[herd_running_direct_errors]} |

## e. Density

Network mode. $DENSITY containers created $DENSITY_BATCH per request (\`count: $DENSITY_BATCH\`), each batch
put to sleep (\`POST .../sleep\`, $PARALLEL at a time) before the next. The floor's
reference containers are on the same network and polled at their addresses.

| figure | value |
| --- | ---: |
| dormant RSS, idle with 0 containers | ${R[rss_idle_kb]} kB |
| dormant RSS with $DENSITY asleep | ${R[rss_loaded_kb]} kB |
| RSS per registered container | ${R[rss_per_container_b]} B |
| RSS per 1,000 containers$scale | ${R[rss_per_1000_mb]} MB |
| \`GET /v1/containers\` ($DENSITY containers, ${R[list_bytes]} B; median of 3) | ${R[list_ms]} ms |
| $DENSITY_WAKE random ones woken at once (GET / each): all answered after | ${R[dwake_wall]} ms |
| … per request p50 / max | ${R[dwake_p50]} / ${R[dwake_max]} ms |
| … errors | ${R[dwake_errors]} |
| floor: $DENSITY_WAKE stopped reference containers started at once: all answered after | ${R[dfloor_wall]} ms |
| … per container p50 / max | ${R[dfloor_p50]} / ${R[dfloor_max]} ms |
| create all $DENSITY ($DENSITY_BATCH per request) / sleep them ($PARALLEL at a time) | ${R[density_create_s]} s / ${R[density_sleep_s]} s |
| create + sleep all $DENSITY, in all | ${R[density_all_s]} s |
| delete all $DENSITY ($PARALLEL at a time) | ${R[density_delete_s]} s |
| dormant RSS after deleting them | ${R[rss_after_delete_kb]} kB |

## f. Memory per running container

$RUNNING running containers per mode (\`count: $RUNNING\`, one mode at a time). dormant's RSS
(VmRSS) before and 2 s after creating them, and the RSS of the helper processes Docker
runs for them, read from \`/proc\` (\`bench/load.py helpers\`): \`docker-proxy\` (the one per
published port; found by its \`-host-port\`), \`containerd-shim\` (by container id) and,
with the \`fuse-overlayfs\` storage driver, \`fuse-overlayfs\` (by upper directory). The
last two run for every container in either mode.

| | network mode | published mode |
| --- | ---: | ---: |
| dormant's RSS growth | ${R[mem_net_dormant_kb]} kB | ${R[mem_pub_dormant_kb]} kB |
| their \`docker-proxy\` processes | ${R[mem_net_proxies]} (${R[mem_net_proxy_kb]} kB) | ${R[mem_pub_proxies]} (${R[mem_pub_proxy_kb]} kB) |
| **per running container: dormant + docker-proxy** | **$(kib "${R[mem_net_per_b]}" 1) kB** | **$(kib "${R[mem_pub_per_b]}" 1) kB** |
| … of which dormant / docker-proxy | $(kib "${R[mem_net_dormant_per_b]}" 1) / $(kib "${R[mem_net_proxy_per_b]}" 1) kB | $(kib "${R[mem_pub_dormant_per_b]}" 1) / $(kib "${R[mem_pub_proxy_per_b]}" 1) kB |
| containerd-shim per container | $(kib "${R[mem_net_shim_per_b]}") kB | $(kib "${R[mem_pub_shim_per_b]}") kB |
| fuse-overlayfs per container (${R[mem_net_fuse_n]} / ${R[mem_pub_fuse_n]} processes) | $(kib "${R[mem_net_fuse_per_b]}") kB | $(kib "${R[mem_pub_fuse_per_b]}") kB |
| per running container, with all of Docker's helpers | $(kib "${R[mem_net_all_per_b]}") kB | $(kib "${R[mem_pub_all_per_b]}") kB |
| \`docker-proxy\` processes on the host, before → after | ${R[mem_net_all_before]} → ${R[mem_net_all_after]} | ${R[mem_pub_all_before]} → ${R[mem_pub_all_after]} |
| RSS of all \`docker-proxy\` processes, before → after | ${R[mem_net_all_before_kb]} → ${R[mem_net_all_after_kb]} kB | ${R[mem_pub_all_before_kb]} → ${R[mem_pub_all_after_kb]} kB |
MD
  say "wrote ${RESULTS#"$ROOT"/}"
}

log_summary() { # what the dormants logged (they log warnings and errors only)
  local mode n
  for mode in net pub; do
    # Its one line on stdout at start-up aside.
    grep -v '^dormant listening: ' "$WORK/dormant-$mode.log" | grep . >"$WORK/log-$mode.txt" || true
    n=$(wc -l <"$WORK/log-$mode.txt")
    R[log_lines_$mode]=$n
    ((n == 0)) && continue
    say "the $mode-mode dormant logged $n warning/error line(s); the first ones:"
    head -5 "$WORK/log-$mode.txt" | cut -c1-300 >&2
  done
}

# --- main ----------------------------------------------------------------------

main() {
  ensure_tools
  if ! docker info >/dev/null 2>&1; then die "no Docker daemon answers (is dockerd running?)"; fi
  check_ports_free
  WORK=$(mktemp -d /tmp/dormant-bench.XXXXXX)
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  # A herd opens a connection per request in the client and in dormant.
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
  (($(ulimit -n) >= 4 * HERD)) || die "ulimit -n is $(ulimit -n); the herd needs $((4 * HERD))"
  build
  R[build_s]=$(($(date +%s) - T_START))
  if [[ -n $ONLY ]]; then
    start_dormant net
    # The proxy and wake sections compare both upstream modes.
    if [[ $ONLY == proxy || $ONLY == wake ]]; then start_dormant pub; fi
    sleep 1
    "bench_$ONLY"
    if [[ $ONLY == nap ]]; then print_nap; fi
    say "$ONLY figures (nothing written to a results file):"
    for key in "${!R[@]}"; do echo "  $key = ${R[$key]}"; done | sort
    return 0
  fi
  start_dormant net
  start_dormant pub
  sleep 1
  R[rss_idle_kb]=$(rss_kb net)
  # Density first, so dormant's RSS figures are not coloured by the load of the others.
  bench_density
  bench_memory net
  bench_memory pub
  bench_proxy
  bench_wake
  bench_nap
  bench_restore
  bench_herd
  log_summary
  write_results
}

# Only when run, not when sourced for its helpers (bench/proxy-ab.sh).
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then main; fi
