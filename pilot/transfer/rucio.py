"""The rucio copytool: Rucio's own download/upload clients pick the replica, the protocol and verify checksums.

Rucio is not a pilot dependency. Its API (DownloadClient/UploadClient, as Pilot 3 uses it) runs in a child process
(`rucio_worker.py`) under a Python that has `rucio.client`: the pilot's own, or the interpreter named on the `#!`
line of the `rucio` command the site set up ([Rucio] python overrides both). A child can be timed out and killed;
Pilot 3's in-process call cannot. When no such Python is found (e.g. `rucio` is a shell wrapper), the `rucio
download` / `rucio upload` commands are used instead. [Rucio] mode = api | cli forces one.

Stage-out does not register the replica unless [Rucio] register is true: PanDA registers a job's outputs itself
(Pilot 3 uploads with no_register). The copytool still checks what Rucio says it stored against the local checksum.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from typing import Dict, Optional

from ..job import FileSpec
from .base import Copytool, TransferFailure, output_activities, queue_storages
from .checksum import Digest, mismatch_code
from .cli import error_code, run_tool, transfer_timeout
from .remote import local_digest

log = logging.getLogger(__name__)

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rucio_worker.py")

# Rucio exception class / client state -> (stage-in code, stage-out code)
RUCIO_ERRORS = {
    "DataIdentifierNotFound": (1331, 1137), "SourceNotFound": (1331, 1137), "FILE_NOT_FOUND": (1331, 1137),
    "NoFilesDownloaded": (1099, 1137), "NotAllFilesDownloaded": (1099, 1137), "FAILED": (1099, 1137),
    "NoFilesUploaded": (1099, 1137), "NotAllFilesUploaded": (1099, 1137),
    "RSENotFound": (1100, 1133), "RSEWriteBlocked": (1099, 1133), "RSEOperationNotSupported": (1313, 1313),
    "RSEProtocolNotSupported": (1313, 1313), "RSEChecksumUnavailable": (1242, 1242),
    "ChecksumCalculationError": (1171, 1172), "FileConsistencyMismatch": (1171, 1172),
    "FileReplicaAlreadyExists": (1221, 1221), "DataIdentifierAlreadyExists": (1221, 1221),
    "CannotAuthenticate": (1338, 1383), "AccessDenied": (1338, 1383), "CannotAuthorize": (1338, 1383),
    "ServiceUnavailable": (1316, 1316), "RucioException": (1099, 1137), "ImportError": (1099, 1137),
    "ConnectionError": (1316, 1316), "ServerConnectionException": (1316, 1316),
    "DatabaseException": (1316, 1316),  # the Rucio server's database, e.g. locked: a server-side, passing problem
}


def _worker_python_from_shebang(command: str) -> Optional[str]:
    try:
        with open(command, "rb") as handle:
            first = handle.readline(512).decode("utf-8", "replace").strip()
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    words = first[2:].split()
    if words and os.path.basename(words[0]) == "env" and len(words) > 1:
        words = words[1:] if not words[1].startswith("-") else words[2:]
        found = shutil.which(words[0]) if words else None
        return found if found and "python" in os.path.basename(found) else None
    return words[0] if words and "python" in os.path.basename(words[0]) and os.access(words[0], os.X_OK) else None


def _client_config() -> Optional[str]:
    """The rucio.cfg the Rucio client would read (RUCIO_CONFIG, $RUCIO_HOME/etc, /opt/rucio/etc)."""
    for path in (os.environ.get("RUCIO_CONFIG", ""),
                 os.path.join(os.environ.get("RUCIO_HOME", "/nonexistent"), "etc", "rucio.cfg"),
                 "/opt/rucio/etc/rucio.cfg"):
        if path and os.path.isfile(path):
            return path
    return None


def host_env(ctx, scratch: str) -> Dict[str, str]:
    """--rucio-host: a copy of the client's rucio.cfg naming that server, for the worker or the CLI to read.

    A copy rather than a client argument: Rucio's upload and download clients make further clients of their own
    (RSE lookups), which read only the configuration file.
    """
    settings = getattr(ctx, "settings", None)  # contexts built for a copytool alone have no command line
    host = settings.rucio_host if settings is not None else ""
    if not host:
        return {}
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    source = _client_config()
    try:
        if source:
            parser.read(source)
    except configparser.Error as exc:
        raise TransferFailure(1008, f"cannot read the Rucio client configuration {source}: {exc}") from None
    if not parser.has_section("client"):
        parser.add_section("client")
    parser.set("client", "rucio_host", host)
    path = os.path.join(scratch, "rucio.cfg")
    with open(path, "w", encoding="utf-8") as handle:
        parser.write(handle)
    return {"RUCIO_CONFIG": path}


def _hard_limit(timeout: float) -> float:
    """When the child is killed: Rucio's own transfer timeout first, then a grace for its bookkeeping."""
    return timeout + min(30.0, max(1.0, timeout))


@functools.lru_cache(maxsize=8)
def api_python(configured: str, path: str) -> Optional[str]:
    """The interpreter that can run the API worker, or None (then the CLI is used). `path` keys the cache."""
    if configured:
        return configured
    import importlib.util

    if importlib.util.find_spec("rucio") is not None:
        return sys.executable
    command = shutil.which("rucio", path=path)
    return _worker_python_from_shebang(command) if command else None


class RucioCopytool(Copytool):
    name = "rucio"

    def _mode(self, ctx) -> tuple:
        cfg = ctx.config.rucio
        mode = self.setup.get("mode") or cfg.mode
        if mode not in ("auto", "api", "cli"):
            raise TransferFailure(1341, f"[Rucio] mode must be auto, api or cli, not {mode!r}")
        python = api_python(self.setup.get("python") or cfg.python, os.environ.get("PATH", ""))
        if mode == "api" and not python:
            raise TransferFailure(1341, "[Rucio] mode is api but no Python with rucio.client was found "
                                        "(set [Rucio] python or put the rucio client on PATH)")
        return ("api", python) if mode != "cli" and python else ("cli", None)

    # --- stage-in -----------------------------------------------------------------------------------------
    def _get(self, spec: FileSpec, dest: str, ctx, kind: str) -> Digest:
        if not spec.scope:
            raise TransferFailure(1099, f"rucio cannot fetch {spec.lfn}: the job gives no scope")
        timeout = transfer_timeout(ctx, spec.filesize)
        # Rucio writes <dir>/<lfn>.part and renames it to <dir>/<lfn>: give it a private dir, then move the result
        private = tempfile.mkdtemp(prefix=".rucio-", dir=os.path.dirname(dest))
        try:
            mode, python = self._mode(ctx)
            rse = spec.ddmendpoint or ""
            if mode == "api":
                item = {"did": f"{spec.scope}:{spec.lfn}", "base_dir": private, "no_subdir": True,
                        "transfer_timeout": max(1, int(timeout)), "ignore_checksum": False}
                if rse:
                    item["rse"] = rse
                if spec.turl and "://" in spec.turl:
                    item["pfn"] = spec.turl
                    item.setdefault("rse", rse or "")
                result = self._api(python, {"op": "download", "item": item}, ctx, timeout, "in", spec)
            else:
                argv = ["rucio", "download", "--dir", private, "--no-subdir",
                        "--transfer-timeout", str(max(1, int(timeout)))]
                argv += ["--rses", rse] if rse else []
                argv += ["--pfn", spec.turl] if spec.turl and "://" in spec.turl else []
                text = self._cli(argv + [f"{spec.scope}:{spec.lfn}"], ctx, timeout, "in", spec)
                result = {}
                if not os.path.isfile(os.path.join(private, spec.lfn)):  # exit 0 on most errors: look for the file
                    raise self._cli_failure(text, "in", spec)
            got = os.path.join(private, spec.lfn)
            if not os.path.isfile(got):
                raise TransferFailure(1099, f"stage-in of {spec.lfn}: rucio reported success but wrote no file")
            os.replace(got, dest)
            if result.get("pfn"):
                spec.turl = result["pfn"]
        finally:
            shutil.rmtree(private, ignore_errors=True)
        return local_digest(dest, kind)

    # --- stage-out ----------------------------------------------------------------------------------------
    def _put(self, spec: FileSpec, src: str, ctx, kind: str) -> str:
        local = local_digest(src, kind)
        rse = spec.ddmendpoint or self._default_rse(ctx, spec)
        scope = spec.scope or "pilot"
        timeout = transfer_timeout(ctx, local.size)
        register = bool(ctx.config.rucio.register)
        mode, python = self._mode(ctx)
        with tempfile.TemporaryDirectory(prefix=".rucio-up-") as scratch:
            if mode == "api":
                item = {"path": src, "rse": rse, "did_scope": scope, "did_name": spec.lfn,
                        "transfer_timeout": max(1, int(timeout))}
                item.update({"register_after_upload": True} if register else {"no_register": True})
                if spec.guid:
                    item["guid"] = spec.guid.replace("-", "")
                result = self._api(python, {"op": "upload", "item": item,
                                            "summary": os.path.join(scratch, "rucio_upload.json")},
                                   ctx, timeout, "out", spec)
            else:
                argv = ["rucio", "upload", "--rse", rse, "--scope", scope, "--lfn", spec.lfn,
                        "--summary", "--transfer-timeout", str(max(1, int(timeout)))]
                argv += ["--register-after-upload"] if register else ["--no-register"]
                argv += ["--guid", spec.guid.replace("-", "")] if spec.guid else []
                text = self._cli(argv + [src], ctx, timeout, "out", spec, cwd=scratch)
                result = self._summary(os.path.join(scratch, "rucio_upload.json"))
                if not result:  # the Rucio 41 CLI exits 0 on most errors: only the summary says it worked
                    raise self._cli_failure(text, "out", spec)
        stored = result.get(kind)
        if stored and stored.lower().zfill(len(local.hexdigest())) != local.hexdigest():
            raise TransferFailure(mismatch_code(kind, "out"), f"{kind} mismatch for {spec.lfn}: local "
                                                              f"{local.hexdigest()}, Rucio stored {stored}")
        spec.filesize, spec.checksum, spec.ddmendpoint = local.size, {kind: local.hexdigest()}, rse
        spec.turl = result.get("pfn") or ""
        return spec.turl or f"{rse}:{scope}:{spec.lfn}"

    @staticmethod
    def _default_rse(ctx, spec: FileSpec) -> str:
        names = queue_storages(ctx, output_activities(spec))
        if not names:
            raise TransferFailure(1133, f"no RSE for {spec.lfn}: the job names none and the queue has no astorages")
        return names[0]

    # --- running the worker / the CLI ---------------------------------------------------------------------
    def _api(self, python: str, request: dict, ctx, timeout: float, direction: str, spec: FileSpec) -> dict:
        what = f"stage-{direction} of {spec.lfn} (Rucio API)"
        with tempfile.TemporaryDirectory(prefix=".rucio-api-") as scratch:
            path = os.path.join(scratch, "request.json")
            with open(path, "w") as handle:
                json.dump(request, handle)
            # Run as `-c SOURCE` in an empty dir: as a script, its own dir (holding this rucio.py) would shadow
            # the rucio package. The worker exits 0 whenever it could report (the verdict is in its JSON).
            with open(WORKER, encoding="utf-8") as handle:
                source = handle.read()
            text = run_tool([python, "-c", source, path], ctx, _hard_limit(timeout), direction, what, cwd=scratch,
                            env=host_env(ctx, scratch))
        result = self._last_json(text) or {}
        if not result.get("ok"):
            raise self._failure(result, direction, what)
        return result

    def _cli(self, argv, ctx, timeout: float, direction: str, spec: FileSpec, cwd: Optional[str] = None) -> str:
        what = f"stage-{direction} of {spec.lfn} (rucio CLI)"
        with tempfile.TemporaryDirectory(prefix=".rucio-cfg-") as scratch:
            return run_tool(argv, ctx, _hard_limit(timeout), direction, what, cwd=cwd, env=host_env(ctx, scratch))

    @staticmethod
    def _cli_failure(text: str, direction: str, spec: FileSpec) -> TransferFailure:
        """The CLI's error lines (ANSI colours stripped) -> a code: Rucio's exception names first, then §5.3."""
        lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in text.splitlines()]
        errors = [line.split("ERROR", 1)[1].strip() for line in lines if "ERROR" in line] or lines[-2:]
        message = " ".join(" ".join(errors).split())
        name = next((n for n in RUCIO_ERRORS if n in message), None)
        if name is None and "Connection" in message and ("refused" in message or "Max retries" in message):
            name = "ConnectionError"
        if name is None and any(t in message.lower() for t in ("not found", "no such", "does not exist")):
            name = "DataIdentifierNotFound"
        what = f"stage-{direction} of {spec.lfn} (rucio CLI)"
        return RucioCopytool._failure({"error": name or "FAILED", "message": message}, direction, what)

    @staticmethod
    def _summary(path: str) -> dict:
        try:
            with open(path) as handle:
                return next(iter(json.load(handle).values()), {})
        except (OSError, ValueError, StopIteration):
            return {}

    @staticmethod
    def _last_json(text: str) -> Optional[dict]:
        for line in reversed(text.strip().splitlines()):
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except ValueError:
                    return None
        return None

    @staticmethod
    def _failure(result: dict, direction: str, what: str) -> TransferFailure:
        error, message = result.get("error") or "FAILED", result.get("message") or ""
        codes = RUCIO_ERRORS.get(error)
        if codes is None:
            code = error_code(f"{error} {message}", direction)
        else:
            code = codes[0] if direction == "in" else codes[1]
            low = message.lower()
            if "checksum" in low and ("mismatch" in low or "match" in low):
                code = 1171 if direction == "in" else 1172
        return TransferFailure(code, f"{what}: {error}: {message}"[:400])
