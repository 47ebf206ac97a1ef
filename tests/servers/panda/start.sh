#!/bin/bash
# Start the real PanDA server for the tests: a private PostgreSQL 15 cluster with the PanDA schema, the test
# queue's configuration, a local OIDC issuer, and the server's WSGI application under werkzeug -- all on
# 127.0.0.1. Stop with stop.sh (by PID files only).
# usage: start.sh BASE [HTTP_PORT] [PG_PORT] [IDP_PORT]      (BASE must not be under a 0700 dir: postgres reads it)
set -euo pipefail
BASE=$1; PORT=${2:-25080}; PGPORT=${3:-55432}; IDPPORT=${4:-25099}
HERE=$(cd "$(dirname "$0")" && pwd)
VENV=${PANDA_VENV:-/opt/pilot-test/panda-venv}
TOP=$(cd "$HERE/../../.." && pwd)
PDB=${PDB:-$(cd "$TOP/../shared/panda-database" && pwd)}
SQLS=$PDB/schema/postgres/sqls
PGBIN=/usr/lib/postgresql/15/bin
PGDATA=$BASE/pgdata
LOGS=$BASE/logs
export PANDA_HOME=$BASE/home

mkdir -p "$BASE" "$LOGS/pandacache" "$LOGS/keys" "$LOGS/auth" "$PANDA_HOME/etc/panda" "$BASE/idp"
chmod 0755 "$BASE"
d=$BASE; while [ "$d" != / ]; do chmod o+x "$d" 2>/dev/null || true; d=$(dirname "$d"); done
"$HERE/stop.sh" "$BASE" >/dev/null 2>&1 || true

# --- PostgreSQL + schema (a fresh cluster every time: tests start from an empty job table) ---------------------
rm -rf "$PGDATA"
install -d -o postgres -g postgres "$PGDATA"
su postgres -s /bin/sh -c "$PGBIN/initdb -D $PGDATA -U postgres --auth=trust" >/dev/null
cat >> "$PGDATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$PGDATA'
shared_preload_libraries = 'pg_cron, pg_partman_bgw'
cron.database_name = 'postgres'
pg_partman_bgw.dbname = 'panda_db'
max_connections = 200
shared_buffers = 100MB
fsync = off
CONF
su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $PGDATA -l $PGDATA/postgres.log -w -t 60 start" >/dev/null
head -1 "$PGDATA/postmaster.pid" > "$BASE/postgres.pid"
P="psql -h 127.0.0.1 -p $PGPORT -U postgres -q"
LOG=$LOGS/schema.log
sed 's/${PANDA_DB_PASSWORD}/password/g' "$SQLS/init_step.sql" > "$BASE/init_step.sql"
$P -v ON_ERROR_STOP=1 -f "$BASE/init_step.sql" > "$LOG" 2>&1
for COMP in PANDA PANDAMETA PANDAARCH PANDABIGMON DEFT PARTITION; do
  for F in "$SQLS/pg_${COMP}.sql" "$SQLS"/pg_${COMP}_{TABLE,VIEW,TYPE,SEQUENCE,FUNCTION,TRIGGER,SCHEDULER_JOBS,PROCEDURE}.sql; do
    [ -f "$F" ] || continue
    if [ "$(basename "$F")" = pg_PANDA_SCHEDULER_JOBS.sql ]; then
      # the schema's HEAD lacks worker_node_queue (only in patch 0.0.31) but builds views on it
      sed -n 5,12p "$SQLS/patches/0.0.31.patch.sql" | $P -d panda_db >> "$LOG" 2>&1 || true
    fi
    $P -d panda_db -f "$F" >> "$LOG" 2>&1 || true
  done
done
# Debian's pg_partman 4.7 cannot create the schema's 'range' partitions: give each partitioned table a default one
$P -d panda_db -v ON_ERROR_STOP=1 -f "$HERE/default_partitions.sql" >> "$LOG" 2>&1
IFS=. read -r MA MI PA < "$PDB/schema/postgres/version"
$P -d panda_db -c "INSERT INTO doma_panda.pandadb_version (component, major, minor, patch) VALUES('PanDA', '$MA', '$MI', '$PA')" >> "$LOG" 2>&1
$P -d panda_db -f "$SQLS/post_step_panda.sql" >> "$LOG" 2>&1 || true
$P -d panda_db -v ON_ERROR_STOP=1 -f "$HERE/15_queue_config.sql" >> "$LOG" 2>&1

# --- server configuration ---------------------------------------------------------------------------------------
for f in panda_server.cfg panda_common.cfg; do
  sed -e "s#/tmp/panda_logs#$LOGS#g" -e "s#dbport = 55432#dbport = $PGPORT#" -e "s#25080#$PORT#g" \
      -e "s#^token_authType = None#token_authType = oidc#" "$HERE/etc/$f" > "$PANDA_HOME/etc/panda/$f"
done
"$VENV/bin/python" "$HERE/fake_idp.py" setup "$LOGS/auth" "$BASE/idp" "$IDPPORT"
chmod -R a+rwX "$LOGS" "$PANDA_HOME"

# --- processes --------------------------------------------------------------------------------------------------
setsid "$VENV/bin/python" "$HERE/fake_idp.py" serve "$BASE/idp" "$IDPPORT" > "$LOGS/idp.out" 2>&1 < /dev/null &
echo $! > "$BASE/idp.pid"
"$HERE/http.sh" start "$BASE" "$PORT"
echo "PanDA server up on http://127.0.0.1:$PORT (postgres $PGPORT, issuer $IDPPORT)"
