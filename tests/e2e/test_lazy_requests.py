"""A pilot on the local channel never loads requests (start-up cost): only net.py imports it, at the first request."""

import os

from tests.e2e.pilotrun import run_pilot


def test_local_pilot_runs_a_job_without_importing_requests(tmp_path):
    decoy = tmp_path / "decoy" / "requests"
    decoy.mkdir(parents=True)
    marker = tmp_path / "requests-imported"
    # found by the start-up dependency check (find_spec), but leaves a mark if anything imports it
    (decoy / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\nraise ImportError('decoy')\n")
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "decoy"))
    run = run_pilot(work, timeout=60, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "finished" in run.stderr
    assert not marker.exists(), "the local channel imported requests"
