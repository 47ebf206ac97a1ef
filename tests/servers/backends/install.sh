#!/bin/bash
# Install what the real storage backends of the integration tests need (idempotent, root, no stdin):
#   XRootD server + client tools (xrdcp, xrdfs), gfal2 CLI (gfal-copy/-sum/-ls/-rm) + python3-gfal2 for
#   Debian's /usr/bin/python3, nginx with WebDAV, openssl + voms-clients (test PKI and VOMS-style proxies).
# usage: install.sh [--rucio]        --rucio: also the Rucio server/client venvs under $PILOT_TEST_PREFIX
# PILOT_TEST_PREFIX (default /opt/pilot-test) holds the venvs and the stamp files; a second run takes < 1 s.
set -euo pipefail
PREFIX=${PILOT_TEST_PREFIX:-/opt/pilot-test}
RUCIO=0
for arg in "$@"; do
    case $arg in
        --rucio) RUCIO=1 ;;
        *) echo "install.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
export DEBIAN_FRONTEND=noninteractive
PKGS=(xrootd-server xrootd-client gfal2 gfal2-util-scripts python3-gfal2 gfal2-plugin-file gfal2-plugin-http
      gfal2-plugin-xrootd nginx libnginx-mod-http-dav-ext gettext-base curl openssl voms-clients iproute2)
# the Rucio xrootd protocol calls the xrdcp CLI; its gfal impl imports Debian's gfal2 module
[ "$RUCIO" = 1 ] && PKGS+=(python3-venv)
missing=()
for pkg in "${PKGS[@]}"; do
    # dpkg-query is the truth (a stamp file cannot tell that a package was removed); ~5 ms per package
    [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install.sh: apt-get install ${missing[*]}"
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq </dev/null
    $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
fi
for tool in xrootd xrdcp xrdfs gfal-copy gfal-sum gfal-ls gfal-rm nginx openssl envsubst curl voms-proxy-fake ss; do
    command -v "$tool" >/dev/null || { echo "install.sh: $tool missing after install" >&2; exit 1; }
done
/usr/bin/python3 -c 'import gfal2' || { echo "install.sh: python3-gfal2 not importable by /usr/bin/python3" >&2; exit 1; }
[ -e /usr/lib/nginx/modules/ngx_http_dav_ext_module.so ] || { echo "install.sh: nginx dav-ext module missing" >&2; exit 1; }

if [ "$RUCIO" = 1 ]; then
    RUCIO_VERSION=${RUCIO_VERSION:-41.5.1}
    $SUDO mkdir -p "$PREFIX"
    # server venv on Debian's python3 (never the pilot's interpreter), sqlite + gunicorn
    stamp="$PREFIX/rucio-srv/.installed-$RUCIO_VERSION"
    if [ ! -e "$stamp" ]; then
        rm -rf "$PREFIX/rucio-srv"
        /usr/bin/python3 -m venv "$PREFIX/rucio-srv"
        "$PREFIX/rucio-srv/bin/pip" install -q --disable-pip-version-check "rucio==$RUCIO_VERSION" gunicorn </dev/null
        touch "$stamp"
    fi
    # client venv (Debian's python3 3.11: the python3-gfal2 module is importable through a one-module .pth dir)
    stamp="$PREFIX/rucio-cli/.installed-$RUCIO_VERSION"
    if [ ! -e "$stamp" ]; then
        rm -rf "$PREFIX/rucio-cli"
        /usr/bin/python3 -m venv "$PREFIX/rucio-cli"
        "$PREFIX/rucio-cli/bin/pip" install -q --disable-pip-version-check "rucio-clients==$RUCIO_VERSION" </dev/null
        site=$("$PREFIX/rucio-cli/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
        so=$(/usr/bin/python3 -c 'import gfal2; print(gfal2.__file__)')
        mkdir -p "$PREFIX/rucio-cli/debgfal2"
        ln -sf "$so" "$PREFIX/rucio-cli/debgfal2/"
        echo "$PREFIX/rucio-cli/debgfal2" > "$site/debian-gfal2.pth"
        touch "$stamp"
    fi
fi
echo "install.sh: storage backends ready"
