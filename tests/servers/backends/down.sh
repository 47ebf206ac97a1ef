#!/bin/bash
# Stop what up.sh BASE started, by its PID files only (never by process name). A PID is signalled only
# while /proc/PID/cmdline still names BASE, so a stale PID file of a killed run cannot hit a reused PID.
# usage: down.sh BASE [rucio]      (rucio: stop only the Rucio server of up-rucio.sh)
set -uo pipefail
BASE=${1:?base dir}; ONLY=${2:-}
BASE=$(cd "$BASE" 2>/dev/null && pwd -P) || exit 0
ours() {   # ours PID: alive and started for this BASE
    [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' < "/proc/$1/cmdline" | grep -qF -- "$BASE/"
}
# TERM every server at once, wait (<= 5 s) for all, then KILL what is left (the process, its direct
# children such as the nginx workers, or its whole group for the watchdog)
targets=(); groups=(); kids=()
add() {   # add PID [group]
    ours "$1" || return 0
    targets+=("$1"); groups+=("${2:-}")
    mapfile -t -O "${#kids[@]}" kids < <(pgrep -P "$1" 2>/dev/null)   # children by parent PID (nginx workers), not by name
}
# the watchdog first (it would run down.sh itself when its owner dies), unless we are that watchdog
if [ -z "$ONLY" ] && [ -s "$BASE/watchdog.pid" ]; then
    w=$(cat "$BASE/watchdog.pid")
    [ "$w" = "$$" ] || [ "$w" = "$PPID" ] || add "$w" group
fi
pidfiles=("$BASE/rucio/gunicorn.pid" "$BASE/webdav/nginx.pid" "$BASE/xrootd/xrootd.pid")
[ "$ONLY" = rucio ] && pidfiles=("$BASE/rucio/gunicorn.pid")
for f in "${pidfiles[@]}"; do
    [ -s "$f" ] && add "$(cat "$f")"
done
signal() {   # signal SIG: to every target (its group for the watchdog)
    local i
    for i in "${!targets[@]}"; do
        if [ -n "${groups[$i]}" ]; then kill "-$1" -- "-${targets[$i]}" 2>/dev/null
        else kill "-$1" "${targets[$i]}" 2>/dev/null; fi
    done
}
alive() { local p; for p in "$@"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
if [ ${#targets[@]} -gt 0 ]; then
    signal TERM
    for _ in $(seq 1 50); do alive "${targets[@]}" "${kids[@]}" || break; sleep 0.1; done
    signal KILL
    for p in "${kids[@]}"; do kill -KILL "$p" 2>/dev/null; done
    for _ in $(seq 1 20); do alive "${targets[@]}" "${kids[@]}" || break; sleep 0.1; done
    echo "down.sh: stopped ${targets[*]}"
fi
rm -f "${pidfiles[@]}"
[ -n "$ONLY" ] || rm -f "$BASE/watchdog.pid"
exit 0
