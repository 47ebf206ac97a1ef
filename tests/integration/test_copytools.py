"""The xrdcp and gfal copytools against real XRootD and nginx WebDAV servers."""

import json
import os
import socket
import types
import zlib

import pytest

from pilot.config import load_config
from pilot.job import FileSpec
from pilot.queuedata import from_dict
from pilot.transfer.base import get_copytool
from pilot.transfer.storage import load_storage_data
from pilot.trigger import Trigger
from tests.e2e.pilotrun import job_definition, write_job
from tests.integration.storage import run_pilot_job
from pilot.settings import Settings

pytestmark = pytest.mark.slow

# gfal runs through the gfal2 Python bindings (install-deps links python3-gfal2 into the venv); gfal-cmd is the
# same copytool forced onto the gfal-copy/gfal-sum/gfal-rm commands
CASES = [("xrdcp", "XRD_ROOT"), ("gfal", "XRD_ROOT"), ("gfal", "XRD_DAVS"), ("gfal", "NGINX_DAVS"),
         ("gfal-cmd", "XRD_ROOT"), ("gfal-cmd", "XRD_DAVS"), ("gfal-cmd", "NGINX_DAVS")]


def tool_and_env(tool):
    return ("gfal", {"PILOT_CFG_FILE_GFAL_BINDINGS": "false"}) if tool == "gfal-cmd" else (tool, {})


def make_ctx(storage, tmp_path, rse, env=None):
    env = dict(storage.env(), **(env or {}))
    os.environ.update(storage.env())
    queue = from_dict({"nickname": "Q", "astorages": {"read_lan": [rse], "write_lan": [rse], "pl": [rse]}}, "Q")
    return types.SimpleNamespace(config=load_config(env=env), queuedata=queue, abort=Trigger(),
                                 storage=load_storage_data(storage.storage_data(tmp_path / "ddm.json")),
                                 settings=Settings(queue="Q", capath=storage.cert_dir))


def adler(data):
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


@pytest.mark.parametrize("tool,rse", CASES)
def test_stage_out_then_in_verified(storage, tmp_path, tool, rse):
    """Four files out and back in through each copytool and storage, sizes and checksums verified. Near 10 s for the
    gfal command line: one gfal-copy process per file and direction (gfal2 loads in ~1.5 s)."""
    from pilot.transfer import batch

    assert batch.bindings("gfal"), "install-deps links Debian's python3-gfal2 into the venv"
    label = tool
    tool, env = tool_and_env(tool)
    ctx = make_ctx(storage, tmp_path, rse, env)
    out_dir, in_dir = tmp_path / "out", tmp_path / "in"
    out_dir.mkdir()
    in_dir.mkdir()
    blobs = {f"{label}.{rse}.f{i}.dat": os.urandom(100_000 * (i + 1)) for i in range(4)}
    for name, data in blobs.items():
        (out_dir / name).write_bytes(data)
    outputs = [FileSpec(lfn=name, role="output", scope="user.pilot") for name in blobs]
    get_copytool(tool).copy_out(outputs, str(out_dir), ctx)
    for spec in outputs:
        assert spec.status == "transferred", spec.diag
        assert spec.checksum == {"adler32": adler(blobs[spec.lfn])}
        assert spec.surl.startswith(ctx.storage[rse].protocols(["write_lan"])[0])
        assert "/user/pilot/" in spec.surl and spec.ddmendpoint == rse
        assert open(storage.stored(rse, "user.pilot", spec.lfn), "rb").read() == blobs[spec.lfn]
    inputs = [FileSpec(lfn=name, role="input", scope="user.pilot", filesize=len(data),
                       checksum={"adler32": adler(data)}, ddmendpoint=rse) for name, data in blobs.items()]
    get_copytool(tool).copy_in(inputs, str(in_dir), ctx)
    for spec in inputs:
        assert spec.status == "transferred", spec.diag
        assert spec.turl.startswith(ctx.storage[rse].protocols(["read_lan"])[0])
        assert (in_dir / spec.lfn).read_bytes() == blobs[spec.lfn]
    assert not [n for n in os.listdir(in_dir) if n.endswith(".part")]


@pytest.mark.parametrize("tool", ["xrdcp", "gfal", "gfal-cmd"])
def test_corrupted_replica_and_missing_file(storage, tmp_path, tool):
    label = tool
    tool, env = tool_and_env(tool)
    ctx = make_ctx(storage, tmp_path, "XRD_ROOT", env)
    data = b"replica with a wrong catalogue checksum\n" * 1000
    storage.place("XRD_ROOT", "mc", f"bad.{label}.dat", data)
    bad = FileSpec(lfn=f"bad.{label}.dat", role="input", scope="mc", filesize=len(data),
                   checksum={"adler32": "0badc0de"}, ddmendpoint="XRD_ROOT")
    missing = FileSpec(lfn=f"missing.{label}.dat", role="input", scope="mc", ddmendpoint="XRD_ROOT")
    get_copytool(tool).copy_in([bad, missing], str(tmp_path), ctx)
    assert bad.status_code == 1171 and "0badc0de" in bad.diag
    assert missing.status_code == 1331, missing.diag
    assert not os.path.exists(tmp_path / bad.lfn)


@pytest.mark.parametrize("tool", ["xrdcp", "gfal", "gfal-cmd"])
def test_server_down_and_timeout(storage, tmp_path, tool):
    tool, env = tool_and_env(tool)
    ctx = make_ctx(storage, tmp_path, "XRD_ROOT", env=dict(env, PILOT_CFG_FILE_TRANSFER_TIMEOUT_BASE="5",
                                                           PILOT_CFG_FILE_TRANSFER_TIMEOUT_MAX="5"))
    ctx.storage["XRD_ROOT"].arprotocols["write_lan"] = [{"endpoint": "root://127.0.0.1:1", "path": "//x"}]
    (tmp_path / "o.dat").write_bytes(b"x" * 1000)
    down = FileSpec(lfn="o.dat", role="output", scope="mc")
    get_copytool(tool).copy_out([down], str(tmp_path), ctx)
    assert down.status == "failed" and down.status_code in (1137, 1152), down.diag
    # a server that takes the connection (the kernel's backlog) and never says a word: only the pilot's own
    # time limit (the smallest the settings allow) ends the transfer
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    slow = make_ctx(storage, tmp_path, "XRD_ROOT", env=dict(env, PILOT_CFG_FILE_TRANSFER_TIMEOUT_BASE="0.5",
                                                            PILOT_CFG_FILE_TRANSFER_TIMEOUT_MAX="0.5"))
    slow.storage["XRD_ROOT"].arprotocols["write_lan"] = [
        {"endpoint": f"root://127.0.0.1:{silent.getsockname()[1]}", "path": "//x"}]
    big = FileSpec(lfn="o.dat", role="output", scope="mc")
    try:
        get_copytool(tool).copy_out([big], str(tmp_path), slow)
    finally:
        silent.close()
    assert big.status_code == 1152 and "timed out" in big.diag


def test_xrdcp_refuses_urls_it_cannot_handle(storage, tmp_path):
    ctx = make_ctx(storage, tmp_path, "XRD_DAVS")
    (tmp_path / "w.dat").write_bytes(b"x")
    spec = FileSpec(lfn="w.dat", role="output", scope="mc")
    get_copytool("xrdcp").copy_out([spec], str(tmp_path), ctx)
    assert spec.status_code == 1313 and "davs" in spec.diag
    assert not os.path.exists("davs:") and not os.path.exists(os.path.join(str(tmp_path), "davs:"))


def test_gfal_stage_out_to_storage_without_checksums(storage, tmp_path, caplog):
    ctx = make_ctx(storage, tmp_path, "NGINX_DAVS")
    (tmp_path / "n.dat").write_bytes(b"nginx has no checksums")
    spec = FileSpec(lfn="n.dat", role="output", scope="mc")
    get_copytool("gfal").copy_out([spec], str(tmp_path), ctx)
    assert spec.status == "transferred"
    assert "cannot compute adler32" in caplog.text


def test_job_from_xrootd_to_webdav_through_pilot(storage, tmp_path, jobdir):
    """A job's input from XRootD (xrdcp), its output to nginx WebDAV (gfal), through pilot.py. Over 10 s on a loaded
    machine: a pilot run with xrdcp and gfal-copy processes (gfal2 loads in ~1.5 s)."""
    data = b"event data\n" * 5000
    storage.place("XRD_ROOT", "data24", "raw.dat", data)
    job = job_definition(1201, pars="-c 'wc -l raw.dat > summary.txt'",
                         inputs=[("raw.dat", (len(data), adler(data)))], outputs=["summary.txt"])
    job.update({"scopeIn": "data24", "ddmEndPointIn": "XRD_ROOT", "ddmEndPointOut": "NGINX_DAVS,NGINX_DAVS",
                "scopeOut": "user.pilot"})
    write_job(jobdir, job)
    run = run_pilot_job(storage, tmp_path, jobdir, "STORE", "xrdcp", "gfal", "XRD_ROOT", "NGINX_DAVS", timeout=120)
    final = run.final(1201)
    assert final["state"] == "finished", run.stderr[-3000:]
    info = json.loads(final["xml"])
    assert info["summary.txt"]["surl"].startswith(storage.davs + "/rucio/user/pilot/")
    assert info["summary.txt"]["endpoint"] == "NGINX_DAVS"
    stored = open(storage.stored("NGINX_DAVS", "user.pilot", "summary.txt")).read()
    assert stored.split()[0] == "5000"


@pytest.fixture
def jobdir(tmp_path):
    path = tmp_path / "jobs"
    path.mkdir()
    return path


@pytest.mark.parametrize("bindings", [True, False], ids=["xrootd-bindings", "xrdcp-cli"])
def test_xrdcp_batched_stage_in_keeps_per_file_verdicts(storage, tmp_path, caplog, monkeypatch, bindings):
    """Many inputs in one batch (XRootD bindings in-process, else one xrdcp --parallel); a missing file and a bad
    replica still get their own codes."""
    import logging

    from pilot.transfer import batch

    assert batch.bindings("xrootd"), "install-deps links Debian's python3-xrootd into the venv"
    if not bindings:
        monkeypatch.setattr(batch, "bindings", lambda tool: False)
    caplog.set_level(logging.INFO)
    ctx = make_ctx(storage, tmp_path, "XRD_ROOT")
    blobs = {f"batch.{i}.dat": os.urandom(30_000 + i) for i in range(5)}
    inputs = []
    for name, data in blobs.items():
        storage.place("XRD_ROOT", "mc", name, data)
        inputs.append(FileSpec(lfn=name, role="input", scope="mc", filesize=len(data),
                               checksum={"adler32": adler(data)}, ddmendpoint="XRD_ROOT"))
    inputs[1].checksum = {"adler32": "0badc0de"}
    inputs.append(FileSpec(lfn="batch.missing.dat", role="input", scope="mc", ddmendpoint="XRD_ROOT"))
    get_copytool("xrdcp").copy_in(inputs, str(tmp_path), ctx)
    assert "batched stage-in (" in caplog.text and ": 5 of 6 files in" in caplog.text
    assert "batch.1.dat did not verify" in caplog.text  # the batch's copy was checked, then fetched alone
    verdicts = {spec.lfn: spec.status_code for spec in inputs}
    assert verdicts == {"batch.0.dat": 0, "batch.1.dat": 1171, "batch.2.dat": 0, "batch.3.dat": 0, "batch.4.dat": 0,
                        "batch.missing.dat": 1331}
    for spec in inputs:
        if spec.status_code == 0:
            assert (tmp_path / spec.lfn).read_bytes() == blobs[spec.lfn] and spec.turl.startswith(storage.root)
    assert not (tmp_path / ".stagein-batch").exists() and not (tmp_path / "batch.1.dat").exists()


def test_xrdcp_batched_stage_out_verified_by_the_server(storage, tmp_path, caplog, monkeypatch):
    """Outputs go out in one CopyProcess, each checked by XRootD against its local adler32: a copy whose
    checksum the server does not confirm is never reported stored (here: a lying local checksum -> 1172)."""
    import logging

    from pilot.transfer import remote, xrdcp

    real = xrdcp.local_digest

    def lying(path, kind):
        digest = real(path, kind)
        if path.endswith("out.2.dat"):
            return types.SimpleNamespace(size=digest.size, kind=digest.kind, hexdigest=lambda: "0badc0de")
        return digest

    monkeypatch.setattr(xrdcp, "local_digest", lying)  # the single-file path
    monkeypatch.setattr(remote, "local_digest", lying)  # the batch
    caplog.set_level(logging.INFO)
    ctx = make_ctx(storage, tmp_path, "XRD_ROOT")
    blobs = {f"out.{i}.dat": os.urandom(20_000 + i) for i in range(5)}
    for name, data in blobs.items():
        (tmp_path / name).write_bytes(data)
    outputs = [FileSpec(lfn=name, role="output", scope="user.batch") for name in blobs]
    outputs.append(FileSpec(lfn="out.never-written.dat", role="output", scope="user.batch"))
    get_copytool("xrdcp").copy_out(outputs, str(tmp_path), ctx)
    assert "batched stage-out (xrootd bindings): 4 of 5 files" in caplog.text
    verdicts = {spec.lfn: spec.status_code for spec in outputs}
    assert verdicts == {"out.0.dat": 0, "out.1.dat": 0, "out.2.dat": 1172, "out.3.dat": 0, "out.4.dat": 0,
                        "out.never-written.dat": 1165}
    for spec in outputs:
        if spec.status_code == 0:
            assert spec.checksum == {"adler32": adler(blobs[spec.lfn])} and spec.surl.startswith(storage.root)
            assert open(storage.stored("XRD_ROOT", "user.batch", spec.lfn), "rb").read() == blobs[spec.lfn]
    assert not os.path.exists(storage.stored("XRD_ROOT", "user.batch", "out.2.dat"))  # the bad copy was removed
