"""Files the payload controls are read inside its work dir only, as regular files, bounded."""

import os

import pytest

from pilot.payload.untrusted import UntrustedFileError, read_inside, tail_inside


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "secret.txt").write_text("SECRET")
    work = tmp_path / "job"
    work.mkdir()
    return work


def test_regular_file_is_read_and_bounded(workdir):
    (workdir / "jobReport.json").write_text('{"a": 1}')
    assert read_inside(str(workdir), "jobReport.json", 100) == b'{"a": 1}'
    assert read_inside(str(workdir), "missing.json", 100) is None
    with pytest.raises(UntrustedFileError):
        read_inside(str(workdir), "jobReport.json", 3)
    (workdir / "payload.stderr").write_bytes(b"x" * 1000 + b"END")
    assert tail_inside(str(workdir), "payload.stderr", 3) == b"END"


def test_symlinks_fifos_and_escapes_are_refused(workdir):
    (workdir / "jobReport.json").symlink_to(workdir.parent / "secret.txt")
    os.mkfifo(workdir / "payload.stderr")
    (workdir / "sub").symlink_to(workdir.parent)
    for name in ("jobReport.json", "payload.stderr", "sub/secret.txt", "../secret.txt", "/etc/passwd"):
        with pytest.raises(UntrustedFileError):
            read_inside(str(workdir), name, 100)
        with pytest.raises(UntrustedFileError):
            tail_inside(str(workdir), name, 100)
    (workdir / "real").mkdir()
    (workdir / "real" / "r.json").write_text("{}")
    assert read_inside(str(workdir), "real/r.json", 100) == b"{}"


def test_pilot_writes_never_follow_a_planted_symlink_or_block_on_a_fifo(workdir):
    from pilot.monitor.sampler import COLUMNS, OUTPUT_FILE, SUMMARY_FILE, TreeSampler
    from pilot.payload.untrusted import open_to_write

    victim = workdir.parent / "secret.txt"
    (workdir / OUTPUT_FILE).symlink_to(victim)
    (workdir / SUMMARY_FILE).symlink_to(victim)
    sampler = TreeSampler(payload=None, workdir=str(workdir))
    sampler.samples.append({key: 1 for key in COLUMNS})
    sampler.write_summary()
    assert victim.read_text() == "SECRET"
    os.mkfifo(workdir / "fifo")
    with pytest.raises(OSError):
        open_to_write(str(workdir / "fifo"))
    with open_to_write(str(workdir / "plain.txt")) as handle:
        handle.write("a")
    with open_to_write(str(workdir / "plain.txt"), append=True) as handle:
        handle.write("b")
    assert (workdir / "plain.txt").read_text() == "ab"
