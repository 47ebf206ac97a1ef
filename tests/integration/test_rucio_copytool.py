"""The rucio copytool against a real Rucio server whose RSEs live on the real XRootD / WebDAV servers."""

import json
import os
import subprocess
import types
import zlib

import pytest

from pilot.config import load_config
from pilot.job import FileSpec
from pilot.queuedata import from_dict
from pilot.transfer.base import get_copytool
from pilot.settings import Settings
from pilot.transfer.rucio import api_python
from pilot.trigger import Trigger

pytestmark = pytest.mark.slow


def adler(data):
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


@pytest.fixture
def rucio_env(rucio_server, monkeypatch):
    """The pilot's environment on a node where the site set up the Rucio client: its bin on PATH, RUCIO_CONFIG."""
    for key, value in rucio_server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PATH", os.path.join(rucio_server.venv, "bin") + os.pathsep + os.environ["PATH"])
    api_python.cache_clear()
    yield rucio_server
    api_python.cache_clear()


def make_ctx(rse, **cfg):
    env = {f"PILOT_CFG_RUCIO_{k.upper()}": str(v) for k, v in cfg.items()}
    queue = from_dict({"nickname": "Q", "astorages": {"read_lan": [rse], "write_lan": [rse], "pl": [rse]}}, "Q")
    return types.SimpleNamespace(config=load_config(env=env), queuedata=queue, abort=Trigger(), storage={},
                                 settings=Settings(queue="Q", capath=None))


def replicas(rucio, scope, name):
    code = ("import json, sys; from rucio.client import Client; dids = [{'scope': sys.argv[1], 'name': sys.argv[2]}]; "
            "print(json.dumps([r['rses'] for r in Client().list_replicas(dids)]))")
    out = subprocess.run([rucio.python, "-c", code, scope, name], env=rucio.client_env(), capture_output=True,
                         text=True, timeout=120, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("mode", ["api", "cli"])
@pytest.mark.parametrize("rse", ["XRD_TEST", "DAVS_TEST", "POSIX_TEST"])
def test_upload_then_download_verified(rucio_env, tmp_path, rse, mode):
    """Three files up and down through each RSE, sizes and adler32 verified, replicas registered. Over 10 s: Rucio
    takes several server round trips per file, and the cli mode starts one rucio process (~2 s of imports) per
    upload and download."""
    ctx = make_ctx(rse, mode=mode, register=True)
    out_dir, in_dir = tmp_path / "out", tmp_path / "in"
    out_dir.mkdir()
    in_dir.mkdir()
    blobs = {f"r.{mode}.{rse}.{os.getpid()}.{i}.dat": os.urandom(50_000 * (i + 1)) for i in range(3)}
    for name, data in blobs.items():
        (out_dir / name).write_bytes(data)
    outputs = [FileSpec(lfn=name, role="output", scope="test") for name in blobs]
    get_copytool("rucio").copy_out(outputs, str(out_dir), ctx)
    for spec in outputs:
        assert spec.status == "transferred", spec.diag
        assert spec.checksum == {"adler32": adler(blobs[spec.lfn])} and spec.ddmendpoint == rse
        assert replicas(rucio_env, "test", spec.lfn) and rse in replicas(rucio_env, "test", spec.lfn)[0]
    inputs = [FileSpec(lfn=name, role="input", scope="test", filesize=len(data), checksum={"adler32": adler(data)},
                       ddmendpoint=rse) for name, data in blobs.items()]
    get_copytool("rucio").copy_in(inputs, str(in_dir), ctx)
    for spec in inputs:
        assert spec.status == "transferred", spec.diag
        assert (in_dir / spec.lfn).read_bytes() == blobs[spec.lfn]
    assert sorted(os.listdir(in_dir)) == sorted(blobs)  # no .part, no private download dirs left


@pytest.mark.parametrize("mode", ["api", "cli"])
def test_missing_did_and_wrong_catalogue_checksum(rucio_env, tmp_path, mode):
    """A wrong catalogue checksum is 1171, a DID Rucio does not know is 1331, nothing is left on disk.
    Over 10 s with the cli: each rucio upload and download is a process of its own (~2 s of imports)."""
    ctx = make_ctx("XRD_TEST", mode=mode, register=True)
    data = b"a replica whose job definition gives the wrong checksum\n" * 100
    name = f"bad.{mode}.{os.getpid()}.dat"
    (tmp_path / name).write_bytes(data)
    out = FileSpec(lfn=name, role="output", scope="test")
    get_copytool("rucio").copy_out([out], str(tmp_path), ctx)
    assert out.status == "transferred", out.diag
    in_dir = tmp_path / "in"
    in_dir.mkdir()
    bad = FileSpec(lfn=name, role="input", scope="test", filesize=len(data), checksum={"adler32": "0badc0de"},
                   ddmendpoint="XRD_TEST")
    missing = FileSpec(lfn=f"missing.{mode}.{os.getpid()}.dat", role="input", scope="test", ddmendpoint="XRD_TEST")
    get_copytool("rucio").copy_in([bad, missing], str(in_dir), ctx)
    assert bad.status_code == 1171 and "0badc0de" in bad.diag
    assert missing.status_code == 1331, missing.diag
    assert os.listdir(in_dir) == []


def test_server_down_is_a_rucio_service_code(rucio_env, tmp_path, monkeypatch):
    config = tmp_path / "rucio.cfg"
    text = open(os.environ["RUCIO_CONFIG"]).read().replace(str(rucio_env.port), "1")
    config.write_text(text.replace(rucio_env.config.rsplit("/", 1)[0], str(tmp_path)))
    monkeypatch.setenv("RUCIO_CONFIG", str(config))
    ctx = make_ctx("XRD_TEST", mode="api")
    ctx.config = load_config(env={"PILOT_CFG_FILE_TRANSFER_ATTEMPTS": "1", "PILOT_CFG_RUCIO_MODE": "api"})
    spec = FileSpec(lfn="any.dat", role="input", scope="test", ddmendpoint="XRD_TEST")
    get_copytool("rucio").copy_in([spec], str(tmp_path), ctx)
    assert spec.status_code in (1316, 1324), spec.diag


def test_job_inputs_from_xrootd_outputs_to_a_rucio_rse_through_pilot(rucio_env, storage, tmp_path):
    """Issue 4's end-to-end case: xrdcp reads the input from XRootD, rucio uploads output and log to XRD_TEST.
    Over 10 s: a whole pilot run with Rucio uploads of the output and the log (several server round trips each)."""
    from tests.e2e.pilotrun import job_definition, write_job
    from tests.integration.storage import run_pilot_job

    jobdir = tmp_path / "jobs"
    jobdir.mkdir()
    data = b"event data\n" * 7000
    lfn_in, lfn_out = f"raw.{os.getpid()}.dat", f"summary.{os.getpid()}.txt"
    storage.place("XRD_ROOT", "data24", lfn_in, data)
    job = job_definition(1401, pars=f"-c 'wc -l {lfn_in} > {lfn_out}'", inputs=[(lfn_in, (len(data), adler(data)))],
                         outputs=[lfn_out])
    job.update({"scopeIn": "data24", "ddmEndPointIn": "XRD_ROOT", "ddmEndPointOut": "XRD_TEST,XRD_TEST",
                "scopeOut": "test", "scopeLog": "test"})
    write_job(jobdir, job)
    run = run_pilot_job(storage, tmp_path, jobdir, "RUCIOQ", "xrdcp", "rucio", "XRD_ROOT", "XRD_TEST",
                        env={"PILOT_CFG_RUCIO_REGISTER": "true", "PILOT_CFG_RUCIO_URL": rucio_env.url + "/traces/"})
    final = run.final(1401)
    assert final["state"] == "finished", run.stderr[-3000:]
    info = json.loads(final["xml"])
    assert info[lfn_out]["surl"].startswith(f"root://127.0.0.1:{storage.servers.ports['xrootd']}//rucio/test/")
    assert info[lfn_out]["endpoint"] == "XRD_TEST"
    assert ["XRD_TEST"] == list(replicas(rucio_env, "test", lfn_out)[0])
    log_name = next(name for name, entry in info.items() if entry.get("type") == "log")
    assert list(replicas(rucio_env, "test", log_name)[0]) == ["XRD_TEST"]
    # Rucio traces: the pilot's own records reached the real server's /traces endpoint
    with open(os.path.join(rucio_env.traces_dir, "trace")) as handle:
        records = [json.loads(line) for line in handle if '"appid": "1401"' in line or '"appid":"1401"' in line]
    events = {(r["eventType"], r["filename"], r["clientState"]) for r in records}
    assert ("get_sm", lfn_in, "DONE") in events and ("put_sm", lfn_out, "DONE") in events, records
    assert ("put_sm", log_name, "DONE") in events
    assert all(r["eventVersion"].startswith("pilot-") and r["pq"] == "RUCIOQ" for r in records)


@pytest.mark.parametrize("mode", ["api", "cli"])
def test_rucio_host_option_overrides_the_client_configuration(rucio_env, tmp_path, monkeypatch, mode):
    """--rucio-host: the site's rucio.cfg names a dead server; the pilot's option names the real one."""
    import configparser


    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(rucio_env.config)
    cfg.set("client", "rucio_host", "http://127.0.0.1:9")
    dead = tmp_path / "rucio-dead.cfg"
    with open(dead, "w") as handle:
        cfg.write(handle)
    monkeypatch.setenv("RUCIO_CONFIG", str(dead))
    ctx = make_ctx("POSIX_TEST", mode=mode, register=True)
    data = os.urandom(10_000)
    name = f"host.{mode}.{os.getpid()}.dat"
    (tmp_path / name).write_bytes(data)
    spec = FileSpec(lfn=name, role="output", scope="test")
    get_copytool("rucio").copy_out([spec], str(tmp_path), ctx)
    assert spec.status != "transferred"  # the configured server is dead
    ctx.settings = Settings(queue="Q", rucio_host=rucio_env.url)
    spec = FileSpec(lfn=name, role="output", scope="test")
    get_copytool("rucio").copy_out([spec], str(tmp_path), ctx)
    assert spec.status == "transferred", spec.diag
    assert spec.checksum == {"adler32": adler(data)}
