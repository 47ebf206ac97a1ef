"""A real single-node Slurm (tests/servers/slurm) for running the pilot as batch jobs and MPI-style ranks."""

import os
import re
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(os.path.dirname(HERE), "servers", "slurm")


class Slurm:
    def __init__(self, base="/tmp/pilot-test-slurm"):
        self.base = base

    def up(self):
        done = subprocess.run(["bash", os.path.join(SCRIPTS, "up.sh"), self.base], capture_output=True, text=True,
                              timeout=600, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RuntimeError(f"slurm up failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")

    def down(self):
        subprocess.run(["bash", os.path.join(SCRIPTS, "down.sh"), self.base], timeout=60)

    def run(self, *argv, timeout=120, env=None):
        """A Slurm client command inside the cluster's network namespace."""
        holder = open(os.path.join(self.base, "netns.pid")).read().strip()
        return subprocess.run(["nsenter", "-t", holder, "-n", *argv], capture_output=True, text=True,
                              timeout=timeout, env=env, stdin=subprocess.DEVNULL)

    def sbatch(self, script, workdir, env=None):
        done = self.run("sbatch", "-D", str(workdir), "-o", os.path.join(str(workdir), "slurm-%j.out"), str(script),
                        env=env)
        match = re.search(r"Submitted batch job (\d+)", done.stdout)
        if not match:
            raise RuntimeError(f"sbatch failed: {done.stdout} {done.stderr}")
        return match.group(1)

    def job_state(self, job_id):
        done = self.run("scontrol", "show", "job", job_id)
        state = re.search(r"JobState=(\w+)", done.stdout)
        code = re.search(r"ExitCode=(\d+):(\d+)", done.stdout)
        return (state.group(1) if state else None), (tuple(int(x) for x in code.groups()) if code else None)

    def wait(self, job_id, states=("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"), timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            state, code = self.job_state(job_id)
            if state in states:
                return state, code
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} still {self.job_state(job_id)}")
