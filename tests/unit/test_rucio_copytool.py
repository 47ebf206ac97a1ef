"""How the rucio copytool finds a Python with rucio.client, and how it reads the CLI's errors (no server)."""

import os
import sys
import types

import pytest

from pilot.config import load_config
from pilot.job import FileSpec
from pilot.transfer.base import TransferFailure
from pilot.transfer.rucio import RucioCopytool, _worker_python_from_shebang, api_python
from pilot.settings import Settings


def script(tmp_path, name, first_line):
    path = tmp_path / name
    path.write_text(first_line + "\nprint('hi')\n")
    path.chmod(0o755)
    return str(path)


def test_shebang_of_a_python_script_names_the_interpreter(tmp_path):
    assert _worker_python_from_shebang(script(tmp_path, "a", f"#!{sys.executable}")) == sys.executable
    env_form = _worker_python_from_shebang(script(tmp_path, "b", "#!/usr/bin/env python3"))
    assert env_form and os.path.basename(env_form).startswith("python")


def test_shell_wrapper_or_unreadable_command_means_no_api(tmp_path):
    assert _worker_python_from_shebang(script(tmp_path, "c", "#!/bin/bash")) is None
    assert _worker_python_from_shebang(script(tmp_path, "d", "echo no shebang")) is None
    assert _worker_python_from_shebang(str(tmp_path / "missing")) is None


def test_api_python_prefers_configuration_then_the_rucio_command_on_path(tmp_path):
    api_python.cache_clear()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script(bindir, "rucio", f"#!{sys.executable}")
    assert api_python("/opt/site/python3", str(bindir)) == "/opt/site/python3"
    assert api_python("", str(bindir)) == sys.executable
    assert api_python("", str(tmp_path / "nowhere")) is None  # the pilot's venv has no rucio package
    api_python.cache_clear()


def ctx_with(**rucio):
    env = {f"PILOT_CFG_RUCIO_{k.upper()}": v for k, v in rucio.items()}
    return types.SimpleNamespace(config=load_config(env=env))


def test_forced_api_without_a_rucio_python_is_a_queue_configuration_error(monkeypatch, tmp_path):
    api_python.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TransferFailure) as caught:
        RucioCopytool({})._mode(ctx_with(mode="api"))
    assert caught.value.code == 1341 and "no Python with rucio.client" in caught.value.diag
    assert RucioCopytool({})._mode(ctx_with(mode="auto")) == ("cli", None)
    with pytest.raises(TransferFailure) as caught:
        RucioCopytool({"mode": "fast"})._mode(ctx_with())
    assert caught.value.code == 1341
    api_python.cache_clear()


@pytest.mark.parametrize("text,direction,code", [
    ("\x1b[31;1m2026 ERROR\tDID does not exist: test:x.dat\x1b[0m", "in", 1331),
    ("ERROR ConnectionError: HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded", "out", 1316),
    ("ERROR RSENotFound: RSE 'NOPE' does not exist", "out", 1133),
    ("ERROR CannotAuthenticate: Cannot authenticate to account root", "in", 1338),
    ("ERROR Checksum mismatch for the uploaded file", "out", 1172),
    ("something unexpected", "out", 1137),
])
def test_cli_error_text_maps_to_panda_codes(text, direction, code):
    failure = RucioCopytool._cli_failure(text, direction, FileSpec(lfn="x.dat", role="input"))
    assert failure.code == code, failure.diag
    assert "\x1b" not in failure.diag


def test_api_worker_verdicts_map_to_codes():
    assert RucioCopytool._failure({"error": "DataIdentifierNotFound", "message": "no"}, "in", "w").code == 1331
    assert RucioCopytool._failure({"error": "NoFilesUploaded", "message": "x"}, "out", "w").code == 1137
    assert RucioCopytool._failure({"error": "ServiceUnavailable", "message": "x"}, "in", "w").code == 1316
    assert RucioCopytool._failure({"error": "Weird", "message": "operation timed out"}, "in", "w").code == 1151


def test_a_hung_rucio_client_is_killed_at_the_time_limit(tmp_path):
    """The API worker runs as a child: a client stuck on a dead server is killed and the file fails with 1151."""
    import time

    from pilot.queuedata import from_dict
    from pilot.trigger import Trigger

    stuck = tmp_path / "python"
    stuck.write_text("#!/bin/sh\nexec sleep 60\n")
    stuck.chmod(0o755)
    env = {"PILOT_CFG_RUCIO_PYTHON": str(stuck), "PILOT_CFG_RUCIO_MODE": "api", "PILOT_CFG_FILE_TRANSFER_ATTEMPTS": "1",
           "PILOT_CFG_FILE_TRANSFER_TIMEOUT_BASE": "0.5", "PILOT_CFG_FILE_TRANSFER_TIMEOUT_MAX": "0.5"}
    ctx = types.SimpleNamespace(config=load_config(env=env), abort=Trigger(), storage={},
                                queuedata=from_dict({"nickname": "Q"}, "Q"), settings=Settings(queue="Q", capath=None))
    spec = FileSpec(lfn="x.dat", role="input", scope="test", ddmendpoint="XRD_TEST")
    from pilot.transfer.base import get_copytool

    started = time.monotonic()
    get_copytool("rucio").copy_in([spec], str(tmp_path), ctx)
    assert spec.status_code == 1151 and "timed out" in spec.diag, spec.diag
    assert time.monotonic() - started < 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["python"]  # no private download dir left behind
