"""AWS Signature Version 4 for S3 requests, with the standard library only (hmac + hashlib).

The pilot may not depend on boto3 at run time, and an S3 request needs nothing more than this: a canonical form
of the request, hashed and signed with a key derived from the secret, the day, the region and the service.
Path-style addressing (https://host/bucket/key), which every S3-compatible store (Ceph RGW, MinIO, EOS S3) takes.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from typing import Dict, Mapping, Optional
from urllib.parse import quote

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED = "UNSIGNED-PAYLOAD"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret: str, day: str, region: str, service: str = "s3") -> bytes:
    key = _hmac(("AWS4" + secret).encode(), day)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def canonical_uri(path: str) -> str:
    """S3 encodes each path segment once (RFC 3986 unreserved kept), slashes kept."""
    return quote(path or "/", safe="/-_.~")


def canonical_query(params: Optional[Mapping[str, str]]) -> str:
    if not params:
        return ""
    return "&".join(f"{quote(str(k), safe='-_.~')}={quote(str(v), safe='-_.~')}"
                    for k, v in sorted(params.items()))


def sign(method: str, host: str, path: str, access_key: str, secret_key: str, region: str,
         headers: Optional[Dict[str, str]] = None, params: Optional[Mapping[str, str]] = None,
         payload_hash: str = EMPTY_SHA256, now: Optional[datetime.datetime] = None) -> Dict[str, str]:
    """The headers to send (the given ones plus host, x-amz-date, x-amz-content-sha256 and Authorization).

    `host` is exactly what the Host header will carry (with :port when not the scheme's default);
    `payload_hash` is the body's hex sha256, or UNSIGNED-PAYLOAD.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    out = {k: str(v).strip() for k, v in (headers or {}).items()}
    out["host"] = host
    out["x-amz-date"] = amz_date
    out["x-amz-content-sha256"] = payload_hash
    lowered = {k.lower(): " ".join(v.split()) for k, v in out.items()}
    names = sorted(lowered)
    canonical = "\n".join([
        method.upper(), canonical_uri(path), canonical_query(params),
        "".join(f"{name}:{lowered[name]}\n" for name in names), ";".join(names), payload_hash,
    ])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signature = hmac.new(signing_key(secret_key, day, region), to_sign.encode(), hashlib.sha256).hexdigest()
    out["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={';'.join(names)}, "
                            f"Signature={signature}")
    return out
