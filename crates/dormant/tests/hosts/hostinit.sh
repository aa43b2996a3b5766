#!/bin/sh
# PID 1's child in a lab host (see lab.sh): makes the mount namespace look like
# a host's own, then becomes that host's dockerd.
# usage: hostinit.sh DIR HOSTNAME ADDRESS [STORAGE_DRIVER]
set -eu
dir=$1 name=$2 address=$3 driver=${4:-}
hostname "$name"

# `ip netns exec` mounted a fresh /sys (for this namespace's network devices),
# which hides the machine's cgroup mounts: mount the same hierarchies again.
# /proc/self/cgroup names them: a lone "0::" line is cgroup v2; otherwise v1
# (one line per hierarchy), with "0::" in hybrid mode for the unified one.
cg=/sys/fs/cgroup
if [ "$(grep -vc '^0::' /proc/self/cgroup)" = 0 ]; then
  mount -t cgroup2 cgroup2 "$cg"
else
  mount -t tmpfs -o mode=755 cgroup "$cg"
  while IFS=: read -r _ controllers _; do
    case $controllers in
    "") mkdir -p "$cg/unified"; mount -t cgroup2 cgroup2 "$cg/unified" ;;
    name=*) sub=${controllers#name=}; mkdir -p "$cg/$sub"
            mount -t cgroup -o "none,$controllers" cgroup "$cg/$sub" ;;
    *) mkdir -p "$cg/$controllers"; mount -t cgroup -o "$controllers" cgroup "$cg/$controllers"
       # co-mounted controllers ("cpu,cpuacct") are reachable under each name
       for c in $(echo "$controllers" | tr , ' '); do
         [ -e "$cg/$c" ] || ln -s "$controllers" "$cg/$c"
       done ;;
    esac
  done </proc/self/cgroup
fi

# A host's /run is its own and empty at boot: dockerd's and containerd's
# runtime files (and their shims' sockets) stay in it, and nothing inside
# reaches the machine's Docker socket.
mount -t tmpfs -o mode=755 run /run

set -- --config-file "$dir/daemon.json" --data-root "$dir/root" \
  -H "unix://$dir/docker.sock" --cgroup-parent "/$name" --label "lab.host=$name" \
  --label "lab.address=$address"
[ -n "$driver" ] && set -- "$@" --storage-driver "$driver"
exec dockerd "$@"
