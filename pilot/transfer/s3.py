"""The s3 copytool: object stores (Ceph RGW, MinIO, EOS, AWS) over the S3 REST API, signed with SigV4 (sigv4.py).

Plain HTTP through pilot/net.py (requests underneath, the pilot's own TLS trust: --cacert, --capath,
X509_CERT_DIR), no boto3: a pilot must run on a bare node. URLs are Pilot 3's
``s3://host:port//bucket/key`` (CRIC object-store protocols: endpoint ``s3://host:port``, path ``/bucket/...``);
``s3://`` is HTTPS unless the endpoint's CRIC settings say ``is_secure: false``; ``s3s://`` / ``s3+https://`` are
always HTTPS and ``s3+http://`` always plain HTTP (test and on-site stores). Keys: s3keys.py.

Verification, as for every copytool: an upload carries its MD5 (Content-MD5) and SHA-256 (signed payload hash), so
the store refuses a body damaged on the way; afterwards a HEAD must show the local size and MD5 (the ETag of a
single-part upload) and the adler32 the pilot stored as object metadata (``x-amz-meta-adler32``, the name Rucio's
S3 support reads); anything else removes the object and fails with the checksum code. A download is checked
against the catalogue (base.py) and against the object's stored size, MD5 and adler32.
Single PUT only: objects over 5 GB (S3's single-PUT limit) fail with 1124 rather than half-working multipart.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import time
import zlib
from typing import Dict, Optional, Tuple
from urllib.parse import urlsplit

from ..job import FileSpec
from ..masking import mask
from ..net import Client, NetError, TLSVerificationFailed, trust_from
from .base import TransferFailure, fired_stop
from .checksum import CHUNK, Digest, mismatch_code
from .cli import transfer_timeout
from .remote import RemoteCopytool
from .s3keys import Keys, find_keys
from .sigv4 import sign

log = logging.getLogger(__name__)

SINGLE_PUT_LIMIT = 5 * 1024 ** 3


class _Stopped(Exception):
    """Raised from inside a streaming body when the pilot aborts, the job is killed or time is up."""

    def __init__(self, code: int, diag: str):
        super().__init__(diag)
        self.code, self.diag = code, diag


class _Guarded:
    """A file object for requests' streaming upload that stops on abort/kill or past the deadline."""

    def __init__(self, path: str, ctx, job, deadline: float, code: int):
        self._handle = open(path, "rb")
        self._ctx, self._job, self._deadline, self._code = ctx, job, deadline, code
        self.len = os.fstat(self._handle.fileno()).st_size  # requests reads this for Content-Length

    def read(self, size: int = -1) -> bytes:
        _check(self._ctx, self._job, self._deadline, self._code)
        return self._handle.read(CHUNK if size is None or size < 0 else size)

    def close(self) -> None:
        self._handle.close()


def _check(ctx, job, deadline: float, timeout_code: int) -> None:
    """A download stops when the pilot or job is stopped; an upload (outputs, the log) goes on after an abort
    until its share of the abort grace is over (ctx.stageout_deadline), so the log still gets out."""
    if timeout_code == 1151:
        stop = fired_stop(ctx, job)
        if stop is not None:
            raise _Stopped(stop.code, "transfer interrupted: " + stop.reason)
    elif ctx.abort.is_set() and time.monotonic() > ctx.stageout_deadline():
        raise _Stopped(ctx.abort.code, f"stage-out stopped: {ctx.abort.reason}; no time left in the abort grace")
    if time.monotonic() > deadline:
        raise _Stopped(timeout_code, "transfer timed out")


def _stopped_in(exc: BaseException) -> Optional[_Stopped]:
    """The _Stopped a streaming body raised, if requests (and net.Client) wrapped it into their own error."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, _Stopped):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _net_failure(exc: BaseException, code: int, timeout_code: int, what: str) -> TransferFailure:
    """A transfer that got no usable answer (net.NetError from the request) or broke off while the body streamed
    (a requests error): stopped by the pilot, the server not trusted (for good), timed out, or failed."""
    stopped = _stopped_in(exc)
    if stopped is not None:
        return TransferFailure(stopped.code, f"{what}: {stopped.diag}", retry=False)
    if isinstance(exc, TLSVerificationFailed):
        return TransferFailure(code, f"{what}: {exc.message}; give its CA with --cacert or --capath", retry=False)
    import requests  # the request itself went through net.Client; the streamed body raises requests' errors

    if isinstance(exc, requests.Timeout) or getattr(exc, "timed_out", False):
        return TransferFailure(timeout_code, f"{what} timed out")
    text = exc.message if isinstance(exc, NetError) else f"{type(exc).__name__}: {mask(str(exc))[:200]}"
    return TransferFailure(code, f"{what}: {text}")


def local_sums(path: str, kind: str) -> Tuple[Digest, str, str]:
    """(digest of `kind`, md5 hex, sha256 hex) of a local file, in one read."""
    digest = Digest(kind)
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            md5.update(chunk)
            sha.update(chunk)
    return digest, md5.hexdigest(), sha.hexdigest()


class S3Copytool(RemoteCopytool):
    name = "s3"
    schemes = ("s3", "s3s", "s3+http", "s3+https")

    # --- addressing ---------------------------------------------------------------------------------------
    def _target(self, url: str, spec: FileSpec, ctx) -> Tuple[str, str, str, str, dict]:
        """(http base URL, host header, /bucket/key path, endpoint name, endpoint settings) for an s3 URL."""
        parts = urlsplit(url)
        endpoint = ctx.storage.get(spec.ddmendpoint) if spec.ddmendpoint else None
        settings = endpoint.settings() if endpoint is not None else {}
        if parts.scheme == "s3+http":
            http = "http"
        elif parts.scheme in ("s3s", "s3+https"):
            http = "https"
        else:
            secure = settings.get("is_secure", True)
            http = "http" if str(secure).lower() in ("false", "0", "no") else "https"
        path = "/" + "/".join(p for p in parts.path.split("/") if p)
        if path.count("/") < 2:
            raise TransferFailure(1313, f"s3 URL {url[:120]} names no bucket and key for {spec.lfn}", retry=False)
        host = parts.netloc.rsplit("@", 1)[-1]
        if (http, host.rsplit(":", 1)[-1]) in (("https", "443"), ("http", "80")):
            host = host.rsplit(":", 1)[0]
        return f"{http}://{host}", host, path, spec.ddmendpoint, settings

    def _request(self, method: str, url: str, spec: FileSpec, ctx, keys: Keys, region: str,
                 headers: Optional[Dict[str, str]] = None, payload_hash: str = "", body=None, stream=False,
                 timeout: float = 60.0):
        """One signed request through net.Client: the pilot's TLS trust (--cacert, --capath, X509_CERT_DIR),
        its error mapping (NetError, TLSVerificationFailed), a session closed once the answer is in (a streamed
        body still reads to its end, as with requests.request)."""
        base, host, path, _name, _settings = self._target(url, spec, ctx)
        extra = dict(headers or {})
        if keys.session_token:
            extra["x-amz-security-token"] = keys.session_token
        signed = sign(method, host, path, keys.access_key, keys.secret_key, region, extra,
                      payload_hash=payload_hash or hashlib.sha256(b"").hexdigest())
        from .sigv4 import canonical_uri

        with Client(trust_from(ctx), timeout=(min(30.0, timeout), timeout)) as client:
            return client.request(method, base + canonical_uri(path), headers=signed, data=body, stream=stream,
                                  allow_redirects=False)

    def _keys_region(self, url: str, spec: FileSpec, ctx) -> Tuple[Keys, str]:
        _base, _host, _path, name, settings = self._target(url, spec, ctx)
        keys = find_keys(ctx, name, settings)
        region = str(settings.get("region") or ctx.config.s3.region)
        return keys, region

    # --- transfers ----------------------------------------------------------------------------------------
    def _get(self, spec: FileSpec, dest: str, ctx, kind: str) -> Digest:
        import requests

        url = self.source_url(spec, ctx)
        spec.turl = url
        keys, region = self._keys_region(url, spec, ctx)
        timeout = transfer_timeout(ctx, spec.filesize)
        deadline = time.monotonic() + timeout
        digest, md5 = Digest(kind), hashlib.md5(usedforsecurity=False)
        try:
            reply = self._request("GET", url, spec, ctx, keys, region, stream=True, timeout=timeout)
            with reply:
                _raise_for(reply, "in", spec, url)
                with open(dest, "wb") as out:
                    for chunk in reply.iter_content(CHUNK):
                        _check(ctx, None, deadline, 1151)
                        digest.update(chunk)
                        md5.update(chunk)
                        out.write(chunk)
                stored = _stored_sums(reply.headers)
        except _Stopped as exc:
            raise TransferFailure(exc.code, f"stage-in of {spec.lfn}: {exc.diag}", retry=False) from None
        except (NetError, requests.RequestException) as exc:
            raise _net_failure(exc, 1099, 1151, f"stage-in of {spec.lfn} from {mask(url)}") from None
        if stored["size"] is not None and stored["size"] != digest.size:
            raise TransferFailure(1099, f"{spec.lfn}: got {digest.size} bytes, the object has {stored['size']}")
        if stored["md5"] and stored["md5"] != md5.hexdigest():
            raise TransferFailure(1145, f"md5 of {spec.lfn} is {md5.hexdigest()}, the object's ETag {stored['md5']}")
        if stored.get(kind) and stored[kind] != digest.hexdigest():
            raise TransferFailure(mismatch_code(kind, "in"), f"{kind} of {spec.lfn} is {digest.hexdigest()}, "
                                                             f"stored with the object {stored[kind]}")
        return digest

    def _put(self, spec: FileSpec, src: str, ctx, kind: str) -> str:
        import requests

        url = self.destination_url(spec, ctx)
        local, md5, sha = local_sums(src, kind)
        if local.size > SINGLE_PUT_LIMIT:
            raise TransferFailure(1124, f"{spec.lfn} is {local.size} bytes: over S3's 5 GB single-upload limit",
                                  retry=False)
        keys, region = self._keys_region(url, spec, ctx)
        adler = local.hexdigest() if kind == "adler32" else _adler32(src)
        headers = {"Content-MD5": base64.b64encode(bytes.fromhex(md5)).decode(), "Content-Length": str(local.size),
                   "x-amz-meta-adler32": adler, "x-amz-meta-md5": md5}
        timeout = transfer_timeout(ctx, local.size)
        deadline = time.monotonic() + timeout
        body = _Guarded(src, ctx, None, deadline, 1152)
        try:
            with self._request("PUT", url, spec, ctx, keys, region, headers, sha, body=body,
                               timeout=timeout) as reply:
                _raise_for(reply, "out", spec, url)
            with self._request("HEAD", url, spec, ctx, keys, region, timeout=60.0) as head:
                _raise_for(head, "out", spec, url)
                stored = _stored_sums(head.headers)
        except _Stopped as exc:
            raise TransferFailure(exc.code, f"stage-out of {spec.lfn}: {exc.diag}", retry=False) from None
        except (NetError, requests.RequestException) as exc:
            raise _net_failure(exc, 1137, 1152, f"stage-out of {spec.lfn} to {mask(url)}") from None
        finally:
            body.close()
        bad = _disagreement(stored, local.size, md5, adler)
        if bad:
            self._delete(url, spec, ctx, keys, region)
            raise TransferFailure(mismatch_code("md5" if "md5" in bad else "adler32", "out"),
                                  f"stored {spec.lfn} does not match the local file: {bad}")
        spec.filesize, spec.checksum, spec.turl = local.size, {kind: local.hexdigest()}, url
        return url

    def _delete(self, url: str, spec: FileSpec, ctx, keys: Keys, region: str) -> None:
        import requests

        try:
            with self._request("DELETE", url, spec, ctx, keys, region, timeout=60.0) as reply:
                if reply.status_code >= 300:
                    log.warning("could not remove bad object %s: HTTP %d", mask(url), reply.status_code)
        except (NetError, requests.RequestException) as exc:
            log.warning("could not remove bad object %s: %s", mask(url), type(exc).__name__)

    def exists(self, url: str, spec: FileSpec, ctx) -> bool:
        """HEAD of an object (direct access checks); TransferFailure for anything but found / not found."""
        keys, region = self._keys_region(url, spec, ctx)
        import requests

        try:
            with self._request("HEAD", url, spec, ctx, keys, region, timeout=30.0) as reply:
                if reply.status_code == 404:
                    return False
                _raise_for(reply, "in", spec, url)
                return True
        except (NetError, requests.RequestException) as exc:
            raise _net_failure(exc, 1099, 1099, f"cannot check {mask(url)}") from None


def _adler32(path: str) -> str:
    value = 1
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            value = zlib.adler32(chunk, value)
    return f"{value & 0xFFFFFFFF:08x}"


def _stored_sums(headers) -> Dict[str, Optional[object]]:
    etag = (headers.get("ETag") or "").strip('"').lower()
    length = headers.get("Content-Length")
    return {"size": int(length) if length and length.isdigit() else None,
            "md5": etag if len(etag) == 32 and "-" not in etag else "",
            "adler32": (headers.get("x-amz-meta-adler32") or "").lower(),
            "md5meta": (headers.get("x-amz-meta-md5") or "").lower()}


def _disagreement(stored, size: int, md5: str, adler: str) -> str:
    if stored["size"] is not None and stored["size"] != size:
        return f"size {stored['size']} != {size}"
    if stored["md5"] and stored["md5"] != md5:
        return f"md5 (ETag) {stored['md5']} != {md5}"
    if stored["adler32"] and stored["adler32"] != adler:
        return f"adler32 {stored['adler32']} != {adler}"
    return ""


def _raise_for(reply, direction: str, spec: FileSpec, url: str) -> None:
    status = reply.status_code
    if status < 300:
        return
    text = reply.text[:300]
    code = _s3_error_code(text)
    what = f"{'stage-in' if direction == 'in' else 'stage-out'} of {spec.lfn} ({mask(url)}): HTTP {status}"
    what += f" {code}" if code else ""
    if status == 404:
        raise TransferFailure(1331 if direction == "in" else 1137, what, retry=False)
    if status in (401, 403):
        raise TransferFailure(1338 if direction == "in" else 1383, what, retry=False)
    if code == "BadDigest":
        raise TransferFailure(mismatch_code("md5", direction), what)
    raise TransferFailure(1099 if direction == "in" else 1137, what)


def _s3_error_code(text: str) -> str:
    start = text.find("<Code>")
    end = text.find("</Code>", start)
    return text[start + 6:end] if start >= 0 and end > start else ""
