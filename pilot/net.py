"""HTTP for the whole pilot: which servers to trust, which credential to show, JSON documents, downloads, retries.

Every module that speaks HTTP (queue data, storage data, sandbox and transformation downloads, Rucio traces, the
PanDA and PiCaS channels, --check) goes through here, so TLS trust and credentials are decided once:

* trust: `--cacert FILE`, else `--capath DIR`, else `$X509_CERT_DIR`, else the system CAs. Verification cannot be
  switched off. verify/cert are passed with every request: requests lets $REQUESTS_CA_BUNDLE / $CURL_CA_BUNDLE
  override a session's own setting, which would silently trust another bundle than the one asked for.
* credential: an X509 proxy (`$X509_USER_PROXY`, else /tmp/x509up_u<uid>) as client certificate where a server
  wants one (PanDA); bearer tokens are headers of the caller (PanDA's token file, which can change while a job
  runs, is read per request by the channel).
* one retry policy (`with_retries`): transient failures -- no connection, timeouts, HTTP 5xx, 408, 429 -- are
  retried with capped exponential back-off and jitter; anything else, 401/403 above all, is not.

`requests` is imported at the first request, never at import: start-up cost matters, and a pilot on the local
channel never loads it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, TypeVar, Union

from .errors import PilotError
from .records import FrozenRecord, frozen_record

log = logging.getLogger(__name__)

T = TypeVar("T")
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
Timeout = Union[float, Tuple[float, float]]


def requests_module():
    import requests  # lazily: see the module docstring

    return requests


@frozen_record
class Trust(FrozenRecord):
    """What a TLS connection trusts and shows: `verify` is True (system CAs), a CA file or a CA directory;
    `cert` the client certificate and key (an X509 proxy holds both)."""

    verify: Union[bool, str] = True
    cert: Optional[Tuple[str, str]] = None

    @property
    def where(self) -> str:
        return "system CAs" if self.verify is True else str(self.verify)


def trust(cacert: Optional[str] = "", capath: Optional[str] = "", proxy: Optional[str] = None) -> Trust:
    """Trust from the command line's --cacert/--capath (then $X509_CERT_DIR); `proxy` a client certificate path
    ("" for the default proxy location, None for no client certificate). Missing files are not an error here:
    the system CAs are used and a TLS failure says which server could not be verified."""
    capath = capath or os.environ.get("X509_CERT_DIR", "")
    verify: Union[bool, str] = True
    if cacert and os.path.isfile(cacert):
        verify = cacert
    elif capath and os.path.isdir(capath):
        verify = capath
    cert = None
    if proxy is not None:
        from .monitor.proxy import proxy_path

        path = proxy or proxy_path()
        if os.path.isfile(path):
            cert = (path, path)
    return Trust(verify, cert)


def trust_from(ctx, client_cert: bool = False) -> Trust:
    """The pilot's trust: its settings' --cacert/--capath; with `client_cert`, the X509 proxy too."""
    settings = getattr(ctx, "settings", None)
    return trust(getattr(settings, "cacert", "") or "", getattr(settings, "capath", "") or "",
                 "" if client_cert else None)


class NetError(Exception):
    """A request without a usable answer. `status` is the HTTP status (None: no answer at all); `transient` says
    whether asking again later may help; `timed_out` that the answer did not come in time (a transfer has its own
    code for that)."""

    def __init__(self, message: str, status: Optional[int] = None, transient: bool = True, timed_out: bool = False):
        super().__init__(message)
        self.message = message
        self.status = status
        self.transient = transient
        self.timed_out = timed_out


class TLSVerificationFailed(NetError):
    """The server's certificate did not verify against the pilot's trust (--cacert, --capath, X509_CERT_DIR or
    the system CAs), or names another host: asking again with the same trust cannot help."""

    def __init__(self, message: str):
        super().__init__(message, None, transient=False)


def _certificate_refusal(exc: BaseException) -> Optional[str]:
    """Why the server's certificate was refused, if that is what a requests failure is (an
    ssl.SSLCertVerificationError somewhere in its chain); None for any other TLS failure, e.g. a handshake the
    network cut short, which is worth another try."""
    import ssl

    seen = 0
    pending = [exc]
    while pending and seen < 20:
        item = pending.pop()
        seen += 1
        if isinstance(item, ssl.SSLCertVerificationError):
            return str(item.verify_message or item.reason or "certificate verify failed")
        pending.extend(arg for arg in getattr(item, "args", ()) if isinstance(arg, BaseException))
        pending.extend(link for link in (item.__cause__, item.__context__, getattr(item, "reason", None))
                       if isinstance(link, BaseException))
    return "certificate verify failed" if "CERTIFICATE_VERIFY_FAILED" in str(exc) else None


class Client:
    """A session with one trust, default headers and timeouts. Not shared between threads that send at once."""

    def __init__(self, trust_: Optional[Trust] = None, timeout: Timeout = (30.0, 300.0),
                 headers: Optional[Mapping[str, str]] = None, auth: Optional[Tuple[str, str]] = None):
        self.trust = trust_ or Trust()
        self.timeout = timeout
        self.headers = dict(headers or {})
        self.auth = auth
        self._session = None
        self.sent = 0

    @property
    def session(self):
        if self._session is None:
            self._session = requests_module().Session()
            self._session.headers.update(self.headers)
            self._session.auth = self.auth
        return self._session

    def request(self, method: str, url: str, *, check: bool = False, timeout: Optional[Timeout] = None, **kwargs):
        """One request; the response (any status), or NetError(transient) when none came. With `check`, a
        non-2xx status is a NetError too (transient for 5xx/408/429)."""
        requests = requests_module()
        self.sent += 1
        try:
            response = self.session.request(method, url, timeout=timeout or self.timeout, verify=self.trust.verify,
                                            cert=self.trust.cert, **kwargs)
        except requests.RequestException as exc:
            why = _certificate_refusal(exc) if isinstance(exc, requests.exceptions.SSLError) else None
            if why:
                raise TLSVerificationFailed(f"TLS certificate verification failed ({why}), trusting "
                                            f"{self.trust.where}") from None
            raise NetError(_describe(exc), timed_out=isinstance(exc, requests.Timeout)) from None
        if check and not 200 <= response.status_code < 300:
            raise NetError(f"HTTP {response.status_code} {response.reason or ''}".strip(), response.status_code,
                           response.status_code in TRANSIENT_STATUS)
        return response

    def get(self, url: str, **kwargs):
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs):
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _describe(exc: Exception) -> str:
    """A short, secret-free line for a requests exception (the URL is the caller's to show, masked)."""
    from .masking import mask

    text = str(exc)
    if "token" in text.lower() or "authorization" in text.lower():
        return type(exc).__name__
    return f"{type(exc).__name__}: {mask(text)[:300]}"


def with_retries(call: Callable[[], T], what: str, attempts: int = 3, initial: float = 1.0, maximum: float = 30.0,
                 wait: Optional[Callable[[float], Any]] = None) -> T:
    """call() until it returns, at most `attempts` times, waiting with back-off between transient NetErrors; the
    last NetError (or a non-transient one at once) is raised."""
    from .backoff import backoff_delays

    delays = backoff_delays(initial, maximum)
    for attempt in range(1, max(1, attempts) + 1):
        try:
            return call()
        except NetError as exc:
            if not exc.transient or attempt >= attempts:
                raise
            pause = next(delays)
            log.warning("%s: attempt %d/%d failed (%s), again in %.1f s", what, attempt, attempts, exc.message, pause)
            (wait or time.sleep)(pause)
    raise AssertionError("unreachable")  # pragma: no cover


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def local_path(source: str) -> str:
    return source[len("file://"):] if source.startswith("file://") else source


def get_json(source: str, what: str, code: int, bad_code: Optional[int] = None, timeout: Timeout = 30.0,
             attempts: int = 3, trust_: Optional[Trust] = None, shown: Optional[str] = None) -> Any:
    """A JSON document from a file (path or file://) or an http(s) URL, with the retry policy for URLs.

    PilotError(code) if it cannot be read or downloaded, PilotError(bad_code or code) if it is not JSON.
    `shown` is how the source appears in messages (default: the source itself).
    """
    shown = shown or source
    if is_url(source):
        with Client(trust_, timeout) as client:
            try:
                response = with_retries(lambda: client.get(source, check=True), f"download of {what}", attempts)
            except NetError as exc:
                raise PilotError(code, f"cannot download {what} from {shown}: {exc.message}") from None
            text = response.text
    else:
        path = local_path(source)
        try:
            with open(path, "rb") as handle:
                text = handle.read().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PilotError(code, f"cannot read {what} file {path}: {exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise PilotError(bad_code or code, f"{what} from {shown} is not valid JSON: {exc}") from None


def download(url: str, dest: str, code: int, what: str, limit_bytes: int = 0, timeout: Timeout = (30.0, 300.0),
             attempts: int = 1, trust_: Optional[Trust] = None, shown: Optional[str] = None,
             headers: Optional[Dict[str, str]] = None) -> int:
    """Stream `url` into `dest` (at most `limit_bytes` if > 0); the size. PilotError(code) on any failure, with a
    partial file removed."""
    shown = shown or url

    def once() -> int:
        with Client(trust_, timeout, headers) as client:
            response = client.get(url, check=True, stream=True)
            size = 0
            try:
                with open(dest, "wb") as handle:
                    for chunk in response.iter_content(1 << 20):
                        size += len(chunk)
                        if limit_bytes and size > limit_bytes:
                            raise PilotError(code, f"{what} {shown} is larger than {limit_bytes // (1 << 20)} MB")
                        handle.write(chunk)
            except requests_module().RequestException as exc:
                raise NetError(_describe(exc)) from None
            finally:
                response.close()
            return size

    try:
        return with_retries(once, f"download of {what}", attempts)
    except NetError as exc:
        _remove(dest)
        raise PilotError(code, f"cannot download {what} {shown}: {exc.message}") from None
    except PilotError:
        _remove(dest)
        raise
    except OSError as exc:
        _remove(dest)
        raise PilotError(code, f"cannot write {what} to {dest}: {exc.strerror or exc}") from None


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
