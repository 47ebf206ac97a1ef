"""Live job metrics: node CPU facts, the monitor's running figures on the job, and what the updates carry."""

import os
import subprocess
import sys
import time

from pilot.job import parse_job, update_dict
from pilot.monitor import cpuinfo
from pilot.monitor.sampler import TreeSampler, mean_cores
from tests.unit.helpers import OneProcessTree

BASE = {"PandaID": "42", "transformation": "sh", "jobPars": "-c true", "coreCount": "2"}

FLAGS_V1 = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 lm"
FLAGS_V2 = FLAGS_V1 + " cx16 lahf_lm popcnt sse4_1 sse4_2 ssse3"
FLAGS_V3 = FLAGS_V2 + " avx avx2 bmi1 bmi2 f16c fma abm movbe xsave"
FLAGS_V4 = FLAGS_V3 + " avx512f avx512bw avx512cd avx512dq avx512vl"


def blocks(flags, name="AMD EPYC 7302 16-Core Processor"):
    return [{"processor": "0", "model name": name, "flags": flags}]


def test_architecture_levels_from_flags():
    assert cpuinfo.architecture_level(blocks(FLAGS_V1), "x86_64") == "x86-64-v1"
    assert cpuinfo.architecture_level(blocks(FLAGS_V2), "x86_64") == "x86-64-v2"
    assert cpuinfo.architecture_level(blocks(FLAGS_V3), "x86_64") == "x86-64-v3"
    assert cpuinfo.architecture_level(blocks(FLAGS_V4), "x86_64") == "x86-64-v4"
    # a level needs every flag of the levels below it: avx512 without avx2 is still v2
    assert cpuinfo.architecture_level(blocks(FLAGS_V2 + " avx512f avx512bw avx512cd avx512dq avx512vl"),
                                      "x86_64") == "x86-64-v2"
    assert cpuinfo.architecture_level([], "aarch64") == "ARM"
    assert cpuinfo.architecture_level([], "x86_64") == ""


def test_cpuinfo_file_parsed(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: Intel(R) Xeon(R)  Gold 6130\nflags\t\t: {FLAGS_V3}\n\n"
                    f"processor\t: 1\nmodel name\t: Intel(R) Xeon(R)  Gold 6130\nflags\t\t: {FLAGS_V3}\n")
    parsed = cpuinfo._cpuinfo(str(path))
    assert len(parsed) == 2
    assert cpuinfo.model(parsed, 32) == "Intel(R) Xeon(R) Gold 6130 32-Core"
    assert cpuinfo.model(blocks(FLAGS_V1), 32) == "AMD EPYC 7302 16-Core Processor"  # already says its cores
    assert cpuinfo.model([], 4) == "UNKNOWN 4-Core"
    assert cpuinfo._cpuinfo(str(tmp_path / "missing")) == []


def test_node_cpu_of_this_machine():
    facts = cpuinfo.node_cpu()
    assert facts["cpuConsumptionUnit"].startswith("s+") and facts["cpuConversionFactor"] == 1.0
    if os.uname().machine == "x86_64":
        assert facts["cpuArchitectureLevel"].startswith("x86-64-v")


def test_mean_cores():
    assert mean_cores(0, 10) == 0.0
    assert mean_cores(30, 10) == 3.0
    assert mean_cores(5, 0) == 0.0


def test_running_update_carries_live_usage():
    job = parse_job(dict(BASE))
    job.cpu_seconds, job.mean_cores = 12.7, 1.27
    job.memory = {"maxRSS": 2000, "maxPSS": 1800, "maxVMEM": 9000, "maxSWAP": 0, "avgRSS": 1500, "avgPSS": 1400,
                  "avgVMEM": 8000, "avgSWAP": 0, "totRCHAR": 100, "totWCHAR": 50, "totRBYTES": 4096,
                  "totWBYTES": 8192, "rateRCHAR": 10, "rateWCHAR": 5, "rateRBYTES": 409, "rateWBYTES": 819}
    data = update_dict(job, "running", {}, final=False)
    assert data["cpuConsumptionTime"] == 12 and data["meanCoreCount"] == 1.27 and data["coreCount"] == 2
    assert data["cpuConsumptionUnit"].startswith("s+") and data["cpuConversionFactor"] == 1.0
    for key, value in job.memory.items():
        assert data[key] == value


def test_monitor_publishes_usage_while_the_payload_runs(tmp_path):
    """A busy child: after two samples the job carries CPU time, memory and I/O, before the payload ends."""
    from types import SimpleNamespace

    from pilot.monitor.jobmonitor import JobMonitor

    busy = subprocess.Popen([sys.executable, "-c", "import time\nx = bytearray(30 << 20)\nend = time.time() + 20\n"
                             "while time.time() < end: pass"], stdin=subprocess.DEVNULL)
    try:
        job = parse_job(dict(BASE))
        job.workdir = str(tmp_path)
        job.started_at = time.time()
        cfg = SimpleNamespace(pilot=SimpleNamespace(memory_usage_verification_time=0.3))
        ctx = SimpleNamespace(config=cfg)
        monitor = JobMonitor(ctx, job, OneProcessTree(busy), checks=[])
        assert isinstance(monitor.sampler, TreeSampler)
        monitor.start()
        deadline = time.time() + 8
        while time.time() < deadline and not (job.cpu_seconds >= 0.5 and len(monitor.sampler.samples) >= 2):
            time.sleep(0.1)
        monitor.stop()
        monitor.join(5)
    finally:
        busy.kill()
        busy.wait()
    assert job.cpu_seconds >= 0.5, job.cpu_seconds
    assert job.memory["maxRSS"] > 30 * 1024 and job.memory["maxPSS"] > 0 and job.memory["avgVMEM"] > 0
    assert "totRCHAR" in job.memory and "rateWBYTES" in job.memory
    assert 0.1 < job.mean_cores <= (os.cpu_count() or 1) + 0.5
    data = update_dict(job, "running", {}, final=False)
    assert data["cpuConsumptionTime"] == int(job.cpu_seconds) and data["maxRSS"] == job.memory["maxRSS"]
    summary, rows = monitor.sampler.summary(), monitor.sampler.samples
    for key in ("rss", "pss", "vmem", "utime", "rchar", "nprocs"):  # running figures = a rescan of every sample
        assert summary["Max"][key] == max(row[key] for row in rows)
        assert summary["Avg"][key] == round(sum(row[key] for row in rows) / len(rows), 2)


def test_v1_sends_mean_core_count_as_whole_cores():
    """panda-server 1.0.4's update_job refuses a float mean_core_count ('must be of type int'), legacy takes it."""
    from pilot.channels.panda_protocol import legacy_update_form, v1_update_body

    assert v1_update_body({"meanCoreCount": 1.27})["mean_core_count"] == 1
    assert v1_update_body({"meanCoreCount": 0.2})["mean_core_count"] == 1  # busy, if less than one core
    assert v1_update_body({"meanCoreCount": 3.6})["mean_core_count"] == 4
    assert v1_update_body({"meanCoreCount": 0})["mean_core_count"] == 0
    assert legacy_update_form({"meanCoreCount": 1.27})["meanCoreCount"] == "1.27"
