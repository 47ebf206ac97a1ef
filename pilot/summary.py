"""The human-readable end-of-job summary: what an operator reads first in pilotlog.txt or the batch log."""

from __future__ import annotations

from typing import List

STAGES = ("getjob", "initial_setup", "stagein", "payload", "stageout")


def job_summary(job) -> List[str]:
    lines = [f"job {job.jobid}: {job.state.value.upper()}"
             + (f", pilotErrorCode {job.error_code}: {job.error_diag}" if job.errors else "")
             + (f", transExitCode {job.trans_exit_code}" if job.trans_exit_code is not None else "")]
    timings = ", ".join(f"{stage} {job.timing[stage]:.2f} s" for stage in STAGES if stage in job.timing)
    if timings:
        lines.append(f"  time: {timings}")
    for direction, files in (("in ", job.inputs), ("out", job.outputs + ([job.logfile] if job.logfile else []))):
        moved = [spec for spec in files if spec.status == "transferred"]
        failed = [spec for spec in files if spec.status == "failed"]
        if not moved and not failed:
            continue
        size = sum(spec.filesize for spec in moved)
        seconds = sum(spec.transfer_seconds for spec in moved)
        rate = f", {size / seconds / 1e6:.1f} MB/s" if seconds > 0 else ""
        lines.append(f"  stage-{direction}: {len(moved)} file(s), {size} bytes in {seconds:.2f} s{rate}"
                     + (f"; {len(failed)} failed ({failed[0].status_code}: {failed[0].diag})" if failed else ""))
        for spec in moved:
            lines.append(f"    {spec.role:<6} {spec.lfn} -> {spec.surl or spec.turl or '(work dir)'}")
    if job.memory:
        lines.append(f"  memory: max PSS {job.memory.get('maxPSS', 0) / 1024:.1f} MB, max RSS "
                     f"{job.memory.get('maxRSS', 0) / 1024:.1f} MB, CPU {job.cpu_seconds:.1f} s")
    if job.final_report:
        lines.append(f"  final report: {job.final_report}")
    return lines
