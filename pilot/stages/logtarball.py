"""The log tarball: the job work dir as a payload left it, bounded in size and time, with a listing of what is not in it.

Left out, as Pilot 3 does: the staged-in inputs and the staged-out outputs (they are in storage already), the
job's secrets and partial (`.part`) files. Left out and listed in `log_tarball_excluded.txt` inside the tarball:
sparse files (a 20 GB file of holes costs minutes of gzip), files over `[File] log_max_file_mb`, files past
`[File] log_max_mb` of apparent size in all, and what the time limit (`[File] log_timeout`, or the stage-out's
share of the abort grace) leaves no time for. Files go in smallest first, so the small text files that explain
a failure are in even when the big ones are not. Symbolic links are stored as links, never followed, so a
payload cannot smuggle outside files into its log. The listing is written straight into the tarball (no file
in the work dir), and the tarball under a temporary name that is removed when anything fails.
"""

from __future__ import annotations

import io
import logging
import os
import stat
import tarfile
import time
from typing import Callable, List, Optional, Set, Tuple

log = logging.getLogger(__name__)

LISTING = "log_tarball_excluded.txt"
SPARSE_MIN = 1 << 20  # files smaller than this are never called sparse
NO_TIME = "no time left"
CUT = "cut short (no time left, or it shrank): the rest reads as zeros"
TIME_REASONS = (NO_TIME, CUT)
PREDICT_AFTER = 4 << 20  # bytes tarred before their rate is trusted to predict whether the next file fits


class _Bounded:
    """A file read up to `size` bytes; past `deadline()` (or a shorter file) the rest reads as zeros.

    tarfile has written the member's size in its header before reading the data, so the member must be that long:
    zeros keep the archive valid, and the listing says the file was cut.
    """

    def __init__(self, handle, size: int, deadline: Callable[[], float]):
        self.handle, self.left, self.deadline, self.cut = handle, size, deadline, False

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        if n <= 0:
            return b""
        data = b""
        if not self.cut:
            if time.monotonic() > self.deadline():
                self.cut = True
            else:
                data = self.handle.read(n)
                if len(data) < n:
                    self.cut = True
        data += bytes(n - len(data))
        self.left -= len(data)
        return data


def _walk(root: str) -> List[Tuple[str, os.stat_result]]:
    """(relative path, lstat) of everything below root, directories first, never following links."""
    found: List[Tuple[str, os.stat_result]] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            entries = sorted(os.scandir(os.path.join(root, rel)), key=lambda entry: entry.name)
        except OSError as exc:
            log.warning("log tarball: cannot list %s: %s", os.path.join(root, rel), exc)
            continue
        for entry in entries:
            path = os.path.join(rel, entry.name)
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            found.append((path, info))
            if stat.S_ISDIR(info.st_mode):
                stack.append(path)
    return found


def make_log_tarball(job, ctx, deadline: Callable[[], float]) -> Tuple[str, bool]:
    """Write <logFile> in the work dir: (its path, whether time ran out). `deadline()`: when to stop reading."""
    cfg = ctx.config
    path = os.path.join(job.workdir, job.logfile.lfn)
    temp = path + ".part"
    top = f"tarball_PandaJob_{job.jobid}_{ctx.queuedata.name}"
    skip: Set[str] = {spec.lfn for spec in job.outputs if spec.status == "transferred"}
    skip |= {spec.lfn for spec in job.inputs if spec.status == "transferred"}
    skip |= {job.logfile.lfn, cfg.pilot.pandasecrets}
    max_file = cfg.file.log_max_file_mb << 20
    budget = cfg.file.log_max_mb << 20
    started = time.monotonic()
    limit = lambda: min(deadline(), started + cfg.file.log_timeout)  # noqa: E731
    excluded: List[Tuple[str, int, str]] = []
    dirs, files = [], []
    for rel, info in _walk(job.workdir):
        if rel in skip or rel.endswith(".part"):
            continue
        if stat.S_ISDIR(info.st_mode):
            dirs.append((rel, info))
        elif stat.S_ISREG(info.st_mode):
            if info.st_size >= SPARSE_MIN and info.st_blocks * 512 < info.st_size // 2:
                excluded.append((rel, info.st_size, f"sparse ({info.st_blocks * 512} bytes on disk)"))
            elif info.st_size > max_file:
                excluded.append((rel, info.st_size, f"larger than {max_file >> 20} MB"))
            else:
                files.append((rel, info))
        elif stat.S_ISLNK(info.st_mode):
            files.append((rel, info))
        else:
            excluded.append((rel, 0, "not a regular file, directory or link"))
    pilotlog = os.path.join(ctx.paths.main, cfg.pilot.pilotlog)
    if os.path.lexists(temp):  # the payload shares the dir: a symlink planted here must not be written through
        os.unlink(temp)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar:
            tar.addfile(_member(tar, job.workdir, top))
            for rel, info in dirs:
                tar.addfile(_member(tar, os.path.join(job.workdir, rel), f"{top}/{rel}"))
            total, busy = 0, 0.0  # bytes tarred and seconds spent on them: the rate that predicts the next file
            for rel, info in sorted(files, key=lambda item: (item[1].st_size, item[0])):
                if total + info.st_size > budget:
                    excluded.append((rel, info.st_size, f"past the log size limit of {budget >> 20} MB"))
                    continue
                now = time.monotonic()
                rate = total / busy if total >= PREDICT_AFTER and busy > 0 else 0.0
                if now > limit() or (rate and now + info.st_size / rate > limit()):
                    excluded.append((rel, info.st_size, NO_TIME))  # not started: no zeros to write for it
                    continue
                problem = _add(tar, os.path.join(job.workdir, rel), f"{top}/{rel}", limit)
                if problem:
                    excluded.append((rel, info.st_size, problem))
                if problem is None or problem == CUT:
                    total += info.st_size
                    busy += time.monotonic() - now
            problem = _add(tar, pilotlog, f"{top}/{cfg.pilot.pilotlog}", limit) if os.path.isfile(pilotlog) else None
            if problem:
                excluded.append((cfg.pilot.pilotlog, 0, problem))
            if excluded:
                text = "".join(f"{size}\t{why}\t{rel}\n" for rel, size, why in excluded).encode("utf-8", "replace")
                member = tarfile.TarInfo(f"{top}/{LISTING}")
                member.size, member.mtime, member.mode = len(text), int(time.time()), 0o644
                tar.addfile(member, io.BytesIO(text))
        os.replace(temp, path)
    finally:
        if os.path.lexists(temp):
            os.unlink(temp)
    for rel, size, why in excluded:
        log.warning("job %s: not in the log tarball: %s (%d bytes): %s", job.jobid, rel, size, why)
    log.info("job %s: log tarball %s (%d bytes, %.2f s)", job.jobid, path, os.path.getsize(path),
             time.monotonic() - started)
    return path, any(why in TIME_REASONS for _rel, _size, why in excluded)


def _member(tar: tarfile.TarFile, path: str, arcname: str) -> tarfile.TarInfo:
    return tar.gettarinfo(path, arcname)


def _add(tar: tarfile.TarFile, path: str, arcname: str, deadline: Callable[[], float]) -> Optional[str]:
    """Add one file or link; None when all went in, else why not (unreadable, or cut at the deadline)."""
    try:
        info = _member(tar, path, arcname)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    if not info.isreg():
        tar.addfile(info)
        return None
    try:
        handle = os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb", buffering=0)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    with handle:
        reader = _Bounded(handle, info.size, deadline)
        tar.addfile(info, reader)
    return CUT if reader.cut else None
