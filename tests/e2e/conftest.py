"""Fixtures for the end-to-end tests."""

import pytest


@pytest.fixture
def jobdir(tmp_path):
    path = tmp_path / "jobs"
    path.mkdir()
    return path


@pytest.fixture
def storage(tmp_path):
    path = tmp_path / "storage"
    path.mkdir()
    return path


# A CouchDB-compatible server (pouchdb-server) for the PiCaS end-to-end tests: see tests/integration/couchdb.py.
from tests.integration.couchdb import couchdb_fixture  # noqa: E402

couchdb = couchdb_fixture()
