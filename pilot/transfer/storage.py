"""Storage endpoints (DDM endpoints / Rucio RSEs) and where a file lives on them.

Storage data is CRIC's ddmendpoints JSON ({name: {arprotocols, rprotocols, is_deterministic, ...}}) from
--storagedata-url (a file or URL). On a deterministic RSE a file's location follows from its scope and name
(Rucio's default hash scheme), so both stage-in replicas and stage-out destinations are built the same way:
<endpoint><path>/<scope dirs>/<md5[0:2]>/<md5[2:4]>/<lfn>, md5 of "scope:lfn"; in user* and group* scopes every
dot becomes a directory level.
"""

from __future__ import annotations

import os
from dataclasses import field
from typing import Any, Dict, List, Optional, Sequence

from ..errors import PilotError
from ..net import Trust, get_json
from ..records import Record, record


@record
class Endpoint(Record):
    name: str
    is_deterministic: bool = True
    arprotocols: Dict[str, List[Dict[str, Any]]] = field(default_factory=dict)
    rprotocols: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    type: str = ""  # CRIC type: DATADISK, ..., OS_ES / OS_LOGS for object stores
    resource: Dict[str, Any] = field(default_factory=dict)  # CRIC 'resource' (object stores: settings, bucket)

    @property
    def is_objectstore(self) -> bool:
        return self.type.upper().startswith("OS_")

    def settings(self) -> Dict[str, Any]:
        """Object-store settings (CRIC resource.settings: access_key/secret_key NAMES, is_secure, region)."""
        value = self.resource.get("settings") if isinstance(self.resource, dict) else None
        return value if isinstance(value, dict) else {}

    def protocols(self, activities: Sequence[str]) -> List[str]:
        """Base URLs (endpoint + path) for the first activity that has any."""
        for activity in activities:
            found = [_join(p["endpoint"], p.get("path", "")) for p in self.arprotocols.get(activity, [])
                     if isinstance(p, dict) and p.get("endpoint")]
            if found:
                return found
        return []


def _join(endpoint: str, path: str) -> str:
    """endpoint + path as CRIC means them: 'root://h:1094//' + 'eos/x' and 'root://h:1094' + '//eos/x' both give
    root://h:1094//eos/x (xrootd needs the double slash for an absolute path)."""
    if endpoint.endswith("/") or path.startswith("/") or not path:
        return (endpoint + path).rstrip("/") if path else endpoint.rstrip("/")
    return f"{endpoint}/{path}".rstrip("/")


def load_storage_data(source: str, trust: Optional[Trust] = None) -> Dict[str, Endpoint]:
    if not source:
        return {}
    raw = get_json(source, "storage data", 1116, 1117, trust_=trust)
    if not isinstance(raw, dict):
        raise PilotError(1117, "storage data is not a JSON object")
    endpoints = {}
    for name, entry in raw.items():
        if isinstance(entry, dict):
            endpoints[name] = Endpoint(name=name, is_deterministic=bool(entry.get("is_deterministic", True)),
                                       arprotocols=entry.get("arprotocols") or {},
                                       rprotocols=entry.get("rprotocols") or {},
                                       type=str(entry.get("type") or ""),
                                       resource=entry.get("resource") if isinstance(entry.get("resource"), dict)
                                       else {})
    return endpoints


def deterministic_path(scope: str, lfn: str) -> str:
    import hashlib  # lazily: OpenSSL costs a local-channel pilot 3.7 MB of RSS it never uses

    digest = hashlib.md5(f"{scope}:{lfn}".encode(), usedforsecurity=False).hexdigest()
    scope_dirs = scope.replace(".", "/") if scope.startswith(("user", "group")) else scope
    return f"{scope_dirs}/{digest[0:2]}/{digest[2:4]}/{lfn}"


def file_url(base: str, scope: str, lfn: str, endpoint: Optional[Endpoint] = None, queue: str = "") -> str:
    """Where a file lives: the deterministic Rucio path, or on a non-deterministic object store (OS_ES/OS_LOGS)
    <base>/<queue>/<lfn> as Pilot 3 lays out event-service and log objects."""
    if endpoint is not None and not endpoint.is_deterministic and endpoint.is_objectstore:
        return "/".join(part for part in (base.rstrip("/"), queue.strip("/"), lfn) if part)
    return f"{base.rstrip('/')}/{deterministic_path(scope, lfn)}"


def endpoint_for(endpoints: Dict[str, Endpoint], names: Sequence[str], activities: Sequence[str],
                 what: str) -> Optional[tuple]:
    """(endpoint, base URL) of the first named endpoint with a protocol for `activities`; 1329/1313 if unusable."""
    for name in names:
        endpoint = endpoints.get(name)
        if endpoint is None:
            continue
        if not endpoint.is_deterministic and not endpoint.is_objectstore:
            raise PilotError(1329, f"{what}: storage {name} is not deterministic (cannot build the file's URL)")
        bases = endpoint.protocols(activities)
        if not bases:
            raise PilotError(1313, f"{what}: storage {name} has no protocol for {list(activities)}")
        return endpoint, bases[0]
    return None


def local_path(url: str) -> Optional[str]:
    """The local path of a file:// URL or a plain path; None for remote URLs."""
    if url.startswith("file://"):
        return url[len("file://"):]
    return url if url.startswith("/") or "://" not in url and os.path.isabs(url) else None
