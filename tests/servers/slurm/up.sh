#!/bin/bash
# Single-node Slurm (munge, slurmctld, slurmd) in a private loopback-only network namespace, as in the shared
# recipe: no systemd, no cgroups. Clients run with: nsenter -t $(cat BASE/netns.pid) -n sbatch ...
# usage: up.sh BASE        stop: down.sh BASE
set -euo pipefail
BASE=$1
HERE=$(cd "$(dirname "$0")" && pwd)
need=()
for pkg in slurmctld slurmd slurm-client munge iproute2; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq </dev/null
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" </dev/null >/dev/null
fi
"$HERE/down.sh" "$BASE" >/dev/null 2>&1 || true
rm -rf "$BASE"; mkdir -p "$BASE"/{state,spool}
HOST=$(hostname -s)
sed -e "s#@HOST@#$HOST#g; s#@CPUS@#$(nproc)#; s#@BASE@#$BASE#g" "$HERE/slurm.conf.in" > "$BASE/slurm.conf"
mkdir -p /etc/slurm && cp "$BASE/slurm.conf" /etc/slurm/slurm.conf
mkdir -p /run/munge && chown munge:munge /run/munge
if [ ! -S /run/munge/munge.socket.2 ] || ! munge -n </dev/null >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged --force
fi
pgrep -u munge -x munged > "$BASE/munged.pid" || true
setsid unshare -n sleep infinity </dev/null >/dev/null 2>&1 &
echo $! > "$BASE/netns.pid"
H=$(cat "$BASE/netns.pid")
for _ in $(seq 1 50); do [ -e "/proc/$H/ns/net" ] && break; sleep 0.05; done
sleep 0.2
nsenter -t "$H" -n ip link set lo up
nsenter -t "$H" -n ip addr add 127.0.0.2/8 dev lo   # getaddrinfo(AI_ADDRCONFIG) needs a 2nd IPv4 address
nsenter -t "$H" -n /usr/sbin/slurmctld -f "$BASE/slurm.conf"
nsenter -t "$H" -n /usr/sbin/slurmd -f "$BASE/slurm.conf"
for i in $(seq 1 120); do
    if nsenter -t "$H" -n timeout 5 sinfo -h -o %T 2>/dev/null | grep -q idle; then echo "slurm up ($i polls)"; exit 0; fi
    sleep 0.5
done
echo "slurm did not come up" >&2; tail -20 "$BASE/slurmctld.log" "$BASE/slurmd.log" >&2; exit 1
