#!/bin/bash
# Stop what start.sh started, by PID files only.
# usage: stop.sh BASE
BASE=$1
HERE=$(cd "$(dirname "$0")" && pwd)
"$HERE/http.sh" stop "$BASE"
for name in idp adder; do
  if [ -f "$BASE/$name.pid" ]; then kill -- -"$(cat "$BASE/$name.pid")" 2>/dev/null || kill "$(cat "$BASE/$name.pid")" 2>/dev/null; rm -f "$BASE/$name.pid"; fi
done
if [ -f "$BASE/pgdata/postmaster.pid" ]; then
  su postgres -s /bin/sh -c "/usr/lib/postgresql/15/bin/pg_ctl -D $BASE/pgdata -m fast -w -t 30 stop" >/dev/null 2>&1 || \
    kill "$(head -1 "$BASE/pgdata/postmaster.pid")" 2>/dev/null
fi
rm -f "$BASE/postgres.pid"
exit 0
