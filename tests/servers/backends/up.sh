#!/bin/bash
# Start the real storage backends of the integration tests on 127.0.0.1 (run install.sh first):
#   test PKI (make-pki.sh)                      BASE/pki
#   XRootD: root:// on XRD_PORT, http + https/davs on XRD_HTTP_PORT, adler32/md5/crc32c server side; data BASE/xrootd/data
#   nginx WebDAV (no checksums): http on DAV_PORT, https/davs on DAVS_PORT;                       data BASE/webdav/data
# Writes BASE/servers.json (ports, URLs, paths) and BASE/env.sh. Stop with down.sh BASE (PID files only).
# usage: up.sh BASE        env: XRD_PORT=21094 XRD_HTTP_PORT=21095 DAV_PORT=21080 DAVS_PORT=21443 (the recipe's;
#        a port already in use is replaced by a free one), OWNER_PID (stop everything when that process ends),
#        PROXY_HOURS=12, READY_TIMEOUT=20 (seconds per server)
# Whatever a previous (killed) run left under BASE is stopped by its PID files and wiped first.
set -euo pipefail
BASE=${1:?usage: up.sh BASE}
HERE=$(cd "$(dirname "$0")" && pwd)
READY_TIMEOUT=${READY_TIMEOUT:-20}
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
die() { echo "up.sh: $*" >&2; exit 1; }
for tool in xrootd xrdfs nginx openssl envsubst curl ss; do
    command -v "$tool" >/dev/null || die "$tool not found: run $HERE/install.sh first"
done

mkdir -p "$BASE"
BASE=$(cd "$BASE" && pwd -P)
[ "$BASE" != / ] || die "refusing BASE=/"
# wipe a previous run's state, but never a dir that up.sh did not make (the marker file says it did)
if [ -n "$(ls -A "$BASE")" ] && [ ! -e "$BASE/.pilot-test-backends" ] && [ ! -e "$BASE/pki/ca.pem" ]; then
    die "$BASE is not empty and was not made by up.sh: refusing to wipe it"
fi
"$HERE/down.sh" "$BASE" >/dev/null 2>&1 || true
find "$BASE" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
touch "$BASE/.pilot-test-backends"
# xrootd and the nginx workers drop privileges: BASE and every parent must be traversable by them
chmod 0755 "$BASE"
d=$(dirname "$BASE")
while [ "$d" != / ]; do
    [ "$(( 0$(stat -c %a "$d") & 01 ))" -ne 0 ] || chmod o+x "$d"   # add o+x only where missing (never touch /tmp's mode)
    d=$(dirname "$d")
done

# --- ports ---------------------------------------------------------------------------------------------------
TAKEN=" "
in_use() { [[ $TAKEN == *" $1 "* ]] || [ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ]; }
pick() {   # pick VAR PREFERRED: PREFERRED, or a free port in 22000-24999
    local var=$1 p=$2 n=0
    while in_use "$p"; do
        n=$((n + 1)); [ $n -le 500 ] || die "no free port for $var"
        p=$(( 22000 + (RANDOM % 3000) ))
    done
    TAKEN+="$p "; printf -v "$var" '%s' "$p"
}
pick XRD_PORT "${XRD_PORT:-21094}"; pick XRD_HTTP_PORT "${XRD_HTTP_PORT:-21095}"
pick DAV_PORT "${DAV_PORT:-21080}"; pick DAVS_PORT "${DAVS_PORT:-21443}"

# --- PKI -----------------------------------------------------------------------------------------------------
T=$(date +%s%N)
"$HERE/make-pki.sh" "$BASE/pki" "${PROXY_HOURS:-12}" >/dev/null
PKI=$BASE/pki
echo "up.sh: pki $(ms "$T") ms"

# --- XRootD (refuses to run as root: -R drops to the xrootd user) ----------------------------------------------
RUNAS=xrootd; id xrootd >/dev/null 2>&1 || RUNAS=nobody
X=$BASE/xrootd
start_xrootd() {
    rm -rf "$X"; mkdir -p "$X"/{data,adm,log,tls}
    sed -e "s#@DATA@#$X/data#; s#@RPORT@#$XRD_PORT#; s#@HPORT@#$XRD_HTTP_PORT#" "$HERE/xrootd-plain.cfg.in" > "$X/xrootd.cfg"
    cat >> "$X/xrootd.cfg" <<CFG
# TLS for XrdHttp: the same port answers https (davs) as well
xrd.tls $X/tls/hostcert.pem $X/tls/hostkey.pem
xrd.tlsca certdir $PKI/certificates
CFG
    cp "$PKI/hostcert.pem" "$PKI/hostkey.pem" "$X/tls/"
    chown -R "$RUNAS" "$X"; chmod 600 "$X/tls/hostkey.pem"
    runuser -u "$RUNAS" -- test -w "$X/log" || die "$RUNAS cannot reach $X (a parent dir is not traversable)"
    # cwd becomes its home dir (<cwd>/ci)
    (cd "$X" && timeout 20 xrootd -b -R "$RUNAS" -c "$X/xrootd.cfg" -n ci -a "$X/adm" -l "$X/log/xrootd.log" \
        -s "$X/xrootd.pid" -k 3 </dev/null >/dev/null 2>&1) || return 1
    local deadline=$(( $(date +%s) + READY_TIMEOUT )) pid=""
    while [ "$(date +%s)" -lt "$deadline" ]; do
        [ -s "$X/xrootd.pid" ] && pid=$(cat "$X/xrootd.pid")
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi   # died (port taken meanwhile?)
        if [ -n "$pid" ] && ss -Htlnp "sport = :$XRD_PORT" | grep -q "pid=$pid," \
           && timeout 5 xrdfs "root://127.0.0.1:$XRD_PORT" query config version >/dev/null 2>&1 \
           && [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$PKI/ca.pem" \
                  "https://127.0.0.1:$XRD_HTTP_PORT/")" != 000 ]; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}
T=$(date +%s%N)
for attempt in 1 2 3; do
    start_xrootd && break
    echo "up.sh: xrootd attempt $attempt failed on ports $XRD_PORT/$XRD_HTTP_PORT:" >&2
    tail -5 "$X/log/ci/xrootd.log" >&2 2>/dev/null || true
    [ -s "$X/xrootd.pid" ] && "$HERE/down.sh" "$BASE" >/dev/null 2>&1
    [ "$attempt" -lt 3 ] || die "xrootd did not come up within ${READY_TIMEOUT} s (log: $X/log/ci/xrootd.log)"
    pick XRD_PORT 22000; pick XRD_HTTP_PORT 22001
done
echo "up.sh: xrootd $(ms "$T") ms (root://127.0.0.1:$XRD_PORT, http(s)://127.0.0.1:$XRD_HTTP_PORT)"

# --- nginx WebDAV ----------------------------------------------------------------------------------------------
W=$BASE/webdav
start_nginx() {
    rm -rf "$W"; mkdir -p "$W"/{data,tmp}
    chown -R www-data "$W/data" "$W/tmp"      # workers run as www-data (the master as root)
    BASE=$W PKI=$PKI DAV_PORT=$DAV_PORT DAVS_PORT=$DAVS_PORT \
        envsubst '${BASE} ${DAV_PORT} ${DAVS_PORT} ${PKI}' < "$HERE/nginx-dav.conf.in" > "$W/nginx.conf"
    timeout 20 nginx -c "$W/nginx.conf" -e "$W/error.log" -g "user www-data;" </dev/null >/dev/null 2>"$W/start.err" \
        || return 1
    local deadline=$(( $(date +%s) + READY_TIMEOUT )) pid=""
    while [ "$(date +%s)" -lt "$deadline" ]; do
        [ -s "$W/nginx.pid" ] && pid=$(cat "$W/nginx.pid")
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
        if [ -n "$pid" ] && curl -sf -o /dev/null --max-time 5 "http://127.0.0.1:$DAV_PORT/" \
           && curl -sf -o /dev/null --max-time 5 --cacert "$PKI/ca.pem" "https://127.0.0.1:$DAVS_PORT/"; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}
T=$(date +%s%N)
for attempt in 1 2 3; do
    start_nginx && break
    echo "up.sh: nginx attempt $attempt failed on ports $DAV_PORT/$DAVS_PORT:" >&2
    cat "$W/start.err" >&2 2>/dev/null; tail -5 "$W/error.log" >&2 2>/dev/null || true
    [ -s "$W/nginx.pid" ] && "$HERE/down.sh" "$BASE" >/dev/null 2>&1
    [ "$attempt" -lt 3 ] || die "nginx did not come up within ${READY_TIMEOUT} s (log: $W/error.log)"
    pick DAV_PORT 22000; pick DAVS_PORT 22001
done
echo "up.sh: nginx-dav $(ms "$T") ms (http://127.0.0.1:$DAV_PORT, https://127.0.0.1:$DAVS_PORT)"

# --- watchdog: stop everything when the owner (e.g. the pytest process) dies without calling down.sh ----------
if [ -n "${OWNER_PID:-}" ] && kill -0 "$OWNER_PID" 2>/dev/null; then
    setsid bash -c 'tail --pid="$1" -f /dev/null; exec "$2" "$3"' watchdog "$OWNER_PID" "$HERE/down.sh" "$BASE/" \
        </dev/null >/dev/null 2>&1 &
    echo $! > "$BASE/watchdog.pid"
fi

# --- what the tests read -----------------------------------------------------------------------------------------
cat > "$BASE/servers.json" <<JSON
{
  "base": "$BASE",
  "ports": {"xrootd": $XRD_PORT, "xrootd_http": $XRD_HTTP_PORT, "webdav_http": $DAV_PORT, "webdav_https": $DAVS_PORT},
  "xrootd_root": "root://127.0.0.1:$XRD_PORT/",
  "xrootd_http": "http://127.0.0.1:$XRD_HTTP_PORT/",
  "xrootd_https": "https://127.0.0.1:$XRD_HTTP_PORT/",
  "xrootd_davs": "davs://127.0.0.1:$XRD_HTTP_PORT/",
  "xrootd_data": "$X/data",
  "xrootd_user": "$RUNAS",
  "xrootd_log": "$X/log/ci/xrootd.log",
  "webdav_http": "http://127.0.0.1:$DAV_PORT/",
  "webdav_https": "https://127.0.0.1:$DAVS_PORT/",
  "webdav_davs": "davs://127.0.0.1:$DAVS_PORT/",
  "webdav_data": "$W/data",
  "webdav_user": "www-data",
  "webdav_log": "$W/error.log",
  "pki": "$PKI",
  "ca_dir": "$PKI/certificates",
  "ca_file": "$PKI/ca.pem",
  "voms_dir": "$PKI/vomsdir",
  "proxy": "$PKI/x509up",
  "voms_proxy": "$( [ -s "$PKI/x509up_voms" ] && echo "$PKI/x509up_voms" )"
}
JSON
cat > "$BASE/env.sh" <<ENV
export X509_CERT_DIR=$PKI/certificates X509_VOMS_DIR=$PKI/vomsdir X509_USER_PROXY=$PKI/x509up
export GFAL_PYTHONBIN=/usr/bin/python3 XRD_CONNECTIONRETRY=1
export XRD_ROOT=root://127.0.0.1:$XRD_PORT XRD_HTTP=http://127.0.0.1:$XRD_HTTP_PORT XRD_DAVS=davs://127.0.0.1:$XRD_HTTP_PORT
export DAV_HTTP=http://127.0.0.1:$DAV_PORT DAV_DAVS=davs://127.0.0.1:$DAVS_PORT
ENV
echo "up.sh: ready; servers: $BASE/servers.json, env: source $BASE/env.sh"
