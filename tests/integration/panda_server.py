"""The real PanDA server (PyPI panda-server, PostgreSQL 15, WSGI under werkzeug) for the integration tests.

tests/servers/panda/install.sh installs it (idempotent); start.sh starts PostgreSQL with the PanDA schema, the
test queue, a local OIDC issuer and the server on 127.0.0.1; stop.sh stops them by PID. Jobs are submitted
through the server's own /api/v1/job/submit; the pilot authenticates with an OIDC token from the local issuer,
the production path (Authorization: Bearer + Origin).
"""

import json
import os
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER_DIR = os.path.join(os.path.dirname(HERE), "servers", "panda")
VENV_PYTHON = os.path.join(os.environ.get("PANDA_VENV", "/opt/pilot-test/panda-venv"), "bin", "python")


class PandaServer:
    def __init__(self, base="/tmp/pilot-test-panda", port=25080, pg_port=55432, idp_port=25099):
        self.base, self.port, self.pg_port, self.idp_port = base, port, pg_port, idp_port
        self.url = f"http://127.0.0.1:{port}"
        self.queue = "TEST_QUEUE"
        self.origin = "atlas.production"

    # --- life cycle -------------------------------------------------------------------------------------------
    def _script(self, *args, timeout):
        done = subprocess.run(["bash", *args], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                               f"{done.stderr[-3000:]}")
        return done.stdout

    def install(self):
        self._script(os.path.join(SERVER_DIR, "install.sh"), timeout=900)

    def start(self):
        self._script(os.path.join(SERVER_DIR, "start.sh"), self.base, str(self.port), str(self.pg_port),
                     str(self.idp_port), timeout=300)

    def stop(self):
        self._script(os.path.join(SERVER_DIR, "stop.sh"), self.base, timeout=120)

    def stop_http(self):
        self._script(os.path.join(SERVER_DIR, "http.sh"), "stop", self.base, str(self.port), timeout=60)

    def start_http(self):
        self._script(os.path.join(SERVER_DIR, "http.sh"), "start", self.base, str(self.port), timeout=180)

    # --- jobs -------------------------------------------------------------------------------------------------
    def submit_job(self, **spec):
        """Submit a job (see submit_job.py for the keys); returns its PandaID once it is activated."""
        spec.setdefault("queue", self.queue)
        done = subprocess.run([VENV_PYTHON, os.path.join(SERVER_DIR, "submit_job.py"), self.url, json.dumps(spec)],
                              capture_output=True, text=True, timeout=120, env=self._env())
        if done.returncode != 0:
            raise RuntimeError(f"submit failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
        panda_id = int(done.stdout.strip().splitlines()[-1])
        self.wait_for(panda_id, {"activated"}, timeout=60)
        return panda_id

    def sql(self, query):
        done = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres", "-d",
                               "panda_db", "-Atc", query], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"psql: {done.stderr}")
        return [line.split("|") for line in done.stdout.splitlines() if line]

    def job_record(self, panda_id):
        """{table, jobstatus, pilotErrorCode, transExitCode, ...} wherever the job is now (None if nowhere)."""
        columns = "jobstatus, piloterrorcode, piloterrordiag, transexitcode, ddmerrorcode, ddmerrordiag, " \
                  "modificationhost, commandtopilot"
        for table in ("jobsactive4", "jobsarchived4", "jobsdefined4", "jobswaiting4"):
            rows = self.sql(f"select {columns} from doma_panda.{table} where pandaid={int(panda_id)}")
            if rows:
                keys = [c.strip() for c in columns.split(",")]
                record = dict(zip(keys, rows[0]))
                record["table"] = table
                return record
        return None

    def job_status(self, panda_id):
        record = self.job_record(panda_id)
        return record["jobstatus"] if record else None

    def wait_for(self, panda_id, states, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            status = self.job_status(panda_id)
            if status in states:
                return status
            time.sleep(0.2)
        raise AssertionError(f"job {panda_id} is {self.job_status(panda_id)}, not one of {states}")

    def drain(self):
        """Take every waiting job off the queue so a test's pilot can only get the test's own job."""
        self.sql("delete from doma_panda.jobsactive4 where jobstatus in ('activated', 'sent')")

    def archive(self, panda_id, timeout=120):
        """Run the Adder until the job leaves holding; returns its archived status."""
        proc = subprocess.Popen([VENV_PYTHON, os.path.join(SERVER_DIR, "adder.py"), str(self.port)],
                                cwd=self.base, env=self._env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.time() + timeout
            while time.time() < deadline:
                record = self.job_record(panda_id)
                if record and record["table"] == "jobsarchived4":
                    return record["jobstatus"]
                time.sleep(0.5)
            raise AssertionError(f"job {panda_id} not archived: {self.job_record(panda_id)}")
        finally:
            os.killpg(proc.pid, 9)
            proc.wait()

    def kill_job(self, panda_id):
        import requests

        reply = requests.post(f"{self.url}/api/v1/job/kill", json={"job_ids": [int(panda_id)]},
                              headers={"Accept": "application/json"}, timeout=60)
        reply.raise_for_status()
        return reply.json()

    def update_job(self, body):
        """A raw update_job call, as a (possibly broken) pilot would send it."""
        import requests

        reply = requests.post(f"{self.url}/api/v1/pilot/update_job", json=body,
                              headers={"Accept": "application/json", **self.auth_headers()}, timeout=60)
        return reply.json()

    # --- auth -------------------------------------------------------------------------------------------------
    def mint_token(self, role="production"):
        done = subprocess.run([VENV_PYTHON, os.path.join(SERVER_DIR, "fake_idp.py"), "token",
                               os.path.join(self.base, "idp"), role, str(self.idp_port)], capture_output=True,
                              text=True, timeout=60, check=True)
        return done.stdout.strip()

    def auth_headers(self, role="production"):
        return {"Authorization": f"Bearer {self.mint_token(role)}", "Origin": f"atlas.{role}"}

    def pilot_env(self, workdir, role="production", origin=None):
        """Environment for a pilot talking to this server with a token (file written into `workdir`)."""
        path = os.path.join(str(workdir), "panda_token")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.mint_token(role))
        return {"OIDC_AUTH_TOKEN": path, "OIDC_AUTH_ORIGIN": origin or f"atlas.{role}"}

    def _env(self):
        return dict(os.environ, PANDA_HOME=os.path.join(self.base, "home"), PANDA_TEST_PORT=str(self.port))
