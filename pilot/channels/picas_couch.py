"""The few CouchDB calls a PiCaS worker needs, over one net.Client (trust, timeouts, basic auth set by the caller).

Documents are read and written whole with their `_rev`: a write with a stale `_rev` is refused with 409, which
is what makes claiming a token safe without any server-side lock. Three outcomes per call, kept apart because the
channel acts differently on each: a result; `Conflict` (someone else changed the document first); and
`Unavailable` (network trouble, timeouts, 5xx: worth retrying). Anything else the server refuses is a
`CouchError` with its HTTP status and reason. Credentials never appear in messages (`mask`); where they come
from is `read_credentials` (environment, a file, or the URL).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import quote

from ..errors import PilotError
from ..masking import mask
from ..net import Client, NetError, TLSVerificationFailed

log = logging.getLogger(__name__)

USER_VARS = ("PICAS_USER", "PICAS_USR")
PASSWORD_VARS = ("PICAS_PASSWORD", "PICAS_USR_PWD")


class CouchError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class Conflict(CouchError):
    """409: the document changed since it was read."""


class Unavailable(CouchError):
    """No usable answer (connection error, timeout, 5xx): try again later."""


class Untrusted(CouchError):
    """The server's TLS certificate did not verify against the pilot's trust: trying again cannot help."""


def _body(reply) -> Any:
    """The JSON object of a CouchDB answer; a corrupt, truncated or absurdly nested one is an unusable answer."""
    try:
        body = reply.json()
    except (ValueError, RecursionError) as exc:
        raise Unavailable(reply.status_code, f"unreadable answer from CouchDB: {str(exc)[:100]}") from None
    if not isinstance(body, dict):
        raise Unavailable(reply.status_code, f"CouchDB answered a {type(body).__name__}, not an object")
    return body


def split_target(target: str) -> Tuple[str, str]:
    """'http://host:5984/mydb' -> ('http://host:5984', 'mydb'); ValueError if there is no database name."""
    target = target.strip().rstrip("/")
    if not target.startswith(("http://", "https://")):
        raise ValueError(f"PiCaS target {mask(target)[:120]!r} must start with http:// or https://")
    scheme, rest = target.split("://", 1)
    host, _, path = rest.partition("/")
    if not path or "/" in path:
        raise ValueError(f"PiCaS target {mask(target)[:120]!r} must be URL/DATABASE (one path component)")
    return f"{scheme}://{host}", path


def doc_path(doc_id: str) -> str:
    if doc_id.startswith("_design/"):
        return "_design/" + quote(doc_id[len("_design/"):], safe="")
    return quote(doc_id, safe="")


class Couch:
    def __init__(self, client: Client, server: str, db: str):
        self.client = client
        self.server = server
        self.db = db
        self.base = f"{server}/{quote(db, safe='')}"

    def __repr__(self) -> str:
        return f"Couch({mask(self.base)})"

    def _request(self, method: str, path: str, **kwargs):
        url = f"{self.base}/{path}" if path else self.base
        try:
            reply = self.client.request(method, url, **kwargs)
        except TLSVerificationFailed as exc:
            raise Untrusted(0, f"{method} {mask(url)}: {exc.message}") from None
        except NetError as exc:
            raise Unavailable(0, f"{method} {mask(url)}: {exc.message}") from None
        if reply.status_code >= 500 or reply.status_code in (408, 429):
            raise Unavailable(reply.status_code, f"{method} {mask(url)}: HTTP {reply.status_code} "
                                                 f"{reply.text[:200].strip()}")
        return reply

    @staticmethod
    def _fail(reply, what: str) -> CouchError:
        try:
            body = reply.json()
            reason = f"{body.get('error', '')}: {body.get('reason', '')}"
        except (ValueError, RecursionError, AttributeError):
            reason = reply.text[:200].strip()
        cls = Conflict if reply.status_code == 409 else CouchError
        return cls(reply.status_code, f"{what}: HTTP {reply.status_code} {reason}")

    # --- database and documents --------------------------------------------------------------------------------
    def info(self) -> Optional[Dict[str, Any]]:
        """The database's info, None if it does not exist."""
        reply = self._request("GET", "")
        if reply.status_code == 404:
            return None
        if reply.status_code != 200:
            raise self._fail(reply, f"database {self.db}")
        return _body(reply)

    def get(self, doc_id: str) -> Optional[Dict[str, Any]]:
        reply = self._request("GET", doc_path(doc_id))
        if reply.status_code == 404:
            return None
        if reply.status_code != 200:
            raise self._fail(reply, f"reading {doc_id}")
        return _body(reply)

    def put(self, doc: Dict[str, Any]) -> str:
        """Write `doc` (with its `_rev`, unless new); returns the new revision and sets it on `doc`."""
        reply = self._request("PUT", doc_path(doc["_id"]), data=json.dumps(doc),
                              headers={"Content-Type": "application/json"})
        if reply.status_code not in (201, 202):
            raise self._fail(reply, f"writing {doc['_id']}")
        doc["_rev"] = _body(reply)["rev"]
        return doc["_rev"]

    def view(self, design: str, name: str, limit: int = 0, include_docs: bool = False,
             key: Any = None) -> List[Dict[str, Any]]:
        params: Dict[str, str] = {}
        if limit:
            params["limit"] = str(limit)
        if include_docs:
            params["include_docs"] = "true"
        if key is not None:
            params["key"] = json.dumps(key)
        reply = self._request("GET", f"_design/{quote(design, safe='')}/_view/{quote(name, safe='')}",
                              params=params)
        if reply.status_code != 200:
            raise self._fail(reply, f"view {design}/{name}")
        return list(_body(reply).get("rows", []))

    # --- attachments ------------------------------------------------------------------------------------------
    def put_attachment(self, doc_id: str, rev: str, name: str, data: bytes,
                       content_type: str = "text/plain") -> str:
        reply = self._request("PUT", f"{doc_path(doc_id)}/{quote(name, safe='')}", params={"rev": rev},
                              data=data, headers={"Content-Type": content_type})
        if reply.status_code not in (201, 202):
            raise self._fail(reply, f"attaching {name} to {doc_id}")
        return _body(reply)["rev"]

    def get_attachment(self, doc_id: str, name: str) -> Optional[bytes]:
        reply = self._request("GET", f"{doc_path(doc_id)}/{quote(name, safe='')}")
        if reply.status_code == 404:
            return None
        if reply.status_code != 200:
            raise self._fail(reply, f"reading attachment {name} of {doc_id}")
        return reply.content

    def close(self) -> None:
        self.client.close()


def read_credentials(target: str, credentials_file: str) -> Tuple[str, str, Tuple[str, str]]:
    """(server, db, (user, password)) from the target URL, PICAS_USER/PICAS_PASSWORD (or GRID_LRT's
    PICAS_USR/PICAS_USR_PWD), or [PiCaS] credentials_file (user=... / password=... lines), in that order."""
    try:
        server, db = split_target(target)
    except ValueError as exc:
        raise PilotError(1008, str(exc)) from None
    scheme, rest = server.split("://", 1)
    if "@" in rest:
        userinfo, host = rest.rsplit("@", 1)
        user, _, password = userinfo.partition(":")
        return f"{scheme}://{host}", db, (user, password)
    user = next((os.environ[name] for name in USER_VARS if os.environ.get(name)), "")
    password = next((os.environ[name] for name in PASSWORD_VARS if os.environ.get(name)), "")
    if not (user and password) and credentials_file:
        values: Dict[str, str] = {}
        try:
            with open(os.path.expandvars(os.path.expanduser(credentials_file)), encoding="utf-8") as handle:
                for line in handle:
                    key, sep, value = line.strip().partition("=")
                    if sep:
                        values[key.strip().lower()] = value.strip()
        except OSError as exc:
            raise PilotError(1364, f"PiCaS credentials file {credentials_file} cannot be read: "
                                   f"{exc.strerror or exc}") from None
        user = user or values.get("user") or values.get("username", "")
        password = password or values.get("password", "")
    if not (user and password):
        raise PilotError(1364, "PiCaS credentials missing: set PICAS_USER and PICAS_PASSWORD (or PICAS_USR and "
                               "PICAS_USR_PWD), or point [PiCaS] credentials_file at a file with user= and "
                               "password= lines")
    return server, db, (user, password)
