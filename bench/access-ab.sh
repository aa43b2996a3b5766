#!/usr/bin/env bash
# bench/access-ab.sh — what do private container URLs cost on the proxy's hot path?
#
# Runs bench/run.sh's keep-alive proxy test (wrk -t2 -c64, GET / of the demo app,
# network upstream mode) against one running container per target, in a rotating
# order, ROUNDS rounds, and prints the medians of req/s, p99 and dormant's CPU per
# request side by side:
#   public   a public container: the access check is one atomic load and a compare
#   cookie   a private container, each request with a valid session cookie (from a
#            login link) among the app's own cookies: the HMAC is verified and
#            dormant's cookie taken out of the Cookie header before forwarding
#            (public and base send the very same Cookie header, forwarded as it is,
#            so the requests differ only in the check)
#   token    the same private container with `Authorization: Bearer dmc_...`: a
#            SHA-256 and an index lookup, the header taken out
#   base     with BASE_DORMANT_BIN: a public container on a dormant built without
#            any access check (the commit before it), the "no check" reference
# The three first run on one dormant (two containers of the same image and limits);
# the base one on a dormant of its own. The table goes to bench/RESULTS-access.md,
# with the command and the host's load (compare rounds on a shared host, not one figure).
#
# Usage: bench/access-ab.sh NEW_DORMANT_BIN [BASE_DORMANT_BIN]
# Needs: Docker; installs wrk, nginx, jq, curl from Debian's packages if missing.
# Everything runs on loopback and on the run's own containers and network (dormants
# 127.0.0.1:17270/17280 and 17271/17281) and is torn down on exit. About 2 minutes
# with a base binary (ROUNDS=3), less without.
set -euo pipefail

if (($# < 1 || $# > 2)) || [[ ! -x $1 ]] || { (($# == 2)) && [[ ! -x $2 ]]; }; then
  awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2
  exit 2
fi
NEW_BIN=$(realpath "$1")
BASE_BIN=$( (($# == 2)) && realpath "$2" || true)
ROUNDS=${ROUNDS:-3}
ARGS=("$@")

# run.sh's helpers and settings (it runs nothing when sourced).
set --
# shellcheck source=bench/run.sh
source "$(dirname "${BASH_SOURCE[0]}")/run.sh"

API=([new]=127.0.0.1:17271)
PROXY=([new]=17281)
[[ -n $BASE_BIN ]] && API[base]=127.0.0.1:17270 PROXY[base]=17280
declare -A BINS=([new]=$NEW_BIN [base]=$BASE_BIN)
declare -A HOST=() HEADER=() DORMANT=()

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # PID: user + system clock ticks so far

# Measures one target like run.sh's run_wrk, and the CPU time its dormant spent
# per request: steadier than req/s on a busy host.
measure() { # TARGET ROUND
  local target=$1 round=$2 mode=${DORMANT[$1]} before requests
  local extra=()
  [[ -n ${HEADER[$target]:-} ]] && extra=(-H "${HEADER[$target]}")
  before=$(cpu_ticks "${PID[$mode]}")
  run_wrk "${target}_r$round" "http://127.0.0.1:${PROXY[$mode]}/" -H "Host: ${HOST[$target]}" "${extra[@]}"
  requests=$(awk '/requests in/ { print $1 }' "$WORK/wrk-${target}_r$round.txt")
  # The warm-up's requests are in the ticks too: count them at the measured rate.
  R[${target}_r${round}_cpu_us]=$(calc "($(cpu_ticks "${PID[$mode]}") - $before) * 1000000 / $(getconf CLK_TCK) / ($requests * (1 + $WARMUP_SECONDS / $WRK_SECONDS))" 1)
  say "  $target: ${R[${target}_r${round}_cpu_us]} us of dormant CPU per request"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# A valid session cookie for NAME: a login link made through the API and used once.
session_cookie() { # NAME
  local url path cookie
  url=$(api new POST "/v1/containers/$1/login-link" | jq -r .url)
  path=/${url#http://*/}
  cookie=$(curl -sS -o /dev/null -D - -H "Host: $1.localhost" "http://127.0.0.1:${PROXY[new]}$path" \
    | tr -d '\r' | awk -F'[:;] *' 'tolower($1) == "set-cookie" { print $2 }')
  [[ $cookie == dormant_session=* ]] || die "the login link set no session cookie (got '$cookie')"
  echo "$cookie"
}

# The status of GET / on HOST through the new dormant with HEADER (a check
# that each target is what it says before it is measured).
status_of() { # HOST [HEADER]
  curl -sS -o /dev/null -w '%{http_code}' -H "Host: $1" ${2:+-H "$2"} "http://127.0.0.1:${PROXY[new]}/"
}

access_main() {
  ensure_tools
  docker info >/dev/null 2>&1 || die "no Docker daemon answers"
  local port
  for port in 17270 17271 17280 17281; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then die "port $port on 127.0.0.1 is in use"; fi
  done
  WORK=$(mktemp -d /tmp/dormant-access-ab.XXXXXX)
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  "$NEW_BIN" demo-image --tag "$IMAGE" >"$WORK/demo-image.log" 2>&1 || die "dormant demo-image"

  BIN=$NEW_BIN start_dormant new
  create new "$RUN-pub"
  api new POST /v1/containers -d "{\"image\":\"$IMAGE\",\"name\":\"$RUN-priv\",\"idle_timeout\":\"1h\",\"access\":\"private\"}" >/dev/null
  local cookie token
  cookie=$(session_cookie "$RUN-priv")
  token=$(api new POST "/v1/containers/$RUN-priv/tokens" | jq -r .token)
  HOST=([public]=$RUN-pub.localhost [cookie]=$RUN-priv.localhost [token]=$RUN-priv.localhost)
  HEADER=([public]="Cookie: theme=dark; $cookie; lang=en" [cookie]="Cookie: theme=dark; $cookie; lang=en" [token]="Authorization: Bearer $token")
  DORMANT=([public]=new [cookie]=new [token]=new)
  local targets=(public cookie token)
  if [[ -n $BASE_BIN ]]; then
    BIN=$BASE_BIN start_dormant base
    create base "$RUN-base"
    HOST[base]=$RUN-base.localhost DORMANT[base]=base HEADER[base]=${HEADER[public]}
    targets+=(base)
  fi
  [[ $(status_of "$RUN-priv.localhost") == 401 ]] || die "the private container answers a stranger"
  [[ $(status_of "$RUN-priv.localhost" "${HEADER[cookie]}") == 200 ]] || die "the session cookie does not open the private container"
  [[ $(status_of "$RUN-priv.localhost" "${HEADER[token]}") == 200 ]] || die "the token does not open the private container"

  local round n=${#targets[@]} i load_before
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  for round in $(seq 1 "$ROUNDS"); do
    say "round $round of $ROUNDS"
    for i in $(seq 0 $((n - 1))); do
      # Rotate the order each round, so no target always runs first or last.
      measure "${targets[$(((i + round) % n))]}" "$round"
    done
  done

  local target rps p99 cpu errors what label table
  table="| target | req/s (median) | p99 ms (median) | dormant CPU µs/request (median) | errors | each round: req/s / p99 ms |"$'\n'"| --- | ---: | ---: | ---: | ---: | --- |"
  for target in "${targets[@]}"; do
    rps=$(for r in $(seq 1 "$ROUNDS"); do echo "${R[${target}_r${r}_rps]}"; done | median)
    p99=$(for r in $(seq 1 "$ROUNDS"); do echo "${R[${target}_r${r}_p99]}"; done | median)
    cpu=$(for r in $(seq 1 "$ROUNDS"); do echo "${R[${target}_r${r}_cpu_us]}"; done | median)
    errors=$(for r in $(seq 1 "$ROUNDS"); do echo "${R[${target}_r${r}_errors]}"; done | awk '{ s += $1 } END { print s }')
    what=$(for r in $(seq 1 "$ROUNDS"); do printf '%s / %s, ' "${R[${target}_r${r}_rps]}" "${R[${target}_r${r}_p99]}"; done)
    R[${target}_rps]=$rps R[${target}_p99]=$p99 R[${target}_cpu]=$cpu
    case $target in
      public) label="public container (same Cookie header, forwarded)" ;;
      cookie) label="private container, session cookie" ;;
      token) label="private container, access token" ;;
      base) label="public container, no access check (\`$BASE_BIN\`)" ;;
    esac
    table+=$'\n'"| $label | $rps | $p99 | $cpu | $errors | ${what%, } |"
  done
  for target in cookie token; do
    table+=$'\n'"| **$target / public** | $(calc "${R[${target}_rps]} / ${R[public_rps]}") | $(calc "${R[${target}_p99]} / ${R[public_p99]}") | $(calc "${R[${target}_cpu]} / ${R[public_cpu]}") | | |"
  done
  if [[ -n $BASE_BIN ]]; then
    for target in public cookie; do
      table+=$'\n'"| **$target / no check** | $(calc "${R[${target}_rps]} / ${R[base_rps]}") | $(calc "${R[${target}_p99]} / ${R[base_p99]}") | $(calc "${R[${target}_cpu]} / ${R[base_cpu]}") | | |"
    done
  fi
  cat >"$BENCH/RESULTS-access.md" <<MD
# Access checks on the proxy's hot path: public, private with a cookie or a token, no check

- Date: $(date -u '+%Y-%m-%d %H:%M UTC')
- Command: \`bench/access-ab.sh ${ARGS[*]}\` (ROUNDS=$ROUNDS)
- Machine: $(nproc) cores; load average $load_before before, $(cut -d' ' -f1-3 /proc/loadavg) after
- Test: \`wrk -t2 -c64 -d${WRK_SECONDS}s --latency\` (after a ${WARMUP_SECONDS} s warm-up), \`GET /\` of the demo app, network upstream mode, a running container per target; the targets in a rotating order each round

$table
MD
  echo
  echo "$table"
  say "wrote ${BENCH#"$ROOT"/}/RESULTS-access.md"
}

access_main
