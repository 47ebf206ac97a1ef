"""Token and proxy renewal through the real PanDA server (/api/v1/creds/...) while a job runs, with tokens signed
by the local OIDC issuer. The server hands out what its credential cache holds: files in /tmp/proxies (its fixed
cache dir), which each test writes under a name of its own so that parallel test sessions do not meet."""

import hashlib
import os
import random
import string
import time

import pytest

from tests.integration.test_panda_channel import finish, start_pilot
from tests.unit.test_proxy import make_cert

pytestmark = pytest.mark.slow

CACHE = "/tmp/proxies"
TOKEN_DN = "Test Pilot/CN=nickname:testpilot"  # what the server makes of the issuer's token (name + nickname)


def letters(n=12):
    # the server strips digits from these names (get_bare_dn): letters only
    return "".join(random.choice(string.ascii_lowercase) for _ in range(n))


def write_token(path, token):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    return str(path)


def cache_file(name, content):
    os.makedirs(CACHE, exist_ok=True)
    path = os.path.join(CACHE, name)
    with open(path, "w") as handle:
        handle.write(content)
    return path


def test_short_token_renewed_through_the_server_while_the_job_runs(panda, tmp_path):
    """The pilot starts with a token that expires 10 s later; the job runs 16 s with a heartbeat a second. The
    pilot fetches a new token from get_access_token at once, so every update after the first token's end is
    still accepted and the job finishes. The token is never logged."""
    client = f"pilottest{letters()}"
    first = panda.mint_token("production", lifetime=10)
    server_token = panda.mint_token("production", lifetime=3600, jti=letters(20))
    cached = cache_file(f"access_token_{client}", server_token)
    token_path = write_token(tmp_path / "short_token", first)
    panda_id = panda.submit_job(job_pars="-c 'sleep 16'")
    started = time.time()
    try:
        proc = start_pilot(panda, tmp_path, env={"OIDC_AUTH_TOKEN": token_path, "PILOT_CFG_PILOT_HEARTBEAT": "1",
                                                 "PILOT_CFG_TOKEN_CLIENT_NAME": client})
        run = finish(proc, tmp_path)
    finally:
        os.unlink(cached)
    assert run.returncode == 0, run.stderr[-3000:]
    assert time.time() - started > 16
    assert open(token_path).read() == server_token
    assert oct(os.stat(token_path).st_mode & 0o777) == "0o600"
    renewed = [line for line in run.stderr.splitlines() if "renewed through" in line]
    assert len(renewed) == 1 and "s left" in renewed[0], run.stderr[-3000:]
    late = [line for line in run.stderr.splitlines() if "running update acknowledged" in line]
    assert len(late) >= 10, "heartbeats after the first token's end must have been accepted"
    record = panda.job_record(panda_id)
    assert record["jobStatus"] == "holding" and record["pilotErrorCode"] == 0
    for secret in (first, server_token):
        assert secret not in run.stderr and secret.split(".")[2] not in run.stderr


def test_no_renewal_with_y(panda, tmp_path):
    """-y (Pilot 3's --notokenrenewal): the token file is left alone. (The server caches a token's accepted
    decision for 10 minutes, so a token past its exp still passes for up to that long: a control run showing the
    refusal would take over 10 minutes.)"""
    client = f"pilottest{letters()}"
    cached = cache_file(f"access_token_{client}", panda.mint_token("production", lifetime=3600, jti=letters(20)))
    first = panda.mint_token("production", lifetime=30)
    token_path = write_token(tmp_path / "short_token", first)
    panda.submit_job(job_pars="-c 'exit 0'")
    try:
        proc = start_pilot(panda, tmp_path, "-y", env={"OIDC_AUTH_TOKEN": token_path,
                                                       "PILOT_CFG_TOKEN_CLIENT_NAME": client})
        run = finish(proc, tmp_path)
    finally:
        os.unlink(cached)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "token renewal off (-y)" in run.stderr and open(token_path).read() == first


def test_short_proxy_renewed_through_the_server(panda, tmp_path):
    """X509_USER_PROXY has 2 h left, under proxy_renew_before (3 h): the pilot fetches the server's proxy for its
    DN and role (get_proxy), checks it outlives the old one, and writes it over the file (0600)."""
    role = letters()
    old = make_cert(tmp_path / "x509up", 7200)
    fresh = make_cert(tmp_path / "fresh.pem", 4 * 86400)
    digest = hashlib.sha1((TOKEN_DN + "." + role).encode()).hexdigest()
    cached = cache_file(digest, open(fresh).read())
    panda_id = panda.submit_job(job_pars="-c 'sleep 2'")
    try:
        proc = start_pilot(panda, tmp_path, env={"X509_USER_PROXY": old, "PILOT_CFG_PILOT_PROXY_ROLE": role,
                                                 "PILOT_CFG_PILOT_PROXY_RENEW_BEFORE": "10800"})
        run = finish(proc, tmp_path)
    finally:
        os.unlink(cached)
    assert run.returncode == 0, run.stderr[-3000:]
    assert open(old).read() == open(fresh).read()
    assert oct(os.stat(old).st_mode & 0o777) == "0o600"
    assert "X509 proxy" in run.stderr and "renewed through" in run.stderr and "96.0 h left" in run.stderr
    assert panda.job_record(panda_id)["jobStatus"] == "holding"


def test_check_shows_the_token_lifetime(tmp_path):
    """`pilot --check` decodes the token's exp (unverified) and prints its lifetime, never the token."""
    import base64
    import json
    import subprocess
    import sys

    from tests.e2e.pilotrun import PILOT

    def b64(data):
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    token = f"{b64({'alg': 'RS256'})}.{b64({'exp': int(time.time()) + 5400, 'sub': 'x'})}.c2lnbmF0dXJlc2VjcmV0"
    path = write_token(tmp_path / "tok", token)
    queue = tmp_path / "queue.json"
    queue.write_text(json.dumps({"nickname": "Q", "state": "ACTIVE", "status": "online"}))
    done = subprocess.run([sys.executable, PILOT, "--check", "-q", "Q", "--queuedata-url", str(queue)],
                          capture_output=True, text=True, timeout=60, cwd=str(tmp_path),
                          env=dict(os.environ, OIDC_AUTH_TOKEN=path, OIDC_AUTH_ORIGIN="atlas.production"))
    line = [row for row in done.stdout.splitlines() if row.startswith("token")]
    assert line and ("1.50 h left" in line[0] or "1.49 h left" in line[0]), done.stdout
    assert "c2lnbmF0dXJlc2VjcmV0" not in done.stdout + done.stderr
