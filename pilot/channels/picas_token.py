"""PiCaS tokens as pilot jobs: the views, token -> job definition, and the GRID_LRT error codes.

A token is a CouchDB document ``{_id, type, lock: 0, done: 0, hostname, scrub_count, input, output, error: [],
...}`` (PiCaS / GRID_LRT, seed-checklist §5.1). The pilot maps it to a PanDA-style job definition so the normal
pipeline runs it (docs/picas.md lists the fields):

* what to run: ``command`` (a shell fragment), or ``script`` (a file, usually from the sandbox, run with bash)
  followed by ``parameters`` / ``arguments`` (a string, or a list of words to quote);
* inputs: SURLs in ``input`` (list, or text with one URL per line) and/or in an ``srm.txt``-style attachment;
  they must share one OBSID and one LTA site when they are LOFAR SURLs (GRID_LRT's srmlist rule);
* ``SBXloc`` / ``sandbox``: the sandbox tarball; ``env`` / ``environment``: extra payload variables.

The PandaID is synthetic: a stable hash of database, token id and lock time, so every claim of a token is a
distinct job for the rest of the pilot (its work dir, its reports) while the channel maps it back to the token.
"""

from __future__ import annotations

import hashlib
import shlex
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..errors import CODES, PilotError
from ..job import Job
from ..jobparser import parse_job
from ..transfer.surl import SurlError, check_consistent, clean, rewrite

# the token fields the pilot owns; everything else is the submitter's and is passed on untouched
STATE_FIELDS = ("lock", "done", "hostname", "scrub_count", "output", "status", "error", "pilot_claim", "heartbeat",
                "progress", "exit_code", "pilot_error_code", "pilot_error_diag", "grid_lrt_code", "start_time",
                "end_time", "pilot_final")

# PanDA pilot code (by name) -> GRID_LRT worker-node code (seed-checklist §5.5); anything unlisted is 99
_GRID_LRT_BY_NAME = {
    "NOUSERTARBALL": -2, "ZEROFILESIZE": -2, "MISSINGCREDENTIALS": 1, "SETUPFAILURE": 12, "NOSUCHFILE": 3,
    "MKDIR": 4, "NOSOFTWAREDIR": 10, "MISSINGINSTALLATION": 11, "MISSINGINPUTFILE": 20, "REPLICANOTFOUND": 20,
    "STAGEINFAILED": 21, "STAGEINTIMEOUT": 21, "GETADMISMATCH": 96, "GETMD5MISMATCH": 96, "MISSINGOUTPUTFILE": 30,
    "STAGEOUTFAILED": 31, "STAGEOUTTIMEOUT": 31, "PUTGLOBUSSYSERR": 31, "NOREMOTESPACE": 32, "FILEEXISTS": 33,
    "PAYLOADOUTOFMEMORY": 97, "BADALLOC": 98,
}
GRID_LRT_CODES: Dict[int, int] = {CODES[name]: value for name, value in _GRID_LRT_BY_NAME.items()}


def grid_lrt_code(code: int, diag: str = "") -> int:
    """The GRID_LRT code for a PanDA code: 22 for a NEARLINE input, 1 for a missing token variable, else the
    table (§5.5), 99 for any other failure, 0 for success."""
    if code == 0:
        return 0
    if code == CODES["STAGEINFAILED"] and "NEARLINE" in diag:
        return 22
    if "GRID_LRT code 1)" in diag:
        return 1
    return GRID_LRT_CODES.get(code, 99)


def views(token_type: str) -> Dict[str, Dict[str, str]]:
    """The status views of PiCaS / GRID_LRT (todo, locked, done, error) plus an overview with a reduce."""
    cond = f'doc.type == {_js(token_type)} && ' if token_type else ""

    def view(test: str) -> Dict[str, str]:
        return {"map": f"function(doc) {{ if ({cond}{test}) {{ emit(doc._id, doc._id); }} }}"}

    overview = (f"function(doc) {{ if ({cond}true) {{ "
                "if (doc.lock == 0 && doc.done == 0) emit('todo', 1); "
                "else if (doc.lock > 0 && doc.done == 0) emit('locked', 1); "
                "else if (doc.lock > 0 && doc.done > 0) emit('done', 1); "
                "else if (doc.lock == -1 && doc.done == -1) emit('error', 1); } }")
    return {
        "todo": view("doc.lock == 0 && doc.done == 0"),
        "locked": view("doc.lock > 0 && doc.done == 0"),
        "done": view("doc.lock > 0 && doc.done > 0"),
        "error": view("doc.lock == -1 && doc.done == -1"),
        "overview_total": {"map": overview, "reduce": "_sum"},
    }


def _js(text: str) -> str:
    import json

    return json.dumps(text)


def synthetic_panda_id(db: str, token_id: str, lock: int) -> str:
    digest = hashlib.sha256(f"{db}\x00{token_id}\x00{lock}".encode("utf-8")).hexdigest()
    return str(int(digest[:12], 16) + 1)  # 1 .. 2.8e14: positive, at most 15 digits


def _count(value: Any) -> int:
    """A token's numeric field (lock, scrub_count) as an int; 0 for anything that is not a number."""
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return 0


def _words(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(shlex.quote(str(word)) for word in value)
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise PilotError(1302, f"token field parameters has type {type(value).__name__}: expected text or a list")


def input_urls(token: Mapping[str, Any], attachment: Optional[str], field: str) -> List[str]:
    """SURLs from the token field `field` (list or lines) and the srm.txt-style attachment text."""
    urls: List[str] = []
    value = token.get(field)
    if isinstance(value, (list, tuple)):
        urls += [clean(str(item)) for item in value if isinstance(item, str) and "://" in item]
    elif isinstance(value, str) and "://" in value:
        urls += [clean(line) for line in value.splitlines() if "://" in line]
    if attachment:
        urls += [clean(line) for line in attachment.splitlines() if "://" in line]
    return urls


def token_job(token: Dict[str, Any], db: str, cfg, attachment: Optional[str], max_field: int,
              url_for_payload: str) -> Tuple[Job, List[str]]:
    """The Job for a claimed token, and its input URLs. Problems of the token become codes on the job."""
    token_id = str(token["_id"])
    panda_id = synthetic_panda_id(db, token_id, _count(token.get("lock")))
    problems: List[Tuple[int, str]] = []
    command = token.get("command")
    script = token.get("script")
    try:
        params = _words(token.get("parameters", token.get("arguments")))
    except PilotError as exc:
        problems.append((exc.code, exc.diag))
        params = ""
    if isinstance(command, str) and command.strip():
        pars = "-c " + shlex.quote(command + (" " + params if params else ""))
    elif isinstance(script, str) and script.strip():
        pars = shlex.quote(script) + (" " + params if params else "")
    else:
        pars = ""
        problems.append((1008, f"token {token_id} has neither a command nor a script field"))
    try:
        urls = check_consistent(input_urls(token, attachment, cfg.input_field))
    except SurlError as exc:
        problems.append((1302, f"token {token_id} inputs: {exc}"))
        urls = []
    names = [url.rstrip("/").rsplit("/", 1)[-1] for url in urls]
    definition: Dict[str, Any] = {"PandaID": panda_id, "taskID": db, "jobName": token_id, "transformation": "bash",
                                  "jobPars": pars, "prodSourceLabel": "picas",
                                  "attemptNr": str(_count(token.get("scrub_count")) + 1)}
    if names:
        definition.update({"inFiles": ",".join(names), "scopeIn": ",".join("picas" for _ in names),
                           "GUID": ",".join("NULL" for _ in names)})
    for key in ("maxWalltime", "coreCount", "minRamCount"):
        if key in token:
            definition[key] = token[key]
    job = parse_job(definition, max_field)
    job.sandbox_fields = {key: value for key, value in token.items() if key not in ("_attachments",)}
    for code, diag in problems:
        job.fail(code, diag)
    by_name = dict(zip(names, urls))
    for spec in job.inputs:
        spec.turl = rewrite(by_name.get(spec.lfn, ""), cfg.surl_form) if cfg.surl_form else by_name.get(spec.lfn, "")
    sandbox = next((token.get(key) for key in ("SBXloc", "sandbox") if isinstance(token.get(key), str)
                    and token.get(key)), "")
    job.sandbox = sandbox
    env = token.get("env", token.get("environment"))
    if isinstance(env, dict):
        bad = [key for key in env if not str(key).isidentifier()]
        if bad:
            job.fail(1302, f"token {token_id} env has invalid variable names {bad[:3]}")
        else:
            job.environment.update({str(key): str(value) for key, value in env.items()})
    elif env not in (None, ""):
        job.fail(1302, f"token {token_id} env must be a dictionary of variables")
    job.environment.update({"TOKEN": token_id, "PICAS_DB": db, "PICAS_URL": url_for_payload})
    return job, urls
