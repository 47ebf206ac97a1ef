#!/bin/bash
# Install what the real PanDA server needs for the integration tests (idempotent; root; no stdin):
# PostgreSQL 15 with pg_cron and pg_partman (Debian; apache2-dev because panda-server depends on mod_wsgi), and a venv with panda-server from PyPI built on Debian's
# python3 (the recipe's choice: the server must not depend on the pilot's interpreter).
set -euo pipefail
VENV=${PANDA_VENV:-/opt/pilot-test/panda-venv}
VERSION=${PANDA_SERVER_VERSION:-1.0.4}
export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in postgresql postgresql-15-cron postgresql-15-partman python3-venv curl apache2-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    apt-get -o DPkg::Lock::Timeout=600 update -qq </dev/null
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}" </dev/null >/dev/null
fi
stamp="$VENV/.installed-panda-server-$VERSION"
if [ ! -e "$stamp" ]; then
    rm -rf "$VENV"
    /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -U pip </dev/null
    # panda-server's build hook looks up user atlpan/group zp when the gid is 0: build with a non-zero gid
    DISABLE_MM=1 setpriv --regid=65534 --clear-groups env LOGNAME=root \
        "$VENV/bin/pip" install -q --disable-pip-version-check "panda-server[postgres]==$VERSION" werkzeug </dev/null
    touch "$stamp"
fi
echo "panda-server $VERSION ready in $VENV"
