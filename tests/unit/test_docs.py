"""The generated references in docs/ must match pilot/default.cfg and pilot/errors.py."""

import os
import subprocess
import sys

from tests.conftest import REPO


def test_references_are_fresh():
    done = subprocess.run([sys.executable, os.path.join(REPO, "tools", "gen_docs.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_every_config_key_is_documented():
    from pilot.config import load_config

    text = open(os.path.join(REPO, "docs", "configuration.md"), encoding="utf-8").read()
    for section, values in load_config(env={}).as_dict().items():
        for key in values:
            assert f"| `{key}` |" in text, key
    assert "Pilot 3 setting of the same name" not in text  # every key says what it does


def test_every_error_code_is_documented():
    from pilot.errors import ERRORS

    text = open(os.path.join(REPO, "docs", "error-codes.md"), encoding="utf-8").read()
    for code, (name, _message) in ERRORS.items():
        assert f"| {code} | {name} |" in text
