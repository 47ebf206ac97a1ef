"""The pilot against the real PanDA server over HTTPS: the server's certificate is checked against the CA the pilot
is given (--cacert, --capath, X509_CERT_DIR), and the pilot's identity is the X509 proxy it presents as client
certificate (X509_USER_PROXY), verified by the server's TLS layer and turned into the DN the server's own
authorisation code reads, as Apache's mod_ssl + mod_gridsite do. No test header is involved on this listener."""

import os
import re
import subprocess
import sys

import pytest

from tests.e2e.pilotrun import PILOT, PilotRun
from tests.integration.test_panda_channel import queue_file

pytestmark = pytest.mark.slow

ROBOT_DN = "/DC=test/DC=pilot/OU=Robots/CN=Robot: test pilot"


def run_pilot(panda, tmp_path, *extra, env=None, timeout=120):
    """One pilot over HTTPS, -x 2 getJob attempts; no token unless `env` gives one, and no CA unless given."""
    cmd = [sys.executable, PILOT, "-q", panda.queue, "--url", panda.https_url, "--queuedata-url",
           queue_file(tmp_path), "-j", "managed", "-a", str(tmp_path), "-x", "2", *extra]
    environ = {k: v for k, v in os.environ.items()
               if k not in ("X509_CERT_DIR", "X509_USER_PROXY", "OIDC_AUTH_TOKEN", "PANDA_AUTH_TOKEN",
                            "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")}
    environ.update(PILOT_CFG_PILOT_UPDATE_RETRY_INITIAL="0.5", PILOT_CFG_PILOT_GETJOB_RETRY_INITIAL="0.2")
    environ.update(env or {})
    proc = subprocess.Popen(cmd, cwd=str(tmp_path), env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)
    out, err = proc.communicate(timeout=timeout)
    return PilotRun(str(tmp_path), proc, out, err)


def server_saw(panda, dn):
    """The roles the server's acquire_jobs logged for requests whose DN is `dn` plus a proxy's /CN=<serial>."""
    pattern = re.compile(re.escape(dn) + r"/CN=\d+, role=(\w+)")
    return pattern.findall(panda.log("api_pilot", lines=400))


def other_ca(tmp_path):
    """A CA that did not sign the server's certificate, as a file and as a hashed directory."""
    folder = tmp_path / "other-ca"
    folder.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(folder / "ca.key"),
                    "-out", str(folder / "ca.pem"), "-days", "1", "-subj", "/DC=test/CN=Other CA"],
                   check=True, capture_output=True, timeout=60)
    digest = subprocess.run(["openssl", "x509", "-in", str(folder / "ca.pem"), "-noout", "-hash"], check=True,
                            capture_output=True, text=True, timeout=60).stdout.strip()
    (folder / f"{digest}.0").write_bytes((folder / "ca.pem").read_bytes())
    return str(folder / "ca.pem"), str(folder)


def test_job_cycle_over_https_with_the_robot_proxy(panda, tmp_path):
    """--cacert trusts the test CA; the robot's proxy is the client certificate, so the server sees its DN (which
    is in production_dns) and hands out the job; the job ends holding/finished, all over TLS."""
    panda_id = panda.submit_job(outputs=["result.dat"], job_pars="-c 'echo done > result.dat'")
    run = run_pilot(panda, tmp_path, "--cacert", panda.ca_file, env={"X509_USER_PROXY": panda.robot_proxy})
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"server {panda.https_url}, X509 proxy ({panda.robot_proxy}), trusting {panda.ca_file}" in run.stderr
    assert "job %d: finished update acknowledged" % panda_id in run.stderr, run.stderr[-3000:]
    record = panda.job_record(panda_id)
    assert record["jobStatus"] == "holding" and record["pilotErrorCode"] == 0
    assert "True" in server_saw(panda, ROBOT_DN), panda.log("api_pilot")
    assert panda.archive(panda_id) == "finished"


@pytest.mark.parametrize("trust", ["--capath", "X509_CERT_DIR"])
def test_ca_directory_trusts_the_server(panda, tmp_path, trust):
    """A hashed CA directory (<hash>.0, as /etc/grid-security/certificates) given by --capath or X509_CERT_DIR
    verifies the server: the pilot asks for work and is told there is none (exit 0)."""
    extra, env = ([trust, panda.ca_dir], {}) if trust.startswith("--") else ([], {trust: panda.ca_dir})
    run = run_pilot(panda, tmp_path, *extra, env=dict(env, X509_USER_PROXY=panda.robot_proxy))
    assert run.returncode == 0 and "No jobs" in run.stderr, run.stderr[-3000:]
    assert f"trusting {panda.ca_dir}" in run.stderr and "CERTIFICATE_VERIFY_FAILED" not in run.stderr


def test_token_over_https(panda, tmp_path):
    """A token client presents no certificate: TLS still verifies the server, the token alone gives the identity."""
    panda_id = panda.submit_job()
    run = run_pilot(panda, tmp_path, "--cacert", panda.ca_file, env=panda.pilot_env(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"server {panda.https_url}, token (" in run.stderr and f"trusting {panda.ca_file}" in run.stderr
    assert panda.job_record(panda_id)["jobStatus"] == "holding"


@pytest.mark.parametrize("trust", ["none", "--cacert", "--capath"])
def test_server_of_an_unknown_ca_is_refused(panda, tmp_path, trust):
    """Without the test CA (system CAs only, or another CA's file or directory) the handshake fails: the pilot never
    talks to the server, takes no job, and ends with 79 (1318) at once -- the same trust would fail the same way,
    so it does not spend its -x attempts and their back-off on it."""
    panda_id = panda.submit_job()
    ca_file, ca_dir = other_ca(tmp_path)
    extra = {"none": [], "--cacert": ["--cacert", ca_file], "--capath": ["--capath", ca_dir]}[trust]
    run = run_pilot(panda, tmp_path, *extra, env={"X509_USER_PROXY": panda.robot_proxy})
    assert run.returncode == 79, run.stderr[-3000:]
    trusted = {"none": "system CAs", "--cacert": ca_file, "--capath": ca_dir}[trust]
    assert f"trusting {trusted}" in run.stderr
    # the first call to the server (at start-up) fails, with openssl's reason, and ends the pilot: no getJob
    assert (f"pilot failed: 1318 COMMUNICATIONFAILURE: {panda.https_url}: TLS certificate verification failed "
            f"(self-signed certificate in certificate chain), trusting {trusted}; give its CA with --cacert or "
            f"--capath") in run.stderr, run.stderr[-3000:]
    assert "getJob failed" not in run.stderr and "attempt" not in run.stderr
    assert panda.job_status(panda_id) == "activated"


def test_proxy_without_production_role_is_refused(panda, tmp_path):
    """A valid proxy of a user whose DN has no production role: the server reads that DN from the certificate and
    refuses to hand out the production job; the pilot stops at once with 1163 (exit 68), not retrying."""
    panda_id = panda.submit_job()
    run = run_pilot(panda, tmp_path, "--cacert", panda.ca_file, env={"X509_USER_PROXY": panda.user_proxy})
    assert run.returncode == 68, run.stderr[-3000:]
    # the server found a DN (else: "SSL secure connection is required") and judged it, not the robot's
    assert f"refused the pilot's X509 proxy ({panda.user_proxy}): production or pilot role required" in run.stderr
    assert panda.job_status(panda_id) == "activated"


def test_no_client_certificate_is_anonymous(panda, tmp_path):
    """No proxy and no token: the pilot warns and goes on; the server, seeing no certificate, refuses ("SSL secure
    connection is required"): 1163, exit 68."""
    panda_id = panda.submit_job()
    run = run_pilot(panda, tmp_path, "--cacert", panda.ca_file, "-t",
                    env={"X509_USER_PROXY": str(tmp_path / "no-such-proxy")})
    assert run.returncode == 68, run.stderr[-3000:]
    assert "requests are anonymous" in run.stderr
    assert ("refused the pilot's anonymous request (no token, no proxy): SSL secure connection is required"
            in run.stderr)
    assert panda.job_status(panda_id) == "activated"
