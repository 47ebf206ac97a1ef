"""The reliability suite uses the integration suite's real servers."""

from tests.integration.conftest import panda, panda_server  # noqa: F401  (pytest fixtures)
