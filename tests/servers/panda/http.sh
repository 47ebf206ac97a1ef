#!/bin/bash
# Start or stop only the PanDA server's HTTP process (tests cut the server during a final update).
# usage: http.sh start|stop BASE [PORT]
set -euo pipefail
ACTION=$1; BASE=$2; PORT=${3:-25080}
HERE=$(cd "$(dirname "$0")" && pwd)
VENV=${PANDA_VENV:-/opt/pilot-test/panda-venv}
PIDFILE=$BASE/http.pid
if [ "$ACTION" = stop ]; then
  if [ -f "$PIDFILE" ]; then
    pid=$(cat "$PIDFILE")
    kill -- -"$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 -- -"$pid" 2>/dev/null || true
    rm -f "$PIDFILE"
  fi
  exit 0
fi
export PANDA_HOME=$BASE/home PANDA_TEST_PORT=$PORT
setsid "$VENV/bin/python" "$HERE/panda_test_wsgi.py" "$PORT" >> "$BASE/logs/http.out" 2>&1 < /dev/null &
echo $! > "$PIDFILE"
for _ in $(seq 1 240); do
  if curl -sf -m 30 -H 'Accept: application/json' "http://127.0.0.1:$PORT/api/v1/system/is_alive" >/dev/null; then
    exit 0
  fi
  kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { tail -30 "$BASE/logs/http.out" >&2; exit 1; }
  sleep 0.5
done
echo "PanDA server did not answer within 120 s" >&2
tail -30 "$BASE/logs/http.out" >&2
exit 1
