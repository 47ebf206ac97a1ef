"""A real CouchDB-compatible server (pouchdb-server, in memory) on 127.0.0.1 for the PiCaS tests.

``tests/servers/couchdb/install.sh`` installs it (idempotently); `running_couchdb()` starts it on a free port,
waits (bounded) until it answers, and stops it afterwards. The server runs in "admin party" mode: anonymous
requests are admin, which is how the tests set up databases, design documents and tokens -- the way GRID_LRT's
TokenHandler / picas' CouchDB client do with an admin account. Pilots log in as a normal user made in ``_users``
(``user`` / ``password``), so their basic authentication is really checked (a wrong password is a 401).
pouchdb-server crashes when a database is created by a logged-in user or after an admin is added
(pouchdb/pouchdb-server#374), so databases are only ever created anonymously, here.

Use::

    def test_x(couchdb):
        db = couchdb.new_db()                      # fresh database with the GRID_LRT/picas status views
        couchdb.add_tokens(db, [{"command": "echo hi"}])
        ... run pilots with --job-source couchdb.source(db) and env couchdb.pilot_env() ...
        assert couchdb.view_ids(db, "done") == [...]
"""

import contextlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any, Dict, Iterator, List, Optional

import pytest
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
INSTALL = os.path.join(os.path.dirname(HERE), "servers", "couchdb", "install.sh")
PREFIX = os.environ.get("PILOT_TEST_PREFIX", "/opt/pilot-test")
SERVER_JS = os.path.join(PREFIX, "pouchdb", "node_modules", "pouchdb-server", "bin", "pouchdb-server")
INSTALL_TIMEOUT = 900   # npm install is ~2 min on a cold cache; apt-get of nodejs may wait for the dpkg lock
START_TIMEOUT = 30      # pouchdb-server answers within ~1 s here
USER, PASSWORD = "picasuser", "picas-test-pw"

_counter = itertools.count(1)


class CouchServerError(RuntimeError):
    pass


def install() -> None:
    try:
        done = subprocess.run(["bash", INSTALL], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=INSTALL_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise CouchServerError(f"{INSTALL} did not finish within {INSTALL_TIMEOUT} s") from None
    if done.returncode != 0:
        raise CouchServerError(f"{INSTALL} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The views as GRID_LRT's TokenHandler.add_status_views / picas' create_views write them.
def status_views(token_type: str = "token") -> Dict[str, Dict[str, str]]:
    cond = f'doc.type == "{token_type}"'

    def emit_if(test: str) -> Dict[str, str]:
        return {"map": f"function(doc) {{ if({cond} && {test}) {{ emit(doc._id, doc._id); }} }}"}

    return {
        "todo": emit_if("doc.lock == 0 && doc.done == 0"),
        "locked": emit_if("doc.lock > 0 && doc.done == 0"),
        "done": emit_if("doc.status == 'done'"),
        "error": emit_if("doc.status == 'error'"),
        "overview_total": {
            "map": f"function(doc) {{ if({cond}) {{ if(doc.lock == 0 && doc.done == 0) emit('todo', 1); "
                   "else if(doc.lock > 0 && doc.done == 0) emit('locked', 1); else if(doc.status == 'done') "
                   "emit('done', 1); else if(doc.status == 'error') emit('error', 1); }}",
            "reduce": "function(keys, values, rereduce) { return sum(values); }"},
    }


def token(token_id: str, token_type: str = "token", **fields: Any) -> Dict[str, Any]:
    """A token as picas' Task / GRID_LRT's create_token makes it."""
    doc = {"_id": token_id, "type": token_type, "lock": 0, "done": 0, "hostname": "", "scrub_count": 0,
           "input": "", "output": "", "uploads": {}, "error": []}
    doc.update(fields)
    return doc


class CouchServer:
    def __init__(self, base: str, port: int, proc: subprocess.Popen):
        self.base = base
        self.port = port
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.http = requests.Session()

    # --- set-up as an admin (anonymous in admin party) -------------------------------------------------------
    def _check(self, reply, *ok: int):
        if reply.status_code not in ok:
            raise CouchServerError(f"{reply.request.method} {reply.url}: {reply.status_code} {reply.text[:300]}")
        return reply.json()

    def new_db(self, views: bool = True, token_type: str = "token", db_admin: bool = False) -> str:
        """A fresh database (with the status views in _design/Monitor unless views=False); db_admin: the pilot
        user may write design documents there."""
        name = f"picas_{os.getpid()}_{next(_counter)}"
        self._check(self.http.put(f"{self.url}/{name}"), 201, 202)
        if views:
            self._check(self.http.put(f"{self.url}/{name}/_design/Monitor",
                                      json={"language": "javascript", "views": status_views(token_type)}), 201)
        if db_admin:
            self._check(self.http.put(f"{self.url}/{name}/_security", json={
                "admins": {"names": [USER], "roles": []}, "members": {"names": [], "roles": []}}), 200, 201)
        return name

    def add_tokens(self, db: str, docs: List[Dict[str, Any]]) -> List[str]:
        reply = self._check(self.http.post(f"{self.url}/{db}/_bulk_docs", json={"docs": docs}), 201)
        bad = [row for row in reply if not row.get("ok")]
        if bad:
            raise CouchServerError(f"_bulk_docs: {bad[:3]}")
        return [row["id"] for row in reply]

    def attach(self, db: str, doc_id: str, name: str, data: bytes, content_type: str = "text/plain") -> None:
        rev = self.doc(db, doc_id)["_rev"]
        self._check(self.http.put(f"{self.url}/{db}/{doc_id}/{name}", params={"rev": rev}, data=data,
                                  headers={"Content-Type": content_type}), 201)

    def doc(self, db: str, doc_id: str) -> Dict[str, Any]:
        return self._check(self.http.get(f"{self.url}/{db}/{doc_id}"), 200)

    def attachment(self, db: str, doc_id: str, name: str) -> Optional[bytes]:
        reply = self.http.get(f"{self.url}/{db}/{doc_id}/{name}")
        return reply.content if reply.status_code == 200 else None

    def view_ids(self, db: str, view: str) -> List[str]:
        rows = self._check(self.http.get(f"{self.url}/{db}/_design/Monitor/_view/{view}"), 200)["rows"]
        return sorted(row["id"] for row in rows)

    def overview(self, db: str) -> Dict[str, int]:
        rows = self._check(self.http.get(f"{self.url}/{db}/_design/Monitor/_view/overview_total",
                                         params={"group": "true"}), 200)["rows"]
        return {row["key"]: row["value"] for row in rows}

    # --- what a pilot needs ----------------------------------------------------------------------------------
    def source(self, db: str) -> str:
        return f"picas:{self.url}/{db}"

    def pilot_env(self, **extra: str) -> Dict[str, str]:
        env = dict(os.environ, PICAS_USER=USER, PICAS_PASSWORD=PASSWORD)
        for name in ("PICAS_USR", "PICAS_USR_PWD"):
            env.pop(name, None)
        env.update(extra)
        return env

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self) -> str:
        try:
            with open(os.path.join(self.base, "server.log"), encoding="utf-8", errors="replace") as handle:
                return handle.read()[-3000:]
        except OSError:
            return ""


@contextlib.contextmanager
def running_couchdb() -> Iterator[CouchServer]:
    install()
    base = tempfile.mkdtemp(prefix="pilot-test-couchdb-")
    port = free_port()
    with open(os.path.join(base, "config.json"), "w") as handle:
        json.dump({}, handle)
    log = open(os.path.join(base, "server.log"), "wb")
    # cwd=base: pouchdb-server writes log.txt into its working directory
    proc = subprocess.Popen(["node", SERVER_JS, "-o", "127.0.0.1", "-p", str(port), "-m", "-c",
                             os.path.join(base, "config.json"), "-n"], cwd=base, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    server = CouchServer(base, port, proc)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise CouchServerError(f"pouchdb-server exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                if requests.get(server.url, timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise CouchServerError(f"pouchdb-server did not answer within {START_TIMEOUT} s:\n"
                                       f"{server.log_tail()}")
            time.sleep(0.05)
        server._check(server.http.put(f"{server.url}/_users/org.couchdb.user:{USER}", json={
            "name": USER, "password": PASSWORD, "roles": [], "type": "user"}), 201)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def couchdb_fixture(name: str = "couchdb"):
    """A session-scoped fixture NAME yielding a running CouchServer."""

    @pytest.fixture(scope="session", name=name)
    def _couchdb():
        with running_couchdb() as server:
            yield server

    return _couchdb
