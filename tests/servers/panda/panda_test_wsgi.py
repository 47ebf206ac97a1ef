"""
WSGI entry point for running the *real* PanDA server (pandaserver.server.panda.application)
behind a plain-HTTP WSGI server for integration tests.

In production, Apache (mod_ssl + mod_gridsite) authenticates the X509 proxy and exports
SSL_CLIENT_S_DN and GRST_CRED_* (VOMS FQANs) into the WSGI environ; the PanDA code only
checks that those variables are present (Protocol.isSecure) and that the DN or an FQAN
carries the production role (api/v1/common.has_production_role).  This shim emulates that
front end so that the server's own authorisation code still runs:

  * X-Test-DN header      -> SSL_CLIENT_S_DN  (default: a DN listed in production_dns)
  * X-Test-FQAN header    -> GRST_CRED_0 = "VOMS <fqan>"   (optional)
  * X-Test-Anonymous: 1   -> no DN at all (to test the "SSL secure connection is required" path)

It also sets SCRIPT_NAME to the request path, because the server dispatches on SCRIPT_NAME
(Apache's WSGIScriptAliasMatch gives it the full path; a generic WSGI server mounted at '/'
gives SCRIPT_NAME='' and the path in PATH_INFO).
"""

import os

os.environ.setdefault("PANDA_HOME", "/tmp/panda_home")  # -> $PANDA_HOME/etc/panda/panda_server.cfg, panda_common.cfg
# pandaclient (imported by the server's workflow code) resolves these hosts at import time; keep it offline
os.environ.setdefault("PANDA_BEHIND_REAL_LB", "1")
for _var in ("PANDA_URL", "PANDA_URL_SSL", "PANDACACHE_URL"):
    os.environ.setdefault(_var, f"http://127.0.0.1:{os.environ.get('PANDA_TEST_PORT', '25080')}/server/panda")
os.environ.setdefault("TZ", "UTC")

from pandaserver.server.panda import application as panda_application  # noqa: E402

DEFAULT_DN = os.environ.get("PANDA_TEST_DN", "/DC=test/OU=Robots/CN=Robot: test pilot")


def application(environ, start_response):
    path = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")) or "/"
    environ["SCRIPT_NAME"] = path
    environ["PATH_INFO"] = ""
    if environ.get("HTTP_X_TEST_ANONYMOUS") != "1":
        environ["SSL_CLIENT_S_DN"] = environ.get("HTTP_X_TEST_DN", DEFAULT_DN)
        if environ.get("HTTP_X_TEST_FQAN"):
            environ["GRST_CRED_0"] = "VOMS " + environ["HTTP_X_TEST_FQAN"]
    return panda_application(environ, start_response)


if __name__ == "__main__":
    # fallback: stdlib/werkzeug development server (threaded), e.g.  python panda_test_wsgi.py 25080
    import sys

    from werkzeug.serving import run_simple

    run_simple("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 25080, application, threaded=True)
