#!/usr/bin/env bash
# bench/run.sh — dormant's side-by-side benchmark, in one run on this host.
#
# Measures dormant against real peers and writes bench/RESULTS.md
# (bench/RESULTS-quick.md with --quick, so CI never overwrites real results):
#   proxy      wrk GET / direct to the container, through dormant, through nginx;
#              WebSocket echo round trips direct and through dormant
#   wake       asleep -> first response through dormant, against the floor:
#              start a stopped reference container and poll it until it answers
#   herd       many concurrent requests to one asleep container: one start, no errors
#   density    many registered, sleeping containers: dormant's RSS, list and wake times
#
# Usage: bench/run.sh [--quick]
# Needs: Docker, cargo; installs wrk, nginx, jq, curl from Debian's packages if missing.
# Everything runs on loopback (dormant 127.0.0.1:17070/17080, nginx 17081, reference
# containers 17090 and 17101..) and is torn down on exit, however the run ends.
# Takes about 2 minutes with --quick and 13 without, plus any build.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"
COMMAND="bench/run.sh${*:+ $*}"
QUICK=0
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

# --- parameters ----------------------------------------------------------------
if ((QUICK)); then
  WRK_SECONDS=3 WARMUP_SECONDS=1 WS_ROUND_TRIPS=500 WAKE_RUNS=5
  HERD=200 DENSITY=100 DENSITY_WAKE=10
  RESULTS="$BENCH/RESULTS-quick.md"
else
  WRK_SECONDS=10 WARMUP_SECONDS=2 WS_ROUND_TRIPS=2000 WAKE_RUNS=20
  HERD=1000 DENSITY=1000 DENSITY_WAKE=50
  RESULTS="$BENCH/RESULTS.md"
fi
BATCH=100                     # containers per create request (the API's maximum)
PARALLEL=8                    # concurrent API calls when sleeping/deleting many
API_ADDR=127.0.0.1:17070
PROXY_PORT=17080
NGINX_PORT=17081
REF_PORT=17090                # the reference container of the wake floor
REF_MANY_PORT=17100           # +1..+DENSITY_WAKE: those of the concurrent-wake floor
IMAGE=dormant-demo:latest
BIN="$ROOT/target/release/dormant"
TOKEN="bench-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
# Docker names are host-wide: our containers' names start with this run's own prefix.
RUN="b$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
WEB="$RUN-web" WAKE="$RUN-wake" HERD_NAME="$RUN-herd"

declare -A R=()               # every figure, by name, for the report
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
  for port in "${API_ADDR##*:}" "$PROXY_PORT" "$NGINX_PORT" "$REF_PORT" \
    $(seq $((REF_MANY_PORT + 1)) $((REF_MANY_PORT + DENSITY_WAKE))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      die "port $port on 127.0.0.1 is in use (another bench run?)"
    fi
  done
}

cleanup() {
  local status=$? node
  set +e
  trap - EXIT INT TERM
  say "cleaning up"
  if [[ -n ${NGINX_PID:-} ]]; then kill "$NGINX_PID" 2>/dev/null; wait "$NGINX_PID" 2>/dev/null; fi
  if [[ -n ${DORMANT_PID:-} ]]; then
    kill -TERM "$DORMANT_PID" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$DORMANT_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$DORMANT_PID" 2>/dev/null
    wait "$DORMANT_PID" 2>/dev/null
  fi
  if [[ -f ${WORK:-/nonexistent}/data/node-id ]]; then
    node=$(cat "$WORK/data/node-id")
    docker ps -aq --filter "label=dormant.node=$node" | xargs -r docker rm -f >/dev/null
    docker volume ls -q --filter "label=dormant.node=$node" | xargs -r docker volume rm >/dev/null
  fi
  docker ps -aq --filter label=dormant.bench=true | xargs -r docker rm -f >/dev/null
  if ((status != 0)) && [[ -f ${WORK:-}/dormant.log ]]; then
    say "last lines of dormant's log:"; tail -15 "$WORK/dormant.log" >&2
  fi
  [[ -n ${WORK:-} ]] && rm -rf "$WORK"
  say "done (exit $status)"
  exit "$status"
}

# --- dormant, its API, nginx ---------------------------------------------------------

api() { # METHOD PATH [curl args...]: JSON on stdout, fails on HTTP errors
  local method=$1 path=$2
  shift 2
  curl -sS --fail-with-body --max-time 300 -X "$method" \
    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    "http://$API_ADDR$path" "$@"
}

start_dormant() {
  say "starting dormant on $API_ADDR (proxy :$PROXY_PORT)"
  DORMANT_ADMIN_TOKEN="$TOKEN" DORMANT_LOG=warn "$BIN" serve \
    --data-dir "$WORK/data" --api-addr "$API_ADDR" --proxy-addr "127.0.0.1:$PROXY_PORT" \
    >"$WORK/dormant.log" 2>&1 &
  DORMANT_PID=$!
  for _ in $(seq 1 300); do
    curl -sf --max-time 1 "http://$API_ADDR/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$DORMANT_PID" 2>/dev/null || die "dormant exited at start-up"
    sleep 0.1
  done
  die "dormant did not answer /healthz within 30 s"
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$DORMANT_PID/status"; }

create() { # NAME [COUNT]: creates NAME (or NAME-1..NAME-COUNT), idle timeout 1 h
  local body="{\"image\":\"$IMAGE\",\"name\":\"$1\",\"idle_timeout\":\"1h\""
  [[ -n ${2:-} ]] && body+=",\"count\":$2"
  api POST /v1/containers -d "$body}" >/dev/null
}

state_of() { api GET "/v1/containers/$1" | jq -r .state; }

sleep_container() { # NAME: forces sleep, checks it took
  local state
  state=$(api POST "/v1/containers/$1/sleep" | jq -r .state)
  [[ $state == asleep ]] || die "$1 is $state after POST /sleep"
}

reference_container() { # NAME PORT MEMORY: runs an unmanaged twin of a dormant container
  # Same image and limits as dormant gives its containers, a fixed published port.
  docker run -d --name "$1" --label dormant.bench=true -p "127.0.0.1:$2:8080" \
    --memory "$3" --memory-swap "$3" --pids-limit 1024 --security-opt no-new-privileges \
    "$IMAGE" >/dev/null
}

published_port() { # DOCKER-NAME: the host port of its 8080/tcp
  docker port "$1" 8080/tcp | head -1 | sed 's/.*://'
}

start_nginx() { # UPSTREAM-PORT
  mkdir -p "$WORK/nginx"
  cat >"$WORK/nginx/nginx.conf" <<EOF
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
  upstream demo {
    server 127.0.0.1:$1;
    keepalive 128;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://demo;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
    }
  }
}
EOF
  nginx -t -q -e "$WORK/nginx/error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" \
    || die "nginx rejected its config"
  nginx -e "$WORK/nginx/error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
  NGINX_PID=$!
  for _ in $(seq 1 100); do
    curl -sf --max-time 1 "http://127.0.0.1:$NGINX_PORT/" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "nginx did not answer on :$NGINX_PORT"
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
  say "a. proxy: wrk -t2 -c64 -d${WRK_SECONDS}s GET / (direct, nginx, dormant)"
  create "$WEB"
  local port
  port=$(published_port "dormant-$WEB")
  start_nginx "$port"
  run_wrk direct "http://127.0.0.1:$port/"
  run_wrk nginx "http://127.0.0.1:$NGINX_PORT/"
  run_wrk dormant "http://127.0.0.1:$PROXY_PORT/" -H "Host: $WEB.localhost"
  R[rps_vs_nginx]=$(calc "${R[dormant_rps]} / ${R[nginx_rps]}")
  R[rps_vs_direct]=$(calc "${R[dormant_rps]} / ${R[direct_rps]}")
  R[p99_vs_nginx]=$(calc "${R[dormant_p99]} / ${R[nginx_p99]}")
  R[p99_vs_direct]=$(calc "${R[dormant_p99]} / ${R[direct_p99]}")

  say "a. WebSocket echo: $WS_ROUND_TRIPS sequential round trips (direct, dormant)"
  local label json
  for label in direct dormant; do
    if [[ $label == direct ]]; then json=$(py ws "$port" localhost "$WS_ROUND_TRIPS")
    else json=$(py ws "$PROXY_PORT" "$WEB.localhost" "$WS_ROUND_TRIPS"); fi
    R[ws_${label}_p50]=$(jq -r .p50 <<<"$json")
    R[ws_${label}_p99]=$(jq -r .p99 <<<"$json")
    say "  $label: p50 ${R[ws_${label}_p50]} ms, p99 ${R[ws_${label}_p99]} ms"
  done
}

# --- b. wake -------------------------------------------------------------------

percentiles() { # P...: nearest-rank percentiles of the numbers on stdin
  sort -n | awk -v ps="$*" '{ v[NR] = $1 } END {
    n = split(ps, p, " ")
    for (i = 1; i <= n; i++) { k = int(p[i] / 100 * NR + 0.999999); if (k < 1) k = 1; printf "%s%s", v[k], (i < n ? " " : "\n") } }'
}

bench_wake() {
  say "b. wake: $WAKE_RUNS runs each of dormant (sleep, GET through the proxy) and the floor (docker stop; start + poll)"
  create "$WAKE"
  local memory i json
  memory=$(api GET "/v1/containers/$WAKE" | jq -r .memory)
  reference_container "dormant-bench-ref-$$" "$REF_PORT" "$memory"
  for _ in $(seq 1 100); do curl -sf --max-time 1 "http://127.0.0.1:$REF_PORT/" >/dev/null && break; sleep 0.1; done
  : >"$WORK/wake.txt" && : >"$WORK/floor.txt" && : >"$WORK/wake-self.txt"
  for i in $(seq 1 "$WAKE_RUNS"); do
    # Alternate the two so that any drift in the machine's load hits both alike.
    sleep_container "$WAKE"
    sleep 0.3
    json=$(py get "$PROXY_PORT" "$WAKE.localhost")
    [[ $(jq -r .status <<<"$json") == 200 ]] || die "wake $i answered $json"
    jq -r .ms <<<"$json" >>"$WORK/wake.txt"
    api GET "/v1/containers/$WAKE" | jq -r .last_wake_ms >>"$WORK/wake-self.txt"

    docker stop -t 10 "dormant-bench-ref-$$" >/dev/null
    sleep 0.3
    json=$(py floor "dormant-bench-ref-$$:$REF_PORT")
    jq -r .ms <<<"$json" >>"$WORK/floor.txt"
    say "  run $i: dormant $(tail -1 "$WORK/wake.txt") ms, floor $(tail -1 "$WORK/floor.txt") ms"
  done
  read -r 'R[wake_p50]' 'R[wake_p95]' < <(percentiles 50 95 <"$WORK/wake.txt")
  read -r 'R[floor_p50]' 'R[floor_p95]' < <(percentiles 50 95 <"$WORK/floor.txt")
  read -r 'R[wake_self_p50]' 'R[wake_self_p95]' < <(percentiles 50 95 <"$WORK/wake-self.txt")
  R[wake_ratio_p50]=$(calc "${R[wake_p50]} / ${R[floor_p50]}")
  R[wake_ratio_p95]=$(calc "${R[wake_p95]} / ${R[floor_p95]}")
  R[wake_overhead_pct]=$(calc "(${R[wake_p50]} / ${R[floor_p50]} - 1) * 100" 1)
  [[ ${R[wake_overhead_pct]} == -* ]] || R[wake_overhead_pct]="+${R[wake_overhead_pct]}"
  docker rm -f "dormant-bench-ref-$$" >/dev/null
}

# --- d. herd -------------------------------------------------------------------

bench_herd() {
  say "d. herd: $HERD concurrent requests to one asleep container"
  create "$HERD_NAME"
  sleep_container "$HERD_NAME"
  sleep 0.5
  local since json
  since=$(date +%s.%N)
  json=$(py herd "$PROXY_PORT" "$HERD_NAME.localhost" "$HERD")
  sleep 1
  R[herd_starts]=$(timeout 30 docker events --since "$since" --until "$(date +%s.%N)" \
    --filter "container=dormant-$HERD_NAME" --filter event=start --format '{{.ID}}' | wc -l)
  R[herd_ok]=$(jq -r .ok <<<"$json")
  R[herd_errors]=$(jq -r .errors <<<"$json")
  R[herd_p50]=$(jq -r .p50 <<<"$json")
  R[herd_p99]=$(jq -r .p99 <<<"$json")
  R[herd_max]=$(jq -r .max <<<"$json")
  R[herd_connect_ms]=$(jq -r .connect_ms <<<"$json")
  say "  starts ${R[herd_starts]}, ok ${R[herd_ok]}, errors ${R[herd_errors]}, p50 ${R[herd_p50]} ms, p99 ${R[herd_p99]} ms"
  ((R[herd_errors] == 0)) || say "  first errors: $(jq -c .first_errors <<<"$json")"
}

# --- e. density ----------------------------------------------------------------

post_each() { # METHOD SUFFIX: the request for every name on stdin, $PARALLEL at a time; prints failures
  xargs -P "$PARALLEL" -I{} curl -sS -o /dev/null -w '%{http_code} {}\n' --max-time 120 -X "$1" \
    -H "Authorization: Bearer $TOKEN" "http://$API_ADDR/v1/containers/{}$2" | awk '$1 !~ /^2/' || true
}

bench_density() {
  local batches=$((DENSITY / BATCH)) b t0 t1 failed asleep create_s=0 sleep_s=0
  say "e. density: $DENSITY containers in $batches batches of $BATCH, each batch put to sleep before the next"
  : >"$WORK/density-names.txt"
  t0=$(date +%s.%N)
  for b in $(seq 1 "$batches"); do
    t1=$(date +%s.%N)
    create "$RUN-d$b" "$BATCH"
    create_s=$(calc "$create_s + $(date +%s.%N) - $t1")
    seq 1 "$BATCH" | sed "s/^/$RUN-d$b-/" | tee -a "$WORK/density-names.txt" >"$WORK/batch.txt"
    t1=$(date +%s.%N)
    failed=$(post_each POST /sleep <"$WORK/batch.txt")
    [[ -z $failed ]] || die "sleep failed: $(head -3 <<<"$failed")"
    sleep_s=$(calc "$sleep_s + $(date +%s.%N) - $t1")
    say "  batch $b/$batches created and asleep"
  done
  R[density_all_s]=$(calc "$(date +%s.%N) - $t0" 0)
  R[density_create_s]=$(calc "$create_s" 0)
  R[density_sleep_s]=$(calc "$sleep_s" 0)
  for _ in $(seq 1 60); do
    asleep=$(api GET /v1/containers | jq '[.containers[] | select(.state == "asleep")] | length')
    ((asleep >= DENSITY)) && break
    sleep 1
  done
  ((asleep >= DENSITY)) || die "only $asleep of $DENSITY containers are asleep"
  sleep 2
  R[rss_loaded_kb]=$(rss_kb)
  R[rss_per_container_b]=$(calc "(${R[rss_loaded_kb]} - ${R[rss_idle_kb]}) * 1024 / $DENSITY" 0)
  R[rss_per_1000_mb]=$(calc "${R[rss_per_container_b]} * 1000 / 1048576" 1)

  local times=() i
  for i in 1 2 3; do
    times+=("$(api GET /v1/containers -o "$WORK/list.json" -w '%{time_total}')")
  done
  R[list_ms]=$(printf '%s\n' "${times[@]}" | percentiles 50 | awk '{ printf "%.1f", $1 * 1000 }')
  R[list_bytes]=$(stat -c %s "$WORK/list.json")

  # The floor for waking several at once: as many stopped reference containers,
  # all started at once. Made (and stopped) before, so it costs dormant nothing.
  local hosts json pairs=() i memory
  memory=$(api GET "/v1/containers/$RUN-d1-1" | jq -r .memory)
  for i in $(seq 1 "$DENSITY_WAKE"); do
    reference_container "dormant-bench-many-$i-$$" $((REF_MANY_PORT + i)) "$memory"
    pairs+=("dormant-bench-many-$i-$$:$((REF_MANY_PORT + i))")
  done
  docker stop -t 10 "${pairs[@]%:*}" >/dev/null
  sleep 1

  hosts=$(shuf -n "$DENSITY_WAKE" "$WORK/density-names.txt" | sed 's/$/.localhost/' | paste -sd,)
  json=$(py herd "$PROXY_PORT" "$hosts" "$DENSITY_WAKE")
  R[dwake_wall]=$(jq -r .wall_ms <<<"$json")
  R[dwake_p50]=$(jq -r .p50 <<<"$json")
  R[dwake_max]=$(jq -r .max <<<"$json")
  R[dwake_errors]=$(jq -r .errors <<<"$json")
  sleep 1
  json=$(py floor "$(IFS=,; echo "${pairs[*]}")")
  R[dfloor_wall]=$(jq -r .ms <<<"$json")
  R[dfloor_p50]=$(jq -r .p50 <<<"$json")
  R[dfloor_max]=$(jq -r .max <<<"$json")
  docker rm -f "${pairs[@]%:*}" >/dev/null
  say "  RSS ${R[rss_loaded_kb]} kB (idle ${R[rss_idle_kb]} kB): ${R[rss_per_container_b]} B per container;" \
    "list ${R[list_ms]} ms; $DENSITY_WAKE wakes at once: ${R[dwake_wall]} ms (floor ${R[dfloor_wall]} ms), errors ${R[dwake_errors]}"

  t0=$(date +%s.%N)
  failed=$(post_each DELETE "" <"$WORK/density-names.txt")
  [[ -z $failed ]] || say "  some deletes failed: $(head -3 <<<"$failed")"
  R[density_delete_s]=$(calc "$(date +%s.%N) - $t0" 0)
  sleep 1
  R[rss_after_delete_kb]=$(rss_kb)
}

# --- report --------------------------------------------------------------------

judge() { # ACTUAL OP TARGET UNIT: "met" or "missed by ..."
  local actual=$1 op=$2 target=$3
  if awk "BEGIN { exit !($actual $op $target) }"; then echo "met"
  else echo "missed by $(calc "($actual > $target ? $actual / $target - 1 : 1 - $actual / $target) * 100" 1)%"; fi
}

write_results() {
  local docker_version cpu mem commit scale=""
  docker_version=$(docker version --format '{{.Server.Version}}')
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
  git -C "$ROOT" diff --quiet HEAD -- crates 2>/dev/null || commit+=" (with uncommitted changes in crates/)"
  ((DENSITY == 1000)) || scale=" (extrapolated from $DENSITY, which overstates it: fixed costs dominate)"
  local herd_ok=met
  ((R[herd_starts] == 1 && R[herd_errors] == 0)) \
    || herd_ok="missed: ${R[herd_starts]} starts, ${R[herd_errors]} errors"

  cat >"$RESULTS" <<EOF
# dormant benchmark results$( ((QUICK)) && echo " (quick run: short and small, for CI; the numbers are indicative only)")

- Date: $(date -u '+%Y-%m-%d %H:%M UTC')
- Command: \`$COMMAND\` (took $(($(date +%s) - T_START)) s, of which ${R[build_s]} s building)
- Machine: $(nproc) cores ($cpu), $mem, Linux $(uname -r), Docker $docker_version
- dormant: commit $commit, release build; workload: \`$IMAGE\` (\`dormant demo-image\`)

Everything ran on loopback on this one machine, load generator included.

## Targets

| target | result | verdict |
| --- | --- | --- |
| proxy throughput ≥ nginx's | ${R[dormant_rps]} vs ${R[nginx_rps]} req/s (×${R[rps_vs_nginx]}) | $(judge "${R[dormant_rps]}" '>=' "${R[nginx_rps]}") |
| proxy p99 no worse than nginx's | ${R[dormant_p99]} vs ${R[nginx_p99]} ms | $(judge "${R[dormant_p99]}" '<=' "${R[nginx_p99]}") |
| wake overhead over the floor < 10% (p50) | ${R[wake_p50]} vs ${R[floor_p50]} ms (${R[wake_overhead_pct]}%) | $(judge "${R[wake_p50]}" '<' "$(calc "${R[floor_p50]} * 1.1" 3)") |
| 1,000 registered containers cost < 50 MB RSS | ${R[rss_per_1000_mb]} MB per 1,000$scale | $(judge "${R[rss_per_1000_mb]}" '<' 50) |
| a herd of $HERD: one start, no errors | ${R[herd_starts]} start(s), ${R[herd_errors]} errors | $herd_ok |

## a. Proxy

\`wrk -t2 -c64 -d${WRK_SECONDS}s --latency\`, \`GET /\` of the demo app (after a ${WARMUP_SECONDS} s warm-up).
All three reach the same running container through its published loopback port.
nginx: \`worker_processes auto\`, HTTP/1.1 keepalive upstream pool, \`access_log off\`.

| path | req/s | p50 ms | p99 ms | errors |
| --- | ---: | ---: | ---: | ---: |
| direct (published port) | ${R[direct_rps]} | ${R[direct_p50]} | ${R[direct_p99]} | ${R[direct_errors]} |
| nginx | ${R[nginx_rps]} | ${R[nginx_p50]} | ${R[nginx_p99]} | ${R[nginx_errors]} |
| dormant (\`Host: <name>.localhost\`) | ${R[dormant_rps]} | ${R[dormant_p50]} | ${R[dormant_p99]} | ${R[dormant_errors]} |

| ratio | req/s | p99 |
| --- | ---: | ---: |
| dormant / nginx | ${R[rps_vs_nginx]} | ${R[p99_vs_nginx]} |
| dormant / direct | ${R[rps_vs_direct]} | ${R[p99_vs_direct]} |

WebSocket echo on \`/ws\`: $WS_ROUND_TRIPS sequential round trips of a 19-byte text
message on one connection (\`bench/load.py ws\`).

| path | p50 ms | p99 ms |
| --- | ---: | ---: |
| direct | ${R[ws_direct_p50]} | ${R[ws_direct_p99]} |
| dormant | ${R[ws_dormant_p50]} | ${R[ws_dormant_p99]} |

## b. Wake

$WAKE_RUNS runs each, alternating. dormant: \`POST /v1/containers/<name>/sleep\`, then one
\`GET /\` through the proxy, timed from connect to the end of the response. Floor: a
reference container (same image, memory limit, pids limit and security options,
fixed published port) is stopped with \`docker stop\`, then timed from the Engine API's
start call (what \`docker start\` sends, without the CLI's own start-up) until the
first \`200\` on its port, polling every 2 ms (\`bench/load.py floor\`).

| | p50 ms | p95 ms |
| --- | ---: | ---: |
| dormant: asleep → first response | ${R[wake_p50]} | ${R[wake_p95]} |
| floor: start → first response | ${R[floor_p50]} | ${R[floor_p95]} |
| ratio dormant / floor | ${R[wake_ratio_p50]} | ${R[wake_ratio_p95]} |
| dormant's own \`last_wake_ms\` | ${R[wake_self_p50]} | ${R[wake_self_p95]} |

## c. Restore from archive

Not yet measured (archive lands in a later change).

## d. Herd

$HERD requests to one asleep container, all connections opened first
(${R[herd_connect_ms]} ms), then every request written at once (\`bench/load.py herd\`).
Starts counted with \`docker events --filter event=start\` over the run.

| Docker starts | ok | errors | p50 ms | p99 ms | max ms |
| ---: | ---: | ---: | ---: | ---: | ---: |
| ${R[herd_starts]} | ${R[herd_ok]} | ${R[herd_errors]} | ${R[herd_p50]} | ${R[herd_p99]} | ${R[herd_max]} |

## e. Density

$DENSITY containers created $BATCH per request (\`count: $BATCH\`), each batch put to sleep
(\`POST .../sleep\`, $PARALLEL at a time) before the next.

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
| create all $DENSITY ($BATCH per request) / sleep them ($PARALLEL at a time) | ${R[density_create_s]} s / ${R[density_sleep_s]} s |
| create + sleep all $DENSITY, in all | ${R[density_all_s]} s |
| delete all $DENSITY ($PARALLEL at a time) | ${R[density_delete_s]} s |
| dormant RSS after deleting them | ${R[rss_after_delete_kb]} kB |
EOF
  say "wrote ${RESULTS#"$ROOT"/}"
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
  start_dormant
  sleep 1
  R[rss_idle_kb]=$(rss_kb)
  # Density first, so dormant's RSS figures are not coloured by the load of the others.
  bench_density
  bench_proxy
  bench_wake
  bench_herd
  R[rss_end_kb]=$(rss_kb)
  write_results
}

main
