#!/bin/bash
# Opt-in: a real Rucio 41 server (sqlite, one gunicorn worker, userpass ddmlab/secret, account root) on 127.0.0.1
# with RSEs on the storage servers of `up.sh BASE` (adapted from shared recipes/backends/rucio/start-rucio.sh).
# Needs `install.sh --rucio` and a running `up.sh BASE`. Writes BASE/rucio/rucio.json; down.sh BASE stops it.
# usage: up-rucio.sh BASE        env: RUCIO_PORT=21180 (a port in use is replaced by a free one),
#        PILOT_TEST_PREFIX=/opt/pilot-test (venvs rucio-srv, rucio-cli), READY_TIMEOUT=60
set -euo pipefail
BASE=$(cd "${1:?usage: up-rucio.sh BASE}" && pwd -P)
HERE=$(cd "$(dirname "$0")" && pwd)
PREFIX=${PILOT_TEST_PREFIX:-/opt/pilot-test}
SRV=$PREFIX/rucio-srv; CLI=$PREFIX/rucio-cli
READY_TIMEOUT=${READY_TIMEOUT:-60}
die() { echo "up-rucio.sh: $*" >&2; exit 1; }
[ -x "$SRV/bin/gunicorn" ] && [ -x "$CLI/bin/rucio" ] || die "Rucio venvs missing: run $HERE/install.sh --rucio"
[ -s "$BASE/servers.json" ] || die "no $BASE/servers.json: run up.sh $BASE first"
port() { /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ports"][sys.argv[2]])' "$BASE/servers.json" "$1"; }
XRD_PORT=$(port xrootd); XRD_HTTP_PORT=$(port xrootd_http); DAVS_PORT=$(port webdav_https)
R=$BASE/rucio
# a previous Rucio of this BASE (e.g. the fixture ran twice in a session): stop it by its PID file
if [ -s "$R/gunicorn.pid" ]; then
    pid=$(cat "$R/gunicorn.pid")
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$BASE/"; then
        kill "$pid" 2>/dev/null; for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
fi
rm -rf "$R"; mkdir -p "$R"/{etc,log,traces,client,posix}
PORT=${RUCIO_PORT:-21180}
n=0
while [ -n "$(ss -Htln "sport = :$PORT" 2>/dev/null)" ]; do
    n=$((n + 1)); [ $n -le 500 ] || die "no free port"; PORT=$(( 22000 + (RANDOM % 3000) ))
done
SITE=$("$SRV/bin/python" -c 'import rucio, os; print(os.path.dirname(os.path.dirname(rucio.__file__)))' 2>/dev/null)
sed "s#@BASE@#$R#g" "$HERE/rucio/rucio-server.cfg.in" > "$R/etc/rucio.cfg"
sed "s#@BASE@#$R#g; s#@SITE@#$SITE#g" "$HERE/rucio/alembic.ini.in" > "$R/etc/alembic.ini"
sed "s#@CBASE@#$R/client#g; s#@PORT@#$PORT#g; s#@CA@#$BASE/pki/ca.pem#g" "$HERE/rucio/rucio-client.cfg.in" \
    > "$R/client/rucio.cfg"
# 1. schema + root account (identity ddmlab/secret)
(cd "$R" && RUCIO_CONFIG="$R/etc/rucio.cfg" timeout 120 "$SRV/bin/python" -c '
from rucio.db.sqla.util import build_database, create_base_vo, create_root_account
build_database(); create_base_vo(); create_root_account()' </dev/null >"$R/log/bootstrap-db.log" 2>&1) \
    || { tail -20 "$R/log/bootstrap-db.log" >&2; die "database set-up failed"; }
# 2. REST server: one process, one thread: sqlite takes one writer at a time, and concurrent uploads from a
#    pilot moving files in parallel otherwise fail with "DatabaseException" (database is locked)
(cd "$R" && RUCIO_CONFIG="$R/etc/rucio.cfg" timeout 30 "$SRV/bin/gunicorn" --daemon --no-control-socket \
    --pid "$R/gunicorn.pid" -b "127.0.0.1:$PORT" -w 1 --threads 1 --timeout 60 --graceful-timeout 2 \
    --error-logfile "$R/log/gunicorn.err" --access-logfile "$R/log/access.log" \
    rucio.web.rest.flaskapi.v1.main:application </dev/null)
deadline=$(( $(date +%s) + READY_TIMEOUT ))
until curl -sf --max-time 5 "http://127.0.0.1:$PORT/ping" >/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || { tail -20 "$R/log/gunicorn.err" >&2; die "Rucio did not answer /ping within $READY_TIMEOUT s"; }
    sleep 0.1
done
# 3. scopes, RSEs, protocols, quotas (the webdav impl HEADs the prefix dir: create it)
timeout 20 xrdfs "root://127.0.0.1:$XRD_PORT" mkdir -p /rucio-https </dev/null >/dev/null 2>&1 || true
RSES=$(RUCIO_CONFIG="$R/client/rucio.cfg" X509_CERT_DIR="$BASE/pki/certificates" timeout 120 \
    "$CLI/bin/python" "$HERE/rucio/bootstrap.py" "$XRD_PORT" "$XRD_HTTP_PORT" "$DAVS_PORT" "$R/posix" </dev/null) \
    || die "RSE bootstrap failed"
cat > "$R/rucio.json" <<JSON
{"url": "http://127.0.0.1:$PORT", "port": $PORT, "config": "$R/client/rucio.cfg", "server_config": "$R/etc/rucio.cfg",
 "cli_venv": "$CLI", "posix_dir": "$R/posix", "traces": "$R/traces", "log": "$R/log/gunicorn.err",
 "account": "root", "username": "ddmlab", "password": "secret", "rses": "$RSES"}
JSON
echo "up-rucio.sh: Rucio on http://127.0.0.1:$PORT, RSEs $RSES"
