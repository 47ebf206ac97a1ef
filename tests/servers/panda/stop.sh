#!/bin/bash
# Stop what start.sh (and the fixture's Adder runs) started under BASE, by the PIDs in BASE/*.pid only: each PID is
# checked against its command line first, so a stale pid file never leads to signalling someone else's process.
# Safe to run at any time (nothing running, half-started, after a killed run). Leaves BASE's files for inspection.
# usage: stop.sh BASE
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BASE" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
[ -d "$1" ] || exit 0
BASE=$(cd "$1" && pwd)
lock_base
bash "$HERE/http.sh" stop "$BASE"
stop_pidfile "$BASE/adder.pid" adder.py " $BASE "
stop_pidfile "$BASE/idp.pid" fake_idp.py " $BASE/idp "
PGDATA=$BASE/pgdata
if [ -f "$PGDATA/postmaster.pid" ]; then
    pid=$(head -1 "$PGDATA/postmaster.pid")
    if is_ours "$pid" "$PGDATA "; then
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w -t 30 stop > /dev/null 2>&1 || {
            log "pg_ctl stop failed for $PGDATA: SIGQUIT to postmaster $pid"
            kill -QUIT "$pid" 2>/dev/null
            for _ in $(seq 1 50); do is_ours "$pid" "$PGDATA " || break; sleep 0.1; done
            is_ours "$pid" "$PGDATA " && kill -KILL "$pid" 2>/dev/null
        }
    else
        rm -f "$PGDATA/postmaster.pid"  # stale: the postmaster of a killed run is gone
    fi
fi
rm -f "$BASE/postgres.pid"
exit 0
