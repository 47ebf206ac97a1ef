"""Issue 16's acceptance run: random hostile job files and random signal timings through real pilots.

Phase 1: FUZZ_JOBS (2000) random job files (tests/reliability/hostile_jobs.py, fixed seed) in one local:DIR shared
by FUZZ_PILOTS parallel pilots of a multi-job queue (time floor), so each pilot takes hundreds of jobs and the
pilots race for the files. Phase 2: FUZZ_SIGNALS (200) pilots, each with a few jobs of its own, get a random
signal at a random moment (start-up, job request, stage-in, payload, stage-out, final update).

Afterwards: every PandaID of every claimed file has exactly one final report (0 unreported, 0 reported twice);
no process of any payload is left (a scan of processes whose cwd is under the test's dir); the canary outside the
job dirs was never read into a report, log, tarball or output, and nothing outside was created or written; no
pilot printed a traceback; each signalled pilot exited 0 or with the signal's status (128+N, or -N when the signal
came before Python ran pilot.py's first line; a SIGINT inside the interpreter's own `site` import is Python's). Slow by nature (minutes: thousands of pilot jobs on a shared machine); bounded by
FUZZ_BUDGET seconds per phase.
"""

import glob
import json
import os
import random
import re
import signal
import subprocess
import sys
import tarfile
import time

import psutil
import pytest

from tests.e2e.pilotrun import PILOT
from tests.reliability.hostile_jobs import CANARY_TEXT, SIGNALS, Generator

SEED = 16
JOBS = int(os.environ.get("FUZZ_JOBS", "2000"))
PILOTS = int(os.environ.get("FUZZ_PILOTS", "4"))
SIGNAL_RUNS = int(os.environ.get("FUZZ_SIGNALS", "200"))
PARALLEL_SIGNAL_RUNS = 6
BUDGET = float(os.environ.get("FUZZ_BUDGET", "900"))
QUEUE = "FUZZ_MULTI"


def _env():
    env = dict(os.environ, PILOT_CFG_PILOT_KILL_GRACE="1", PILOT_CFG_PILOT_ABORT_GRACE="20")
    return {key: value for key, value in env.items() if key != "PANDAPILOT_LIFETIME"}


def _queuedata(base):
    path = os.path.join(base, "queuedata.json")
    with open(path, "w") as handle:
        json.dump({QUEUE: {"nickname": QUEUE, "state": "ACTIVE", "status": "online", "timefloor": 100000,
                           "maxtime": 3600 * 24, "copytools": {"mv": {"setup": ""}},
                           "acopytools": {"pl": ["mv"], "default": ["mv"]}}}, handle)
    return path


def _start(base, name, jobs, queuedata):
    run = os.path.join(base, "runs", name)
    os.makedirs(run)
    cmd = [sys.executable, PILOT, "-q", QUEUE, "--queuedata-url", queuedata, "-a", run, "--job-source",
           f"local:{jobs}", "-v", "1000000", "--input-dir", os.path.join(base, "storage"),
           "--output-dir", os.path.join(base, "storage")]
    out = open(os.path.join(base, "runs", f"{name}.stderr"), "w")
    return subprocess.Popen(cmd, cwd=run, stdout=subprocess.DEVNULL, stderr=out, stdin=subprocess.DEVNULL,
                            env=_env(), start_new_session=True)


def _finals(base):
    found = {}
    for path in glob.glob(os.path.join(base, "runs", "*", "*", "reports", "*", "*.final.json")):
        with open(path) as handle:
            found.setdefault(int(json.load(handle)["jobId"]), []).append(path)
    return found


def _claimed(folder):
    """Original names of the files pilots claimed (renamed NAME.taken.PID) in `folder`."""
    return {name.split(".taken.")[0] for name in os.listdir(folder) if ".taken." in name}


def _snapshot(folder):
    return {os.path.join(root, name): open(os.path.join(root, name), "rb").read()
            for root, _dirs, names in os.walk(folder) for name in names}


def _leaks(base):
    """Files under runs/ and storage/ holding the canary's text (tarball members included)."""
    leaks = []
    for top in ("runs", "storage"):
        for root, _dirs, names in os.walk(os.path.join(base, top)):
            for name in names:
                path = os.path.join(root, name)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                with open(path, "rb") as handle:
                    data = handle.read()
                if CANARY_TEXT.encode() in data:
                    leaks.append(path)
                if name.endswith(".tgz"):
                    try:
                        with tarfile.open(path) as tar:
                            for member in tar.getmembers():
                                if member.isfile() and CANARY_TEXT.encode() in tar.extractfile(member).read():
                                    leaks.append(f"{path}:{member.name}")
                    except (tarfile.TarError, OSError) as exc:
                        leaks.append(f"{path}: unreadable tarball {exc}")
    return leaks


def _survivors(base, wait=5.0):
    """Processes (other than this test) whose cwd is under `base`, after up to `wait` s for them to go."""
    deadline = time.monotonic() + wait
    while True:
        left = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                if proc.pid != os.getpid() and proc.cwd().startswith(base) and proc.status() != psutil.STATUS_ZOMBIE:
                    left.append((proc.pid, " ".join(proc.info["cmdline"] or [])[:120]))
            except (psutil.Error, OSError):
                continue
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


INTERPRETER_START = "init_import_site"  # signalled while Python itself starts, before pilot.py's first line


def _before_pilot_code(text):
    """A SIGINT traceback from before pilot.py's `try:` can catch it: Python's own start-up (site) or the first
    statements of pilot.py; no frame of the pilot package, and it ends in KeyboardInterrupt."""
    if INTERPRETER_START in text:
        return True
    frames = re.findall(r'File "([^"]+)", line (\d+)', text)
    return (text.rstrip().endswith("KeyboardInterrupt") and bool(frames)
            and not any(os.sep + "pilot" + os.sep in name for name, _ in frames))


def _tracebacks(base):
    bad = []
    for path in glob.glob(os.path.join(base, "runs", "*.stderr")):
        text = open(path, errors="replace").read()
        if ("Traceback" in text and not _before_pilot_code(text)) or CANARY_TEXT in text:
            bad.append(path)
    return bad


def _interpreter_start(base, name):
    with open(os.path.join(base, "runs", f"{name}.stderr"), errors="replace") as handle:
        return _before_pilot_code(handle.read())


def _unreported(files, claimed, finals):
    """(PandaIDs of claimed files without a final report, PandaIDs with more than one)."""
    expected = {i for f in files if os.path.basename(f.name) in claimed for i in f.expect}
    missing = sorted(i for i in expected if i not in finals)
    twice = sorted(i for i, paths in finals.items() if len(paths) > 1)
    return missing, twice


@pytest.mark.slow
def test_hostile_job_files_and_signal_timings_lose_nothing_and_leave_nothing(tmp_path):
    base = str(tmp_path)
    outside = os.path.join(base, "outside")
    os.makedirs(outside)
    os.makedirs(os.path.join(base, "storage"))
    with open(os.path.join(outside, "canary.txt"), "w") as handle:
        handle.write(json.dumps({"exitCode": 77, "exitMsg": CANARY_TEXT, "error_code": 77,
                                 "error_diag": CANARY_TEXT}))
    before = _snapshot(outside)
    queuedata = _queuedata(base)
    gen = Generator(SEED, outside, first_id=16_000_000)

    # phase 1: hostile job files, parallel multi-job pilots sharing one job dir
    jobs = os.path.join(base, "jobs")
    os.makedirs(jobs)
    files = [gen.write(jobs) for _ in range(JOBS)]
    started = time.monotonic()
    pilots = [_start(base, f"fuzz{n}", jobs, queuedata) for n in range(PILOTS)]
    codes = []
    for proc in pilots:
        try:
            codes.append(proc.wait(timeout=max(1.0, BUDGET - (time.monotonic() - started))))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            codes.append(proc.wait(timeout=60))
    phase1 = time.monotonic() - started
    finals = _finals(base)
    missing, twice = _unreported(files, _claimed(jobs), finals)
    left = sorted(name for name in os.listdir(jobs) if name.endswith(".json") and os.path.isfile(
        os.path.join(jobs, name)) and not os.path.islink(os.path.join(jobs, name)))
    print(f"phase 1: {JOBS} job files, {sum(len(f.expect) for f in files)} reportable ids, {len(finals)} "
          f"reported, {PILOTS} pilots, exit codes {codes}, {phase1:.1f} s")

    # phase 2: a random signal at a random moment, one per pilot run
    rnd = random.Random(SEED + 1)
    sig_files, sig_dirs, running, outcomes, stages = [], [], [], [], {}
    started = time.monotonic()
    for run in range(SIGNAL_RUNS):
        while len(running) >= PARALLEL_SIGNAL_RUNS:
            running = [entry for entry in running if not entry.settle(outcomes)]
            time.sleep(0.05)
        folder = os.path.join(base, f"sigjobs{run:03d}")
        os.makedirs(folder)
        for _ in range(rnd.randint(1, 3)):
            sig_files.append(gen.write(folder, kinds=("ok", "sleep", "fail", "child left", "read symlinks",
                                                      "write symlinks")))
        sig_dirs.append(folder)
        proc = _start(base, f"sig{run:03d}", folder, queuedata)
        stage = rnd.choice(list(STAGE_MARKERS))
        stages[stage] = stages.get(stage, 0) + 1
        running.append(Signalled(f"sig{run:03d}", proc, getattr(signal, rnd.choice(SIGNALS)), STAGE_MARKERS[stage],
                                 rnd.uniform(0.0, 0.6 if stage == "start-up" else 0.3),
                                 os.path.join(base, "runs", f"sig{run:03d}.stderr")))
        assert time.monotonic() - started < BUDGET, "phase 2 over its time budget"
    while running:
        running = [entry for entry in running if not entry.settle(outcomes)]
        time.sleep(0.05)
    phase2 = time.monotonic() - started
    finals = _finals(base)
    claimed2 = set().union(*(_claimed(folder) for folder in sig_dirs))
    missing2, twice2 = _unreported(sig_files, claimed2, finals)
    # -N: killed by the signal's default action while Python was still starting (before any job could be taken)
    bad_codes = [(name, sig, code) for name, sig, code in outcomes
                 if code not in (0, 128 + sig, -sig) and not _interpreter_start(base, name)]
    print(f"phase 2: {SIGNAL_RUNS} signalled pilots (by stage: {stages}), {len(claimed2)} files claimed, "
          f"{phase2:.1f} s; exit codes {sorted(set(code for _n, _s, code in outcomes), key=str)}")

    survivors = _survivors(base)
    leaks = _leaks(base)
    after = _snapshot(outside)
    written = sorted(path for path in set(before) | set(after) if before.get(path) != after.get(path))
    ran = [p for p in glob.glob(os.path.join(base, "**", "CANARY_RAN"), recursive=True)]
    assert not missing and not missing2, f"unreported jobs: {missing[:20]} {missing2[:20]}"
    assert not twice and not twice2, f"jobs reported twice: {twice[:20]} {twice2[:20]}"
    assert not left, f"job files never taken: {left[:20]}"
    assert not survivors, f"payload processes left: {survivors[:20]}"
    assert not leaks, f"canary read into: {leaks[:20]}"
    assert not written, f"written outside the job dirs: {written[:20]}"
    assert not ran, f"a hostile definition's payload ran: {ran[:5]}"
    assert not _tracebacks(base), f"tracebacks: {_tracebacks(base)[:10]}"
    assert all(code == 0 for code in codes), codes
    assert not bad_codes, bad_codes[:20]


# stage -> the pilot's log line that opens it ("" = from the start of the process: start-up and imports)
STAGE_MARKERS = {"start-up": "", "retrieve": "starting on queue", "validate/stage-in": " received (",
                 "payload": "payload started", "stage-out/log": "payload exited with",
                 "final update": "update acknowledged"}


class Signalled:
    """One pilot to signal `delay` s after its stderr shows `marker` (or 20 s after its start if it never does)."""

    def __init__(self, name, proc, signum, marker, delay, stderr):
        self.name, self.proc, self.signum, self.marker, self.delay, self.stderr = name, proc, signum, marker, delay, stderr
        self.started = time.monotonic()
        self.when = self.started + delay if not marker else None
        self.sent = False

    def settle(self, outcomes) -> bool:
        """Signal the pilot once its moment comes; True once it has exited (its outcome recorded)."""
        code = self.proc.poll()
        if code is not None:
            outcomes.append((self.name, self.signum, code))
            return True
        now = time.monotonic()
        if self.when is None:
            with open(self.stderr, errors="replace") as handle:
                seen = self.marker in handle.read()
            if seen or now - self.started > 20:
                self.when = now + self.delay
        if not self.sent and self.when is not None and now >= self.when:
            os.kill(self.proc.pid, self.signum)
            self.sent = True
        if now - self.started > 180:
            self.proc.kill()
            self.proc.wait()
            outcomes.append((self.name, self.signum, "timeout"))
            return True
        return False
