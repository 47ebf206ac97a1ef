"""Integration fixtures: real servers on 127.0.0.1, installed by the repository's own scripts."""

import pytest

from tests.integration.panda_server import PandaServer


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def panda_server():
    server = PandaServer()
    server.install()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def panda(panda_server):
    panda_server.drain()
    return panda_server


@pytest.fixture(scope="session")
def storage():
    from tests.integration.storage import Storage

    servers = Storage()
    servers.up()
    yield servers
    servers.down()
