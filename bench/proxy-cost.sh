#!/usr/bin/env bash
# bench/proxy-cost.sh — what one proxied request costs in CPU instructions, counted.
#
# wrk's req/s on a shared 2-core host moves by 10-20% from run to run; an
# instruction count does not. This runs each dormant binary given, and nginx,
# under valgrind's callgrind, warms each up with 500 keep-alive requests, then counts
# the user-space instructions (the program and its libraries, not the kernel) of
# exactly 3,000 keep-alive requests (`ab -k -c 16`, GET / of the demo app, network
# upstream mode), and prints instructions per request side by side (also written to
# bench/RESULTS-proxy-cost.md).
#
# Usage: bench/proxy-cost.sh DORMANT_BIN [DORMANT_BIN...]
# Needs: Docker, valgrind, ab (apache2-utils), nginx, jq, curl; installs the missing
# ones from Debian's packages. Everything runs on loopback and on the run's own
# containers and network (dormant 127.0.0.1:17270/17280, nginx 17281), torn down on
# exit. Takes about a minute per binary.
set -euo pipefail

if (($# == 0)); then
  awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2
  exit 2
fi
BINS=()
for bin in "$@"; do
  [[ -x $bin ]] || { echo "not an executable: $bin" >&2; exit 2; }
  BINS+=("$(realpath "$bin")")
done

REQUESTS=3000
WARMUP=500
CONCURRENCY=16
API=127.0.0.1:17270
PROXY=17280
NGINX=17281
TOKEN=bench-proxy-cost-token
RUN=cost-$$
NET=dormant-bench-$RUN
IMAGE=dormant-demo:bench-cost
WORK=$(mktemp -d /tmp/dormant-proxy-cost.XXXXXX)
say() { printf '[%4ss] %s\n' "$SECONDS" "$*" >&2; }
die() { say "error: $*"; exit 1; }

cleanup() {
  [[ -n ${VALGRIND_PID:-} ]] && kill "$VALGRIND_PID" 2>/dev/null && wait "$VALGRIND_PID" 2>/dev/null
  docker ps -aq --filter "label=dormant.bench-cost=$RUN" | xargs -r docker rm -f >/dev/null 2>&1
  docker ps -aq --filter "name=dormant-$RUN" | xargs -r docker rm -f >/dev/null 2>&1
  docker network rm "$NET" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_tools() {
  local missing=() pair
  for pair in valgrind:valgrind ab:apache2-utils nginx:nginx jq:jq curl:curl; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  ((${#missing[@]})) || return 0
  say "installing ${missing[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-cache show "${missing[@]}" >/dev/null 2>&1 || apt-get update -qq
  # Without starting any system service (nginx would start on :80).
  local policy=/usr/sbin/policy-rc.d added=0
  [[ -e $policy ]] || { printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added=1; }
  apt-get install -y -qq "${missing[@]}" >/dev/null || { ((added)) && rm -f "$policy"; die "apt-get install ${missing[*]}"; }
  ((added)) && rm -f "$policy"
  return 0
}

# Counts the instructions of $REQUESTS requests to URL (with Host HOST) of the
# program callgrind runs as $VALGRIND_PID; prints instructions per request.
count() { # URL HOST
  local url=$1 host=$2 out
  ab -q -k -n "$WARMUP" -c "$CONCURRENCY" -H "Host: $host" "$url" >/dev/null
  sleep 1
  callgrind_control -z "$VALGRIND_PID" >/dev/null
  out=$(ab -k -n "$REQUESTS" -c "$CONCURRENCY" -H "Host: $host" "$url" 2>/dev/null)
  callgrind_control -d "$VALGRIND_PID" >/dev/null
  sleep 1
  [[ $(awk '/^Failed requests:/ { print $3 }' <<<"$out") == 0 ]] || die "failed requests: $out"
  [[ $(awk '/^Non-2xx responses:/ { print $3 }' <<<"$out") == "" ]] || die "non-2xx answers: $out"
  kill "$VALGRIND_PID"
  wait "$VALGRIND_PID" 2>/dev/null || true
  VALGRIND_PID=
  # The dump with the most instructions is the one taken after the zeroing.
  local total=0 file n
  for file in "$WORK"/cg.out.*; do
    n=$(callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
    ((${n:-0} > total)) && total=$n
  done
  rm -f "$WORK"/cg.out.*
  echo $((total / REQUESTS))
}

main() {
  ensure_tools
  docker info >/dev/null 2>&1 || die "no Docker daemon answers"
  local port
  for port in "${API##*:}" "$PROXY" "$NGINX"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then die "port $port on 127.0.0.1 is in use"; fi
  done
  docker network create "$NET" >/dev/null
  "${BINS[0]}" demo-image --tag "$IMAGE" >"$WORK/demo-image.log" 2>&1 || die "dormant demo-image"
  local results=() bin i=0 ip name
  for bin in "${BINS[@]}"; do
    i=$((i + 1))
    name="$RUN-$i"
    say "dormant $bin under callgrind"
    DORMANT_ADMIN_TOKEN=$TOKEN DORMANT_LOG=warn valgrind --tool=callgrind \
      --callgrind-out-file="$WORK/cg.out.%p" "$bin" serve --data-dir "$WORK/data-$i" \
      --api-addr "$API" --proxy-addr "127.0.0.1:$PROXY" --default-memory 128m \
      --upstream network --network "$NET" --wake-rate off --max-wake-rate off \
      >"$WORK/dormant-$i.log" 2>&1 &
    VALGRIND_PID=$!
    for _ in $(seq 1 600); do curl -sf "http://$API/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
    curl -sf -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' "http://$API/v1/containers" \
      -d "{\"image\":\"$IMAGE\",\"name\":\"$name\",\"idle_timeout\":\"1h\"}" >/dev/null \
      || die "create $name: $(tail -5 "$WORK/dormant-$i.log")"
    for _ in $(seq 1 100); do
      [[ $(curl -s -o /dev/null -w '%{http_code}' -H "Host: $name.localhost" "http://127.0.0.1:$PROXY/") == 200 ]] && break
      sleep 0.3
    done
    ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "dormant-$name")
    results+=("dormant $bin|$(count "http://127.0.0.1:$PROXY/" "$name.localhost")")
  done

  say "nginx under callgrind (one process: master_process off, one worker)"
  mkdir -p "$WORK/nginx"
  cat >"$WORK/nginx/nginx.conf" <<CONF
# Generated by bench/proxy-cost.sh: the same proxying as bench/run.sh's nginx.
worker_processes 1;
master_process off;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
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
  upstream network { server $ip:8080; keepalive 128; }
  server { listen 127.0.0.1:$NGINX; location / { proxy_pass http://network; } }
}
CONF
  valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out.%p" \
    nginx -e "$WORK/nginx/error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >"$WORK/nginx.log" 2>&1 &
  VALGRIND_PID=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$NGINX/" >/dev/null 2>&1 && break; sleep 0.2; done
  results+=("nginx (the last dormant's container)|$(count "http://127.0.0.1:$NGINX/" "$name.localhost")")

  local row
  {
    printf '# Proxy cost in instructions\n\n'
    printf 'Written by `bench/proxy-cost.sh %s` on %s, commit %s.\n\n' "$*" "$(date -u +%Y-%m-%dT%H:%MZ)" \
      "$(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    printf '| proxy | instructions per request (user space, %s keep-alive requests) |\n| --- | ---: |\n' "$REQUESTS"
    for row in "${results[@]}"; do
      printf '| %s | %s |\n' "${row%%|*}" "${row#*|}"
    done
  } | tee "$(dirname "$0")/RESULTS-proxy-cost.md"
}

main "$@"
