"""Integration fixtures: real servers on 127.0.0.1, installed by the repository's own scripts."""

import pytest

from tests.integration.panda_server import PandaServer


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: starts a real server (PanDA, storage, batch system) on 127.0.0.1")


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


_SESSION = {}  # one server per pytest process, also when another conftest re-exports these fixtures


@pytest.fixture(scope="session")
def panda_server():
    """The real PanDA server on 127.0.0.1 for the whole session (tests/integration/panda_server.py for the API).
    Installs what is missing (tests/servers/panda/install.sh) and starts it; fails, never skips, if it cannot."""
    if "panda" in _SESSION:
        yield _SESSION["panda"]
        return
    server = PandaServer()
    server.install()
    server.setup()
    _SESSION["panda"] = server
    try:
        yield server
    finally:
        _SESSION.pop("panda", None)
        server.shutdown()


@pytest.fixture
def panda(panda_server):
    """The session's server, running (restarted if a test left it stopped), with no job waiting on the queue."""
    panda_server.ensure_started()
    panda_server.drain()
    return panda_server


@pytest.fixture(scope="session")
def storage(storage_servers):
    """The backends' servers seen as deterministic RSEs (tests/integration/storage.py)."""
    from tests.integration.storage import Storage

    return Storage(storage_servers)


# Real storage backends (XRootD root:// + http(s)/davs, nginx WebDAV http/https, test PKI and proxies):
# see tests/integration/backends.py and tests/servers/backends/.
from tests.integration.backends import rucio_server_fixture, storage_servers_fixture  # noqa: E402

storage_servers = storage_servers_fixture()
rucio_server = rucio_server_fixture()  # opt-in: a real Rucio server with RSEs on storage_servers

# A CouchDB-compatible server (pouchdb-server) for the PiCaS channel: see tests/integration/couchdb.py.
from tests.integration.couchdb import couchdb_fixture  # noqa: E402

couchdb = couchdb_fixture()


@pytest.fixture(scope="session")
def s3():
    """A real S3-compatible server (moto_server) with SigV4 authentication on, and test buckets
    (tests/integration/s3server.py)."""
    from tests.integration.s3server import running_s3

    if "s3" in _SESSION:
        yield _SESSION["s3"]
        return
    with running_s3() as server:
        _SESSION["s3"] = server
        try:
            yield server
        finally:
            _SESSION.pop("s3", None)
