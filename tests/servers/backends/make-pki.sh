#!/bin/bash
# Throw-away grid-like test PKI (openssl only; adapted from shared recipes/backends/pki/make-test-pki.sh):
#   ca.pem/ca.key + certificates/<hash>.0 (+ .signing_policy, .namespaces)   -> X509_CERT_DIR
#   hostcert.pem/hostkey.pem  CN=localhost, SAN DNS:localhost, IP:127.0.0.1 (TLS servers)
#   usercert.pem/userkey.pem  /DC=test/DC=pilot/CN=Test User
#   x509up        RFC 3820 proxy (proxy cert + key + user cert) valid PROXY_HOURS hours (<= 0: already expired)
#   robotcert.pem/robotkey.pem + x509up_robot  /DC=test/DC=pilot/OU=Robots/CN=Robot: test pilot and its proxy (the
#                 PanDA test server lists 'CN=Robot: test pilot' in production_dns: a production pilot's identity)
#   vomsdir/testvo/localhost.lsc + x509up_voms (VOMS AC /testvo/Role=production, from voms-proxy-fake)
# usage: make-pki.sh OUTDIR [PROXY_HOURS]
set -euo pipefail
OUT=${1:?outdir}; HOURS=${2:-12}
mkdir -p "$OUT/certificates"; cd "$OUT"
export RANDFILE=$OUT/.rnd
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 \
  -subj "/DC=test/DC=pilot/CN=Pilot Test CA" \
  -addext "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
H=$(openssl x509 -in ca.pem -noout -hash)
cp ca.pem "certificates/$H.0"
cat > "certificates/$H.signing_policy" <<SP
access_id_CA   X509   '/DC=test/DC=pilot/CN=Pilot Test CA'
pos_rights     globus CA:sign
cond_subjects  globus '"/DC=test/DC=pilot/*"'
SP
cat > "certificates/$H.namespaces" <<NS
TO Issuer "/DC=test/DC=pilot/CN=Pilot Test CA" PERMIT Subject "/DC=test/DC=pilot/.*"
NS
openssl req -newkey rsa:2048 -nodes -keyout hostkey.pem -out host.csr -subj "/DC=test/DC=pilot/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n' > host.ext
openssl x509 -req -in host.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -out hostcert.pem -extfile host.ext 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout userkey.pem -out user.csr -subj "/DC=test/DC=pilot/CN=Test User" 2>/dev/null
printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment,dataEncipherment\n' > user.ext
openssl x509 -req -in user.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -out usercert.pem -extfile user.ext 2>/dev/null
chmod 400 userkey.pem hostkey.pem ca.key
# RFC 3820 proxy with an exact lifetime ('openssl ca' takes -startdate/-enddate; 'x509 -req' only -days)
# make_proxy EEC_CERT EEC_KEY OUT: OUT = proxy cert + key + EEC cert, subject = the EEC's + /CN=<serial>
make_proxy() {
  local cert=$1 key=$2 out=$3 subject SER NOW NB NA HEX
  subject=$(openssl x509 -in "$cert" -noout -subject -nameopt compat | sed 's/^subject=//')
  SER=$(( (RANDOM << 15) | RANDOM ))
  openssl req -newkey rsa:2048 -nodes -keyout proxy.key -out proxy.csr -subj "$subject/CN=$SER" 2>/dev/null
  NOW=$(date -u +%s); NB=$(date -u -d "@$((NOW - 300))" +%Y%m%d%H%M%SZ); NA=$(date -u -d "@$((NOW + HOURS * 3600))" +%Y%m%d%H%M%SZ)
  [ "$HOURS" -gt 0 ] || NB=$(date -u -d "@$((NOW + HOURS * 3600 - 3600))" +%Y%m%d%H%M%SZ)
  rm -rf pdb; mkdir pdb; : > pdb/index.txt
  HEX=$(printf '%X' "$SER"); [ $(( ${#HEX} % 2 )) -eq 0 ] || HEX=0$HEX; echo "$HEX" > pdb/serial
  cat > pdb/ca.cnf <<CNF
[ ca ]
default_ca = px
[ px ]
database = pdb/index.txt
serial = pdb/serial
new_certs_dir = pdb
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
email_in_dn = no
preserve = yes
[ anything ]
DC = optional
OU = optional
CN = optional
[ proxy_ext ]
proxyCertInfo = critical,language:id-ppl-inheritAll
keyUsage = critical,digitalSignature,keyEncipherment,dataEncipherment
CNF
  openssl ca -batch -config pdb/ca.cnf -extensions proxy_ext -notext -preserveDN \
    -cert "$cert" -keyfile "$key" -startdate "$NB" -enddate "$NA" -in proxy.csr -out proxy.crt 2>/dev/null
  cat proxy.crt proxy.key "$cert" > "$out"; chmod 600 "$out"
}
make_proxy usercert.pem userkey.pem x509up
openssl req -newkey rsa:2048 -nodes -keyout robotkey.pem -out robot.csr \
  -subj "/DC=test/DC=pilot/OU=Robots/CN=Robot: test pilot" 2>/dev/null
openssl x509 -req -in robot.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -out robotcert.pem -extfile user.ext 2>/dev/null
chmod 400 robotkey.pem
make_proxy robotcert.pem robotkey.pem x509up_robot
rm -rf ./*.csr ./*.ext proxy.crt proxy.key pdb ./*.srl
# VOMS: the host cert plays the VOMS server of vo 'testvo'
mkdir -p vomsdir/testvo
{ openssl x509 -in hostcert.pem -noout -subject -nameopt compat | sed 's/^subject=//'
  openssl x509 -in hostcert.pem -noout -issuer  -nameopt compat | sed 's/^issuer=//'; } > vomsdir/testvo/localhost.lsc
if command -v voms-proxy-fake >/dev/null && [ "$HOURS" -gt 0 ]; then
  X509_CERT_DIR="$OUT/certificates" timeout 30 voms-proxy-fake -q -rfc -cert usercert.pem -key userkey.pem \
    -hostcert hostcert.pem -hostkey hostkey.pem -voms testvo -uri localhost:15000 \
    -fqan /testvo/Role=production/Capability=NULL -fqan /testvo -hours "$HOURS" -vomslife "$HOURS" \
    -out x509up_voms </dev/null >/dev/null 2>&1 && chmod 600 x509up_voms
fi
chmod 0755 "$OUT" "$OUT/certificates" "$OUT/vomsdir" "$OUT/vomsdir/testvo"
chmod 0644 ca.pem hostcert.pem usercert.pem robotcert.pem certificates/* vomsdir/testvo/*
