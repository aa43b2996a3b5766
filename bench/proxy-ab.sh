#!/usr/bin/env bash
# bench/proxy-ab.sh — is the proxy any slower? Two dormant builds side by side.
#
# Runs bench/run.sh's keep-alive proxy test (wrk -t2 -c64, GET / of the demo app,
# network upstream mode) against an old and a new dormant binary and against nginx,
# alternating in a rotating order, ROUNDS rounds, and prints the medians of req/s
# and p99 side by side. Each dormant runs one demo container of its own (same image
# and limits, on the same Docker network); nginx proxies to the new one's.
# The table also goes to bench/RESULTS-proxy-ab.md, with the command and the host's
# load (a shared host makes single runs noisy: compare rounds, not one figure).
#
# Usage: bench/proxy-ab.sh OLD_DORMANT_BIN NEW_DORMANT_BIN
# Needs: Docker; installs wrk, nginx, jq, curl from Debian's packages if missing.
# Everything runs on loopback and on the run's own containers and network
# (dormants 127.0.0.1:17170/17180 and 17171/17181, nginx 17182) and is torn down on
# exit. Takes about 2.5 minutes.
set -euo pipefail

if (($# != 2)) || [[ ! -x $1 || ! -x $2 ]]; then
  awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2
  exit 2
fi
OLD_BIN=$(realpath "$1")
NEW_BIN=$(realpath "$2")
ROUNDS=${ROUNDS:-3}
# Old builds know no `nap_after`; each container here is idle well under the
# 60 s default between its rounds.
NAP_AFTER_FIELD=""

# run.sh's helpers and settings (it runs nothing when sourced).
set --
# shellcheck source=bench/run.sh
source "$(dirname "${BASH_SOURCE[0]}")/run.sh"

API=([old]=127.0.0.1:17170 [new]=127.0.0.1:17171)
PROXY=([old]=17180 [new]=17181)
NGINX=([net]=17182 [pub]=17183)
declare -A BINS=([old]=$OLD_BIN [new]=$NEW_BIN)

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # PID: user + system clock ticks so far

# Measures one target like run.sh's run_wrk, and for a dormant also the CPU time
# it spent per request: steadier than req/s on a busy host.
measure() { # TARGET ROUND
  local target=$1 round=$2 before requests
  if [[ $target == nginx ]]; then
    run_wrk "nginx_r$round" "http://127.0.0.1:${NGINX[net]}/"
    return
  fi
  before=$(cpu_ticks "${PID[$target]}")
  run_wrk "${target}_r$round" "http://127.0.0.1:${PROXY[$target]}/" -H "Host: $RUN-$target.localhost"
  requests=$(awk '/requests in/ { print $1 }' "$WORK/wrk-${target}_r$round.txt")
  # The warm-up's requests are in the ticks too: count them at the measured rate.
  R[${target}_r${round}_cpu_us]=$(calc "($(cpu_ticks "${PID[$target]}") - $before) * 1000000 / $(getconf CLK_TCK) / ($requests * (1 + $WARMUP_SECONDS / $WRK_SECONDS))" 1)
  say "  $target: ${R[${target}_r${round}_cpu_us]} us of dormant CPU per request"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

ab_main() {
  ensure_tools
  docker info >/dev/null 2>&1 || die "no Docker daemon answers"
  local port
  for port in 17170 17171 17180 17181 17182 17183; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then die "port $port on 127.0.0.1 is in use"; fi
  done
  WORK=$(mktemp -d /tmp/dormant-proxy-ab.XXXXXX)
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  "$NEW_BIN" demo-image --tag "$IMAGE" >"$WORK/demo-image.log" 2>&1 || die "dormant demo-image"
  local mode ip
  for mode in old new; do
    BIN=${BINS[$mode]}
    start_dormant "$mode"
    create "$mode" "$RUN-$mode"
  done
  ip=$(container_ip "dormant-$RUN-new")
  [[ -n $ip ]] || die "no address for dormant-$RUN-new"
  start_nginx "$ip:8080" "$ip:8080"

  local round targets=(old new nginx) i target load_before
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  for round in $(seq 1 "$ROUNDS"); do
    say "round $round of $ROUNDS"
    for i in 0 1 2; do
      # Rotate the order each round, so no target always runs first or last.
      measure "${targets[$(((i + round) % 3))]}" "$round"
    done
  done

  local what rps p99 cpu errors label table
  table="| target | req/s (median) | p99 ms (median) | dormant CPU µs/request (median) | errors | each round: req/s / p99 ms |"$'\n'"| --- | ---: | ---: | ---: | ---: | --- |"
  for target in old new nginx; do
    rps=$(for r in $(seq 1 "$ROUNDS"); do echo "${R[${target}_r${r}_rps]}"; done | median)
    p99=$(for r in $(seq 1 "$ROUNDS"); do echo "${R[${target}_r${r}_p99]}"; done | median)
    cpu=$([[ $target == nginx ]] && echo - || for r in $(seq 1 "$ROUNDS"); do echo "${R[${target}_r${r}_cpu_us]}"; done | median)
    errors=$(for r in $(seq 1 "$ROUNDS"); do echo "${R[${target}_r${r}_errors]}"; done | awk '{ s += $1 } END { print s }')
    what=$(for r in $(seq 1 "$ROUNDS"); do printf '%s / %s, ' "${R[${target}_r${r}_rps]}" "${R[${target}_r${r}_p99]}"; done)
    R[${target}_rps]=$rps R[${target}_p99]=$p99 R[${target}_cpu]=$cpu
    case $target in
      old) label="dormant old (\`$OLD_BIN\`)" ;;
      new) label="dormant new (\`$NEW_BIN\`)" ;;
      *) label="nginx → the new one's container" ;;
    esac
    table+=$'\n'"| $label | $rps | $p99 | $cpu | $errors | ${what%, } |"
  done
  table+=$'\n'"| **new / old** | $(calc "${R[new_rps]} / ${R[old_rps]}") | $(calc "${R[new_p99]} / ${R[old_p99]}") | $(calc "${R[new_cpu]} / ${R[old_cpu]}") | | |"
  table+=$'\n'"| new / nginx | $(calc "${R[new_rps]} / ${R[nginx_rps]}") | $(calc "${R[new_p99]} / ${R[nginx_p99]}") | | | |"
  cat >"$BENCH/RESULTS-proxy-ab.md" <<MD
# Proxy A/B: old and new dormant, and nginx

- Date: $(date -u '+%Y-%m-%d %H:%M UTC')
- Command: \`bench/proxy-ab.sh $OLD_BIN $NEW_BIN\` (ROUNDS=$ROUNDS)
- Machine: $(nproc) cores; load average $load_before before, $(cut -d' ' -f1-3 /proc/loadavg) after
- Test: \`wrk -t2 -c64 -d${WRK_SECONDS}s --latency\` (after a ${WARMUP_SECONDS} s warm-up), \`GET /\` of the demo app, network upstream mode; the three targets in a rotating order each round

$table
MD
  echo
  echo "$table"
  say "wrote ${BENCH#"$ROOT"/}/RESULTS-proxy-ab.md"
}

ab_main
