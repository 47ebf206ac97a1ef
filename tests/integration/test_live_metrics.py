"""Running updates carry the payload's usage as it runs: checked on the job's row of the real PanDA server."""

import time

import pytest

from tests.integration.test_panda_channel import finish, start_pilot

pytestmark = pytest.mark.slow



def busy(stop):
    """Burns CPU in the shell until `stop` exists (60 s at most), so the heartbeats meanwhile have CPU time and
    memory to report; the test ends it once it has seen them."""
    return f"-c 'end=$(($(date +%s)+60)); i=0; while [ ! -e {stop} ] && [ $(date +%s) -lt $end ]; do i=$((i+1)); done'"


def test_running_updates_fill_cpu_memory_io_and_cores_on_the_server(panda, tmp_path):
    """While the payload still runs (jobstatus running), the row already has CPU time, memory, I/O, mean core
    count, CPU unit, conversion factor and architecture level; the final update keeps them filled."""
    stop = tmp_path / "stop"
    panda_id = panda.submit_job(job_pars=busy(stop))
    proc = start_pilot(panda, tmp_path, env={"PILOT_CFG_PILOT_HEARTBEAT": "1",
                                             "PILOT_CFG_PILOT_MEMORY_USAGE_VERIFICATION_TIME": "1"})
    live = None
    deadline = time.time() + 60
    while proc.poll() is None and time.time() < deadline:
        row = panda.job_record(panda_id)
        if row and row["jobStatus"] == "running" and (row["cpuConsumptionTime"] or 0) > 0 and row["maxRSS"]:
            live = row
            break
        time.sleep(0.2)
    stop.touch()
    run = finish(proc, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert live is not None, "no running update with usage reached the server while the payload ran"
    assert live["maxRSS"] > 0 and live["maxPSS"] > 0 and live["maxVMEM"] >= live["maxRSS"]
    assert live["avgRSS"] > 0 and live["maxSwap"] is not None
    assert live["totRCHAR"] is not None and live["rateRCHAR"] is not None
    assert live["actualCoreCount"] == 1 and float(live["meanCoreCount"]) > 0
    assert live["cpuConsumptionUnit"].startswith("s+") and float(live["cpuConversion"]) == 1.0
    assert live["cpu_architecture_level"].startswith(("x86-64-v", "ARM"))
    final = panda.job_record(panda_id)
    assert final["jobStatus"] == "holding" and final["cpuConsumptionTime"] >= live["cpuConsumptionTime"]
    assert final["maxRSS"] >= live["maxRSS"] and float(final["meanCoreCount"]) > 0
