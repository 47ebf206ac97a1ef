#!/usr/bin/env python3
"""Transfer throughput of the copytools against a real XRootD server (and mv to a local dir).

Cases (issue 4): 200 files x 1 MB and 4 files x 256 MB, stage-out then stage-in, through
  pilot, parallel    the copytool as the pilot runs it ([File] transfer_width, default 4), checksums verified
  pilot, sequential  the same with transfer_width 1 (how Pilot 3 moves files)
  shell loop         `for f in ...; do xrdcp -f $f URL; done` (mv: cp): no verification at all
Targets: large files within 1.2x of the shell loop; many small files >= 3x faster than sequential.
Starts the storage servers of tests/servers/backends (root; 127.0.0.1 only) and stops them at the end.

With --tools mv alone no server is started.

usage: bench/transfer.py [--small 200] [--large 4] [--large-mb 256] [--tools xrdcp,mv] [--fsync] [--json F]
                         [--baseline F]
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import types

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOP)

from pilot.config import load_config  # noqa: E402
from pilot.job import FileSpec  # noqa: E402
from pilot.queuedata import from_dict  # noqa: E402
from pilot.transfer.base import get_copytool  # noqa: E402
from pilot.transfer.storage import load_storage_data  # noqa: E402
from pilot.trigger import Trigger  # noqa: E402
from tests.integration.backends import running_storage_servers  # noqa: E402
from tests.integration.storage import Storage  # noqa: E402
from pilot.settings import Settings  # noqa: E402


def make_files(folder, count, size):
    os.makedirs(folder, exist_ok=True)
    names = []
    block = os.urandom(1 << 20)
    for index in range(count):
        name = f"f{size >> 20}mb.{index:04d}.dat"
        with open(os.path.join(folder, name), "wb") as handle:
            for _ in range(size >> 20):
                handle.write(block)
            handle.write(index.to_bytes(4, "big"))  # every file different
        names.append(name)
    return names


def pilot_run(tool, names, src, dest_dir, ctx, width, fsync=False):
    ctx.config = load_config(env={"PILOT_CFG_FILE_TRANSFER_WIDTH": str(width), "PILOT_CFG_FILE_MV_FSYNC": str(fsync)})
    scope = f"bench.w{width}"  # each mode writes new files: XRootD's cached checksums do not follow overwrites
    outputs = [FileSpec(lfn=n, role="output", scope=scope) for n in names]
    cpu = cpu_seconds()
    started = time.monotonic()
    get_copytool(tool).copy_out(outputs, src, ctx)
    middle = time.monotonic()
    inputs = [FileSpec(lfn=o.lfn, role="input", scope=scope, filesize=o.filesize, checksum=dict(o.checksum),
                       ddmendpoint="XRD_ROOT") for o in outputs]
    os.makedirs(dest_dir, exist_ok=True)
    get_copytool(tool).copy_in(inputs, dest_dir, ctx)
    ended = time.monotonic()
    bad = [(s.lfn, s.diag) for s in outputs + inputs if s.status != "transferred"]
    if bad:
        raise RuntimeError(f"{tool}: transfers failed: {bad[:3]}")
    LAST_CPU[0] = cpu_seconds() - cpu
    return middle - started, ended - middle


LAST_CPU = [0.0]  # CPU seconds (user + system) of the last run: on a busy machine wall times mostly measure the load


def cpu_seconds(who=resource.RUSAGE_SELF):
    """This process's CPU time (the copytool's threads and children), or its finished children's (the shell loop)."""
    usage = resource.getrusage(who)
    if who == resource.RUSAGE_SELF:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime
    return usage.ru_utime + usage.ru_stime


def shell_run(tool, names, src, dest_dir, storage):
    os.makedirs(dest_dir, exist_ok=True)
    if tool == "xrdcp":
        out = " ".join(f"xrdcp -np -f {os.path.join(src, n)} {storage.root}//benchloop/{n};" for n in names)
        back = " ".join(f"xrdcp -np -f {storage.root}//benchloop/{n} {os.path.join(dest_dir, n)};" for n in names)
    else:
        out = " ".join(f"cp {os.path.join(src, n)} {os.path.join(dest_dir, 'o_' + n)};" for n in names)
        back = " ".join(f"cp {os.path.join(dest_dir, 'o_' + n)} {os.path.join(dest_dir, n)};" for n in names)
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    subprocess.run(["bash", "-c", out], check=True)
    middle = time.monotonic()
    subprocess.run(["bash", "-c", back], check=True)
    LAST_CPU[0] = cpu_seconds(resource.RUSAGE_CHILDREN) - cpu
    return middle - started, time.monotonic() - middle


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=4)
    parser.add_argument("--large-mb", type=int, default=256)
    parser.add_argument("--tools", default="xrdcp,mv")
    parser.add_argument("--no-bindings", action="store_true",
                        help="hide the XRootD Python bindings: batches go through one xrdcp --parallel (stage-in only)")
    parser.add_argument("--fsync", action="store_true",
                        help="[File] mv_fsync = True: mv stage-out flushes each file to the device (cp does not)")
    parser.add_argument("--json", default="")
    parser.add_argument("--baseline", default="")
    args = parser.parse_args()
    from pilot.transfer import batch

    if args.no_bindings:
        batch.bindings = lambda tool: False
    print(f"xrdcp batches: {'XRootD bindings (one child)' if batch.bindings('xrootd') else 'xrdcp CLI (stage-in)'}")
    results = {}
    work = tempfile.mkdtemp(prefix="pilot-bench-transfer-")
    if set(args.tools.split(",")) == {"mv"}:  # local copies only: no storage servers to start
        run_cases(args, None, work, results)
    else:
        with running_storage_servers() as servers:
            storage = Storage(servers)
            os.environ.update(storage.env())
            run_cases(args, storage, work, results)
    shutil.rmtree(work, ignore_errors=True)
    report(args, results)
    return 0


def run_cases(args, storage, work, results):
    ddm = load_storage_data(storage.storage_data(os.path.join(work, "ddm.json"))) if storage else {}
    queue = from_dict({"nickname": "B", "astorages": {"read_lan": ["XRD_ROOT"], "write_lan": ["XRD_ROOT"]}}, "B")
    for case, count, size in (("small", args.small, 1 << 20), ("large", args.large, args.large_mb << 20)):
        src = os.path.join(work, case)
        names = make_files(src, count, size)
        for tool in args.tools.split(","):
            ctx = types.SimpleNamespace(queuedata=queue, storage=ddm, abort=Trigger(),
                                        stageout_deadline=lambda: float("inf"),
                                        settings=Settings(queue="Q", capath=storage and storage.cert_dir),
                                        paths=types.SimpleNamespace(input_dir=os.path.join(work, "mvstore"),
                                                                    output_dir=os.path.join(work, "mvstore")))
            row = {}
            for mode, run in (("parallel", lambda: pilot_run(tool, names, src, os.path.join(work, f"{case}.{tool}.p"),
                                                             ctx, 4, args.fsync)),
                              ("sequential", lambda: pilot_run(tool, names, src, os.path.join(work, f"{case}.{tool}.s"),
                                                               ctx, 1, args.fsync)),
                              ("shell", lambda: shell_run(tool, names, src, os.path.join(work, f"{case}.{tool}.sh"),
                                                          storage))):
                out, back = run()
                row[mode], row[mode + "_out"], row[mode + "_in"] = out + back, out, back
                row[mode + "_cpu"] = LAST_CPU[0]
            results[f"{case}/{tool}"] = {k: round(v, 3) for k, v in row.items()}
            shutil.rmtree(os.path.join(work, "mvstore"), ignore_errors=True)


def report(args, results):
    print(f"{'case':<14} {'parallel s':>11} {'sequential s':>13} {'shell loop s':>13} {'par/shell':>10} "
          f"{'seq/par':>8}  target")
    for key, row in results.items():
        par_shell = row["parallel"] / row["shell"]
        seq_par = row["sequential"] / row["parallel"]
        if key.startswith("large"):
            verdict = f"par/shell <= 1.2: {'PASS' if par_shell <= 1.2 else 'FAIL'}"
        else:
            verdict = f"seq/par >= 3: {'PASS' if seq_par >= 3 else 'FAIL'}"
        print(f"{key:<14} {row['parallel']:>11.2f} {row['sequential']:>13.2f} {row['shell']:>13.2f} "
              f"{par_shell:>10.2f} {seq_par:>8.2f}  {verdict}")
        print(f"{'':<14} out/in: {row['parallel_out']:.2f}/{row['parallel_in']:.2f}  "
              f"{row['sequential_out']:.2f}/{row['sequential_in']:.2f}  {row['shell_out']:.2f}/{row['shell_in']:.2f}")
        print(f"{'':<14} CPU s:  {row['parallel_cpu']:.2f}  {row['sequential_cpu']:.2f}  {row['shell_cpu']:.2f}"
              f"  (user + system; wall times on a busy machine mostly measure the load)")
    if args.baseline:
        base = json.load(open(args.baseline))
        for key, row in results.items():
            if key in base:
                print(f"{key}: parallel {row['parallel'] / base[key]['parallel']:.2f}x the baseline")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    sys.exit(main())
