"""PanDA server channel: jobs from /api/v1/pilot/acquire_jobs, updates to /api/v1/pilot/update_job.

Transport is one net.Client (requests, imported at the first request): X509 proxy as client certificate, or an
OIDC bearer token plus Origin (the token file is read per request: it may be renewed while jobs run); TLS always
verified (net.trust: --cacert, --capath, X509_CERT_DIR, or the system CAs). The legacy /server/panda/ protocol is used when
[Pilot] panda_api says so, or automatically when the server answers a v1 call with 404 or "forbidden".
Every update is spooled before it is sent (spool.py); a final one is retried until acknowledged.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import time
from typing import Any, Dict, List, Optional, Tuple

from .. import __version__
from ..errors import CredentialsRefused, PilotError, ServerNotTrusted
from ..job import Job
from ..jobparser import parse_jobs
from ..net import Client, NetError, TLSVerificationFailed, trust_from
from . import panda_protocol as proto
from .base import Channel, Reply
from .spool import Spool, deliver_final

log = logging.getLogger(__name__)

# commands acted on from a command check between heartbeats (the others wait for the heartbeat reply)
KILL_COMMANDS = ("tobekilled", "softkill", "debug")
LABEL_BY_VERSION_TAG = {("RC", "rc_test2"): "rc_test2", ("RCM", "ptest"): "rcm_test2", ("ALRB", None): "rc_alrb"}


def server_url(url: str, port: int, default: str) -> str:
    """scheme://host:port without a trailing slash; -p applies only when the URL has no port."""
    url = (url or default).rstrip("/")
    if "://" not in url:
        url = "https://" + url
    scheme, _, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    if ":" not in host.split("]")[-1]:
        host = f"{host}:{port}"
    return f"{scheme}://{host}{slash}{path}"


def _token_path() -> Optional[str]:
    name = os.environ.get("OIDC_AUTH_TOKEN") or os.environ.get("PANDA_AUTH_TOKEN")
    if not name:
        return None
    folder = os.environ.get("OIDC_AUTH_DIR") or os.environ.get("PANDA_AUTH_DIR") or os.getcwd()
    refreshed = os.environ.get("OIDC_REFRESHED_AUTH_TOKEN")
    if refreshed and os.path.isfile(os.path.join(folder, refreshed)):
        name = refreshed
    return name if os.path.isabs(name) else os.path.join(folder, name)


class PandaChannel(Channel):
    name = "panda"
    retry_when_empty = True

    @classmethod
    def open(cls, ctx, address: str = "", placement=None) -> "PandaChannel":
        """The channel, after telling the server this worker started and asking it for the resource types."""
        channel = cls(ctx, os.path.join(ctx.paths.main, "spool"))
        channel.worker_status("started")
        if ctx.config.pilot.send_worker_node:
            channel.worker_node()
        ctx.resource_types.update(channel.resource_types())
        log.info("resource types from the server: %s", ", ".join(sorted(ctx.resource_types)) or "none")
        return channel

    def __init__(self, ctx, spool_dir: str):
        self.ctx = ctx
        cfg = ctx.config.pilot
        self.base = server_url(ctx.settings.url, ctx.settings.port, cfg.pandaserver)
        self.api = cfg.panda_api  # auto | v1 | legacy
        if self.api not in ("auto", "v1", "legacy"):
            raise PilotError(1008, f"[Pilot] panda_api must be auto, v1 or legacy, not {self.api!r}")
        self.spool = Spool(spool_dir)
        self.token_file = _token_path()
        self.origin = os.environ.get("OIDC_AUTH_ORIGIN") or os.environ.get("PANDA_AUTH_ORIGIN") or ""
        if self.token_file and not self.origin:
            raise PilotError(1008, "a token is configured (OIDC_AUTH_TOKEN/PANDA_AUTH_TOKEN) but no origin "
                                   "(OIDC_AUTH_ORIGIN/PANDA_AUTH_ORIGIN, e.g. atlas.production)")
        # a token replaces the proxy as credential: the proxy is then not shown as client certificate
        self.http = Client(trust_from(ctx, client_cert=not self.token_file),
                           (cfg.http_connect_timeout, cfg.http_maxtime),
                           {"Accept": "application/json", "User-Agent": f"pilot/{__version__}"})
        log.info("server %s, %s, trusting %s", self.base, self._credential(), self.http.trust.where)
        if not self.token_file and not self.http.trust.cert and self.base.startswith("https://"):
            log.warning("server %s: no token and no X509 proxy found: requests are anonymous", self.base)
        self.last_task_id = 0  # the previous job's task, for --allow-same-user
        self.jobs_received = 0  # a follow-up request (time floor) must say how much lifetime is left

    @property
    def requests_sent(self) -> int:
        return self.http.sent

    def _auth_headers(self) -> Dict[str, str]:
        if not self.token_file:
            return {}
        try:
            with open(self.token_file, encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError as exc:
            raise PilotError(1318, f"cannot read token file {self.token_file}: {exc}") from None
        return {"Authorization": f"Bearer {token}", "Origin": self.origin}

    def _post(self, path: str, json_body=None, form=None) -> Optional[proto.ServerReply]:
        """One request; None for a transient failure (network, timeout, 5xx), else the decoded reply.

        Raises _UseLegacy when a v1 call is not understood by an old server.
        """
        url = f"{self.base}{path}"
        try:
            response = self.http.post(url, json=json_body, data=form, headers=self._auth_headers())
        except TLSVerificationFailed as exc:  # the same trust fails the same way: 1318 at once, no retry
            raise ServerNotTrusted(f"{self.base}: {exc.message}; give its CA with --cacert or --capath") from None
        except NetError as exc:
            log.warning("POST %s failed: %s", url, exc.message)
            return None
        if response.status_code in (403, 404) and path.startswith("/api/") and self.api == "auto" and (
                response.status_code == 404 or "forbidden" in response.text.lower()):
            raise _UseLegacy(f"HTTP {response.status_code}: {response.text[:120]}")
        if response.status_code in (401, 403):  # our token or proxy is refused: asking again will not change that
            raise CredentialsRefused(f"{self.base} refused the pilot's {self._credential()} "
                                     f"(HTTP {response.status_code}: {_clean(response.text)})")
        if response.status_code >= 500 or response.status_code in (408, 429):
            log.warning("POST %s: HTTP %d %s", url, response.status_code, response.text[:200].strip())
            return None
        if response.status_code != 200:
            return proto.ServerReply(ok=False, message=f"HTTP {response.status_code}: {response.text[:200]}")
        reply = proto.decode_reply(response.text)
        if not reply.ok and proto.is_role_refusal(reply.message):
            raise CredentialsRefused(f"{self.base} refused the pilot's {self._credential()}: {_clean(reply.message)}")
        if reply.status_code == -1:  # truncated or corrupt: the answer was lost on the way, like a dropped connection
            log.warning("POST %s: %s", url, reply.message)
            return None
        return reply

    def _credential(self) -> str:
        if self.token_file:
            return f"token ({self.token_file}, origin {self.origin})"
        cert = self.http.trust.cert
        return f"X509 proxy ({cert[0]})" if cert else "anonymous request (no token, no proxy)"

    def _call(self, method: str, v1_body: Dict[str, Any], legacy_method: str, legacy_form: Dict[str, str]):
        return self.api_call(f"pilot/{method}", v1_body, legacy_method, legacy_form)

    def api_call(self, v1_path: str, v1_body: Dict[str, Any], legacy_method: str,
                 legacy_form: Dict[str, str]) -> Optional[proto.ServerReply]:
        """POST /api/v1/<v1_path> (e.g. "event/acquire_event_ranges"), or the legacy /server/panda/<method> when
        the server does not speak v1; None for a transient failure (see _post)."""
        if self.api != "legacy":
            try:
                return self._post(f"/api/v1/{v1_path}", json_body=v1_body)
            except _UseLegacy as exc:
                log.warning("server does not speak /api/v1 (%s): switching to the legacy protocol", exc)
                self.api = "legacy"
        return self._post(f"/server/panda/{legacy_method}", form=legacy_form)

    # --- jobs -------------------------------------------------------------------------------------------------
    def acquire_params(self, n_jobs: int) -> Dict[str, Any]:
        ctx, settings = self.ctx, self.ctx.settings
        free_mb = shutil.disk_usage(ctx.paths.main).free // (1024 * 1024)
        if ctx.queuedata.maxwdir:
            free_mb = min(free_mb, ctx.queuedata.maxwdir)
        memory = ctx.queuedata.maxrss or (os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) // (1 << 20)
        label = settings.job_label
        for (tag, from_label), to_label in LABEL_BY_VERSION_TAG.items():
            if settings.version_tag == tag and (from_label is None or from_label == label):
                label = to_label
        params: Dict[str, Any] = {
            "site_name": ctx.queuedata.resource or settings.queue, "computing_element": settings.queue,
            "prod_source_label": label, "node": socket.gethostname(), "memory": int(memory),
            "disk_space": int(free_mb), "n_jobs": n_jobs,
        }
        if self.jobs_received:
            # only for a follow-up job under the time floor: the server then takes only jobs with maxWalltime <=
            # remaining_time. On the first request it would hide every job as long as the queue's maxtime (the
            # lifetime already started ticking), as Pilot 3 never sends it there either.
            params["remaining_time"] = int(max(1, ctx.remaining()))
        optional = {"resource_type": settings.resource_type, "job_type": settings.jobtype,
                    "harvester_id": os.environ.get("HARVESTER_ID", ""),
                    "scheduler_id": os.environ.get("PANDA_JSID", "")}
        params.update({key: value for key, value in optional.items() if value})
        worker = os.environ.get("HARVESTER_WORKER_ID", "")
        if worker.isdigit():
            params["worker_id"] = int(worker)
        if settings.allow_same_user and self.last_task_id:  # Pilot 3: later jobs of a multi-job pilot from the
            params["task_id"] = self.last_task_id       # same task (Harvester passes --allow-same-user=False)
        return params

    def legacy_selectors(self) -> Dict[str, str]:
        """countryGroup/workingGroup/allowOtherCountry: only legacy getJob of servers before 1.0 knows them."""
        settings = self.ctx.settings
        form = {"countryGroup": settings.country_group, "workingGroup": settings.working_group}
        form = {key: value for key, value in form.items() if value}
        if settings.allow_other_country:
            form["allowOtherCountry"] = "True"
        return form

    def fetch(self, max_jobs: int = 1) -> List[Job]:
        params = self.acquire_params(max_jobs)
        form = dict(proto.legacy_acquire_form(params), **self.legacy_selectors())
        reply = self._call("acquire_jobs", params, "getJob", form)
        if reply is None:
            raise PilotError(1318, f"no answer from {self.base} to acquire_jobs")
        if proto.is_no_jobs(reply):
            log.info("server: %s", reply.message or "no jobs")
            return []
        if not reply.ok:
            raise PilotError(1318, f"acquire_jobs refused: {reply.message or reply.status_code}")
        jobs = parse_jobs(reply.jobs, self.ctx.config.file.max_field_length, "acquire_jobs reply")
        for job in jobs:
            if job.taskid.isdigit():
                self.last_task_id = int(job.taskid)
        self.jobs_received += len(jobs)
        return jobs

    # --- updates ----------------------------------------------------------------------------------------------
    def _send_update(self, data: Dict[str, Any]) -> Optional[Reply]:
        """None: transient failure; Reply(ok=False): refused for good; Reply(ok=True): acknowledged."""
        reply = self._call("update_job", proto.v1_update_body(data), "updateJob", proto.legacy_update_form(data))
        if reply is None:
            return None
        if reply.status_code == 10:  # server-side DB timeout: try again
            return None
        if not reply.ok and "alreadydone" not in reply.commands:
            log.error("update_job %s for job %s refused: %s", data.get("state"), data.get("jobId"), reply.message)
            return Reply(ok=False, commands=reply.commands, where=self.base)
        return Reply(ok=True, commands=reply.commands, where=f"{self.base} (update_job)")

    def update(self, job: Job, data: Dict[str, Any], final: bool) -> Reply:
        try:
            path: Optional[str] = self.spool.write(job.jobid, data, final)
        except OSError as exc:  # a full disk: the update goes out all the same, without a copy for a next pilot
            log.error("job %s: update not spooled (%s): sending it without a spool copy", job.jobid, exc)
            path = None
        if not final:
            try:
                result = self._send_update(data)
            except PilotError as exc:  # refused credentials or an untrusted server: the job runs on
                if exc.retry:
                    raise
                log.error("heartbeat of job %s: %s", job.jobid, exc.diag)
                result = None
            finally:
                if path:
                    self.spool.remove(path)
            return result if result is not None else Reply(ok=False, where=self.base)
        return self._deliver_final(path, data, f"final update of job {job.jobid}")

    def _deliver_final(self, path: Optional[str], data: Dict[str, Any], what: str) -> Reply:
        return deliver_final(self.ctx, path, lambda: self._send_update(data), what)

    def replay(self, directory: str) -> int:
        """Send spooled final updates left by an earlier pilot; returns how many were acknowledged."""
        from .spool import pending_in

        done = 0
        for path, record in pending_in(directory):
            what = f"replay of {os.path.basename(path)}"
            log.info("%s (spooled %s)", what, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record["created"])))
            if self._deliver_final(path, record["data"], what).ok:
                done += 1
        from ..eventservice.reporter import replay_spooled
        from ..eventservice.source import PandaEventSource
        from ..job import Job

        ranges = replay_spooled(directory, lambda jobid: PandaEventSource(self, Job(jobid=jobid)))
        if ranges:
            log.info("replayed %d spooled event range update(s)", ranges)
        return done

    # --- worker and node information (best effort: one attempt, failures only logged) ------------------------
    def _get(self, path: str) -> Optional[proto.ServerReply]:
        try:
            response = self.http.get(f"{self.base}{path}", headers=self._auth_headers())
        except NetError as exc:
            log.warning("GET %s failed: %s", path, exc.message)
            return None
        return proto.decode_reply(response.text) if response.status_code == 200 else None

    def fetch_credential(self, method: str, params: Dict[str, str]) -> Tuple[Optional[str], str]:
        """GET /api/v1/creds/<method> (get_access_token, get_proxy): (the new token or proxy, "") or (None, why).

        Both answer {"user_proxy": ...} (yes, also for a token). Never logs the credential.
        """
        if self.api == "legacy":
            return None, "the legacy protocol has no credential calls this pilot uses (panda-server < 1.0)"
        try:
            response = self.http.get(f"{self.base}/api/v1/creds/{method}", params=params,
                                     headers=self._auth_headers())
        except NetError as exc:
            return None, _clean(exc.message)
        except PilotError as exc:  # the token file could not be read
            return None, exc.diag
        if response.status_code != 200:
            return None, f"HTTP {response.status_code}: {_clean(response.text)}"
        reply = proto.decode_reply(response.text)
        if not reply.ok:
            return None, _clean(reply.message) or "refused"
        value = reply.data.get("user_proxy") if isinstance(reply.data, dict) else None
        if not isinstance(value, str) or not value.strip():
            return None, "the answer holds no credential"
        return value, ""

    def commands(self, job: Job) -> Optional[List[str]]:
        """job/get_status (v1 only): the job's status and pending commandToPilot, one primary-key read on the server.

        Only kill-type commands are taken from here (KILL_COMMANDS); the rest (debug commands with their output)
        stay with the heartbeat. A job the server does not know ("unknown") is left to the next heartbeat.
        """
        if self.api == "legacy":
            return None
        url = f"{self.base}/api/v1/job/get_status"
        try:
            response = self.http.get(url, params={"job_ids": int(job.jobid)}, headers=self._auth_headers())
        except (NetError, ValueError, PilotError) as exc:
            log.info("command check of job %s failed: %s", job.jobid, getattr(exc, "message", exc))
            return []
        reply = proto.decode_reply(response.text) if response.status_code == 200 else None
        if reply is None or not reply.ok or not isinstance(reply.data, list) or not reply.data or \
                not isinstance(reply.data[0], dict):
            log.info("command check of job %s: no usable answer (HTTP %d)", job.jobid, response.status_code)
            return []
        entry = reply.data[0]
        if entry.get("status") in (None, "unknown"):
            return []
        return [command for command in proto.split_commands(entry.get("command")) if command in KILL_COMMANDS]

    def worker_status(self, status: str) -> None:
        """update_worker_status started/finished, for Harvester-submitted pilots (HARVESTER_ID and _WORKER_ID)."""
        harvester, worker = os.environ.get("HARVESTER_ID", ""), os.environ.get("HARVESTER_WORKER_ID", "")
        if not (harvester and worker.isdigit()) or not self.ctx.settings.workerpilotstatusupdate:
            return
        body = {"worker_id": int(worker), "harvester_id": harvester, "status": status, "node_id": socket.gethostname()}
        try:
            reply = self._post("/api/v1/pilot/update_worker_status", json_body=body)
        except _UseLegacy:
            return
        outcome = "ok" if reply and reply.ok else (reply.message if reply else "no answer")
        log.info("worker status %s: %s", status, outcome)

    def worker_node(self) -> None:
        """update_worker_node: the node's hardware, for the server's worker-node map."""
        body = {"site": self.ctx.queuedata.site or self.ctx.queuedata.resource, "host_name": socket.gethostname(),
                "cpu_model": _cpu_model(), "panda_queue": self.ctx.settings.queue, "n_logical_cpus": os.cpu_count() or 1,
                "total_memory": int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)),
                "total_local_disk": int(shutil.disk_usage(self.ctx.paths.main).total // (1 << 30))}
        try:
            reply = self._post("/api/v1/pilot/update_worker_node", json_body=body)
        except _UseLegacy:
            return
        log.info("worker node map: %s", reply.message if reply else "no answer")

    def resource_types(self) -> Dict[str, Dict[str, Any]]:
        """metaconfig/get_resource_types: {name: {mincore, maxcore, minrampercore, maxrampercore}} ({} if none)."""
        reply = self._get("/api/v1/metaconfig/get_resource_types")
        if not reply or not reply.ok or not isinstance(reply.data, list):
            return {}
        return {entry["resource_name"]: entry for entry in reply.data
                if isinstance(entry, dict) and "resource_name" in entry}

    def close(self) -> None:
        self.worker_status("finished")
        log.info("%d request(s) to %s in %.2f s", self.requests_sent, self.base, self.ctx.elapsed())
        self.http.close()


class _UseLegacy(Exception):
    pass


def _clean(text: str) -> str:
    """A server's refusal text for a log line or a diagnostic: one line, short, no bearer token echoed back."""
    return re.sub(r"(?i)(bearer\s+)\S+", r"\1***", " ".join(text.split()))[:160]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"
