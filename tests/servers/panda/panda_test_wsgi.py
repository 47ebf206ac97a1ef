"""
WSGI entry point for running the *real* PanDA server (pandaserver.server.panda.application) under werkzeug for the
integration tests, on two listeners of one process (adapted from the project's reference recipe):

  * HTTPS (PANDA_TEST_HTTPS_PORT, certificate and CA from PANDA_TEST_PKI, made by tests/servers/backends/make-pki.sh):
    this shim plays Apache's mod_ssl + mod_gridsite for real. It asks for a client certificate (optional, as
    `SSLVerifyClient optional`), verifies it against the test CA, accepting RFC 3820 proxies, and exports what the
    PanDA code reads: SSL_CLIENT_S_DN / SSL_CLIENT_I_DN / SSL_CLIENT_VERIFY of the presented certificate and
    GRST_CRED_0 (X509USER, the end-entity DN) + GRST_CRED_1 (GSIPROXY) for a proxy. No certificate: no DN (a token
    client's identity then comes from its token, as in production). Test headers are ignored here.
  * plain HTTP (PANDA_TEST_HTTP_PORT): identity by test headers, for tests that need an identity the PKI has not:
      X-Test-DN: <dn>       -> SSL_CLIENT_S_DN = <dn>
      X-Test-FQAN: <fqan>   -> GRST_CRED_0 = "VOMS <fqan>"
      X-Test-Anonymous: 1   -> no DN at all ("SSL secure connection is required")
      none of these         -> SSL_CLIENT_S_DN = the default robot DN (listed in production_dns), unless the request
                               carries Authorization (a token client presents no certificate).

The PanDA code only checks that SSL_CLIENT_S_DN is present (Protocol.isSecure) and that the DN or an FQAN carries the
production role (api/v1/common.has_production_role), so the server's own authorisation code runs on either listener.

GET /cache/... is served from $PANDA_TEST_STATIC_CACHE (start.sh fills BASE/cache), as Apache's `Alias /cache/`
serves the server's cache directory in production: schedconfig/<queue>.all.json is what the server's
cache_schedconfig daemon writes from the schedconfig_json table (start.sh writes it from the same rows).

It also sets SCRIPT_NAME to the request path, because the server dispatches on SCRIPT_NAME (Apache's
WSGIScriptAliasMatch gives it the full path; a WSGI server mounted at '/' gives SCRIPT_NAME='' and the path in
PATH_INFO).

SIGUSR1 cuts the server (listeners closed, connections dropped: clients get "connection refused" as from a stopped
server), SIGUSR2 restores it; the process and its loaded application stay (PandaServer.cut() / restore()).

usage: python panda_test_wsgi.py PORT [BASE]     (BASE only marks the command line, so stop scripts know it is ours)
"""

import os
import signal
import socket
import ssl
import sys
import threading

_PORT = os.environ.get("PANDA_TEST_HTTP_PORT", "25080")
os.environ.setdefault("PANDA_HOME", "/tmp/panda_home")  # -> $PANDA_HOME/etc/panda/panda_server.cfg, panda_common.cfg
# pandaclient (imported by the server's workflow code) resolves these hosts at import time; keep it offline
os.environ.setdefault("PANDA_BEHIND_REAL_LB", "1")
for _var in ("PANDA_URL", "PANDA_URL_SSL", "PANDACACHE_URL"):
    os.environ.setdefault(_var, f"http://127.0.0.1:{_PORT}/server/panda")
os.environ.setdefault("TZ", "UTC")

from pandaserver.server.panda import application as panda_application  # noqa: E402

DEFAULT_DN = os.environ.get("PANDA_TEST_DN", "/DC=test/OU=Robots/CN=Robot: test pilot")


_STATIC = os.environ.get("PANDA_TEST_STATIC_CACHE", "")


def _static(relative, start_response):
    """A file under the static cache dir (no '..', no absolute paths), as Apache's Alias would serve it."""
    parts = [part for part in relative.split("/") if part]
    path = os.path.join(_STATIC, *parts)
    if not _STATIC or any(part in (".", "..") for part in parts) or not os.path.isfile(path):
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    with open(path, "rb") as handle:
        body = handle.read()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


# getpeercert() attribute names -> the short names of OpenSSL's legacy "/DC=x/CN=y" form (mod_ssl's
# LegacyDNStringFormat, which PanDA's DN handling expects)
_SHORT = {"domainComponent": "DC", "commonName": "CN", "organizationalUnitName": "OU", "organizationName": "O",
          "countryName": "C", "localityName": "L", "stateOrProvinceName": "ST", "emailAddress": "emailAddress"}


def _dn(name):
    return "".join(f"/{_SHORT.get(key, key)}={value}" for rdn in name for key, value in rdn)


def _certificate_identity(environ, cert):
    """What mod_ssl + mod_gridsite export for a verified client certificate (an end-entity or an RFC 3820 proxy)."""
    subject, issuer = _dn(cert.get("subject", ())), _dn(cert.get("issuer", ()))
    environ["SSL_CLIENT_S_DN"] = subject
    environ["SSL_CLIENT_I_DN"] = issuer
    environ["SSL_CLIENT_VERIFY"] = "SUCCESS"
    times = f"{int(ssl.cert_time_to_seconds(cert['notBefore']))} {int(ssl.cert_time_to_seconds(cert['notAfter']))}"
    # a proxy's subject is its issuer's plus one CN (RFC 3820); its issuer is then the end entity
    if subject.startswith(issuer + "/CN=") and "/" not in subject[len(issuer) + 1:]:
        environ["GRST_CRED_0"] = f"X509USER {times} 0 {issuer}"
        environ["GRST_CRED_1"] = f"GSIPROXY {times} 1 {subject}"
    else:
        environ["GRST_CRED_0"] = f"X509USER {times} 0 {subject}"


def application(environ, start_response):
    path = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")) or "/"
    if path.startswith("/cache/") and environ.get("REQUEST_METHOD", "GET") in ("GET", "HEAD"):
        return _static(path[len("/cache/"):], start_response)
    environ["SCRIPT_NAME"] = path
    environ["PATH_INFO"] = ""
    for key in [k for k in environ if k.startswith(("SSL_CLIENT_", "GRST_CRED_", "GRST_CONN_"))]:
        del environ[key]  # only this shim decides the identity
    connection = environ.get("werkzeug.socket")
    if isinstance(connection, ssl.SSLSocket):
        environ["HTTPS"] = "on"
        cert = connection.getpeercert()
        if cert:  # verified by the TLS layer against the test CA, or the handshake failed
            _certificate_identity(environ, cert)
    elif environ.get("HTTP_X_TEST_ANONYMOUS") != "1":
        dn = environ.get("HTTP_X_TEST_DN")
        if dn is None and "HTTP_AUTHORIZATION" not in environ:
            dn = DEFAULT_DN
        if dn is not None:
            environ["SSL_CLIENT_S_DN"] = dn
            if environ.get("HTTP_X_TEST_FQAN"):
                environ["GRST_CRED_0"] = "VOMS " + environ["HTTP_X_TEST_FQAN"]
    return panda_application(environ, start_response)


def tls_context(pki):
    """Server context: the test host certificate; client certificates optional, verified against the test CA, RFC 3820
    proxies accepted (Apache: SSLVerifyClient optional + OPENSSL_ALLOW_PROXY_CERTS)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.path.join(pki, "hostcert.pem"), os.path.join(pki, "hostkey.pem"))
    context.load_verify_locations(cafile=os.path.join(pki, "ca.pem"))
    context.verify_mode = ssl.CERT_OPTIONAL
    context.verify_flags |= ssl.VERIFY_ALLOW_PROXY_CERTS
    return context


def make_servers(http_port, https_port=None, pki=None):
    """The listeners: [plain HTTP] or [plain HTTP, HTTPS]. Each tracks its open connections, so that a cut (see
    Listeners) can drop them as a stopped server would."""
    from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

    WSGIRequestHandler.protocol_version = "HTTP/1.1"  # keep-alive, as Apache; the pilot's session reuses connections

    class Server(ThreadedWSGIServer):
        def __init__(self, port):
            super().__init__("127.0.0.1", port, application)
            self.open_connections = set()
            self.lock = threading.Lock()

        def get_request(self):
            request = super().get_request()
            with self.lock:
                self.open_connections.add(request[0])
            return request

        def shutdown_request(self, request):
            with self.lock:
                self.open_connections.discard(request)
            super().shutdown_request(request)

        def drop_connections(self):
            with self.lock:
                connections, self.open_connections = list(self.open_connections), set()
            for connection in connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed by its handler

    class TLSServer(Server):
        """HTTPS with the handshake in the request's thread: werkzeug's own TLS wraps the listening socket, so a
        client that connects and never completes the handshake would block accept() for everyone."""

        def __init__(self, port, context):
            super().__init__(port)
            self.tls, self.ssl_context = context, context  # ssl_context: werkzeug then sets wsgi.url_scheme https

        def get_request(self):
            sock, address = self.socket.accept()
            request = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            with self.lock:
                self.open_connections.add(request)
            return request, address

        def finish_request(self, request, client_address):
            request.settimeout(30)
            try:
                request.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                print(f"TLS handshake with {client_address[0]}:{client_address[1]} failed: {exc}", file=sys.stderr)
                return
            request.settimeout(None)
            super().finish_request(request, client_address)

    def make():
        servers = [Server(int(http_port))]
        if https_port and pki:
            servers.append(TLSServer(int(https_port), tls_context(pki)))
        return servers

    return make


class Listeners:
    """Serves until SIGTERM. SIGUSR1 cuts the server: the listening sockets are closed (connection refused) and open
    connections dropped, as if the process had stopped, but the application stays loaded, so SIGUSR2 brings it back
    within milliseconds instead of the seconds a new process needs to import the server."""

    def __init__(self, make):
        self.make = make
        self.servers = []

    def up(self):
        self.servers = self.make()
        for server in self.servers:
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        print(f"listening on {[s.server_address[1] for s in self.servers]}", file=sys.stderr, flush=True)

    def down(self):
        for server in self.servers:
            server.shutdown()  # returns once serve_forever has stopped
            server.server_close()
            server.drop_connections()
        self.servers = []
        print("cut: not listening", file=sys.stderr, flush=True)

    def run(self):
        controls = {signal.SIGUSR1, signal.SIGUSR2}
        signal.pthread_sigmask(signal.SIG_BLOCK, controls)  # taken by sigwait below, in every thread (inherited)
        self.up()
        while True:
            received = signal.sigwait(controls)
            if received == signal.SIGUSR1 and self.servers:
                self.down()
            elif received == signal.SIGUSR2 and not self.servers:
                self.up()


if __name__ == "__main__":
    Listeners(make_servers(sys.argv[1] if len(sys.argv) > 1 else _PORT, os.environ.get("PANDA_TEST_HTTPS_PORT"),
                           os.environ.get("PANDA_TEST_PKI"))).run()
