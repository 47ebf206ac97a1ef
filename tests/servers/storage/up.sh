#!/bin/bash
# Real storage for the copytool tests, on 127.0.0.1 only: a test CA and host certificate, an XRootD server
# (root:// on XRD_PORT; http and https/davs on XRD_HTTP_PORT; adler32 computed server side) and nginx WebDAV
# (dav on DAV_PORT, davs on DAVS_PORT; no checksums). Stop with down.sh BASE (by PID files).
# usage: up.sh BASE [XRD_PORT XRD_HTTP_PORT DAV_PORT DAVS_PORT]
set -euo pipefail
BASE=$1; RPORT=${2:-21094}; HPORT=${3:-21095}; DAV_PORT=${4:-21080}; DAVS_PORT=${5:-21443}
HERE=$(cd "$(dirname "$0")" && pwd)
need=()
for pkg in xrootd-server xrootd-client gfal2 gfal2-util-scripts gfal2-plugin-file gfal2-plugin-http \
           gfal2-plugin-xrootd nginx libnginx-mod-http-dav-ext openssl gettext-base; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq </dev/null
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}" </dev/null >/dev/null
fi
"$HERE/down.sh" "$BASE" >/dev/null 2>&1 || true
rm -rf "$BASE"; mkdir -p "$BASE"/{pki/certificates,xrootd/data,xrootd/adm,xrootd/log,nginx/data,nginx/tmp}
d=$BASE; while [ "$d" != / ]; do chmod o+x "$d" 2>/dev/null || true; d=$(dirname "$d"); done

# --- a throw-away CA and a host certificate for localhost / 127.0.0.1 ------------------------------------------
cd "$BASE/pki"
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/DC=test/DC=pilot/CN=Pilot Test CA" \
    -addext "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
cp ca.pem "certificates/$(openssl x509 -in ca.pem -noout -hash).0"
openssl req -newkey rsa:2048 -nodes -keyout hostkey.pem -out host.csr -subj "/DC=test/DC=pilot/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > host.ext
openssl x509 -req -in host.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out hostcert.pem -extfile host.ext 2>/dev/null
chmod 644 hostcert.pem hostkey.pem

# --- XRootD (refuses to run as root) -----------------------------------------------------------------------------
RUNAS=xrootd; id xrootd >/dev/null 2>&1 || RUNAS=nobody
X=$BASE/xrootd
sed -e "s#@DATA@#$X/data#; s#@RPORT@#$RPORT#; s#@HPORT@#$HPORT#" "$HERE/xrootd-plain.cfg.in" > "$X/xrootd.cfg"
mkdir -p "$X/tls" && cp "$BASE/pki/hostcert.pem" "$BASE/pki/hostkey.pem" "$X/tls/"
cat >> "$X/xrootd.cfg" <<CFG
xrd.tls $X/tls/hostcert.pem $X/tls/hostkey.pem
xrd.tlsca certdir $BASE/pki/certificates
CFG
chown -R "$RUNAS" "$X"; chmod 600 "$X/tls/hostkey.pem"
(cd "$X" && xrootd -b -R "$RUNAS" -c "$X/xrootd.cfg" -n ci -a "$X/adm" -l "$X/log/xrootd.log" -s "$X/xrootd.pid" -k 3)
for _ in $(seq 1 250); do xrdfs "root://127.0.0.1:$RPORT" query config version >/dev/null 2>&1 && break; sleep 0.02; done
xrdfs "root://127.0.0.1:$RPORT" query config version >/dev/null || { echo "xrootd did not start" >&2; exit 1; }

# --- nginx WebDAV -------------------------------------------------------------------------------------------------
N=$BASE/nginx
chown -R www-data "$N/data" "$N/tmp"
PKI_DIR=$BASE/pki
BASE=$N DAV_PORT=$DAV_PORT DAVS_PORT=$DAVS_PORT PKI=$PKI_DIR \
    envsubst '${BASE} ${DAV_PORT} ${DAVS_PORT} ${PKI}' < "$HERE/nginx-dav.conf.in" > "$N/nginx.conf"
nginx -c "$N/nginx.conf" -e "$N/error.log" -g "user www-data;"
for _ in $(seq 1 100); do [ -s "$N/nginx.pid" ] && break; sleep 0.02; done
echo "storage up: root://127.0.0.1:$RPORT https://localhost:$HPORT dav://127.0.0.1:$DAV_PORT davs://localhost:$DAVS_PORT"
