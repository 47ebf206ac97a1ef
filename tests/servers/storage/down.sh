#!/bin/bash
# Stop the servers of up.sh, by their PID files only.
BASE=$1
for pidfile in "$BASE/xrootd/xrootd.pid" "$BASE/nginx/nginx.pid"; do
    [ -s "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    rm -f "$pidfile"
done
exit 0
