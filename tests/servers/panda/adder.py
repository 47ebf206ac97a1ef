"""Run the server's Adder once (server venv): every pending job output report (jobs in `holding` after their final
update) is locked and processed by pandaserver.dataservice.adder_gen.AdderGen, as the add_main daemon's workers do
(through a TaskBufferInterface process, like them: called directly, the TaskBuffer leaves the file rows unchanged),
then the script exits. The job ends in jobsArchived4 as finished/failed/cancelled (or stays in holding when the
Adder finds a temporary problem; run it again then).

usage: adder.py BASE [PANDA_ID ...]     (no ID: all reports; BASE only marks the command line)
env: PANDA_HOME, PANDA_TEST_HTTP_PORT
prints one JSON line: {"processed": [panda_id, ...]}
"""

import json
import os
import signal
import socket
import sys
import traceback

_port = os.environ.get("PANDA_TEST_HTTP_PORT", "25080")
for _var in ("PANDA_URL", "PANDA_URL_SSL", "PANDACACHE_URL"):
    os.environ.setdefault(_var, f"http://127.0.0.1:{_port}/server/panda")
os.environ.setdefault("PANDA_BEHIND_REAL_LB", "1")
os.environ.setdefault("TZ", "UTC")

from pandaserver.brokerage.SiteMapper import SiteMapper  # noqa: E402
from pandaserver.config import panda_config  # noqa: E402
from pandaserver.dataservice.adder_gen import AdderGen  # noqa: E402
from pandaserver.taskbuffer.TaskBuffer import TaskBuffer, taskBuffer  # noqa: E402
from pandaserver.taskbuffer.TaskBufferInterface import TaskBufferInterface  # noqa: E402

LOCK_MINUTES = 10
KEEP = []  # objects whose destructors must not run (ConBridge.__del__ sleeps 7-17 s)


def kill_descendants():
    """SIGKILL every process this script started (the TaskBufferInterface worker, the multiprocessing manager, the DB
    bridge children of pandaserver's ConBridge): their own shutdown sleeps 7-17 s per connection."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    todo, found = [os.getpid()], []
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def main():
    wanted = {int(arg) for arg in sys.argv[2:]}
    taskBuffer.init(panda_config.dbhost, panda_config.dbpasswd, nDBConnection=1, useTimeout=True,
                    requester="pilot-test-adder")
    site_mapper = SiteMapper(taskBuffer)
    worker_buffer = TaskBuffer()
    worker_buffer.init(panda_config.dbhost, panda_config.dbpasswd, nDBConnection=1, useTimeout=True,
                       requester="pilot-test-adder")
    interface = TaskBufferInterface()
    interface.launch(worker_buffer)
    KEEP.extend([worker_buffer, interface, site_mapper])
    pid = f"{socket.gethostname()}_{os.getpid()}-test-adder"
    processed = []
    try:
        workers = interface.getInterface()
        reports = taskBuffer.listJobOutputReport(only_unlocked=True, time_limit=LOCK_MINUTES, limit=10000,
                                                 grace_period=0)
        for panda_id, job_status, attempt_nr, _time_stamp in reports or []:
            if wanted and int(panda_id) not in wanted:
                continue
            if not taskBuffer.lockJobOutputReport(panda_id=panda_id, attempt_nr=attempt_nr, pid=pid,
                                                  time_limit=LOCK_MINUTES):
                continue
            AdderGen(workers, panda_id, job_status, attempt_nr, ignore_tmp_error=True, siteMapper=site_mapper,
                     pid=pid, prelock_pid=pid, lock_offset=LOCK_MINUTES).run()
            processed.append(int(panda_id))
    finally:
        with interface.to_stop.get_lock():
            interface.to_stop.value = 1
    print(json.dumps({"processed": processed}), flush=True)


if __name__ == "__main__":
    code = 0
    try:
        main()
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    kill_descendants()
    os._exit(code)  # no interpreter shutdown: the server library's destructors would sleep for seconds
