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
