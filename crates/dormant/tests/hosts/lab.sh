#!/usr/bin/env bash
# Several Docker "hosts" on this machine, for dormant's several-hosts tests
# (tests/common/hosts.rs drives it; a person can too, see README.md here).
#
# A lab lives in a numbered slot S (0-7): a private bridge inside its own
# network namespace dlabSsw, the machine at 10.77.S.1 (veth dlabS), and host I
# (1-9) in network namespace dlabShI at 10.77.S.1I. Host I's files are under
# /tmp/dormant-lab/S/hI. Nothing here touches the machine's firewall, and no
# namespace has a default route: nothing leaves 10.77.S.0/24.
#
#   lab.sh up S N        the network for N hosts (run `down S` first)
#   lab.sh host S I [D]  runs host I in the foreground: docker-init as PID 1 of
#                        new PID, mount and UTS namespaces in dlabShI, dockerd
#                        under it (storage driver D, else dockerd's choice)
#   lab.sh enter S I [CMD...]  runs CMD (default: sh) inside host I
#   lab.sh kill S I      SIGKILL to host I's PID 1: the kernel ends everything in it
#   lab.sh cut S I       unplugs host I from the bridge; `heal S I` plugs it back
#   lab.sh down S        removes everything of slot S: its hosts' processes,
#                        namespaces, links, cgroups and files (also a crashed run's)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
command=${1:?usage: lab.sh up|down|host|kill|cut|heal SLOT ...}
slot=${2:?slot (0-7) missing}
[[ $slot =~ ^[0-7]$ ]] || { echo "lab.sh: slot must be 0-7, not '$slot'" >&2; exit 2; }
prefix=dlab$slot
switch=${prefix}sw
root=/tmp/dormant-lab/$slot

host_arg() {
  [[ ${1:-} =~ ^[1-9]$ ]] || { echo "lab.sh: host must be 1-9, not '${1:-}'" >&2; exit 2; }
  echo "$1"
}

# PID of host I's PID 1: the process of its network namespace that is PID 1
# of the PID namespace below the machine's ("NSpid: <machine pid> 1").
host_init() {
  local pid
  for pid in $(ip netns pids "${prefix}h$1" 2>/dev/null); do
    if grep -qE '^NSpid:\s+[0-9]+\s+1$' "/proc/$pid/status" 2>/dev/null; then
      echo "$pid"; return
    fi
  done
}

case $command in
up)
  n=${3:?number of hosts missing}
  [[ $n =~ ^[1-9]$ ]] || { echo "lab.sh: 1-9 hosts, not '$n'" >&2; exit 2; }
  # The machine must not already route this subnet (a LAN, another lab's
  # leftover outside slot S): the lab's veth would fight it.
  used=$(ip -4 route show match "10.77.$slot.1"; ip -4 route show root "10.77.$slot.0/24")
  used=$(grep -v '^default' <<<"$used" || true)
  if [[ -n $used ]]; then
    echo "lab.sh: 10.77.$slot.0/24 is already routed on this machine: $used" >&2; exit 1
  fi
  mkdir -p "$root"
  ip netns add "$switch"
  ip -n "$switch" link set lo up
  ip -n "$switch" link add br0 type bridge
  ip -n "$switch" link set br0 up
  ip link add "$prefix" type veth peer name machine netns "$switch"
  ip -n "$switch" link set machine master br0 up
  ip addr add "10.77.$slot.1/24" dev "$prefix"
  ip link set "$prefix" up
  for i in $(seq 1 "$n"); do
    ip netns add "${prefix}h$i"
    ip link add "${prefix}h$i" type veth peer name eth0 netns "${prefix}h$i"
    ip link set "${prefix}h$i" netns "$switch"
    ip -n "$switch" link set "${prefix}h$i" master br0 up
    ip -n "${prefix}h$i" link set lo up
    ip -n "${prefix}h$i" addr add "10.77.$slot.1$i/24" dev eth0
    ip -n "${prefix}h$i" link set eth0 up
    mkdir -p "$root/h$i"
  done ;;
host)
  i=$(host_arg "${3:-}")
  dir=$root/h$i
  mkdir -p "$dir"
  # Without its own config file dockerd would read the machine's
  # /etc/docker/daemon.json (its data-root, its storage driver).
  echo '{}' >"$dir/daemon.json"
  # docker-init (Docker's copy of tini) is PID 1: it reaps orphans, passes
  # SIGTERM on to dockerd, and when it dies the kernel kills everything in
  # the namespace. Debian's docker.io has it; tini is the same program.
  init=$(command -v docker-init || command -v tini) ||
    { echo "lab.sh: no docker-init (docker.io) or tini" >&2; exit 1; }
  exec ip netns exec "${prefix}h$i" \
    unshare --pid --fork --mount --uts --mount-proc --propagation private \
    "$init" -- "$here/hostinit.sh" "$dir" "${prefix}h$i" "10.77.$slot.1$i" "${4:-}" ;;
enter)
  i=$(host_arg "${3:-}")
  init=$(host_init "$i")
  [[ -n $init ]] || { echo "lab.sh: host $i of slot $slot is not running" >&2; exit 1; }
  shift 3
  exec nsenter -t "$init" -n -p -m -u -- "${@:-sh}" ;;
kill)
  i=$(host_arg "${3:-}")
  init=$(host_init "$i")
  if [[ -n $init ]]; then kill -9 "$init"; fi
  for _ in $(seq 1 100); do
    [[ -z $(ip netns pids "${prefix}h$i" 2>/dev/null) ]] && exit 0
    sleep 0.1
  done
  echo "lab.sh: host $i of slot $slot still has processes 10 s after SIGKILL" >&2; exit 1 ;;
cut)  i=$(host_arg "${3:-}"); ip -n "$switch" link set "${prefix}h$i" down ;;
heal) i=$(host_arg "${3:-}"); ip -n "$switch" link set "${prefix}h$i" up ;;
down)
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^${prefix}h[1-9]$" || true); do
    # A namespace outlives its name while processes use it: kill them first
    # (SIGKILL to a host's PID 1 takes its containers with it).
    pids=$(ip netns pids "$ns" || true)
    [[ -n $pids ]] && kill -9 $pids 2>/dev/null || true
    for _ in $(seq 1 100); do
      [[ -z $(ip netns pids "$ns" 2>/dev/null) ]] && break
      sleep 0.1
    done
    ip netns del "$ns"
  done
  ip link del "$prefix" 2>/dev/null || true
  ip netns del "$switch" 2>/dev/null || true
  # dockerd made its containers' cgroups under /dlabShI; killed, it never
  # removed them. Children first; an empty cgroup directory is removable.
  for parent in /sys/fs/cgroup/${prefix}h* /sys/fs/cgroup/*/${prefix}h*; do
    [[ -d $parent ]] && find "$parent" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  rm -rf "$root" ;;
*) echo "lab.sh: unknown command '$command'" >&2; exit 2 ;;
esac
