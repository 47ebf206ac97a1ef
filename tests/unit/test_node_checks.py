"""CVMFS check and machine/job features shutdown: against fake CVMFS roots and feature directories made here."""

import os
import threading
import time
from types import SimpleNamespace

import pytest

from pilot.monitor import cvmfs, features


def fake_cvmfs(root, repos=("atlas.cern.ch", "sft.cern.ch"), stamp=None):
    for repo in repos:
        os.makedirs(os.path.join(root, repo, "repo"), exist_ok=True)
    if stamp is not None:
        os.makedirs(os.path.join(root, "sft.cern.ch", "lcg"), exist_ok=True)
        with open(os.path.join(root, "sft.cern.ch", "lcg", "lastUpdate"), "w") as handle:
            handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(stamp))} | lxcvmfs1.cern.ch | {stamp}\n")
    return str(root)


def test_cvmfs_present_and_fresh(tmp_path):
    root = fake_cvmfs(tmp_path, stamp=int(time.time()) - 3600)
    assert cvmfs.check(root, ["atlas.cern.ch", "sft.cern.ch"], "sft.cern.ch/lcg/lastUpdate", 86400) is None


def test_cvmfs_missing_empty_and_stale_repositories_are_1377(tmp_path):
    root = fake_cvmfs(tmp_path, repos=("atlas.cern.ch",), stamp=int(time.time()) - 5 * 86400)
    code, diag = cvmfs.check(root, ["atlas.cern.ch", "grid.cern.ch"], "", 0)
    assert code == 1377 and "grid.cern.ch" in diag and "not available" in diag
    os.makedirs(os.path.join(root, "unmounted.cern.ch"))
    code, diag = cvmfs.check(root, ["unmounted.cern.ch"], "", 0)
    assert code == 1377 and "empty" in diag
    code, diag = cvmfs.check(root, ["atlas.cern.ch"], "sft.cern.ch/lcg/lastUpdate", 2 * 86400)
    assert code == 1377 and "stale" in diag and "120.0 h" in diag
    assert cvmfs.check(root, ["atlas.cern.ch"], "sft.cern.ch/lcg/lastUpdate", 0) is None  # age only logged
    code, diag = cvmfs.check(root, [], "nowhere/lastUpdate", 0)
    assert code == 1377 and "not readable" in diag


def test_cvmfs_last_update_forms(tmp_path):
    path = tmp_path / "lastUpdate"
    path.write_text("1710787427\n")
    assert cvmfs.last_update(str(path)) == 1710787427
    path.write_text("2024-03-18 19:43:47 | lxcvmfs145.cern.ch | 1710787427\n")
    assert cvmfs.last_update(str(path)) == 1710787427
    path.write_text("garbage\n")
    assert cvmfs.last_update(str(path)) is None
    assert cvmfs.check(str(tmp_path), [], "lastUpdate", 10)[1].endswith("holds no timestamp")


def test_cvmfs_root_only_when_nothing_listed(tmp_path):
    assert cvmfs.check(str(tmp_path), [], "", 0) is None
    assert cvmfs.check(str(tmp_path / "none"), [], "", 0)[0] == 1377


def test_hung_cvmfs_is_a_failure_not_a_hang(tmp_path, monkeypatch):
    """A broken automount blocks in listdir: the look gives up at its time limit."""
    release = threading.Event()
    real_listdir = os.listdir

    def stuck(path):
        if "stuck" in str(path):
            release.wait(30)
        return real_listdir(path)

    monkeypatch.setattr(cvmfs.os, "listdir", stuck)
    os.makedirs(tmp_path / "stuck.cern.ch")
    started = time.monotonic()
    try:
        code, diag = cvmfs.check(str(tmp_path), ["stuck.cern.ch"], "", 0, timeout=0.5)
    finally:
        release.set()
    assert code == 1377 and "hangs" in diag and time.monotonic() - started < 5


def test_cvmfs_wanted_rules(monkeypatch):
    monkeypatch.delenv("NO_CVMFS_OK", raising=False)
    config = SimpleNamespace(pilot=SimpleNamespace(cvmfs_repositories=""))
    listed = SimpleNamespace(pilot=SimpleNamespace(cvmfs_repositories="atlas.cern.ch, sft.cern.ch"))
    on, off = SimpleNamespace(raw={"is_cvmfs": True}), SimpleNamespace(raw={"is_cvmfs": False})
    args, nocvmfs = SimpleNamespace(cvmfs=True), SimpleNamespace(cvmfs=False)  # Settings.cvmfs
    assert cvmfs.wanted(args, config, on) and not cvmfs.wanted(args, config, off)
    assert cvmfs.wanted(args, listed, off) and cvmfs.repositories(listed) == ["atlas.cern.ch", "sft.cern.ch"]
    assert not cvmfs.wanted(nocvmfs, listed, on)  # -b
    monkeypatch.setenv("NO_CVMFS_OK", "1")
    assert not cvmfs.wanted(args, listed, on)


def test_shutdown_time_earliest_of_machine_and_job_features(tmp_path):
    machine, job = tmp_path / "mf", tmp_path / "jf"
    machine.mkdir()
    job.mkdir()
    env = {"MACHINEFEATURES": str(machine), "JOBFEATURES": str(job)}
    assert features.shutdown_time(env) is None  # directories without announcements
    (machine / "shutdowntime").write_text("2000000000\n")
    assert features.shutdown_time(env) == (2000000000.0, "$MACHINEFEATURES/shutdowntime")
    (job / "shutdowntime_job").write_text("1900000000")
    assert features.shutdown_time(env) == (1900000000.0, "$JOBFEATURES/shutdowntime_job")
    (job / "shutdowntime_job").write_text("soon")  # not a number: ignored, the machine's time stands
    assert features.shutdown_time(env) == (2000000000.0, "$MACHINEFEATURES/shutdowntime")
    assert features.shutdown_time({}) is None


def test_shutdown_time_from_a_url(tmp_path):
    import http.server
    import functools

    (tmp_path / "shutdowntime_job").write_text("1900000001")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        assert features.shutdown_time({"JOBFEATURES": url}) == (1900000001.0, "$JOBFEATURES/shutdowntime_job")
        assert features.shutdown_time({"MACHINEFEATURES": url}) is None  # 404: nothing announced
    finally:
        server.shutdown()
        server.server_close()


def test_watch_cuts_the_lifetime_before_the_shutdown(tmp_path, monkeypatch):
    (tmp_path / "shutdowntime_job").write_text(str(int(time.time()) + 1000))
    monkeypatch.setenv("JOBFEATURES", str(tmp_path))
    monkeypatch.delenv("MACHINEFEATURES", raising=False)
    cfg = SimpleNamespace(pilot=SimpleNamespace(shutdown_margin=600, lifetime_margin=180))
    ctx = SimpleNamespace(started=time.time(), lifetime=324000.0, config=cfg)
    watch = features.ShutdownWatch(ctx, interval=60)
    assert watch.poll() and watch.announced[1] == "$JOBFEATURES/shutdowntime_job"
    # aborting lifetime_margin before the end of the lifetime = shutdown_margin before the shutdown
    assert 1000 - 600 + 180 - 2 <= ctx.lifetime <= 1000 - 600 + 180 + 1
    assert not watch.poll()  # not due again before the interval
    assert 59 <= watch.wait_limit() <= 60


def test_watch_is_off_without_features(monkeypatch):
    monkeypatch.delenv("JOBFEATURES", raising=False)
    monkeypatch.delenv("MACHINEFEATURES", raising=False)
    ctx = SimpleNamespace(started=time.time(), lifetime=100.0)
    watch = features.ShutdownWatch(ctx, interval=60)
    assert not watch.poll() and watch.wait_limit() is None and ctx.lifetime == 100.0


@pytest.mark.parametrize("later", [True, False])
def test_watch_never_lengthens_the_lifetime(tmp_path, monkeypatch, later):
    (tmp_path / "shutdowntime").write_text(str(int(time.time()) + (10 ** 6 if later else -10)))
    monkeypatch.setenv("MACHINEFEATURES", str(tmp_path))
    cfg = SimpleNamespace(pilot=SimpleNamespace(shutdown_margin=600, lifetime_margin=180))
    ctx = SimpleNamespace(started=time.time(), lifetime=5000.0, config=cfg)
    features.ShutdownWatch(ctx, interval=60).poll()
    assert ctx.lifetime == 5000.0 if later else ctx.lifetime < 0
