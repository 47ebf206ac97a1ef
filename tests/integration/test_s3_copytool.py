"""The s3 copytool against a real S3 server (moto_server, SigV4 authentication on): our own request signing,
object-store layouts, verification, error codes, key sources."""

import json
import os
import types
import zlib

import pytest

from pilot.config import load_config
from pilot.job import FileSpec
from pilot.queuedata import from_dict
from pilot.transfer.base import get_copytool
from pilot.transfer.storage import deterministic_path, load_storage_data
from pilot.trigger import Trigger
from pilot.settings import Settings


def adler(data):
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def make_ctx(s3, tmp_path, env=None, rse="OS_ES_TEST"):
    ddm = tmp_path / "ddm.json"
    ddm.write_text(json.dumps({"OS_ES_TEST": s3.storage_entry("pilot-es"),
                               "OS_DET": s3.storage_entry("pilot-data", "DATADISK", deterministic=True)}))
    queue = from_dict({"nickname": "S3Q", "astorages": {"read_lan": [rse], "write_lan": [rse], "pl": [rse]}}, "S3Q")
    return types.SimpleNamespace(config=load_config(env=env or {}), queuedata=queue, abort=Trigger(),
                                 storage=load_storage_data(str(ddm)), settings=Settings(queue="Q", capath=None))


@pytest.fixture
def keys_env(s3, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "PANDA_PILOT_AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("rse", ["OS_ES_TEST", "OS_DET"])
def test_stage_out_then_in_verified(s3, tmp_path, keys_env, rse):
    ctx = make_ctx(s3, tmp_path, rse=rse)
    out_dir, in_dir = tmp_path / "out", tmp_path / "in"
    out_dir.mkdir()
    in_dir.mkdir()
    blobs = {f"{rse}.f{i}.dat": os.urandom(50_000 * (i + 1)) for i in range(3)}
    blobs[f"{rse}.empty"] = b""
    for name, data in blobs.items():
        (out_dir / name).write_bytes(data)
    outputs = [FileSpec(lfn=name, role="output", scope="user.pilot") for name in blobs]
    get_copytool("s3").copy_out(outputs, str(out_dir), ctx)
    for spec in outputs:
        assert spec.status == "transferred", spec.diag
        assert spec.checksum == {"adler32": adler(blobs[spec.lfn])} and spec.ddmendpoint == rse
        if rse == "OS_ES_TEST":  # object store layout: <bucket path>/<queue>/<lfn>
            bucket, key = "pilot-es", f"S3Q/{spec.lfn}"
        else:
            bucket, key = "pilot-data", deterministic_path("user.pilot", spec.lfn)
        assert spec.surl == f"{s3.endpoint}/{bucket}/{key}"
        assert s3.get(bucket, key) == blobs[spec.lfn]
        assert s3.head(bucket, key)["Metadata"]["adler32"] == adler(blobs[spec.lfn])
    inputs = [FileSpec(lfn=name, role="input", scope="user.pilot", filesize=len(data),
                       checksum={"adler32": adler(data)}, ddmendpoint=rse) for name, data in blobs.items()]
    get_copytool("s3").copy_in(inputs, str(in_dir), ctx)
    for spec in inputs:
        assert spec.status == "transferred", spec.diag
        assert (in_dir / spec.lfn).read_bytes() == blobs[spec.lfn]
    assert not [n for n in os.listdir(in_dir) if n.endswith(".part")]


def test_missing_corrupt_and_turl_inputs(s3, tmp_path, keys_env):
    ctx = make_ctx(s3, tmp_path)
    good, bad = b"good data" * 1000, b"tampered!" * 1000
    s3.put("pilot-es", "S3Q/corrupt.dat", bad)  # the catalogue says `good`
    s3.put("pilot-es", "elsewhere/by-turl.dat", good)
    inputs = [FileSpec(lfn="corrupt.dat", role="input", filesize=len(good), checksum={"adler32": adler(good)},
                       ddmendpoint="OS_ES_TEST"),
              FileSpec(lfn="absent.dat", role="input", ddmendpoint="OS_ES_TEST"),
              FileSpec(lfn="by-turl.dat", role="input", checksum={"adler32": adler(good)},
                       turl=f"{s3.endpoint}//pilot-es/elsewhere/by-turl.dat")]
    get_copytool("s3").copy_in(inputs, str(tmp_path), ctx)
    corrupt, absent, by_turl = inputs
    assert (corrupt.status, corrupt.status_code) == ("failed", 1171), corrupt.diag
    assert (absent.status, absent.status_code) == ("failed", 1331), absent.diag
    assert by_turl.status == "transferred", by_turl.diag
    assert (tmp_path / "by-turl.dat").read_bytes() == good
    assert not (tmp_path / "corrupt.dat").exists() and not (tmp_path / "absent.dat").exists()


def test_wrong_and_missing_keys(s3, tmp_path, keys_env, monkeypatch):
    (tmp_path / "x.dat").write_bytes(b"x" * 100)
    monkeypatch.setenv("S3_SECRET_KEY", "not-the-secret")
    ctx = make_ctx(s3, tmp_path)
    out = FileSpec(lfn="x.dat", role="output")
    get_copytool("s3").copy_out([out], str(tmp_path), ctx)
    assert (out.status, out.status_code) == ("failed", 1383), out.diag  # the server refused our signature
    assert "SignatureDoesNotMatch" in out.diag and "not-the-secret" not in out.diag
    assert "x.dat" not in " ".join(s3.keys_of("pilot-es"))
    s3.put("pilot-es", "S3Q/y.dat", b"y")
    inp = FileSpec(lfn="y.dat", role="input", ddmendpoint="OS_ES_TEST")
    get_copytool("s3").copy_in([inp], str(tmp_path), ctx)
    assert (inp.status, inp.status_code) == ("failed", 1338), inp.diag
    monkeypatch.delenv("S3_ACCESS_KEY")
    monkeypatch.delenv("S3_SECRET_KEY")
    out = FileSpec(lfn="x.dat", role="output")
    get_copytool("s3").copy_out([out], str(tmp_path), ctx)
    assert (out.status, out.status_code) == ("failed", 1364), out.diag


def test_keys_from_keys_file_and_aws_profile(s3, tmp_path, keys_env, monkeypatch):
    monkeypatch.delenv("S3_ACCESS_KEY")
    monkeypatch.delenv("S3_SECRET_KEY")
    (tmp_path / "a.dat").write_bytes(b"a" * 10)
    # CRIC gives key NAMES in resource.settings; the keys file maps names to values
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"OS_ES_TEST_key": s3.keys["access_key"], "OS_ES_TEST_key.pub": s3.keys["secret_key"]}))
    ctx = make_ctx(s3, tmp_path, env={"PILOT_CFG_S3_KEYS_FILE": str(keys)})
    ctx.storage["OS_ES_TEST"].resource["settings"].update(access_key="OS_ES_TEST_key", secret_key="OS_ES_TEST_key.pub")
    spec = FileSpec(lfn="a.dat", role="output")
    get_copytool("s3").copy_out([spec], str(tmp_path), ctx)
    assert spec.status == "transferred", spec.diag
    # Pilot 3's way: an AWS credentials file and PANDA_PILOT_AWS_PROFILE
    creds = tmp_path / "credentials"
    creds.write_text(f"[other]\naws_access_key_id = nope\naws_secret_access_key = nope\n"
                     f"[pilot]\naws_access_key_id = {s3.keys['access_key']}\n"
                     f"aws_secret_access_key = {s3.keys['secret_key']}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("PANDA_PILOT_AWS_PROFILE", "pilot")
    ctx = make_ctx(s3, tmp_path)
    spec = FileSpec(lfn="a.dat", role="output")
    get_copytool("s3").copy_out([spec], str(tmp_path), ctx)
    assert spec.status == "transferred", spec.diag
    assert s3.get("pilot-es", "S3Q/a.dat") == b"a" * 10


def test_upload_goes_on_after_an_abort_within_its_share_of_the_grace(s3, tmp_path, keys_env):
    """After SIGTERM the log must still go out: uploads continue until ctx.stageout_deadline, then stop."""
    import time

    ctx = make_ctx(s3, tmp_path)
    (tmp_path / "log.tgz").write_bytes(b"L" * 5000)
    ctx.abort.fire(1201, "SIGTERM")
    ctx.stageout_deadline = lambda share=2 / 3: time.monotonic() + 30
    spec = FileSpec(lfn="log.tgz", role="log")
    get_copytool("s3").copy_out([spec], str(tmp_path), ctx)
    assert spec.status == "transferred", spec.diag
    ctx.stageout_deadline = lambda share=2 / 3: time.monotonic() - 1
    spec = FileSpec(lfn="log.tgz", role="log")
    get_copytool("s3").copy_out([spec], str(tmp_path), ctx)
    assert (spec.status, spec.status_code) == ("failed", 1201), spec.diag
