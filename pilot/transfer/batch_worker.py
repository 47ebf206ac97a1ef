"""Many transfers in one child process through a client library: `python -c SOURCE REQUEST.json`.

Why a child: the XRootD and gfal2 libraries block inside their own calls, and against a server that accepts a
connection but never answers neither their timeouts nor a cancel get them out (measured: both hang past 40 s
with a 2 s limit). A child is killed at the batch's time limit like any command. Why one child for many files:
a small file costs a command-line tool its process start, library loading and login; here they are paid once.

request: {"tool": "xrootd"|"gfal", "width": N, "timeout": seconds,
          "jobs": [{"src": URL, "dst": URL, "adler32": hex or "", "verify": bool}]}
Each finished job prints one line at once, so a batch killed half-way still says what it did:
  {"i": index, "ok": bool, "error": text, "errno": number, "unverified": bool}
Standalone on purpose (it runs as `-c` source): it imports nothing from the pilot package.
"""

import json
import sys
import threading

_print_lock = threading.Lock()


def emit(index, ok, error="", number=0, unverified=False):
    line = json.dumps({"i": index, "ok": ok, "error": " ".join(str(error).split())[:500], "errno": number,
                       "unverified": unverified})
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def run_xrootd(request):
    from XRootD.client import CopyProcess
    from XRootD.client.utils import CopyProgressHandler

    jobs, reported = request["jobs"], set()

    class Report(CopyProgressHandler):
        def end(self, job_id, results):  # job ids count from 1
            index = job_id - 1
            status = (results or {}).get("status")
            if index not in reported and status is not None:
                reported.add(index)
                emit(index, bool(status.ok), "" if status.ok else status.message, getattr(status, "errno", 0))

    process = CopyProcess()
    process.parallel(max(1, min(int(request["width"]), 128)))
    for job in jobs:
        checks = {"checksummode": "target", "checksumtype": "adler32", "checksumpreset": job["adler32"],
                  "rmBadCksum": True} if job.get("adler32") else {}
        process.add_job(job["src"], job["dst"], force=True, mkdir=True, **checks)
    status = process.prepare()
    if not status.ok:
        for index in range(len(jobs)):
            emit(index, False, f"batch not prepared: {status.message}")
        return
    _status, results = process.run(Report())
    for index, result in enumerate(results):
        if index not in reported:
            job_status = result.get("status")
            ok = job_status is not None and job_status.ok
            emit(index, ok, "" if ok else getattr(job_status, "message", "not run"))


def run_gfal(request):
    import gfal2
    from concurrent.futures import ThreadPoolExecutor

    def one(index, job):
        context = gfal2.creat_context()
        params = context.transfer_parameters()
        params.overwrite = True
        params.timeout = max(1, int(request["timeout"]))
        try:
            context.filecopy(params, job["src"], job["dst"])
        except gfal2.GError as exc:
            emit(index, False, exc.message, exc.code)
            return
        if not job.get("verify"):
            emit(index, True)
            return
        try:
            stored = context.checksum(job["dst"], "ADLER32").strip().lower().zfill(8)
        except gfal2.GError as exc:
            if "not implemented" in exc.message.lower() or "not supported" in exc.message.lower():
                emit(index, True, exc.message, exc.code, unverified=True)  # the storage cannot tell (nginx)
            else:
                emit(index, False, f"checksum query failed: {exc.message}", exc.code)
            return
        if stored != job["adler32"]:
            try:
                context.unlink(job["dst"])
            except gfal2.GError:
                pass  # the caller stores it again or fails it; either way this copy is not reported as good
            emit(index, False, f"checksum mismatch: stored {stored}, local {job['adler32']}")
        else:
            emit(index, True)

    with ThreadPoolExecutor(max_workers=max(1, int(request["width"]))) as pool:
        for index, job in enumerate(request["jobs"]):
            pool.submit(one, index, job)


def main():
    with open(sys.argv[1]) as handle:
        request = json.load(handle)
    (run_xrootd if request["tool"] == "xrootd" else run_gfal)(request)
    return 0


if __name__ == "__main__":
    sys.exit(main())
