"""Sandbox tarballs: download (path, file://, http), refusal of empty files and unsafe members, tokvar.cfg."""

import functools
import http.server
import io
import os
import tarfile
import threading
import types

import pytest

from pilot.config import load_config
from pilot.errors import PilotError
from pilot.payload.sandbox import install_sandbox, read_variables
from pilot.settings import Settings


def make_ctx(**cfg):
    env = {f"PILOT_CFG_PAYLOAD_{key.upper()}": str(value) for key, value in cfg.items()}
    return types.SimpleNamespace(config=load_config(env=env), abort=None, settings=Settings(queue="Q", capath=None))


def make_tar(path, members):
    """members: (name, kind, data_or_target) with kind file | dir | symlink | hardlink | fifo | chardev."""
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = payload.encode() if isinstance(payload, str) else payload
                info.size, info.mode = len(data), 0o755
                tar.addfile(info, io.BytesIO(data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
                         "fifo": tarfile.FIFOTYPE, "chardev": tarfile.CHRTYPE}[kind]
            if kind in ("symlink", "hardlink"):
                info.linkname = payload
            tar.addfile(info)
    return str(path)


GOOD = [("run.sh", "file", "#!/bin/bash\necho run $OBSID\n"), ("lib", "dir", None),
        ("lib/helper.sh", "file", "true\n"), ("lib/link", "symlink", "helper.sh"), ("top", "symlink", "lib/helper.sh"),
        ("tokvar.cfg", "file", "# token variables\nexport MODE=calibrate\nSTEP: 'pref_cal1'\nOBSID\nEMPTY=\n")]


@pytest.fixture
def work(tmp_path):
    path = tmp_path / "work"
    path.mkdir()
    return path


def test_good_sandbox_is_unpacked_and_its_variables_read(tmp_path, work):
    archive = make_tar(tmp_path / "sbx.tar.gz", GOOD)
    env = install_sandbox(archive, str(work), make_ctx(), {"OBSID": "L229507"})
    assert env == {"MODE": "calibrate", "STEP": "pref_cal1", "OBSID": "L229507", "EMPTY": ""}
    assert (work / "run.sh").read_text().startswith("#!/bin/bash") and os.access(work / "run.sh", os.X_OK)
    assert os.readlink(work / "lib" / "link") == "helper.sh" and (work / "top").read_text() == "true\n"
    assert not (work / ".sandbox.download").exists()
    # file:// works the same
    other = tmp_path / "w2"
    other.mkdir()
    install_sandbox("file://" + archive, str(other), make_ctx(), {"OBSID": "L1"})
    assert (other / "lib" / "helper.sh").exists()


def test_sandbox_over_http(tmp_path, work):
    make_tar(tmp_path / "sbx.tgz", GOOD[:3])
    (tmp_path / "empty.tgz").write_bytes(b"")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        assert install_sandbox(f"{url}/sbx.tgz", str(work), make_ctx()) == {}
        assert (work / "lib" / "helper.sh").exists()
        with pytest.raises(PilotError) as info:
            install_sandbox(f"{url}/missing.tgz", str(work), make_ctx())
        assert info.value.code == 1246 and "404" in info.value.diag
        with pytest.raises(PilotError) as info:
            install_sandbox(f"{url}/empty.tgz", str(work), make_ctx())
        assert info.value.code == 1246 and "empty (0 bytes" in info.value.diag
    finally:
        server.shutdown()
        server.server_close()


def test_empty_and_missing_and_corrupt_sandboxes(tmp_path, work):
    (tmp_path / "empty.tar").write_bytes(b"")
    (tmp_path / "junk.tar").write_bytes(b"this is not a tar archive at all" * 40)
    for name, text in (("empty.tar", "is empty (0 bytes; GRID_LRT code -2)"), ("missing.tar", "cannot copy sandbox"),
                       ("junk.tar", "not a readable tar archive")):
        with pytest.raises(PilotError) as info:
            install_sandbox(str(tmp_path / name), str(work), make_ctx())
        assert info.value.code == 1246 and text in info.value.diag, info.value.diag
    with pytest.raises(PilotError, match="neither a URL nor an absolute path"):
        install_sandbox("relative/sbx.tar", str(work), make_ctx())


@pytest.mark.parametrize("members,text", [
    ([("../evil.sh", "file", "x")], "outside the job dir"),
    ([("a/../../evil.sh", "file", "x")], "outside the job dir"),
    ([("/tmp/evil.sh", "file", "x")], "absolute path"),
    ([("up", "symlink", "../../etc/passwd")], "leaves the job dir"),
    ([("abs", "symlink", "/etc/passwd")], "leaves the job dir"),
    ([("d", "dir", None), ("d/up", "symlink", "../..")], "leaves the job dir"),
    ([("hard", "hardlink", "../outside")], "leaves the job dir"),
    ([("hard", "hardlink", "/etc/passwd")], "leaves the job dir"),
    ([("pipe", "fifo", None)], "special file"),
    ([("tty", "chardev", None)], "special file"),
])
def test_unsafe_members_are_refused_and_nothing_is_unpacked(tmp_path, work, members, text):
    archive = make_tar(tmp_path / "bad.tgz", [("ok.sh", "file", "echo ok\n")] + members)
    with pytest.raises(PilotError) as info:
        install_sandbox(archive, str(work), make_ctx())
    assert info.value.code == 1110 and text in info.value.diag and "refused" in info.value.diag
    assert os.listdir(work) == []  # checked before anything is written
    assert not os.path.exists(tmp_path / "evil.sh") and not os.path.exists("/tmp/evil.sh")


def test_size_limits(tmp_path, work):
    archive = make_tar(tmp_path / "big.tgz", [("big.bin", "file", b"\0" * (5 << 20))])  # compresses to a few kB
    with pytest.raises(PilotError, match="unpacks to more than 4 MB"):
        install_sandbox(archive, str(work), make_ctx(sandbox_max_mb=1))
    (tmp_path / "large.bin").write_bytes(os.urandom((1 << 20) + 10))
    with pytest.raises(PilotError, match="larger than 1 MB"):
        install_sandbox(str(tmp_path / "large.bin"), str(work), make_ctx(sandbox_max_mb=1))


def test_variables_file_errors(tmp_path):
    path = tmp_path / "tokvar.cfg"
    path.write_text("PICAS_DB\n")
    with pytest.raises(PilotError) as info:
        read_variables(str(path), {"TOKEN": "t1"})
    assert info.value.code == 1110 and "PICAS_DB is not set in the job (GRID_LRT code 1)" in info.value.diag
    path.write_text("1BAD=x\n")
    with pytest.raises(PilotError, match="not a variable name"):
        read_variables(str(path), {})
    path.write_text('A="quoted value"\nexport B=\'x y\'\nC = spaced\n')
    assert read_variables(str(path)) == {"A": "quoted value", "B": "x y", "C": "spaced"}
