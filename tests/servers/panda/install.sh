#!/bin/bash
# Install what the real PanDA server needs for the integration tests. Idempotent (stamp file), root, no stdin.
#   * Debian packages: PostgreSQL 15 with pg_cron and pg_partman (the schema uses both), python3-venv, curl, openssl
#     (the test PKI of the HTTPS listener).
#   * A venv in $PANDA_VENV (default /opt/pilot-test/panda-venv) built on Debian's /usr/bin/python3 with
#     panda-server==$PANDA_SERVER_VERSION (default 1.0.4, the version shared/spec/panda-server.md was written against)
#     and its dependencies pinned in requirements.lock (what `pip install panda-server[postgres]==1.0.4` resolved,
#     minus mod_wsgi: we serve the WSGI application with werkzeug, so Apache's headers and a C build are not needed).
# usage: install.sh            (a second run with nothing to do takes well under a second)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
trap 'echo "[panda $(date +%T)] ERROR: install.sh failed at line $LINENO: $BASH_COMMAND" >&2' ERR
[ "$(id -u)" -eq 0 ] || die "install.sh must run as root (apt-get, the postgres system user)"
export DEBIAN_FRONTEND=noninteractive

# one installer at a time (two pytest sessions starting together)
mkdir -p "$(dirname "$PANDA_VENV")" "$PANDA_TEST_CACHE"
exec 9> "$PANDA_TEST_CACHE/.install.lock"
flock -w 900 9 || die "another install.sh holds $PANDA_TEST_CACHE/.install.lock for 15 minutes"

t0=$(date +%s)
need=()
for pkg in postgresql-15 postgresql-client-15 postgresql-15-cron postgresql-15-partman python3-venv curl util-linux openssl; do
    dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed' || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    log "apt-get install ${need[*]}"
    apt-get -o DPkg::Lock::Timeout=600 update -qq < /dev/null
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" < /dev/null > /dev/null
fi
[ -x "$PGBIN/initdb" ] || die "$PGBIN/initdb missing after installing postgresql-15"
[ -f /usr/share/postgresql/15/extension/pg_partman.control ] || die "pg_partman for PostgreSQL 15 is missing"

if [ ! -e "$PANDA_STAMP" ]; then
    log "creating $PANDA_VENV with panda-server==$PANDA_SERVER_VERSION (about a minute on a cold pip cache)"
    rm -rf "$PANDA_VENV"
    # Debian's interpreter, not the one running the tests: the server must not depend on the pilot's Python
    /usr/bin/python3 -m venv "$PANDA_VENV"
    pip=("$PANDA_VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input --timeout 60 --retries 5)
    pip_log=$PANDA_TEST_CACHE/pip-install.log
    "${pip[@]}" -r "$HERE/requirements.lock" < /dev/null > "$pip_log" 2>&1 \
        || { grep -v '^WARNING: Location' "$pip_log" | tail -40 >&2; die "pip install of the dependencies failed"; }
    # panda-server's sdist build hook chowns its files to user atlpan/group zp when the gid is 0 (and posts to a
    # Mattermost hook unless DISABLE_MM): build it with a non-zero gid instead of creating those accounts
    DISABLE_MM=1 setpriv --regid=65534 --clear-groups env LOGNAME=root \
        "${pip[@]}" --no-deps "panda-server==$PANDA_SERVER_VERSION" < /dev/null >> "$pip_log" 2>&1 \
        || { grep -v '^WARNING: Location' "$pip_log" | tail -40 >&2; die "pip install panda-server failed"; }
    "$PANDA_VENV/bin/python" -c "import pandaserver.taskbuffer.JobSpec, psycopg2, werkzeug, jwt, cryptography" \
        || die "the panda-server venv does not import"
    rm -f "$PANDA_VENV"/.pilot-test-panda-*
    touch "$PANDA_STAMP"
fi
log "panda-server $PANDA_SERVER_VERSION ready in $PANDA_VENV ($(( $(date +%s) - t0 )) s)"
