"""Checksums, copytool selection from queue data, and the mv copytool with its verification."""

import hashlib
import io
import os
import random
import threading
import types
import zlib

import pytest

from pilot.config import load_config
from pilot.errors import PilotError
from pilot.job import FileSpec
from pilot.jobparser import parse_job
from pilot.transfer.base import (KNOWN_ACTIVITIES, LOG_ACTIVITIES, STAGEIN_ACTIVITIES, STAGEOUT_ACTIVITIES,
                                 copytool_names, get_copytool)
from pilot.transfer.checksum import CHUNK, Digest, copy_stream, file_checksum, mismatch_code
from pilot.transfer.mv import MvCopytool
from pilot.trigger import Trigger

MIB = 1 << 20


def adler32(data):
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def random_bytes(size, seed=0):
    return random.Random(seed * 1000003 + size).randbytes(size)


# --- checksums ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 7, 65521, CHUNK - 1, CHUNK, CHUNK + 1, 3 * MIB + 7])
def test_file_checksums_match_zlib_and_hashlib(tmp_path, size):
    data = random_bytes(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert file_checksum(str(path)) == {"adler32": adler32(data)}
    assert file_checksum(str(path), "adler32") == {"adler32": adler32(data)}
    assert file_checksum(str(path), "md5") == {"md5": hashlib.md5(data).hexdigest()}


def test_known_values():
    # adler32 of nothing is 1, printed with its leading zeros; md5 of nothing is the well-known one
    assert Digest("adler32").hexdigest() == "00000001"
    assert Digest("md5").hexdigest() == "d41d8cd98f00b204e9800998ecf8427e"
    digest = Digest("adler32")
    digest.update(b"Wikipedia")
    assert digest.hexdigest() == "11e60398" and digest.size == 9


def test_adler32_is_always_eight_lowercase_hex_digits():
    for seed in range(200):
        data = random_bytes(seed % 13, seed)
        digest = Digest("adler32")
        digest.update(data)
        assert len(digest.hexdigest()) == 8 and digest.hexdigest() == adler32(data)
        assert digest.hexdigest() == digest.hexdigest().lower()


def test_digest_is_the_same_whatever_the_chunking():
    data = random_bytes(100_000, 3)
    for kind in ("adler32", "md5"):
        whole = Digest(kind)
        whole.update(data)
        pieces = Digest(kind)
        cuts = sorted(random.Random(kind).sample(range(len(data)), 20))
        for start, end in zip([0] + cuts, cuts + [len(data)]):
            pieces.update(data[start:end])
        assert pieces.hexdigest() == whole.hexdigest() and pieces.size == whole.size == len(data)


@pytest.mark.parametrize("kind", ["sha1", "ADLER32", "md", "ad", ""])
def test_unsupported_digest_kind(kind):
    with pytest.raises(ValueError):
        Digest(kind)


def test_copy_stream_copies_checksums_and_reports_progress():
    data = random_bytes(2 * MIB + 5)
    sink = io.BytesIO()
    seen = []
    digest = copy_stream(io.BytesIO(data), sink, "md5", progress=seen.append)
    assert sink.getvalue() == data
    assert digest.hexdigest() == hashlib.md5(data).hexdigest() and digest.size == len(data)
    assert seen == [MIB, 2 * MIB, 2 * MIB + 5]  # after every 1 MiB chunk
    only = copy_stream(io.BytesIO(data), None, "adler32")
    assert only.hexdigest() == adler32(data)


@pytest.mark.parametrize("kind,direction,code", [("adler32", "in", 1171), ("adler32", "out", 1172),
                                                 ("md5", "in", 1145), ("md5", "out", 1141)])
def test_mismatch_codes(kind, direction, code):
    assert mismatch_code(kind, direction) == code


# --- copytool selection ------------------------------------------------------------------------------------

def test_copytools_for_the_first_defined_activity():
    acopytools = {"read_lan": ["xrdcp", "mv"], "pw": ["gfal"], "default": ["mv"]}
    assert copytool_names(acopytools, STAGEIN_ACTIVITIES) == ["xrdcp", "mv"]
    assert copytool_names(acopytools, STAGEOUT_ACTIVITIES) == ["gfal"]
    assert copytool_names(acopytools, LOG_ACTIVITIES) == ["gfal"]
    assert copytool_names({"default": ["mv"]}, ("write_lan", "default")) == ["mv"]
    assert copytool_names({"read_lan": [], "pr": ["mv"]}, STAGEIN_ACTIVITIES) == ["mv"]  # empty = undefined


def test_copytool_list_is_a_copy():
    acopytools = {"pr": ["mv"]}
    copytool_names(acopytools, ("pr",)).append("xrdcp")
    assert acopytools == {"pr": ["mv"]}


def test_activity_orders_follow_pilot3():
    assert STAGEIN_ACTIVITIES == ("read_lan", "pr", "default")
    assert STAGEOUT_ACTIVITIES == ("write_lan", "pw", "default")
    assert LOG_ACTIVITIES[0] == "pl" and set(LOG_ACTIVITIES) <= KNOWN_ACTIVITIES


@pytest.mark.parametrize("acopytools", [{"read_lan_typo": ["mv"]}, {"pr": ["mv"], "PR": ["mv"]}, {"": ["mv"]}])
def test_unknown_activity_key_is_1341(acopytools):
    with pytest.raises(PilotError) as caught:
        copytool_names(acopytools, STAGEIN_ACTIVITIES)
    assert caught.value.code == 1341 and "unknown activities" in caught.value.diag


@pytest.mark.parametrize("acopytools", [{}, {"pl": ["mv"]}, {"read_lan": [], "default": []}])
def test_no_matching_activity_is_1133(acopytools):
    with pytest.raises(PilotError) as caught:
        copytool_names(acopytools, STAGEIN_ACTIVITIES)
    assert caught.value.code == 1133 and "read_lan" in caught.value.diag


@pytest.mark.parametrize("name", ["teleport", "MV", "", "../mv"])
def test_unknown_copytool_is_1323(name):
    with pytest.raises(PilotError) as caught:
        get_copytool(name)
    assert caught.value.code == 1323 and "mv" in caught.value.diag  # the diag lists what exists


def test_get_mv_copytool():
    tool = get_copytool("mv", {"setup": ""})
    assert isinstance(tool, MvCopytool) and tool.name == "mv" and tool.setup == {"setup": ""}


# --- the mv copytool ---------------------------------------------------------------------------------------

def make_ctx(tmp_path, **cfg):
    env = {f"PILOT_CFG_FILE_{key.upper()}": str(value) for key, value in cfg.items()}
    paths = types.SimpleNamespace(main=str(tmp_path), input_dir=str(tmp_path / "storage-in"),
                                  output_dir=str(tmp_path / "storage-out"))
    os.makedirs(paths.input_dir, exist_ok=True)
    return types.SimpleNamespace(config=load_config(env=env), paths=paths, abort=threading.Event(), abort_reason="",
                                 stageout_deadline=lambda: float("inf"))


@pytest.fixture
def ctx(tmp_path):
    return make_ctx(tmp_path)


@pytest.fixture
def work(tmp_path):
    path = tmp_path / "work"
    path.mkdir()
    return path


def stored_input(ctx, lfn, data):
    with open(os.path.join(ctx.paths.input_dir, lfn), "wb") as handle:
        handle.write(data)
    return FileSpec(lfn=lfn, role="input", filesize=len(data), checksum={"adler32": adler32(data)})


def leftovers(*dirs):
    return [name for d in dirs if os.path.isdir(d) for name in os.listdir(d) if ".part" in name or ".tmp" in name]


def test_copy_in_success(ctx, work):
    data = random_bytes(MIB + 3)
    spec = stored_input(ctx, "EVNT.01234._000001.pool.root.1", data)
    get_copytool("mv").copy_in([spec], str(work), ctx)
    assert (spec.status, spec.status_code, spec.diag, spec.copytool) == ("transferred", 0, "", "mv")
    local = work / spec.lfn
    assert local.read_bytes() == data and not local.is_symlink()
    assert spec.turl == os.path.join(ctx.paths.input_dir, spec.lfn)
    assert os.path.exists(spec.turl)  # copy mode leaves the storage alone
    assert spec.transfer_seconds >= 0 and not leftovers(str(work))


def test_copy_in_fills_in_what_the_catalogue_did_not_say(ctx, work):
    data = b"no catalogue entry\n" * 50
    spec = stored_input(ctx, "x.dat", data)
    spec.filesize, spec.checksum = 0, {}
    get_copytool("mv").copy_in([spec], str(work), ctx)
    assert spec.status == "transferred" and spec.filesize == len(data) and spec.checksum == {"adler32": adler32(data)}


def test_copy_in_verifies_md5_when_the_catalogue_has_md5(ctx, work):
    data = b"md5 catalogued"
    good = stored_input(ctx, "good.dat", data)
    good.checksum = {"md5": hashlib.md5(data).hexdigest()}
    bad = stored_input(ctx, "bad.dat", data)
    bad.checksum = {"md5": "0" * 32}
    get_copytool("mv").copy_in([good, bad], str(work), ctx)
    assert good.status == "transferred" and good.checksum == {"md5": hashlib.md5(data).hexdigest()}
    assert bad.status == "failed" and bad.status_code == 1145 and "md5 mismatch" in bad.diag
    assert sorted(os.listdir(work)) == ["good.dat"]


def test_missing_input_is_1331(ctx, work):
    spec = FileSpec(lfn="absent.root", role="input", filesize=10, checksum={"adler32": "00000001"})
    get_copytool("mv").copy_in([spec], str(work), ctx)
    assert spec.status == "failed" and spec.status_code == 1331
    assert "absent.root" in spec.diag and len(spec.diag) <= 256
    assert os.listdir(work) == []


def test_wrong_catalogue_adler32_is_1171_and_leaves_nothing(ctx, work):
    spec = stored_input(ctx, "in.dat", b"payload input\n" * 100)
    spec.checksum = {"adler32": "deadbeef"}
    get_copytool("mv").copy_in([spec], str(work), ctx)
    assert spec.status == "failed" and spec.status_code == 1171
    assert "deadbeef" in spec.diag and "adler32 mismatch" in spec.diag
    assert os.listdir(work) == []  # neither the file nor its .part


def test_wrong_catalogue_size_is_1099_and_leaves_nothing(ctx, work):
    spec = stored_input(ctx, "in.dat", b"0123456789")
    spec.filesize = 11
    get_copytool("mv").copy_in([spec], str(work), ctx)
    assert spec.status == "failed" and spec.status_code == 1099
    assert "got 10 bytes, catalogue says 11" in spec.diag
    assert os.listdir(work) == []


def test_several_inputs_each_get_their_own_status(ctx, work):
    specs = [stored_input(ctx, f"f{i}.dat", random_bytes(1000 + i)) for i in range(6)]
    specs[2].checksum = {"adler32": "00000000"}
    specs[4].filesize += 1
    os.unlink(os.path.join(ctx.paths.input_dir, "f5.dat"))
    get_copytool("mv").copy_in(specs, str(work), ctx)  # [File] transfer_width = 4: in parallel
    assert [spec.status_code for spec in specs] == [0, 0, 1171, 0, 1099, 1331]
    assert sorted(os.listdir(work)) == ["f0.dat", "f1.dat", "f3.dat"]
    for spec in (specs[0], specs[1], specs[3]):
        assert file_checksum(str(work / spec.lfn)) == spec.checksum


def test_symlink_mode(tmp_path, work):
    ctx = make_ctx(tmp_path, mv_stagein_mode="symlink")
    data = random_bytes(5000)
    spec = stored_input(ctx, "link.dat", data)
    get_copytool("mv").copy_in([spec], str(work), ctx)
    assert spec.status == "transferred", spec.diag
    local = work / "link.dat"
    assert local.is_symlink() and os.readlink(local) == os.path.abspath(os.path.join(ctx.paths.input_dir, "link.dat"))
    assert local.read_bytes() == data and os.path.exists(os.path.join(ctx.paths.input_dir, "link.dat"))
    assert not leftovers(str(work))


def test_symlink_mode_failure_removes_the_link_not_the_source(tmp_path, work):
    ctx = make_ctx(tmp_path, mv_stagein_mode="symlink")
    spec = stored_input(ctx, "link.dat", b"abc")
    spec.checksum = {"adler32": "00000002"}
    get_copytool("mv").copy_in([spec], str(work), ctx)
    assert spec.status_code == 1171 and os.listdir(work) == []
    assert open(os.path.join(ctx.paths.input_dir, "link.dat"), "rb").read() == b"abc"


def test_move_mode(tmp_path, work):
    ctx = make_ctx(tmp_path, mv_stagein_mode="move")
    data = random_bytes(4096)
    spec = stored_input(ctx, "moved.dat", data)
    get_copytool("mv").copy_in([spec], str(work), ctx)
    assert spec.status == "transferred", spec.diag
    assert (work / "moved.dat").read_bytes() == data and not (work / "moved.dat").is_symlink()
    assert not os.path.exists(os.path.join(ctx.paths.input_dir, "moved.dat"))
    assert not leftovers(str(work), ctx.paths.input_dir)


def test_unknown_stagein_mode_is_refused_at_start_up(tmp_path):
    with pytest.raises(PilotError) as caught:  # a declared choice of [File] mv_stagein_mode
        make_ctx(tmp_path, mv_stagein_mode="hardlink")
    assert caught.value.code == 1008 and "hardlink" in caught.value.diag


def test_copy_in_stops_when_the_pilot_aborts(tmp_path, work):
    ctx = make_ctx(tmp_path)
    ctx.abort = Trigger("abort")
    ctx.abort.fire(1201, "pilot received SIGTERM")
    spec = stored_input(ctx, "x.dat", b"x")
    get_copytool("mv").copy_in([spec], str(work), ctx)
    assert spec.status == "failed" and spec.status_code == 1201 and "SIGTERM" in spec.diag
    assert os.listdir(work) == []


def test_copy_in_stops_when_the_job_is_killed(ctx, work):
    job = parse_job({"PandaID": 1, "transformation": "sh"})
    job.kill.fire(1144, "killed by the server")
    spec = stored_input(ctx, "x.dat", b"x")
    get_copytool("mv").copy_in([spec], str(work), ctx, job=job)
    assert spec.status_code == 1144 and os.listdir(work) == []


def test_copy_out_success_is_verified(ctx, work):
    data = random_bytes(MIB + 17)
    (work / "AOD.pool.root").write_bytes(data)
    spec = FileSpec(lfn="AOD.pool.root", role="output")
    get_copytool("mv").copy_out([spec], str(work), ctx)
    stored = os.path.join(ctx.paths.output_dir, "AOD.pool.root")
    assert (spec.status, spec.status_code, spec.copytool) == ("transferred", 0, "mv")
    assert spec.surl == stored and open(stored, "rb").read() == data
    assert spec.filesize == len(data) and spec.checksum == {"adler32": adler32(data)} == file_checksum(stored)
    assert (work / "AOD.pool.root").exists()  # stage-out copies; the log tarball may still need the workdir
    assert os.listdir(ctx.paths.output_dir) == ["AOD.pool.root"]  # no .part left


def test_copy_out_stops_at_the_stageout_deadline_and_removes_the_part(ctx, work):
    """After a kill signal, a long mv stage-out stops when its share of the abort grace is over (checked per
    chunk), fails with the signal's code and leaves no `.part` in storage."""
    from pilot.trigger import Trigger

    (work / "big.dat").write_bytes(bytes(24 * MIB))  # three copy chunks
    ctx.abort = Trigger("abort")
    ctx.abort.fire(1201, "pilot received SIGTERM")
    chunks = []

    def deadline():  # the grace share ends after the first chunk has been copied
        chunks.append(1)
        return float("inf") if len(chunks) == 1 else 0.0

    ctx.stageout_deadline = deadline
    spec = FileSpec(lfn="big.dat", role="output")
    get_copytool("mv").copy_out([spec], str(work), ctx)
    assert spec.status == "failed" and spec.status_code == 1201 and "no time left in the abort grace" in spec.diag
    assert os.listdir(ctx.paths.output_dir) == []  # neither the output nor its .part
    assert len(chunks) == 2


def test_copy_out_with_md5(ctx, work):
    (work / "out.dat").write_bytes(b"md5 please")
    spec = FileSpec(lfn="out.dat", role="output")
    get_copytool("mv").copy_out([spec], str(work), ctx, kind="md5")
    assert spec.checksum == {"md5": hashlib.md5(b"md5 please").hexdigest()}


def test_copy_out_replaces_an_older_copy(ctx, work):
    os.makedirs(ctx.paths.output_dir)
    with open(os.path.join(ctx.paths.output_dir, "out.dat"), "wb") as handle:
        handle.write(b"old and longer content")
    (work / "out.dat").write_bytes(b"new")
    spec = FileSpec(lfn="out.dat", role="output")
    get_copytool("mv").copy_out([spec], str(work), ctx)
    assert spec.status == "transferred" and open(spec.surl, "rb").read() == b"new"


def test_missing_output_is_1165(ctx, work):
    (work / "a_directory").mkdir()
    (work / "target.dat").write_bytes(b"t")
    os.symlink(str(work / "target.dat"), str(work / "a_link.dat"))
    specs = [FileSpec(lfn=name, role="output") for name in ("never_written.dat", "a_directory", "a_link.dat")]
    get_copytool("mv").copy_out(specs, str(work), ctx)
    for spec in specs:
        assert spec.status == "failed" and spec.status_code == 1165 and spec.lfn in spec.diag
        assert spec.surl == ""
    assert not os.path.exists(ctx.paths.output_dir) or os.listdir(ctx.paths.output_dir) == []


def test_copy_out_of_many_files(ctx, work):
    blobs = {f"out_{i}.dat": random_bytes(3000 + i, i) for i in range(7)}
    for name, data in blobs.items():
        (work / name).write_bytes(data)
    specs = [FileSpec(lfn=name, role="output") for name in blobs] + [FileSpec(lfn="lost.dat", role="output")]
    get_copytool("mv").copy_out(specs, str(work), ctx)
    assert [spec.status_code for spec in specs] == [0] * 7 + [1165]
    for spec in specs[:7]:
        assert open(spec.surl, "rb").read() == blobs[spec.lfn]
        assert spec.checksum == {"adler32": adler32(blobs[spec.lfn])}
    assert sorted(os.listdir(ctx.paths.output_dir)) == sorted(blobs)


def test_round_trip_through_storage(tmp_path):
    """What one job stages out, the next stages in: sizes and checksums agree end to end."""
    ctx = make_ctx(tmp_path)
    ctx.paths.output_dir = ctx.paths.input_dir
    first, second = tmp_path / "job1", tmp_path / "job2"
    first.mkdir()
    second.mkdir()
    (first / "HITS.root").write_bytes(random_bytes(200_000))
    out = FileSpec(lfn="HITS.root", role="output")
    get_copytool("mv").copy_out([out], str(first), ctx)
    inp = FileSpec(lfn="HITS.root", role="input", filesize=out.filesize, checksum=dict(out.checksum))
    get_copytool("mv").copy_in([inp], str(second), ctx)
    assert inp.status == "transferred" and (second / "HITS.root").read_bytes() == (first / "HITS.root").read_bytes()


def test_move_mode_never_loses_the_only_copy(tmp_path):
    """A replica that fails verification in move mode stays where it was."""
    import types as _types

    from pilot.config import load_config as _load
    from pilot.job import FileSpec as _Spec
    from pilot.transfer.base import get_copytool as _get
    from pilot.trigger import Trigger as _Trigger

    store, work = tmp_path / "store", tmp_path / "work"
    store.mkdir()
    work.mkdir()
    (store / "only.dat").write_bytes(b"abc")
    ctx = _types.SimpleNamespace(config=_load(env={"PILOT_CFG_FILE_MV_STAGEIN_MODE": "move"}), abort=_Trigger(),
                                 paths=_types.SimpleNamespace(input_dir=str(store), output_dir=str(tmp_path / "o")))
    spec = _Spec(lfn="only.dat", role="input", filesize=4)
    _get("mv").copy_in([spec], str(work), ctx)
    assert spec.status_code == 1099
    assert (store / "only.dat").read_bytes() == b"abc"


@pytest.mark.parametrize("fsync", [True, False])
def test_copy_out_flushes_to_the_device_only_with_mv_fsync(tmp_path, work, monkeypatch, fsync):
    """[File] mv_fsync (default False, as cp): True makes the stored output durable before it takes its final name."""
    flushed = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (flushed.append(fd), real(fd)))
    ctx = make_ctx(tmp_path, mv_fsync=fsync)
    (work / "out.dat").write_bytes(random_bytes(5000))
    spec = FileSpec(lfn="out.dat", role="output")
    get_copytool("mv").copy_out([spec], str(work), ctx)
    assert spec.status == "transferred" and bool(flushed) == fsync
