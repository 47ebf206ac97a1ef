#!/bin/bash
# Start the real PanDA server for the tests, everything on 127.0.0.1 and under BASE:
#   * a private PostgreSQL 15 cluster (BASE/pgdata) with the panda-database schema and the TEST_QUEUE configuration;
#     a fresh copy every start (tests begin with empty job tables), copied from a cached template cluster
#     ($PANDA_TEST_CACHE/pgdata-<checksum>) that is built once per schema/harness version;
#   * a local OIDC issuer (fake_idp.py) for the token path;
#   * a test PKI in BASE/pki (tests/servers/backends/make-pki.sh: CA, host certificate, user and robot proxies);
#   * the server's WSGI application (pandaserver.server.panda.application) behind panda_test_wsgi.py under werkzeug,
#     plain HTTP on HTTP_PORT and HTTPS (test CA, client certificates and proxies verified) on HTTPS_PORT.
# Leftovers of an earlier run under the same BASE (processes, pid files, cluster) are cleaned first, by PID only.
# Stop with stop.sh BASE; restart the HTTP server alone with http.sh stop|start BASE.
# usage: start.sh BASE [HTTP_PORT [PG_PORT [IDP_PORT [HTTPS_PORT]]]]
#        (defaults 25080 55432 25099 HTTP_PORT+363, or $PANDA_TEST_*_PORT)
# Run install.sh first. BASE must be reachable by the postgres user (e.g. under /tmp).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BASE [HTTP_PORT [PG_PORT [IDP_PORT]]]" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
trap 'echo "[panda $(date +%T)] ERROR: start.sh failed at line $LINENO: $BASH_COMMAND" >&2' ERR
t0=$(date +%s%N)
elapsed() { local ms=$(( ($(date +%s%N) - t0) / 1000000 )); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }
[ "$(id -u)" -eq 0 ] || die "start.sh must run as root (the cluster runs as the postgres user)"
[ -e "$PANDA_STAMP" ] || die "panda-server is not installed in $PANDA_VENV: run $HERE/install.sh first"
mkdir -p "$1"
BASE=$(cd "$1" && pwd)
HTTP_PORT=${2:-${PANDA_TEST_HTTP_PORT:-25080}}
PG_PORT=${3:-${PANDA_TEST_PG_PORT:-55432}}
IDP_PORT=${4:-${PANDA_TEST_IDP_PORT:-25099}}
HTTPS_PORT=${5:-${PANDA_TEST_HTTPS_PORT:-$((HTTP_PORT + 363))}}
PDB=$(panda_schema_dir)
SQLS=$PDB/schema/postgres/sqls
[ -f "$SQLS/init_step.sql" ] || die "PanDA schema not found in $PDB (vendored in tests/servers/panda/panda-database; or set PANDA_DB_SCHEMA)"
PGDATA=$BASE/pgdata
LOGS=$BASE/logs
export PANDA_HOME=$BASE/home
lock_base
BUILD=
on_exit() {
    local rc=$?
    if [ -n "$BUILD" ] && [ -d "$BUILD" ]; then
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$BUILD" -m immediate -w -t 30 stop > /dev/null 2>&1 || true
        rm -rf "$BUILD"
    fi
    if [ "$rc" -ne 0 ]; then
        log "start failed: stopping what was started (logs in $LOGS)"
        bash "$HERE/stop.sh" "$BASE" || true
    fi
}
trap on_exit EXIT

# --- leftovers of an earlier (possibly killed) run, then the ports --------------------------------------------------
bash "$HERE/stop.sh" "$BASE" || true
for old in "$PANDA_TEST_CACHE"/build-*; do  # half-built template clusters of killed runs
    [ -d "$old" ] || continue
    is_ours "${old##*-}" start.sh && continue
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$old" -m immediate -w -t 30 stop > /dev/null 2>&1 || true
    rm -rf "$old" || log "warning: could not remove $old"
done
for port in "$HTTP_PORT" "$HTTPS_PORT" "$PG_PORT" "$IDP_PORT"; do
    port_busy "$port" && die "port 127.0.0.1:$port is taken by a process that is not ours under $BASE: \
$(ss -Hltnp "sport = :$port" 2>/dev/null | head -1) -- stop it or choose other ports (PANDA_TEST_{HTTP,HTTPS,PG,IDP}_PORT)"
done
printf 'HTTP_PORT=%s\nHTTPS_PORT=%s\nPG_PORT=%s\nIDP_PORT=%s\n' "$HTTP_PORT" "$HTTPS_PORT" "$PG_PORT" "$IDP_PORT" \
    > "$BASE/ports.env"
rm -rf "$PGDATA" "$LOGS" "$PANDA_HOME" "$BASE/idp" "$BASE/pki" "$BASE/cache"
mkdir -p "$LOGS/pandacache" "$LOGS/keys" "$LOGS/auth" "$PANDA_HOME/etc/panda" "$BASE/idp"
chmod 0755 "$BASE"
runuser -u postgres -- test -x "$BASE" || die "the postgres user cannot reach $BASE (a parent directory lacks o+x)"

# --- PostgreSQL: template cluster with schema + queue config, built once --------------------------------------------
pg() { local tool=$1; shift; runuser -u postgres -- "$PGBIN/$tool" "$@"; }
psql_() { "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$1" -U postgres "${@:2}"; }
KEY=$( { find "$PDB/schema/postgres" -type f -print0 | sort -z | xargs -0 cat;
         cat "$HERE/default_partitions.sql" "$HERE/15_queue_config.sql" "$HERE/start.sh"; "$PGBIN/postgres" -V; } \
       | cksum | cut -d' ' -f1)
TEMPLATE=$PANDA_TEST_CACHE/pgdata-$KEY
mkdir -p "$PANDA_TEST_CACHE"
if [ ! -f "$TEMPLATE/.complete" ]; then
    log "building the template cluster $TEMPLATE (schema $(cat "$PDB/schema/postgres/version"))"
    BUILD=$PANDA_TEST_CACHE/build-$$
    rm -rf "$BUILD"; install -d -o postgres -g postgres -m 0700 "$BUILD"
    chmod o+x "$PANDA_TEST_CACHE"
    pg initdb -D "$BUILD" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 > "$LOGS/initdb.log" 2>&1 \
        || { cat "$LOGS/initdb.log" >&2; die "initdb failed"; }
    cat >> "$BUILD/postgresql.conf" <<CONF
# --- pilot test harness ---
listen_addresses = '127.0.0.1'
shared_preload_libraries = 'pg_cron, pg_partman_bgw'
cron.database_name = 'postgres'
pg_partman_bgw.dbname = 'panda_db'
max_connections = 200
shared_buffers = 100MB
fsync = off
synchronous_commit = off
full_page_writes = off
timezone = 'UTC'
log_timezone = 'UTC'
CONF
    BPORT=$PG_PORT
    install -o postgres -g postgres -m 0644 /dev/null "$LOGS/template-postgres.log"
    pg pg_ctl -D "$BUILD" -l "$LOGS/template-postgres.log" -o "-p $BPORT -k $BUILD" -w -t 60 start > /dev/null 9>&- \
        || { tail -20 "$LOGS/template-postgres.log" >&2; die "the template cluster did not start"; }
    SLOG=$LOGS/schema.log
    # shellcheck disable=SC2016
    sed 's/${PANDA_DB_PASSWORD}/password/g' "$SQLS/init_step.sql" > "$LOGS/init_step.sql"
    psql_ "$BPORT" -v ON_ERROR_STOP=1 -f "$LOGS/init_step.sql" > "$SLOG" 2>&1 || { cat "$SLOG" >&2; die "init_step.sql failed"; }
    # same order as schema/postgres/panda_db_init.sh of panda-database; errors are expected (pg_partman 4 vs 5)
    for COMP in PANDA PANDAMETA PANDAARCH PANDABIGMON DEFT PARTITION; do
        for F in "$SQLS/pg_${COMP}.sql" "$SQLS"/pg_${COMP}_{TABLE,VIEW,TYPE,SEQUENCE,FUNCTION,TRIGGER,SCHEDULER_JOBS,PROCEDURE}.sql; do
            [ -f "$F" ] || continue
            if [ "$(basename "$F")" = pg_PANDA_SCHEDULER_JOBS.sql ] && [ -f "$SQLS/patches/0.0.31.patch.sql" ]; then
                # panda-database HEAD lacks table worker_node_queue (only in patch 0.0.31) but builds views on it
                sed -n 5,12p "$SQLS/patches/0.0.31.patch.sql" | psql_ "$BPORT" -d panda_db >> "$SLOG" 2>&1 || true
            fi
            echo "== $F" >> "$SLOG"
            psql_ "$BPORT" -d panda_db -f "$F" >> "$SLOG" 2>&1 || true
        done
    done
    # Debian 12's pg_partman 4.7 cannot create the schema's 'range' partitions: a DEFAULT partition for each table
    psql_ "$BPORT" -d panda_db -v ON_ERROR_STOP=1 -f "$HERE/default_partitions.sql" >> "$SLOG" 2>&1 \
        || { tail -20 "$SLOG" >&2; die "default partitions failed"; }
    IFS=. read -r MA MI PA < "$PDB/schema/postgres/version"
    psql_ "$BPORT" -d panda_db -v ON_ERROR_STOP=1 -c "INSERT INTO doma_panda.pandadb_version (component, major, minor, patch)
        VALUES ('PanDA', '$MA', '$MI', '$PA') ON CONFLICT DO NOTHING" >> "$SLOG" 2>&1 || { tail -5 "$SLOG" >&2; die "version row"; }
    psql_ "$BPORT" -d panda_db -f "$SQLS/post_step_panda.sql" >> "$SLOG" 2>&1 || true
    psql_ "$BPORT" -d panda_db -v ON_ERROR_STOP=1 -f "$HERE/15_queue_config.sql" >> "$SLOG" 2>&1 \
        || { tail -20 "$SLOG" >&2; die "queue configuration failed"; }
    for table in jobsactive4 jobsarchived4 filestable4 schedconfig_json; do
        psql_ "$BPORT" -d panda_db -Atc "select 1 from doma_panda.$table limit 1" > /dev/null 2>&1 \
            || { grep ERROR "$SLOG" | head -20 >&2; die "schema load incomplete: no table $table"; }
    done
    log "schema loaded ($(grep -c ERROR "$SLOG" || true) expected ERROR lines in $SLOG)"
    pg pg_ctl -D "$BUILD" -m fast -w -t 60 stop > /dev/null
    rm -f "$BUILD/postmaster.pid" "$BUILD/postmaster.opts"
    touch "$BUILD/.complete"
    # publish atomically; drop templates of other versions unused for a day (another checkout may still use one)
    find "$PANDA_TEST_CACHE" -maxdepth 1 -name 'pgdata-*' ! -name "pgdata-$KEY" -mmin +1440 -exec rm -rf {} + || true
    mv -T "$BUILD" "$TEMPLATE" 2>/dev/null || rm -rf "$BUILD"
    BUILD=
fi
touch "$TEMPLATE"
cp -a "$TEMPLATE" "$PGDATA"
rm -f "$PGDATA/.complete"
cat >> "$PGDATA/postgresql.conf" <<CONF
port = $PG_PORT
unix_socket_directories = '$PGDATA'
CONF
install -o postgres -g postgres -m 0644 /dev/null "$LOGS/postgres.log"
pg pg_ctl -D "$PGDATA" -l "$LOGS/postgres.log" -w -t 60 start > /dev/null 9>&- \
    || { tail -20 "$LOGS/postgres.log" >&2; die "PostgreSQL did not start"; }
head -1 "$PGDATA/postmaster.pid" > "$BASE/postgres.pid"
log "PostgreSQL on 127.0.0.1:$PG_PORT ($(elapsed) s)"

# --- server configuration, OIDC issuer -------------------------------------------------------------------------------
for f in panda_server.cfg panda_common.cfg; do
    sed -e "s#@LOGS@#$LOGS#g" -e "s#@PG_PORT@#$PG_PORT#g" -e "s#@HTTP_PORT@#$HTTP_PORT#g" \
        "$HERE/etc/$f" > "$PANDA_HOME/etc/panda/$f"
done
"$PANDA_VENV/bin/python" "$HERE/fake_idp.py" setup "$LOGS/auth" "$BASE/idp" "$IDP_PORT"
setsid "$PANDA_VENV/bin/python" "$HERE/fake_idp.py" serve "$BASE/idp" "$IDP_PORT" > "$LOGS/idp.out" 2>&1 < /dev/null 9>&- &
echo $! > "$BASE/idp.pid"
for _ in $(seq 1 100); do
    http_ok "http://127.0.0.1:$IDP_PORT/.well-known/openid-configuration" && break
    is_ours "$(cat "$BASE/idp.pid")" fake_idp.py " $BASE/idp " || { cat "$LOGS/idp.out" >&2; die "the OIDC issuer died"; }
    sleep 0.1
done
http_ok "http://127.0.0.1:$IDP_PORT/.well-known/openid-configuration" || die "the OIDC issuer does not answer"

# --- the server's static cache: schedconfig/<queue>.all.json, as its cache_schedconfig daemon writes it ---------------
mkdir -p "$BASE/cache/schedconfig"
for queue in $(psql_ "$PG_PORT" -d panda_db -Atc "SELECT panda_queue FROM doma_panda.schedconfig_json"); do
    psql_ "$PG_PORT" -d panda_db -Atc "SELECT data FROM doma_panda.schedconfig_json WHERE panda_queue = '$queue'" \
        > "$BASE/cache/schedconfig/$queue.all.json"
done

# --- test PKI (the server's host certificate and CA; proxies for the pilots) -------------------------------------------
bash "$HERE/../backends/make-pki.sh" "$BASE/pki" "${PROXY_HOURS:-12}" > /dev/null 2>&1 || die "make-pki.sh failed"

# --- the PanDA server --------------------------------------------------------------------------------------------------
bash "$HERE/http.sh" start "$BASE"
log "PanDA server up on http://127.0.0.1:$HTTP_PORT and https://127.0.0.1:$HTTPS_PORT (PostgreSQL $PG_PORT, OIDC issuer $IDP_PORT) in $(elapsed) s"
