"""
WSGI entry point for running the *real* PanDA server (pandaserver.server.panda.application) behind a plain-HTTP
WSGI server (werkzeug) for the integration tests. Adapted from shared/recipes/panda-server/panda_test_wsgi.py.

In production, Apache (mod_ssl + mod_gridsite) authenticates the X509 proxy and exports SSL_CLIENT_S_DN and GRST_CRED_*
(VOMS FQANs) into the WSGI environ; the PanDA code only checks that those variables are present (Protocol.isSecure)
and that the DN or an FQAN carries the production role (api/v1/common.has_production_role). This shim plays that
front end, so the server's own authorisation code still runs:

  * X-Test-DN: <dn>       -> SSL_CLIENT_S_DN = <dn>
  * X-Test-FQAN: <fqan>   -> GRST_CRED_0 = "VOMS <fqan>"
  * X-Test-Anonymous: 1   -> no DN at all ("SSL secure connection is required")
  * none of these         -> SSL_CLIENT_S_DN = the default robot DN (listed in production_dns), unless the request
                             carries Authorization: a token client presents no certificate, so its identity and role
                             come from the token alone (the server's oidc path), as in production.

GET /cache/... is served from $PANDA_TEST_STATIC_CACHE (start.sh fills BASE/cache), as Apache's `Alias /cache/`
serves the server's cache directory in production: schedconfig/<queue>.all.json is what the server's
cache_schedconfig daemon writes from the schedconfig_json table (start.sh writes it from the same rows).

It also sets SCRIPT_NAME to the request path, because the server dispatches on SCRIPT_NAME (Apache's
WSGIScriptAliasMatch gives it the full path; a WSGI server mounted at '/' gives SCRIPT_NAME='' and the path in
PATH_INFO).

usage: python panda_test_wsgi.py PORT [BASE]     (BASE only marks the command line, so stop scripts know it is ours)
"""

import os

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


def application(environ, start_response):
    path = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")) or "/"
    if path.startswith("/cache/") and environ.get("REQUEST_METHOD", "GET") in ("GET", "HEAD"):
        return _static(path[len("/cache/"):], start_response)
    environ["SCRIPT_NAME"] = path
    environ["PATH_INFO"] = ""
    for key in [k for k in environ if k.startswith(("SSL_CLIENT_", "GRST_CRED_", "GRST_CONN_"))]:
        del environ[key]  # only this shim decides the identity
    if environ.get("HTTP_X_TEST_ANONYMOUS") != "1":
        dn = environ.get("HTTP_X_TEST_DN")
        if dn is None and "HTTP_AUTHORIZATION" not in environ:
            dn = DEFAULT_DN
        if dn is not None:
            environ["SSL_CLIENT_S_DN"] = dn
            if environ.get("HTTP_X_TEST_FQAN"):
                environ["GRST_CRED_0"] = "VOMS " + environ["HTTP_X_TEST_FQAN"]
    return panda_application(environ, start_response)


if __name__ == "__main__":
    import sys

    from werkzeug.serving import WSGIRequestHandler, run_simple

    WSGIRequestHandler.protocol_version = "HTTP/1.1"  # keep-alive, as Apache; the pilot's session reuses connections
    run_simple("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else int(_PORT), application, threaded=True)
