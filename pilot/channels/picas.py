"""PiCaS channel: jobs are tokens in a CouchDB database (``--job-source picas:URL/DB``), claimed with optimistic
locking; the pilot's updates become token updates.

Claim: read a window of the ``todo`` view (with the documents), try them in random order (pilots starting together
would otherwise all fight over the first row), and save each with ``lock=<epoch>``, ``hostname``, our claim id and
the ``_rev`` we read. A 409 means someone else won it: try the next one. A 201 is not yet proof -- a stale view row
can hide a lock taken meanwhile (the PyPI picas client runs such tokens twice) -- so the token is read again and
only ours if it still carries our claim id and lock and is not done.

Updates: heartbeats set ``status`` (downloading / running), ``heartbeat`` and ``progress``; the final update sets
``done=<epoch>``, ``status=done``, the exit code in ``output`` and ``Results_location`` -- or ``lock=done=-1``,
``status=error``, an appended error record with the PanDA code and the GRID_LRT code of seed-checklist §5.5 --
and attaches the tail of the payload's stdout/stderr. Every write re-reads the token and checks that our claim is
still on it: a token scrubbed and taken by another pilot is never overwritten, and its payload here is stopped.
Final updates are spooled first (spool.py) and retried until acknowledged; a later pilot in the same work dir
replays what is left. Locks older than [PiCaS] lease (no heartbeat either) are reset (``scrub_count`` + 1).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
from typing import Any, Callable, Dict, List, Optional

from ..errors import ERRORS, CredentialsRefused, PilotError, ServerNotTrusted
from ..ids import new_hex_uuid
from ..job import Job
from ..net import Client, trust_from
from ..payload.untrusted import read_inside, tail_inside
from ..records import Record, record
from ..masking import mask
from .base import Channel, Reply
from .picas_couch import Conflict, Couch, CouchError, Unavailable, Untrusted, read_credentials
from .picas_token import grid_lrt_code, token_job, views
from .spool import Spool, deliver_final, pending_in

log = logging.getLogger(__name__)

HEARTBEAT_STATUS = {"starting": "downloading", "running": "running"}
# what a running update carries that a PiCaS user reads on the token: the same usage the PanDA channel reports
PROGRESS_KEYS = ("startTime", "cpuConsumptionTime", "meanCoreCount", "coreCount", "maxRSS", "maxPSS", "maxVMEM",
                 "maxSWAP", "avgRSS", "avgPSS", "avgVMEM", "avgSWAP", "totRCHAR", "totWCHAR", "totRBYTES",
                 "totWBYTES", "rateRCHAR", "rateWCHAR", "rateRBYTES", "rateWBYTES", "nEvents")


@record
class Claim(Record):
    token_id: str
    claim_id: str
    lock: int


class PicasChannel(Channel):
    name = "picas"

    @classmethod
    def open(cls, ctx, address: str = "", placement=None) -> "PicasChannel":
        return cls(ctx, address, os.path.join(ctx.paths.main, "spool"))

    def __init__(self, ctx, target: str, spool_dir: str):
        self.ctx = ctx
        self.cfg = ctx.config.picas
        server, db, auth = read_credentials(target, self.cfg.credentials_file)
        client = Client(trust_from(ctx), (self.cfg.connect_timeout, self.cfg.timeout), {"Accept": "application/json"},
                        auth)
        self.couch = Couch(client, server, db)
        self.db = db
        self.hostname = socket.gethostname()
        self.spool = Spool(spool_dir)
        self.claims: Dict[str, Claim] = {}
        self._checked = False
        log.info("PiCaS token pool %s/%s as user %s (design doc %s)", server, db, auth[0], self.cfg.design_doc)

    # --- set-up ---------------------------------------------------------------------------------------------
    def _prepare(self) -> None:
        """Once: the database must exist; missing views are created if [PiCaS] create_views allows."""
        if self._checked:
            return
        if self.couch.info() is None:
            raise PilotError(1008, f"PiCaS database {self.db} does not exist on {mask(self.couch.server)}")
        design_id = f"_design/{self.cfg.design_doc}"
        design = self.couch.get(design_id) or {"_id": design_id, "language": "javascript", "views": {}}
        wanted = views(self.cfg.token_type)
        missing = [name for name in wanted if name not in design.get("views", {})]
        needed = [name for name in ("todo", "locked") if name in missing]
        if missing and self.cfg.create_views:
            design.setdefault("views", {}).update({name: wanted[name] for name in missing})
            try:
                self.couch.put(design)
                log.info("PiCaS: created views %s in %s", ", ".join(missing), design_id)
            except Conflict:
                log.info("PiCaS: another pilot created the views of %s first", design_id)
            except CouchError as exc:
                if needed:
                    raise PilotError(1008, f"PiCaS views {needed} missing and cannot be created: {exc.message}"
                                     ) from None
                log.warning("PiCaS: views %s missing and cannot be created: %s", missing, exc.message)
        elif needed:
            raise PilotError(1008, f"PiCaS design document {design_id} lacks the views {needed}; create them "
                                   f"(GRID_LRT add_status_views) or set [PiCaS] create_views = True")
        self._checked = True

    # --- jobs -------------------------------------------------------------------------------------------------
    def fetch(self, max_jobs: int = 1) -> List[Job]:
        try:
            self._prepare()
            if self.cfg.lease > 0:
                self.scrub_stale(self.cfg.lease)
            jobs: List[Job] = []
            while len(jobs) < max_jobs:
                job = self._claim_one()
                if job is None:
                    break
                jobs.append(job)
            return jobs
        except Unavailable as exc:
            raise PilotError(1318, f"PiCaS server unavailable: {exc.message}") from None
        except Untrusted as exc:
            raise ServerNotTrusted(f"PiCaS {exc.message}; give its CA with --cacert or --capath") from None
        except CouchError as exc:
            if exc.status in (401, 403):
                raise CredentialsRefused(f"PiCaS refused our credentials: {exc.message} (check PICAS_USER/"
                                         f"PICAS_PASSWORD)") from None
            raise PilotError(1318, f"PiCaS refused: {exc.message}") from None

    def _claim_one(self) -> Optional[Job]:
        for _ in range(self.cfg.claim_attempts):
            rows = self.couch.view(self.cfg.design_doc, "todo", limit=self.cfg.view_window, include_docs=True)
            if not rows:
                log.info("PiCaS: no token in the todo view")
                return None
            random.shuffle(rows)
            for row in rows:
                doc = row.get("doc")
                if isinstance(doc, dict) and doc.get("lock") == 0 and doc.get("done") == 0:
                    job = self._try_claim(doc)
                    if job is not None:
                        return job
        log.warning("PiCaS: every todo token was taken by others during %d attempt(s)", self.cfg.claim_attempts)
        return None

    def _try_claim(self, doc: Dict[str, Any]) -> Optional[Job]:
        token_id = str(doc["_id"])
        claim = Claim(token_id, f"{self.hostname}:{os.getpid()}:{new_hex_uuid()[:12]}", int(time.time()))
        doc.update(lock=claim.lock, hostname=self.hostname, status="locked", pilot_claim=claim.claim_id,
                   heartbeat=claim.lock)
        try:
            self.couch.put(doc)
        except Conflict:
            log.debug("PiCaS: token %s taken by someone else first", token_id)
            return None
        fresh = self.couch.get(token_id)  # a 201 on a stale row is not proof: is the lock still ours?
        if not fresh or fresh.get("pilot_claim") != claim.claim_id or fresh.get("lock") != claim.lock or \
                fresh.get("done") != 0:
            log.warning("PiCaS: token %s changed right after our claim: left to its new owner", token_id)
            return None
        attachment, problem = None, ""
        name = self.cfg.input_attachment
        if name and name in (fresh.get("_attachments") or {}):
            try:
                data = self.couch.get_attachment(token_id, name)
                attachment = data.decode("utf-8", "replace") if data else None
            except CouchError as exc:  # the token is ours now: fail it with a code rather than leave it locked
                problem = f"cannot read the {name} attachment of token {token_id}: {exc.message}"
        job, urls = token_job(fresh, self.db, self.cfg, attachment, self.ctx.config.file.max_field_length,
                              mask(self.couch.base))
        if problem:
            job.fail(1099, problem)
        self.claims[job.jobid] = claim
        log.info("PiCaS: claimed token %s as job %s (%d input(s), sandbox %s)", token_id, job.jobid, len(urls),
                 mask(job.sandbox) or "none")
        return job

    def scrub_stale(self, lease: float) -> int:
        """Reset locked tokens with neither lock nor heartbeat newer than `lease` seconds; returns how many."""
        now = time.time()
        reset = 0
        for row in self.couch.view(self.cfg.design_doc, "locked", include_docs=True):
            doc = row.get("doc")
            if not isinstance(doc, dict):
                continue
            last = max(_number(doc.get("lock")), _number(doc.get("heartbeat")))
            if now - last < lease:
                continue
            doc.update(lock=0, done=0, scrub_count=int(_number(doc.get("scrub_count"))) + 1, hostname="",
                       output="", status="reset", pilot_claim="")
            try:
                self.couch.put(doc)
            except Conflict:
                continue
            reset += 1
            log.warning("PiCaS: token %s was locked for %.0f s without a heartbeat (lease %.0f s): reset, "
                        "scrub_count %d", doc["_id"], now - last, lease, doc["scrub_count"])
        return reset

    # --- updates ----------------------------------------------------------------------------------------------
    def _modify(self, claim: Claim, apply: Callable[[Dict[str, Any]], Optional[bool]]) -> Optional[Dict[str, Any]]:
        """Re-read the token, check our claim, apply(doc), write; retry on conflicts. The written doc, {} if the
        token is no longer ours, None if the server could not be reached. apply() returning False: skip the
        write (already done)."""
        for _ in range(8):
            doc = self.couch.get(claim.token_id)
            if doc is None or doc.get("pilot_claim") != claim.claim_id:
                return {}
            if apply(doc) is False:
                return doc
            try:
                self.couch.put(doc)
                return doc
            except Conflict:
                continue
        return None

    def update(self, job: Job, data: Dict[str, Any], final: bool) -> Reply:
        claim = self.claims.get(job.jobid)
        if claim is None:
            return Reply(ok=False, where=f"job {job.jobid} is not a PiCaS token of this pilot")
        where = f"{mask(self.couch.base)}/{claim.token_id}"
        record = dict(data, _picas={"token": claim.token_id, "claim": claim.claim_id, "lock": claim.lock,
                                    "log": self._log_tail(job) if final else "",
                                    "results": self._results_location(job, data) if final else ""})
        path = self.spool.write(job.jobid, record, final)
        if not final:
            try:
                doc = self._modify(claim, lambda token: self._heartbeat_fields(token, data))
            except CouchError as exc:
                log.warning("PiCaS heartbeat of token %s failed: %s", claim.token_id, exc.message)
                doc = None
            finally:
                self.spool.remove(path)
            if doc == {}:
                job.kill.fire(1144, f"PiCaS token {claim.token_id} is no longer ours (reset or taken by another "
                                    f"pilot): payload stopped")
                return Reply(ok=False, where=where)
            return Reply(ok=doc is not None, where=where)
        return self._deliver_final(path, record, f"final update of token {claim.token_id}")

    @staticmethod
    def _heartbeat_fields(token: Dict[str, Any], data: Dict[str, Any]) -> None:
        now = int(time.time())
        token["status"] = HEARTBEAT_STATUS.get(data.get("state", ""), data.get("state", "running"))
        token["heartbeat"] = now
        token.setdefault("start_time", now)
        progress = {"state": data.get("state"), "time": data.get("timestamp")}
        for key in PROGRESS_KEYS:
            if key in data:
                progress[key] = data[key]
        token["progress"] = progress

    def _final_fields(self, token: Dict[str, Any], record: Dict[str, Any]) -> Optional[bool]:
        info = record["_picas"]
        if token.get("pilot_final") == info["claim"]:
            return False  # already written by an earlier attempt: only the attachment may be missing
        now = int(time.time())
        exit_code = record.get("transExitCode")
        code = int(record.get("pilotErrorCode") or 0)
        diag = str(record.get("pilotErrorDiag") or "")
        token.update(heartbeat=now, end_time=now, exit_code=exit_code, pilot_error_code=code, pilot_error_diag=diag,
                     pilot_final=info["claim"])
        if record.get("state") == "finished":
            token.update(done=now, status="done", output=exit_code if exit_code is not None else 0)
            if info.get("results"):
                token["Results_location"] = info["results"]
        else:
            lrt = grid_lrt_code(code, diag)
            # a payload that ran and failed: its own exit code, as GRID_LRT launchers exit with their §5.5 codes;
            # a failure the pilot found (sandbox, inputs, set-up): the GRID_LRT code of the PanDA code
            failed_run = isinstance(exit_code, int) and not isinstance(exit_code, bool) and exit_code != 0
            token.update(lock=-1, done=-1, status="error", output=exit_code if failed_run else lrt,
                         grid_lrt_code=lrt)
            errors = token.get("error") if isinstance(token.get("error"), list) else []
            errors.append({"time": now, "message": diag, "exception": ERRORS.get(code, ("UNKNOWN", ""))[0],
                           "pilot_error_code": code, "grid_lrt_code": lrt, "exit_code": exit_code,
                           "hostname": self.hostname})
            token["error"] = errors
        return None

    def _send_final(self, record: Dict[str, Any]) -> Optional[bool]:
        """True: written (and log attached); False: the token is not ours any more; None: try again."""
        info = record["_picas"]
        claim = Claim(info["token"], info["claim"], int(info["lock"]))
        try:
            doc = self._modify(claim, lambda token: self._final_fields(token, record))
            if doc is None:
                return None
            if doc == {}:
                log.error("PiCaS: token %s is no longer ours (reset or taken by another pilot): final state %s "
                          "not written", claim.token_id, record.get("state"))
                return False
            attach = self.cfg.attach_log
            if info.get("log") and self.cfg.log_attachment and (
                    attach == "always" or (attach == "error" and record.get("state") != "finished")):
                self._attach(claim, doc, info["log"].encode("utf-8"))
            return True
        except Unavailable as exc:
            log.warning("PiCaS final update of %s: %s", claim.token_id, exc.message)
            return None
        except Untrusted as exc:  # not "refused for good": kept spooled for a pilot that trusts the server
            raise ServerNotTrusted(f"PiCaS {exc.message}") from None
        except CouchError as exc:
            log.error("PiCaS final update of %s refused: %s", claim.token_id, exc.message)
            return False

    def _attach(self, claim: Claim, doc: Dict[str, Any], data: bytes) -> None:
        for _ in range(5):
            try:
                self.couch.put_attachment(claim.token_id, doc["_rev"], self.cfg.log_attachment, data)
                return
            except Conflict:
                doc = self.couch.get(claim.token_id) or {}
                if doc.get("pilot_claim") != claim.claim_id:
                    return
        raise Unavailable(409, f"attaching the log to {claim.token_id}: too many conflicts")

    def _deliver_final(self, path: str, record: Dict[str, Any], what: str) -> Reply:
        where = f"{mask(self.couch.base)}/{record['_picas']['token']}"

        def send() -> Optional[Reply]:
            result = self._send_final(record)
            return None if result is None else Reply(ok=result, where=where)

        return deliver_final(self.ctx, path, send, what)

    def replay(self, directory: str) -> int:
        """Deliver final token updates an earlier pilot spooled; returns how many were written."""
        done = 0
        for path, record in pending_in(directory):
            data = record.get("data", {})
            if not isinstance(data.get("_picas"), dict):
                log.warning("spool file %s is not a PiCaS update: left in place", path)
                continue
            if self._deliver_final(path, data, f"replay of {os.path.basename(path)}").ok:
                done += 1
        return done

    # --- helpers ----------------------------------------------------------------------------------------------
    def _log_tail(self, job: Job) -> str:
        """The last [PiCaS] log_tail_kb of the payload's stdout and stderr (read now: the work dir goes soon)."""
        limit = self.cfg.log_tail_kb * 1024
        parts = []
        payload = self.ctx.config.payload
        for name in (payload.payloadstdout, payload.payloadstderr):
            try:  # the payload's files: inside its work dir only (payload/untrusted.py)
                raw = tail_inside(job.workdir, name, limit) if job.workdir else None
            except OSError as exc:
                log.warning("job %s: %s not attached: %s", job.jobid, name, exc)
                continue
            if raw is None:
                continue
            text = raw.decode("utf-8", "replace")
            parts.append(f"===== {name} (last {limit // 1024} kB) =====\n{text}")
        if job.errors:
            parts.append(f"===== pilot =====\npilotErrorCode={job.error_code} {job.error_diag}\n")
        return "\n".join(parts)

    def _results_location(self, job: Job, data: Dict[str, Any]) -> str:
        """Where the results went: the stored outputs' SURLs, else the first line of the payload's
        [PiCaS] results_file in the work dir."""
        surls = [spec.surl for spec in job.outputs if spec.status == "transferred" and spec.surl]
        if surls:
            return " ".join(surls)
        name = self.cfg.results_file
        if name and job.workdir:
            try:
                raw = read_inside(job.workdir, name, 1 << 16)
            except OSError as exc:
                log.warning("job %s: %s not read: %s", job.jobid, name, exc)
                return ""
            lines = (raw or b"").decode("utf-8", "replace").splitlines()
            return lines[0].strip()[:1000] if lines else ""
        return ""

    def close(self) -> None:
        self.couch.close()


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
