#!/bin/bash
# Install pouchdb-server (a CouchDB-compatible server on Node.js) for the PiCaS tests. Idempotent, no stdin.
#   * Debian's nodejs + npm when node/npm are missing (root, apt-get).
#   * pouchdb-server@$POUCHDB_VERSION (default 4.2.0, shared/spec/real-backends.md §5) under
#     $PILOT_TEST_PREFIX/pouchdb (default /opt/pilot-test/pouchdb); npm runs no install scripts and none are needed
#     (leveldown ships prebuilt binaries; the tests use the in-memory adapter anyway).
# A second run with nothing to do takes well under a second (a stamp file per version).
set -euo pipefail
PREFIX=${PILOT_TEST_PREFIX:-/opt/pilot-test}
VERSION=${POUCHDB_VERSION:-4.2.0}
DIR=$PREFIX/pouchdb
STAMP=$DIR/.installed-$VERSION
[ -e "$STAMP" ] && [ -f "$DIR/node_modules/pouchdb-server/bin/pouchdb-server" ] && { echo "install.sh: pouchdb-server ready"; exit 0; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "install.sh: apt-get install nodejs npm"
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq </dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
        nodejs npm </dev/null >/dev/null
fi
mkdir -p "$DIR"
exec 9> "$DIR/.install.lock"
flock -w 600 9 || { echo "install.sh: another install holds $DIR/.install.lock" >&2; exit 1; }
if [ ! -e "$STAMP" ] || [ ! -f "$DIR/node_modules/pouchdb-server/bin/pouchdb-server" ]; then
    echo "install.sh: npm install pouchdb-server@$VERSION into $DIR (about 2 minutes on a cold cache)"
    (cd "$DIR" && npm install --no-audit --no-fund --silent --no-progress "pouchdb-server@$VERSION" </dev/null)
    [ -f "$DIR/node_modules/pouchdb-server/bin/pouchdb-server" ] || { echo "install.sh: pouchdb-server missing after npm install" >&2; exit 1; }
    touch "$STAMP"
fi
echo "install.sh: pouchdb-server ready"
