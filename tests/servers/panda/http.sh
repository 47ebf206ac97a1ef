#!/bin/bash
# Start or stop only the PanDA server's HTTP(S) process (PostgreSQL and the issuer keep running), e.g. to cut the
# server while a pilot sends its final update. Ports come from BASE/ports.env (written by start.sh).
# usage: http.sh start|stop BASE        env: PANDA_TEST_HTTP_START_TIMEOUT (s, default 120)
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 start|stop BASE" >&2; exit 2; }
ACTION=$1
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
trap 'echo "[panda $(date +%T)] ERROR: http.sh failed at line $LINENO: $BASH_COMMAND" >&2' ERR
BASE=$(cd "$2" && pwd)
lock_base
load_ports
PIDFILE=$BASE/http.pid
SCRIPT=$HERE/panda_test_wsgi.py
# what identifies our server in `ps`, whichever checkout started it: the shim's name and BASE as its last argument
MARKERS=(panda_test_wsgi.py " $BASE ")
PKI=$BASE/pki
https_ok() { http_ok "https://127.0.0.1:$HTTPS_PORT/api/v1/system/is_alive" --cacert "$PKI/ca.pem"; }
case "$ACTION" in
stop)
    [ -f "$PIDFILE" ] || exit 0
    running=$(group_members "$(head -1 "$PIDFILE")" "${MARKERS[@]}")
    stop_pidfile "$PIDFILE" "${MARKERS[@]}"
    [ -n "$running" ] || exit 0
    for _ in $(seq 1 50); do port_busy "$HTTP_PORT" || port_busy "$HTTPS_PORT" || exit 0; sleep 0.1; done
    log "warning: 127.0.0.1:$HTTP_PORT or $HTTPS_PORT still accepts connections after stopping the server"
    ;;
start)
    if [ -f "$PIDFILE" ] && is_ours "$(cat "$PIDFILE")" "${MARKERS[@]}"; then
        http_ok "http://127.0.0.1:$HTTP_PORT/api/v1/system/is_alive" && https_ok && exit 0
        stop_pidfile "$PIDFILE" "${MARKERS[@]}"
    fi
    port_busy "$HTTP_PORT" && die "127.0.0.1:$HTTP_PORT is taken by another process"
    port_busy "$HTTPS_PORT" && die "127.0.0.1:$HTTPS_PORT is taken by another process"
    [ -f "$PKI/hostcert.pem" ] || die "no test PKI in $PKI (start.sh makes it)"
    mkdir -p "$BASE/logs"
    echo "=== $(date -u '+%F %T') start" >> "$BASE/logs/http.out"
    # setsid execs in place (a background job of a script is no group leader): $! is the server's PID and PGID
    PANDA_HOME=$BASE/home PANDA_TEST_HTTP_PORT=$HTTP_PORT PANDA_TEST_HTTPS_PORT=$HTTPS_PORT PANDA_TEST_PKI=$PKI \
        PANDA_TEST_STATIC_CACHE=$BASE/cache TZ=UTC \
        setsid "$PANDA_VENV/bin/python" "$SCRIPT" "$HTTP_PORT" "$BASE" >> "$BASE/logs/http.out" 2>&1 < /dev/null 9>&- &
    echo $! > "$PIDFILE"
    limit=${PANDA_TEST_HTTP_START_TIMEOUT:-120}
    start=$(date +%s)
    while [ $(( $(date +%s) - start )) -lt "$limit" ]; do
        http_ok "http://127.0.0.1:$HTTP_PORT/api/v1/system/is_alive" && https_ok && exit 0
        if ! is_ours "$(cat "$PIDFILE")" "${MARKERS[@]}"; then
            tail -40 "$BASE/logs/http.out" >&2
            rm -f "$PIDFILE"
            die "the PanDA server process exited during start-up (log: $BASE/logs/http.out, $BASE/logs/panda-*.log)"
        fi
        sleep 0.2
    done
    tail -40 "$BASE/logs/http.out" >&2
    stop_pidfile "$PIDFILE" "${MARKERS[@]}"
    die "the PanDA server did not answer /api/v1/system/is_alive within $limit s"
    ;;
*) echo "usage: $0 start|stop BASE" >&2; exit 2 ;;
esac
