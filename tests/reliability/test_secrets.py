"""Secrets, tokens and proxies never appear in anything the pilot writes (logs, reports, spool, log tarball)."""

import glob
import json
import os
import stat
import subprocess
import sys
import tarfile

from tests.e2e.pilotrun import PILOT, PilotRun, job_definition, write_job

SECRET = "s3cr3t-job-value-7f9c"
PILOT_SECRET = "p1l0t-s3cr3t-a81b"
TOKEN = "eyJ-token-should-never-be-logged-44c1"


def everything_written(root):
    """Every file under root, with the members of every tarball, as text."""
    texts = {}
    for path in glob.glob(os.path.join(str(root), "**", "*"), recursive=True):
        if not os.path.isfile(path) or path.endswith("panda_token"):
            continue
        if path.endswith(".tgz"):
            with tarfile.open(path) as tar:
                for member in tar.getmembers():
                    if member.isfile():
                        texts[f"{path}:{member.name}"] = tar.extractfile(member).read().decode("utf-8", "replace")
        else:
            texts[path] = open(path, "rb").read().decode("utf-8", "replace")
    return texts


def test_job_secrets_stay_in_their_0600_file(tmp_path):
    jobdir = tmp_path / "jobs"
    jobdir.mkdir()
    seen = tmp_path / "seen_mode"
    pars = f"-c 'stat -c %a panda_secrets.json > {seen}; test -s panda_secrets.json'"
    write_job(jobdir, job_definition(1401, pars=pars, secrets=json.dumps({"key": SECRET}),
                                     pilotSecrets=PILOT_SECRET))
    proc = subprocess.run([sys.executable, PILOT, "-q", "LOCAL", "-a", str(tmp_path / "run"), "--job-source",
                           f"local:{jobdir}", "--cleanup", "False", "-d"], capture_output=True, text=True, timeout=60)
    run = PilotRun(str(tmp_path / "run"), proc, proc.stdout, proc.stderr)
    assert run.final(1401)["state"] == "finished", proc.stderr[-2000:]
    assert seen.read_text().strip() == "600"
    secrets_file = glob.glob(os.path.join(str(tmp_path / "run"), "*", "PanDA_Pilot-1401", "panda_secrets.json"))[0]
    assert stat.S_IMODE(os.stat(secrets_file).st_mode) == 0o600
    leaks = [name for name, text in everything_written(tmp_path / "run").items()
             if (SECRET in text or PILOT_SECRET in text) and not name.endswith("panda_secrets.json")]
    assert leaks == []
    assert SECRET not in proc.stderr and PILOT_SECRET not in proc.stderr


def test_token_and_proxy_never_logged(tmp_path):
    from tests.unit.test_proxy import make_cert

    token = tmp_path / "panda_token"
    token.write_text(TOKEN)
    proxy = make_cert(tmp_path / "x509up", 7200)
    proxy_body = open(proxy).read().split("-----")[2].strip()[:40]
    env = dict(os.environ, OIDC_AUTH_TOKEN=str(token), OIDC_AUTH_ORIGIN="atlas.production", X509_USER_PROXY=proxy,
               PILOT_CFG_PILOT_GETJOB_RETRY_INITIAL="0.1", PILOT_CFG_PILOT_PROXY_MIN_LIFETIME_START="60")
    proc = subprocess.run([sys.executable, PILOT, "-q", "LOCAL", "--url", "http://127.0.0.1:9", "-x", "2", "-d",
                           "-a", str(tmp_path / "run")], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 79  # no server: communication failure
    written = everything_written(tmp_path / "run")
    assert written, "the pilot wrote its log"
    for name, text in list(written.items()) + [("stderr", proc.stderr)]:
        assert TOKEN not in text, name
        assert proxy_body not in text, name


def test_tls_verification_cannot_be_switched_off():
    source = open(os.path.join(os.path.dirname(PILOT), "pilot", "channels", "panda.py")).read()
    assert "verify=False" not in source and "verify = False" not in source
    from pilot.config import load_config

    assert load_config(env={}).pilot.ssl_verify is True
