"""Queue data loading and the mv copytool with its checksum verification."""

import hashlib
import json
import os
import types
import zlib

import pytest

from pilot.config import load_config
from pilot.errors import PilotError
from pilot.job import FileSpec
from pilot.queuedata import load_queuedata
from pilot.transfer.base import copytool_names, get_copytool
from pilot.transfer.checksum import file_checksum
from pilot.trigger import Trigger


def write(tmp_path, data, name="q.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def test_builtin_local_queue():
    qd = load_queuedata("LOCAL")
    assert qd.name == "LOCAL" and qd.state == "ACTIVE" and qd.acopytools["pl"] == ["mv"] and qd.timefloor == 0


def test_file_plain_and_wrapped(tmp_path):
    plain = load_queuedata("Q", write(tmp_path, {"nickname": "Q", "timefloor": 2, "maxtime": 3600}))
    assert plain.timefloor == 120 and plain.maxtime == 3600
    wrapped = load_queuedata("Q", write(tmp_path, {"Q": {"nickname": "Q", "panda_resource": "R"}}, "w.json"))
    assert wrapped.resource == "R"


@pytest.mark.parametrize("data,code", [({"state": "BROKEROFF"}, 1359), ({"status": "offline"}, 1386),
                                       ("{not json", 1117), ([1, 2], 1117), ({"timefloor": "x"}, 1117),
                                       ({"acopytools": {"pr": "mv", "pw": [1]}}, 1117), ({"params": [1]}, 1117)])
def test_bad_queue_data(tmp_path, data, code):
    with pytest.raises(PilotError) as err:
        load_queuedata("Q", write(tmp_path, data))
    assert err.value.code == code


def test_missing_source(tmp_path):
    with pytest.raises(PilotError) as err:
        load_queuedata("Q", str(tmp_path / "missing.json"))
    assert err.value.code == 1116


def test_activity_resolution():
    assert copytool_names({"read_lan": ["xrdcp", "mv"], "default": ["mv"]}, ("read_lan", "default")) == ["xrdcp",
                                                                                                         "mv"]
    assert copytool_names({"default": ["mv"]}, ("write_lan", "default")) == ["mv"]
    with pytest.raises(PilotError) as err:
        copytool_names({"read_lan_typo": ["mv"]}, ("read_lan",))
    assert err.value.code == 1341
    with pytest.raises(PilotError) as err:
        copytool_names({"pl": ["mv"]}, ("read_lan",))
    assert err.value.code == 1133
    with pytest.raises(PilotError) as err:
        get_copytool("teleport")
    assert err.value.code == 1323


def test_checksums_match_zlib_and_hashlib(tmp_path):
    for size in (0, 1, 1 << 20, (3 << 20) + 7):
        data = os.urandom(size)
        path = tmp_path / f"f{size}"
        path.write_bytes(data)
        assert file_checksum(str(path))["adler32"] == f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
        assert file_checksum(str(path), "md5")["md5"] == hashlib.md5(data).hexdigest()


@pytest.fixture
def ctx(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    return types.SimpleNamespace(config=load_config(env={}), abort=Trigger(),
                                 paths=types.SimpleNamespace(input_dir=str(store), output_dir=str(tmp_path / "out")))


def spec_for(path, **extra):
    data = open(path, "rb").read()
    return FileSpec(lfn=os.path.basename(path), role="input", filesize=len(data),
                    checksum={"adler32": f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"}, **extra)


def test_mv_copy_in_and_failures(ctx, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    src = os.path.join(ctx.paths.input_dir, "in.dat")
    open(src, "wb").write(b"payload input\n" * 100)
    good = spec_for(src)
    wrong_sum = spec_for(src)
    wrong_sum.checksum = {"adler32": "deadbeef"}
    wrong_size = spec_for(src)
    wrong_size.filesize += 1
    missing = FileSpec(lfn="absent.dat", role="input")
    tool = get_copytool("mv")
    for spec in (good, wrong_sum, wrong_size, missing):
        tool.copy_in([spec], str(work), ctx)
        if os.path.exists(work / "in.dat") and spec is not good:
            os.unlink(work / "in.dat")
    assert good.status == "transferred"
    assert (wrong_sum.status_code, wrong_size.status_code, missing.status_code) == (1171, 1099, 1331)
    assert not [name for name in os.listdir(work) if name.endswith(".part")]


def test_mv_copy_in_modes(ctx, tmp_path):
    src = os.path.join(ctx.paths.input_dir, "m.dat")
    for mode in ("symlink", "move"):
        open(src, "wb").write(b"mode test")
        work = tmp_path / mode
        work.mkdir()
        ctx.config = load_config(env={"PILOT_CFG_FILE_MV_STAGEIN_MODE": mode})
        spec = spec_for(src)
        get_copytool("mv").copy_in([spec], str(work), ctx)
        assert spec.status == "transferred", spec.diag
        assert os.path.islink(work / "m.dat") == (mode == "symlink")
        assert os.path.exists(src) == (mode == "symlink")


def test_mv_copy_out_verified(ctx, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "out.dat").write_bytes(b"result" * 1000)
    out = FileSpec(lfn="out.dat", role="output")
    lost = FileSpec(lfn="never-written.dat", role="output")
    get_copytool("mv").copy_out([out, lost], str(work), ctx)
    stored = os.path.join(ctx.paths.output_dir, "out.dat")
    assert out.status == "transferred" and out.surl == stored and out.filesize == 6000
    assert out.checksum == file_checksum(stored)
    assert lost.status == "failed" and lost.status_code == 1165
    assert os.listdir(ctx.paths.output_dir) == ["out.dat"]


def test_copy_in_stops_on_abort(ctx, tmp_path):
    ctx.abort.fire(1201, "pilot received SIGTERM")
    spec = FileSpec(lfn="x", role="input")
    get_copytool("mv").copy_in([spec], str(tmp_path), ctx)
    assert spec.status_code == 1201 and "SIGTERM" in spec.diag
