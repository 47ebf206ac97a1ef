"""X.509 proxy lifetime with the standard library only (no openssl binary, no `cryptography`).

The effective lifetime of a proxy file is the earliest notAfter of every certificate in it (the proxy chain),
and of the VOMS attribute certificate when there is one. Codes: no readable proxy 1163, expired 1373, shorter
than required 1382 at start-up (exit 80), about to expire while a job runs 1370.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, List, Optional, Tuple

if TYPE_CHECKING:  # datetime and base64 are imported where a proxy is read: a pilot without one never needs them
    from datetime import datetime

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)
_VOMS_AC_OID = bytes([0x06, 0x0A, 0x2B, 0x06, 0x01, 0x04, 0x01, 0xBE, 0x45, 0x64, 0x64, 0x05])


def proxy_path() -> str:
    return os.environ.get("X509_USER_PROXY") or f"/tmp/x509up_u{os.getuid()}"


def _tlv(der: bytes, pos: int) -> Tuple[int, int, int]:
    """(tag, start of value, end of value) of the DER element at `pos`."""
    tag, length = der[pos], der[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(der[pos:pos + count], "big")
        pos += count
    if pos + length > len(der):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _items(der: bytes, start: int, end: int) -> List[Tuple[int, int, int]]:
    items, pos = [], start
    while pos < end:
        item = _tlv(der, pos)
        items.append(item)
        pos = item[2]
    return items


def _time(der: bytes, tag: int, start: int, end: int) -> datetime:
    text = der[start:end].decode("ascii")
    if tag == 0x17:  # UTCTime: two-digit year
        text = ("19" if int(text[:2]) >= 50 else "20") + text
    from datetime import datetime, timezone

    return datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)


def not_after(der: bytes) -> datetime:
    _tag, start, end = _tlv(der, 0)  # Certificate
    _tag, tbs_start, tbs_end = _tlv(der, start)  # TBSCertificate
    fields = _items(der, tbs_start, tbs_end)
    offset = 1 if fields[0][0] == 0xA0 else 0  # optional [0] version
    validity = fields[offset + 3]  # serialNumber, signature, issuer, validity
    _before, after = _items(der, validity[1], validity[2])
    return _time(der, *after)


def _voms_end(der: bytes) -> Optional[datetime]:
    """End of the VOMS AC validity: the first SEQUENCE of two GeneralizedTimes after the AC extension OID."""
    at = der.find(_VOMS_AC_OID)
    if at < 0:
        return None
    for pos in range(at, len(der) - 40):
        if der[pos] == 0x30 and der[pos + 2] == 0x18:
            try:
                _tag, start, end = _tlv(der, pos)
                parts = _items(der, start, end)
            except (ValueError, IndexError):
                continue
            if len(parts) == 2 and all(part[0] == 0x18 for part in parts):
                return _time(der, *parts[1])
    return None


def remaining_seconds(path: str, now: Optional[datetime] = None) -> float:
    """Seconds until the proxy in `path` expires (negative if it has); ValueError if it holds no certificate."""
    import base64
    from datetime import datetime, timezone

    with open(path, "rb") as handle:
        blocks = _PEM.findall(handle.read())
    if not blocks:
        raise ValueError(f"{path} holds no PEM certificate")
    ends = []
    for block in blocks:
        der = base64.b64decode(b"".join(block.split()))
        ends.append(not_after(der))
        voms = _voms_end(der)
        if voms:
            ends.append(voms)
    now = now or datetime.now(timezone.utc)
    return (min(ends) - now).total_seconds()


def check_proxy(path: str, minimum: float, short_code: int) -> Optional[Tuple[int, str]]:
    """(code, diag) if the proxy is missing, unreadable, expired or shorter than `minimum` seconds."""
    try:
        left = remaining_seconds(path)
    except (OSError, ValueError, IndexError) as exc:
        return 1163, f"X509 proxy {path} is not usable: {exc}"
    if left <= 0:
        return 1373, f"X509 proxy {path} expired {-left:.0f} s ago"
    if left < minimum:
        return short_code, f"X509 proxy {path} has {left:.0f} s left (< {minimum:.0f} s required)"
    return None
