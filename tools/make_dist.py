#!/usr/bin/env python3
"""Build the pilot tarball the wrapper downloads: dist/pilot-<version>.tar.gz, byte-for-byte reproducible.

Contents, under no top-level directory (as Pilot 3's tarballs): pilot.py, pilot/ (sources and default.cfg),
default.cfg, PILOTVERSION, README.md. Reproducible: files sorted, owner 0/0, mode 0644/0755, mtime fixed (the
last commit's time, or SOURCE_DATE_EPOCH), gzip header without a name or time -- the same tree gives the same
bytes, so sites can pin a checksum.

usage: tools/make_dist.py [--out DIR]
"""

import argparse
import gzip
import io
import os
import subprocess
import sys
import tarfile

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOP)

from pilot import __version__  # noqa: E402


def source_epoch() -> int:
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    try:
        out = subprocess.run(["git", "-C", TOP, "log", "-1", "--format=%ct"], capture_output=True, text=True,
                             timeout=10)
        return int(out.stdout.strip())
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return 0


def members():
    yield "pilot.py", os.path.join(TOP, "pilot.py")
    yield "README.md", os.path.join(TOP, "README.md")
    for folder, dirs, files in os.walk(os.path.join(TOP, "pilot")):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".py", ".cfg")):
                path = os.path.join(folder, name)
                yield os.path.relpath(path, TOP), path


def build(out_dir: str) -> str:
    epoch = source_epoch()
    os.makedirs(out_dir, exist_ok=True)
    target = os.path.join(out_dir, f"pilot-{__version__}.tar.gz")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = sorted(members()) + [("default.cfg", os.path.join(TOP, "pilot", "default.cfg"))]
        extra = {"PILOTVERSION": f"{__version__}\n".encode()}
        for name, data in sorted(extra.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), epoch, 0o644
            tar.addfile(info, io.BytesIO(data))
        for name, path in entries:
            with open(path, "rb") as handle:
                data = handle.read()
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), epoch
            info.mode = 0o755 if name == "pilot.py" else 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    with open(target, "wb") as handle:
        with gzip.GzipFile(filename="", mode="wb", fileobj=handle, mtime=0, compresslevel=9) as gz:
            gz.write(raw.getvalue())
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(TOP, "dist"))
    print(build(parser.parse_args().out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
