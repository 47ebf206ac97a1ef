"""Tape awareness: gfal's user.status asked through a fake gfal-xattr on PATH; NEARLINE fails fast and clearly."""

import os
import stat
import time
import types

import pytest

from pilot.config import load_config
from pilot.job import FileSpec
from pilot.transfer.base import TransferFailure
from pilot.transfer.gfal import GfalCopytool
from pilot.transfer.locality import NOT_STAGED, ensure_online, query_status
from pilot.trigger import Trigger
from pilot.settings import Settings

SURL = "srm://srm.grid.sara.nl:8443/pnfs/grid.sara.nl/data/lofar/ops/L229507/L229507_SB150_uv.MS_f6.tar"


def _script(folder, name, body):
    path = folder / name
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def fake_tools(tmp_path, monkeypatch):
    """gfal-xattr prints the content of $STATE (and logs its arguments); gfal-legacy-bringonline makes it ONLINE;
    gfal-copy records that it ran (it must not, for a NEARLINE file)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    state = tmp_path / "state"
    calls = tmp_path / "calls"
    _script(bin_dir, "gfal-xattr", f'echo "gfal-xattr $*" >> {calls}\n'
                                   f'[ -s {state} ] || {{ echo "gfal-xattr error: 95 (Operation not supported)" >&2; '
                                   f'exit 1; }}\ncat {state}\n')
    _script(bin_dir, "gfal-legacy-bringonline", f'echo "bringonline $*" >> {calls}\n'
                                                f'(sleep 0.3; echo ONLINE_AND_NEARLINE > {state}) &\n')
    _script(bin_dir, "gfal-copy", f'echo "gfal-copy $*" >> {calls}\nsleep 30\n')
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return types.SimpleNamespace(state=state, calls=calls)


def make_ctx(**cfg):
    env = {f"PILOT_CFG_FILE_{key.upper()}": str(value) for key, value in cfg.items()}
    ctx = types.SimpleNamespace(config=load_config(env=env), abort=Trigger("abort"))
    ctx.settings = Settings(queue="Q", capath=None)
    return ctx


def test_states_are_read(fake_tools):
    ctx = make_ctx()
    for state in ("ONLINE", "ONLINE_AND_NEARLINE", "NEARLINE"):
        fake_tools.state.write_text(state + "\n")
        assert query_status(SURL, ctx) == state
    fake_tools.state.write_text("")
    assert query_status(SURL, ctx) is None  # the query failed: unknown, not an error
    assert f"gfal-xattr {SURL} user.status" in fake_tools.calls.read_text()


@pytest.mark.parametrize("state", ["ONLINE", "ONLINE_AND_NEARLINE", ""])
def test_online_or_unknown_goes_ahead(fake_tools, state):
    fake_tools.state.write_text(state)
    assert ensure_online(SURL, make_ctx(), "f.tar") == (state or None)


def test_nearline_fails_fast_with_1099_and_no_retry(fake_tools):
    fake_tools.state.write_text("NEARLINE\n")
    started = time.monotonic()
    with pytest.raises(TransferFailure) as info:
        ensure_online(SURL, make_ctx(), "L229507_SB150_uv.MS_f6.tar")
    assert time.monotonic() - started < 5
    assert info.value.code == 1099 and not info.value.retry
    assert NOT_STAGED in info.value.diag and "L229507_SB150_uv.MS_f6.tar" in info.value.diag


def test_bounded_bring_online_wait_succeeds(fake_tools):
    fake_tools.state.write_text("NEARLINE")
    ctx = make_ctx(bringonline_timeout=10, locality_poll=0.1)
    assert ensure_online(SURL, ctx, "f.tar") == "ONLINE_AND_NEARLINE"
    assert f"bringonline {SURL}" in fake_tools.calls.read_text()


def test_bounded_bring_online_wait_times_out(fake_tools):
    fake_tools.state.write_text("NEARLINE")
    ctx = make_ctx(bringonline_timeout=0.5, locality_poll=0.1, bringonline_command="")
    started = time.monotonic()
    with pytest.raises(TransferFailure, match=r"not staged \(NEARLINE\).*after waiting") as info:
        ensure_online(SURL, ctx, "f.tar")
    assert info.value.code == 1099 and time.monotonic() - started < 5


def test_schemes_without_locality_are_not_asked(fake_tools):
    fake_tools.state.write_text("NEARLINE")
    assert ensure_online("https://host/f.tar", make_ctx(), "f.tar") is None
    assert ensure_online(SURL, make_ctx(locality_check=False), "f.tar") is None
    assert not fake_tools.calls.exists()


def test_gfal_stagein_of_a_nearline_input_never_reaches_the_copy(fake_tools, tmp_path):
    fake_tools.state.write_text("NEARLINE")
    ctx = make_ctx(transfer_attempts=3)
    ctx.storage, ctx.queuedata = {}, types.SimpleNamespace(astorages={})
    spec = FileSpec(lfn="L229507_SB150_uv.MS_f6.tar", role="input", turl=SURL)
    work = tmp_path / "work"
    work.mkdir()
    started = time.monotonic()
    GfalCopytool({}).copy_in([spec], str(work), ctx)
    assert time.monotonic() - started < 5
    assert spec.status == "failed" and spec.status_code == 1099 and NOT_STAGED in spec.diag
    calls = fake_tools.calls.read_text()
    assert "gfal-copy" not in calls and calls.count("gfal-xattr") == 1  # asked once, not retried
    # the LOFAR SURL was asked in the SRM v2 form gfal needs
    assert "/srm/managerv2?SFN=/pnfs/grid.sara.nl" in calls
