# Common settings and helpers for install.sh / start.sh / stop.sh / http.sh (sourced, not run).
# shellcheck disable=SC2034  # the variables are used by the scripts that source this file
# Every path and port can be overridden from the environment; the defaults are what the pytest fixture uses.

PANDA_SERVER_VERSION=${PANDA_SERVER_VERSION:-1.0.4}
PANDA_VENV=${PANDA_VENV:-/opt/pilot-test/panda-venv}
# cached, ready-to-copy PostgreSQL data directories with the schema loaded (one per schema/harness checksum)
PANDA_TEST_CACHE=${PANDA_TEST_CACHE:-/opt/pilot-test/cache}
PGBIN=/usr/lib/postgresql/15/bin
HERE=${HERE:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
# the install stamp changes whenever the version or the pinned dependency set changes
PANDA_STAMP="$PANDA_VENV/.pilot-test-panda-$PANDA_SERVER_VERSION-$(cksum < "$HERE/requirements.lock" | cut -d' ' -f1)"

log() { echo "[panda $(date +%T)] $*" >&2; }
die() { echo "[panda $(date +%T)] ERROR: $*" >&2; exit 1; }

# The panda-database schema (PanDAWMS/panda-database, Apache 2.0, not on PyPI): the subset the harness loads is
# vendored in panda-database/ next to this file; PANDA_DB_SCHEMA points at another checkout instead.
panda_schema_dir() {
    echo "${PANDA_DB_SCHEMA:-$HERE/panda-database}"
}

# is_ours PID MARKER...: the process exists and its command line contains every MARKER (guards against recycled
# PIDs and against processes of another BASE)
is_ours() {
    local pid=$1 cmd marker
    shift
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    cmd=$( { tr '\0' ' ' < "/proc/$pid/cmdline"; } 2>/dev/null) || return 1
    for marker in "$@"; do
        [[ "$cmd" == *"$marker"* ]] || return 1
    done
}

# group_members PGID MARKER...: live (non-zombie) processes of group PGID whose command line contains every MARKER
group_members() {
    local pgid=$1 f line rest pid
    shift
    local -a markers=("$@")
    for f in /proc/[0-9]*/stat; do
        { read -r line < "$f"; } 2>/dev/null || continue
        rest=${line##*) }
        # shellcheck disable=SC2086
        set -- $rest            # state ppid pgrp ...
        if [ "$3" != "$pgid" ] || [ "$1" = Z ]; then continue; fi
        pid=${f#/proc/}; pid=${pid%/stat}
        is_ours "$pid" "${markers[@]}" && echo "$pid"
    done
}

# stop_pidfile PIDFILE MARKER...: end the process group led by the PID in PIDFILE (started with setsid) -- SIGTERM,
# then SIGKILL after 5 s -- and remove the file. Only processes whose command line contains the MARKERs are signalled,
# so a stale pid file (a recycled PID) never leads to signalling someone else's process.
stop_pidfile() {
    local file=$1 pgid members
    shift
    [ -f "$file" ] || return 0
    pgid=$(head -1 "$file" 2>/dev/null || true)
    if [[ "$pgid" =~ ^[0-9]+$ ]]; then
        members=$(group_members "$pgid" "$@")
        if [ -n "$members" ]; then
            # shellcheck disable=SC2086
            kill -TERM $members 2>/dev/null || true
            for _ in $(seq 1 50); do
                members=$(group_members "$pgid" "$@"); [ -z "$members" ] && break; sleep 0.1
            done
            if [ -n "$members" ]; then
                log "processes $members ($file) ignored SIGTERM: SIGKILL"
                # shellcheck disable=SC2086
                kill -KILL $members 2>/dev/null || true
                for _ in $(seq 1 20); do [ -z "$(group_members "$pgid" "$@")" ] && break; sleep 0.1; done
            fi
        fi
    fi
    rm -f "$file"
}

# port_busy PORT: something accepts connections on 127.0.0.1:PORT
port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# http_ok URL [CURL OPTION...]: a GET answered with HTTP 2xx within 10 s
http_ok() {
    curl -sf -m 10 -o /dev/null -H 'Accept: application/json' "$@"
}

load_ports() {
    # shellcheck disable=SC1091
    [ -f "$BASE/ports.env" ] && . "$BASE/ports.env"
    HTTP_PORT=${HTTP_PORT:-25080}
    PG_PORT=${PG_PORT:-55432}
    IDP_PORT=${IDP_PORT:-25099}
    HTTPS_PORT=${HTTPS_PORT:-$((HTTP_PORT + 363))}
}

# lock_base: one start/stop/http action per BASE at a time. Orphans of a killed start.sh (cp, psql) inherit the lock
# and keep it until they end, so a new start never races them. Long-lived servers are started with 9>&- (no lock).
lock_base() {
    [ "${PANDA_BASE_LOCKED:-}" = "$BASE" ] && return 0
    exec 9> "$BASE/.lock"
    if ! flock -n 9; then
        local holders="" p
        for p in $( { find /proc/[0-9]*/fd -maxdepth 1 -lname "$BASE/.lock" | cut -d/ -f3 | sort -u; } 2>/dev/null 9>&-); do
            local cmd
            cmd=$( { tr '\0' ' ' < "/proc/$p/cmdline"; } 2>/dev/null) || true
            [ "$p" = "$$" ] || [ -z "$cmd" ] || holders+="[$p: $cmd] "
        done
        log "waiting for $BASE/.lock, held by: ${holders:-?}"
        flock -w "${PANDA_TEST_LOCK_TIMEOUT:-300}" 9 || die "$BASE/.lock is held by another start/stop for too long"
    fi
    export PANDA_BASE_LOCKED=$BASE
}
