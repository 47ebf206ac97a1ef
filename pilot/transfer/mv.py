"""The mv copytool: local storage directories (--input-dir / --output-dir), for local jobs, ARC-style pre-placed
inputs and tests. Stage-in copies, symlinks or moves ([File] mv_stagein_mode); stage-out copies through a
temporary name, so a half-written file never carries the final name. Copies run in the kernel with the checksum
of the written file computed alongside (localcopy.py): about the time of `cp`, where a Python read/write loop plus a
second read to verify took three times as long.
"""

from __future__ import annotations

import os
import time

from ..job import FileSpec
from .base import Copytool, TransferFailure
from .checksum import Digest, mismatch_code
from .localcopy import checksum_file, copy_file


class MvCopytool(Copytool):
    name = "mv"

    def _get(self, spec: FileSpec, dest: str, ctx, kind: str) -> Digest:
        src = os.path.join(ctx.paths.input_dir, spec.lfn)
        if not os.path.isfile(src):
            raise TransferFailure(1331, f"input file {spec.lfn} not found in {ctx.paths.input_dir}")
        mode = ctx.config.file.mv_stagein_mode
        spec.turl = src
        if mode == "copy":
            return copy_file(src, dest, kind, _stop_on_abort(ctx))
        digest = checksum_file(src, kind, _stop_on_abort(ctx))
        # verify before linking or moving: a move that fails verification afterwards would delete the only copy
        if spec.filesize and digest.size != spec.filesize:
            raise TransferFailure(1099, f"size mismatch for {spec.lfn}: {digest.size} bytes in storage, "
                                        f"catalogue says {spec.filesize}")
        expected = spec.checksum.get(digest.kind)
        if expected and expected != digest.hexdigest():
            raise TransferFailure(mismatch_code(digest.kind, "in"), f"{digest.kind} mismatch for {spec.lfn}: "
                                  f"storage {digest.hexdigest()}, catalogue {expected}")
        if mode == "symlink":
            os.symlink(os.path.abspath(src), dest)
        elif mode == "move":
            os.rename(src, dest)
        else:
            raise TransferFailure(1341, f"unknown stage-in mode {mode!r}")  # [File] mv_stagein_mode is a checked choice
        return digest

    def _put(self, spec: FileSpec, src: str, ctx, kind: str) -> str:
        os.makedirs(ctx.paths.output_dir, exist_ok=True)
        final = os.path.join(ctx.paths.output_dir, spec.lfn)
        temp = final + ".part"
        try:
            # stage-out runs on after an abort (the log must go), within its share of the abort grace; with [File]
            # mv_fsync flushed to the device as it goes, so the file is durable before it takes its final name
            local = copy_file(src, temp, kind, _stop_at_deadline(ctx), sync=ctx.config.file.mv_fsync)
            os.replace(temp, final)
        finally:
            if os.path.lexists(temp):
                os.unlink(temp)
        spec.filesize = local.size
        spec.checksum = {kind: local.hexdigest()}
        return final


def _stop_at_deadline(ctx):
    """A progress callback that ends a stage-out copy when its share of the abort grace is over (the partial
    copy is removed by the caller, and the final report still goes out within the grace)."""
    def check(_size: int) -> None:
        if time.monotonic() > ctx.stageout_deadline():
            raise TransferFailure(ctx.abort.code, f"stage-out stopped: {ctx.abort.reason}; no time left in the "
                                                  f"abort grace of {ctx.config.pilot.abort_grace} s")
    return check


def _stop_on_abort(ctx):
    """A progress callback that ends a long local copy as soon as the pilot is told to stop."""
    def check(_size: int) -> None:
        if ctx.abort.is_set():
            raise TransferFailure(ctx.abort.code, f"transfer interrupted: {ctx.abort.reason}")
    return check
