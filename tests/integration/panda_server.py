"""The real PanDA server (PyPI panda-server 1.0.4, PostgreSQL 15, WSGI under werkzeug) for the integration tests.

The scripts in tests/servers/panda do the work: install.sh (idempotent: Debian packages and a venv of its own),
start.sh BASE (PostgreSQL with the PanDA schema and queue TEST_QUEUE, a local OIDC issuer, the server, all on
127.0.0.1), stop.sh BASE (by PID files only), http.sh start|stop BASE (the HTTP server alone). This module drives
them and gives tests what they need: submit jobs through the server's own /api/v1/job/submit, read job state from
its database, run the Adder, kill jobs, cut and restore the server, and both ways to authenticate:

* X509 over HTTPS (`https_url`): the server presents a host certificate of a test CA (`ca_file`, `ca_dir`) and
  verifies client certificates and RFC 3820 proxies against it; the DN the server sees is the certificate's, as
  behind mod_ssl + mod_gridsite. `robot_proxy` (DN in production_dns: production role) and `user_proxy` (no role).
* X509 emulation over plain HTTP (`url`): the WSGI shim turns the X-Test-DN / X-Test-FQAN headers into
  SSL_CLIENT_S_DN / GRST_CRED_0. Without these headers and without Authorization the request gets the default robot
  DN, which is in production_dns (production role). See `x509_headers()`.
* tokens: `Authorization: Bearer <JWT>` from the local issuer plus `Origin: atlas.<role>`; the server verifies them
  itself (token_authType = oidc). See `mint_token()`, `token_headers()`, `pilot_env()`.

Typical use (fixtures in tests/integration/conftest.py):

    def test_something(panda):                     # `panda`: the session server, drained of waiting jobs
        panda_id = panda.submit_job(inputs=1, outputs=["out.root"], job_pars="-c 'echo hi > out.root'")
        ... run the pilot with --url panda.url -q panda.queue and panda.pilot_env(tmp_path) ...
        assert panda.job_status(panda_id) == "holding"
        assert panda.run_adder(panda_id) == {panda_id: "finished"}
        assert panda.job_record(panda_id)["pilotErrorCode"] == 0
"""

import base64
import json
import os
import signal
import subprocess
import time
import uuid

SERVER_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "servers", "panda")
PSQL = "/usr/lib/postgresql/15/bin/psql"
JOB_TABLES = ("jobsactive4", "jobsarchived4", "jobsdefined4", "jobswaiting4")
DEFAULT_DN = "/DC=test/OU=Robots/CN=Robot: test pilot"  # matches production_dns in etc/panda_server.cfg
CLIENT_ID = "panda-test-client"  # audience the server's auth_config expects (fake_idp.py)
KEY_ID = "test-key-1"


class JobRecord(dict):
    """A job's row as a dict keyed by the server's JobSpec names (pilotErrorCode, jobStatus, transExitCode, ...);
    lookups ignore case, so record["piloterrorcode"] works too. Values are typed as in the database (numbers,
    None for NULL, timestamps as ISO strings; transExitCode, a varchar, as an int when it holds one), plus "table"."""

    def __init__(self, row, names):
        super().__init__((names.get(key, key), value) for key, value in row.items())
        self._lower = {key.lower(): key for key in self}

    def _key(self, key):
        return key if dict.__contains__(self, key) else self._lower.get(str(key).lower(), key)

    def __getitem__(self, key):
        return dict.__getitem__(self, self._key(key))

    def __contains__(self, key):
        return dict.__contains__(self, self._key(key))

    def get(self, key, default=None):
        return dict.get(self, self._key(key), default)


class PandaServer:
    """A real PanDA server under `base` (default $PANDA_TEST_BASE or /tmp/pilot-test-panda)."""

    queue = "TEST_QUEUE"
    vo = "atlas"
    dn = DEFAULT_DN

    def __init__(self, base=None, http_port=None, pg_port=None, idp_port=None, https_port=None):
        env = os.environ
        self.base = os.path.abspath(base or env.get("PANDA_TEST_BASE", "/tmp/pilot-test-panda"))
        self.port = int(http_port or env.get("PANDA_TEST_HTTP_PORT", 25080))
        self.pg_port = int(pg_port or env.get("PANDA_TEST_PG_PORT", 55432))
        self.idp_port = int(idp_port or env.get("PANDA_TEST_IDP_PORT", 25099))
        self.https_port = int(https_port or env.get("PANDA_TEST_HTTPS_PORT", self.port + 363))
        self.venv = env.get("PANDA_VENV", "/opt/pilot-test/panda-venv")
        self.python = os.path.join(self.venv, "bin", "python")
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = f"{self.url}/api/v1"
        self.https_url = f"https://127.0.0.1:{self.https_port}"
        # the test PKI of the HTTPS listener (made by start.sh with tests/servers/backends/make-pki.sh)
        self.pki = os.path.join(self.base, "pki")
        self.ca_file = os.path.join(self.pki, "ca.pem")
        self.ca_dir = os.path.join(self.pki, "certificates")  # hashed: <hash>.0, for --capath / X509_CERT_DIR
        self.robot_proxy = os.path.join(self.pki, "x509up_robot")  # /DC=test/DC=pilot/OU=Robots/CN=Robot: test pilot
        self.user_proxy = os.path.join(self.pki, "x509up")  # /DC=test/DC=pilot/CN=Test User: no production role
        self.issuer = f"http://127.0.0.1:{self.idp_port}/"
        self.logs = os.path.join(self.base, "logs")
        self.origin = self.origin_for("production")
        self._names = None
        self._tokens = {}

    # --- life cycle ---------------------------------------------------------------------------------------------
    def _script(self, name, *args, timeout):
        cmd = ["bash", os.path.join(SERVER_DIR, name), *map(str, args)]
        # its own session, so that on a timeout the script and everything it runs can be ended together
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise RuntimeError(f"{' '.join(cmd)} did not finish within {timeout} s:\n{out[-3000:]}\n"
                               f"{err[-5000:]}") from None
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n"
                               f"{out[-3000:]}\n{err[-5000:]}")
        return err

    def install(self, timeout=900):
        """Debian packages + the server's venv (tests/servers/panda/install.sh; a no-op once done)."""
        return self._script("install.sh", timeout=timeout)

    def setup(self, timeout=300):
        """Start everything (PostgreSQL from a fresh copy of the schema, issuer, server); cleans leftovers first."""
        self._tokens.clear()  # the issuer gets a new key
        try:
            return self._script("start.sh", self.base, self.port, self.pg_port, self.idp_port, self.https_port,
                                timeout=timeout)
        except BaseException:
            try:
                self.shutdown()
            except Exception:  # report the start failure, not the clean-up's
                pass
            raise

    def shutdown(self, timeout=120):
        """Stop everything under `base` (by PID files)."""
        self._tokens.clear()
        return self._script("stop.sh", self.base, timeout=timeout)

    def stop(self, timeout=60):
        """Stop the HTTP server process alone (the database keeps its state): clients get connection refused."""
        self._script("http.sh", "stop", self.base, timeout=timeout)

    def start(self, timeout=180):
        """Start the HTTP server process again (returns once /api/v1/system/is_alive answers, about 4 s)."""
        self._script("http.sh", "start", self.base, timeout=timeout)

    stop_http, start_http = stop, start

    def cut(self, timeout=10):
        """Make the server unreachable without stopping its process: both listeners close (connection refused) and
        open connections are dropped, as when the process stops; restore() undoes it within milliseconds, where a
        new process needs seconds to load the server (panda_test_wsgi.py, SIGUSR1)."""
        self._signal_http(signal.SIGUSR1)
        self._wait_ports(False, timeout)

    def restore(self, timeout=10):
        """Undo cut(): both listeners accept again (SIGUSR2)."""
        self._signal_http(signal.SIGUSR2)
        self._wait_ports(True, timeout)

    def _signal_http(self, signum):
        with open(os.path.join(self.base, "http.pid")) as handle:
            pid = int(handle.read().split()[0])
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read().split(b"\0")
        if not any(arg.endswith(b"panda_test_wsgi.py") for arg in cmdline) or self.base.encode() not in cmdline:
            raise RuntimeError(f"process {pid} of {self.base}/http.pid is not this server's: {cmdline}")
        os.kill(pid, signum)

    def _wait_ports(self, listening, timeout):
        import socket

        deadline = time.monotonic() + timeout
        while True:
            states = []
            for port in (self.port, self.https_port):
                with socket.socket() as probe:
                    states.append(probe.connect_ex(("127.0.0.1", port)) == 0)
            if all(state == listening for state in states):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"ports {self.port}/{self.https_port}: listening {states} after {timeout} s, "
                                   f"wanted {listening}")
            time.sleep(0.02)

    def is_alive(self):
        try:
            status, body = self.call("system/is_alive", method="GET", timeout=5)
        except OSError:
            return False
        return status == 200 and isinstance(body, dict) and body.get("success") is True

    def ensure_started(self):
        if not self.is_alive():
            self.start()

    # --- HTTP -----------------------------------------------------------------------------------------------------
    def call(self, path, body=None, method="POST", headers=None, timeout=60):
        """One /api/v1 request as a pilot sends it (JSON body, Accept: application/json). `path` is e.g.
        "pilot/acquire_jobs". Identity: `headers` (default: the robot DN, production role). Returns
        (HTTP status, parsed JSON or the raw text)."""
        import requests

        hdrs = {"Accept": "application/json"}
        hdrs.update(self.x509_headers() if headers is None else headers)
        url = f"{self.api}/{path.lstrip('/')}"
        if method == "GET":
            reply = requests.get(url, params=body, headers=hdrs, timeout=timeout)
        else:
            reply = requests.request(method, url, json=body or {}, headers=hdrs, timeout=timeout)
        try:
            return reply.status_code, reply.json()
        except ValueError:
            return reply.status_code, reply.text

    def acquire_jobs(self, headers=None, **params):
        """POST pilot/acquire_jobs for this queue (site_name, prod_source_label=managed by default); the envelope."""
        params.setdefault("site_name", self.queue)
        params.setdefault("prod_source_label", "managed")
        return self.call("pilot/acquire_jobs", params, headers=headers)[1]

    def update_job(self, body, headers=None):
        """A raw pilot/update_job call, as a (possibly broken) pilot would send it; the reply envelope."""
        return self.call("pilot/update_job", body, headers=self.token_headers() if headers is None else headers)[1]

    # --- auth -----------------------------------------------------------------------------------------------------
    def x509_headers(self, dn=None, fqan=None, anonymous=False):
        """Headers that make the shim present a client certificate: DN (default: the production robot) and an
        optional VOMS FQAN such as "/atlas/Role=production"; anonymous=True presents none."""
        if anonymous:
            return {"X-Test-Anonymous": "1"}
        hdrs = {"X-Test-DN": dn or self.dn}
        if fqan:
            hdrs["X-Test-FQAN"] = fqan
        return hdrs

    def origin_for(self, role="production"):
        return f"{self.vo}.{role}"

    def mint_token(self, role="production", lifetime=3600, **claims):
        """A JWT signed by the local issuer, with groups [atlas, atlas/<role>]; `claims` override or add claims
        (e.g. exp=0 for an expired token, aud="other" for a wrong audience)."""
        if not claims and lifetime == 3600:
            cached = self._tokens.get(role)
            if cached and cached[1] > time.time() + 600:
                return cached[0]
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding

        with open(os.path.join(self.base, "idp", "key.pem"), "rb") as handle:
            key = serialization.load_pem_private_key(handle.read(), password=None)
        now = int(time.time())
        body = {"iss": self.issuer, "sub": "pilot-robot", "aud": CLIENT_ID, "iat": now, "nbf": now,
                "exp": now + lifetime, "name": "Test Pilot", "preferred_username": "testpilot",
                "groups": [self.vo, f"{self.vo}/{role}"], "jti": str(uuid.uuid4())}
        body.update(claims)

        def b64(data):
            return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=").decode()

        signing_input = f"{b64({'alg': 'RS256', 'typ': 'JWT', 'kid': KEY_ID})}.{b64(body)}"
        signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        token = f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
        if not claims and lifetime == 3600:
            self._tokens[role] = (token, body["exp"])
        return token

    def token_headers(self, role="production", origin=None):
        """Authorization: Bearer + Origin, as a pilot with a token sends them (origin default atlas.<role>)."""
        return {"Authorization": f"Bearer {self.mint_token(role)}", "Origin": origin or self.origin_for(role)}

    auth_headers = token_headers

    def pilot_env(self, workdir, role="production", origin=None):
        """Environment for a pilot using a token: the token file (written into `workdir`, mode 0600) and origin,
        under pilot3's names OIDC_AUTH_TOKEN / OIDC_AUTH_ORIGIN."""
        path = os.path.join(str(workdir), "panda_token")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.mint_token(role))
        return {"OIDC_AUTH_TOKEN": path, "OIDC_AUTH_ORIGIN": origin or self.origin_for(role)}

    # --- jobs -----------------------------------------------------------------------------------------------------
    def submit_job(self, inputs=0, outputs=(), transformation="sh", job_pars="-c 'exit 0'", label="managed",
                   log=None, name=None, queue=None, wait=True, **attrs):
        """Submit one job through /api/v1/job/submit (built with the server's JobSpec/FileSpec) and return its
        PandaID once the server has activated it (wait=False: at once).

        inputs: a count (input_<i>.root, 1024 bytes, ad:00000001, scope test) or a list of LFNs or of dicts
                {lfn, fsize, checksum ("ad:<8 hex>" or "md5:<32 hex>"), guid, scope, dataset, <FileSpec attr>...}
        outputs: a count or a list of LFNs or of FileSpec attribute dicts (the log file is always added)
        transformation, job_pars: what the pilot runs (default `sh -c 'exit 0'`); jobPars= is accepted too
        label: prodSourceLabel; log, name, queue: log LFN, jobName, computingSite
        attrs: any other JobSpec attribute by its name, e.g. maxWalltime=600, coreCount=2, minRamCount=500
        """
        return self.submit_jobs(1, inputs=inputs, outputs=outputs, transformation=transformation, job_pars=job_pars,
                                label=label, log=log, name=name, queue=queue, wait=wait, **attrs)[0]

    def submit_jobs(self, count, inputs=0, outputs=(), transformation="sh", job_pars="-c 'exit 0'",
                    label="managed", log=None, name=None, queue=None, wait=True, **attrs):
        """`count` identical jobs in one submission (see submit_job); their PandaIDs."""
        for alias in ("jobPars", "jobParameters"):
            if alias in attrs:
                job_pars = attrs.pop(alias)
        spec = {"queue": queue or self.queue, "label": label, "transformation": transformation,
                "job_pars": job_pars, "inputs": inputs if isinstance(inputs, int) else list(inputs),
                "outputs": outputs if isinstance(outputs, int) else list(outputs), "n_jobs": count, "attrs": attrs}
        if log:
            spec["log"] = log
        if name:
            spec["name"] = name
        done = subprocess.run([self.python, os.path.join(SERVER_DIR, "submit_job.py"), self.url],
                              input=json.dumps(spec), capture_output=True, text=True, timeout=120,
                              env=self._env(), cwd=self.base)
        if done.returncode != 0:
            raise RuntimeError(f"submit_job failed: {done.stdout[-2000:]} {done.stderr[-3000:]}")
        ids = json.loads(done.stdout)["panda_ids"]
        if wait:  # activated, or already further: a pilot that is asking may take the job between two looks
            for panda_id in ids:
                self.wait_for(panda_id, {"activated", "sent", "starting", "running", "holding", "transferring",
                                         "finished", "failed"}, timeout=60)
        return ids

    def wait_for(self, panda_id, states, timeout=60, interval=0.2):
        """Wait until the job's status is one of `states` (a str or a set); returns it, AssertionError on timeout."""
        states = {states} if isinstance(states, str) else set(states)
        deadline = time.monotonic() + timeout
        while True:
            status = self.job_status(panda_id)
            if status in states:
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"job {panda_id} is {status!r} after {timeout} s, not one of {sorted(states)}: "
                                     f"{self.job_record(panda_id)}")
            time.sleep(interval)

    def sql(self, query, timeout=60):
        """Run SQL on panda_db (schema doma_panda) as the superuser; rows as lists of strings."""
        cmd = [PSQL, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.pg_port),
               "-U", "postgres", "-d", "panda_db", "-F", "\x1f", "-c", query]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RuntimeError(f"psql: {done.stderr.strip()} (query: {query})")
        return [line.split("\x1f") for line in done.stdout.splitlines() if line]

    def job_status(self, panda_id):
        """jobStatus wherever the job is (jobsActive4, jobsArchived4, jobsDefined4, jobsWaiting4), None if nowhere.
        A final update leaves it `holding` until run_adder()."""
        union = " union all ".join(f"select jobstatus from doma_panda.{t} where pandaid={int(panda_id)}"
                                   for t in JOB_TABLES)
        rows = self.sql(union)
        return rows[0][0] if rows else None

    def job_record(self, panda_id):
        """The job's full row (JobRecord: JobSpec names, case-insensitive, typed) plus "table"; None if nowhere."""
        for table in JOB_TABLES:
            rows = self.sql(f"select row_to_json(t) from doma_panda.{table} t where pandaid={int(panda_id)}")
            if rows:
                row = json.loads(rows[0][0])
                row["table"] = table
                code = row.get("transexitcode")  # a varchar column: an int when it holds one
                if isinstance(code, str) and code.lstrip("-").isdigit():
                    row["transexitcode"] = int(code)
                return JobRecord(row, self._jobspec_names())
        return None

    def job_files(self, panda_id):
        """The job's file rows: [{lfn, type, status, fsize, checksum, guid, scope, dataset, ...}]."""
        rows = self.sql(f"select row_to_json(t) from doma_panda.filestable4 t where pandaid={int(panda_id)} "
                        f"order by row_id")
        return [json.loads(r[0]) for r in rows]

    def drain(self):
        """Take every waiting job off the queue, so that a test's pilot can only get the test's own jobs."""
        self.sql("delete from doma_panda.jobsactive4 where jobstatus in ('activated', 'sent')")

    def kill_job(self, panda_id, code=None):
        """/api/v1/job/kill as the production robot: the job gets commandToPilot tobekilled (the pilot learns it on
        its next update_job). Returns the reply envelope; RuntimeError unless success."""
        body = {"job_ids": [int(panda_id)]}
        if code is not None:
            body["code"] = int(code)
        status, reply = self.call("job/kill", body)
        if status != 200 or not isinstance(reply, dict) or not reply.get("success"):
            raise RuntimeError(f"job/kill {panda_id}: HTTP {status} {reply}")
        return reply

    def set_command(self, panda_id, command):
        """/api/v1/job/set_command: a command for the pilot in the next update_job reply (e.g. "debug,ls")."""
        return self.call("job/set_command", {"job_id": int(panda_id), "command": command})[1]

    def run_adder(self, *panda_ids, timeout=120):
        """Run the server's Adder (tests/servers/panda/adder.py) so jobs in `holding` with a final report get
        archived; with IDs, repeat until none of them waits for the Adder any more. Returns {PandaID: status}
        for the given jobs (without IDs: for the jobs it processed)."""
        deadline = time.monotonic() + timeout
        processed = []
        while True:
            processed += self._adder_once(panda_ids, deadline)
            pending = [p for p in panda_ids if self._has_report(p)]
            if not pending:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"the Adder left {pending} in {[self.job_status(p) for p in pending]} "
                                     f"(see {self.logs}/panda-adder.log)")
            time.sleep(0.5)
        return {int(p): self.job_status(p) for p in (panda_ids or processed)}

    def archive(self, panda_id, timeout=120):
        """Run the Adder for one job and return its archived status (finished/failed/cancelled)."""
        status = self.run_adder(panda_id, timeout=timeout)[int(panda_id)]
        record = self.job_record(panda_id)
        if not record or record["table"] != "jobsarchived4":
            raise AssertionError(f"job {panda_id} was not archived by the Adder: {status}, "
                                 f"{record and {k: record.get(k) for k in ('table', 'jobStatus', 'ddmErrorDiag')}}")
        return record["jobStatus"]

    def log(self, name="api_pilot", lines=80):
        """The tail of a server log (panda-<name>.log, or a file name in the logs directory) for diagnostics."""
        path = os.path.join(self.logs, name if "." in name else f"panda-{name}.log")
        try:
            with open(path, errors="replace") as handle:
                return "".join(handle.readlines()[-lines:])
        except OSError as exc:
            return str(exc)

    # --- internals ------------------------------------------------------------------------------------------------
    def _env(self):
        return dict(os.environ, PANDA_HOME=os.path.join(self.base, "home"), PANDA_TEST_HTTP_PORT=str(self.port),
                    TZ="UTC")

    def _jobspec_names(self):
        if self._names is None:
            done = subprocess.run([self.python, "-c", "import json; from pandaserver.taskbuffer.JobSpec import "
                                   "JobSpec; print(json.dumps(JobSpec._attributes))"],
                                  capture_output=True, text=True, timeout=60, check=True)
            self._names = {name.lower(): name for name in json.loads(done.stdout)}
        return self._names

    def _has_report(self, panda_id):
        return bool(self.sql(f"select 1 from doma_panda.job_output_report where pandaid={int(panda_id)}"))

    def _adder_once(self, panda_ids, deadline):
        pid_file = os.path.join(self.base, "adder.pid")
        proc = subprocess.Popen([self.python, os.path.join(SERVER_DIR, "adder.py"), self.base, *map(str, panda_ids)],
                                cwd=self.base, env=self._env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True, stdin=subprocess.DEVNULL)
        with open(pid_file, "w") as handle:
            handle.write(str(proc.pid))
        try:
            out, err = proc.communicate(timeout=max(5.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise AssertionError(f"the Adder did not finish in time (see {self.logs}/panda-adder.log)") from None
        finally:
            os.unlink(pid_file)
        if proc.returncode != 0:
            raise RuntimeError(f"adder.py failed ({proc.returncode}): {err[-3000:]}")
        return json.loads(out.strip().splitlines()[-1])["processed"]
