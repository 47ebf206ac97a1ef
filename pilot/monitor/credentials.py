"""Keep the pilot's credentials alive while jobs run: the OIDC token and the X509 proxy, renewed through the
PanDA server (panda-server 1.0.x: GET /api/v1/creds/get_access_token and /api/v1/creds/get_proxy).

Pilot 3 refreshes its token every [Token] download_check s (3600) and downloads a proxy with `getProxy` when the
running-proxy check fails. Here one thread does both, waking when the earlier of them is due: the token on its
period, or sooner when its `exp` is closer than [Token] renew_before; the proxy when it has less than
[Pilot] proxy_renew_before left. A renewal is accepted only if it is better than what the pilot has (a token that
decodes and lives longer, a proxy whose chain parses and outlives the current one), and it replaces the file
atomically with mode 0600, so a request in flight reads either the old or the new credential, never half of one.
The PanDA channel reads the token file for every request, so the next request carries the new token.
Nothing here logs a token or a proxy: only lifetimes, sizes and the server's message.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any, Dict, Optional

from ..threads import GuardedThread
from .proxy import proxy_path, remaining_seconds

log = logging.getLogger(__name__)

RETRY_AFTER_FAILURE = 300.0  # the server said no, or did not answer: ask again in 5 minutes (or sooner if due)


def jwt_claims(token: str) -> Dict[str, Any]:
    """The payload of a JWT, decoded WITHOUT verifying the signature (only for its exp/iat); ValueError if it is
    not one."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise ValueError("not a JWT (expected three dot-separated parts)")
    body = parts[1] + "=" * (-len(parts[1]) % 4)
    import base64  # here: a pilot without a token never decodes one

    try:
        claims = json.loads(base64.urlsafe_b64decode(body.encode("ascii")))
    except (ValueError, UnicodeError) as exc:
        raise ValueError(f"JWT payload does not decode: {type(exc).__name__}") from None
    if not isinstance(claims, dict):
        raise ValueError("JWT payload is not an object")
    return claims


def token_expiry(token: str) -> Optional[float]:
    """The token's `exp` (epoch), None when it has none; ValueError when it is not a JWT."""
    exp = jwt_claims(token).get("exp")
    return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


def token_file_expiry(path: str) -> Optional[float]:
    with open(path, encoding="utf-8") as handle:
        return token_expiry(handle.read(1 << 20))


def write_secret(path: str, content: str) -> None:
    """Replace `path` with `content` atomically, readable by the owner only."""
    folder = os.path.dirname(os.path.abspath(path))
    import tempfile  # lazily: only renewals write files (2.5 MB of RSS at every start otherwise)

    fd, temp = tempfile.mkstemp(prefix=".renew-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def _token_key() -> str:
    """Pilot 3's PANDA_AUTH_TOKEN_KEY: a file (relative to the token dir) holding the key for get_access_token."""
    name = os.environ.get("PANDA_AUTH_TOKEN_KEY", "")
    if not name:
        return ""
    folder = os.environ.get("OIDC_AUTH_DIR") or os.environ.get("PANDA_AUTH_DIR") or os.getcwd()
    path = name if os.path.isabs(name) else os.path.join(folder, name)
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read(4096).strip()
    except OSError as exc:
        log.warning("token key file %s not readable: %s", path, exc.strerror)
        return ""


class CredentialRenewer(GuardedThread):
    """One thread renewing the token and/or the proxy through `channel.fetch_credential(method, params)`.

    A bug in it is logged with its traceback (GuardedThread) but stops no job: without renewal the pilot goes on
    with the credentials it has, as with -y, and a refused one ends it with 1163 when it happens.
    """

    def __init__(self, ctx, channel, token_file: Optional[str], proxy_file: Optional[str]):
        super().__init__("credentials")
        self.ctx = ctx
        self.channel = channel
        self.token_file = token_file
        self.proxy_file = proxy_file
        self._halt = threading.Event()
        now = time.monotonic()
        self._token_next = now  # look at once: a token may start with little left
        self._proxy_next = now
        self.renewed = {"token": 0, "proxy": 0}

    def stop(self) -> None:
        self._halt.set()

    def work(self) -> None:
        while not self._halt.is_set():
            now = time.monotonic()
            if self.token_file and now >= self._token_next:
                self._token_next = now + self._token_step()
            if self.proxy_file and now >= self._proxy_next:
                self._proxy_next = now + self._proxy_step()
            dues = [due for due, on in ((self._token_next, self.token_file), (self._proxy_next, self.proxy_file))
                    if on]
            if not dues:
                return
            self._halt.wait(max(0.5, min(dues) - time.monotonic()))

    # --- the token ----------------------------------------------------------------------------------------
    def _token_step(self) -> float:
        """Renew the token if due; seconds until the next look."""
        cfg = self.ctx.config.token
        try:
            expiry = token_file_expiry(self.token_file)
        except (OSError, ValueError) as exc:
            log.warning("token %s: cannot read its lifetime (%s): renewing it", self.token_file, exc)
            expiry = None
        left = expiry - time.time() if expiry else None
        last = getattr(self, "_token_renewed_at", None)
        due = left is None or left < cfg.renew_before or last is None or time.monotonic() - last >= cfg.download_check
        if not due:
            return self._token_wait(left)
        if self._renew_token(left):
            self._token_renewed_at = time.monotonic()
            try:
                left = token_file_expiry(self.token_file) - time.time()
            except (OSError, ValueError, TypeError):
                left = None
            return self._token_wait(left)
        return min(RETRY_AFTER_FAILURE, max(5.0, (left or 0) / 4)) if left and left > 0 else RETRY_AFTER_FAILURE

    def _token_wait(self, left: Optional[float]) -> float:
        cfg = self.ctx.config.token
        wait = float(cfg.download_check)
        if left is not None:
            wait = min(wait, max(1.0, left - cfg.renew_before))
        return wait

    def _renew_token(self, left: Optional[float]) -> bool:
        cfg = self.ctx.config.token
        params = {"client_name": cfg.client_name}
        key = _token_key()
        if key:
            params["token_key"] = key
        new, why = self.channel.fetch_credential("get_access_token", params)
        if new is None:
            log.warning("token renewal through %s failed: %s", self.channel.base, why)
            return False
        try:
            expiry = token_expiry(new)
        except ValueError as exc:
            log.warning("token renewal: the server's answer is not a token (%s): kept the current one", exc)
            return False
        new_left = expiry - time.time() if expiry else None
        if new_left is not None and new_left <= 0:
            log.warning("token renewal: the server's token expired %.0f s ago: kept the current one", -new_left)
            return False
        if left is not None and new_left is not None and new_left <= left:
            log.info("token renewal: the server's token lives %.0f s, not longer than ours (%.0f s): kept ours",
                     new_left, left)
            return False
        try:
            write_secret(self.token_file, new.strip())
        except OSError as exc:
            log.warning("token renewal: cannot replace %s: %s: kept the current one", self.token_file, exc.strerror)
            return False
        self.renewed["token"] += 1
        log.info("token %s renewed through %s: %s left", self.token_file, self.channel.base,
                 f"{new_left:.0f} s" if new_left is not None else "no exp claim")
        return True

    # --- the proxy ----------------------------------------------------------------------------------------
    def _proxy_step(self) -> float:
        cfg = self.ctx.config.pilot
        try:
            left = remaining_seconds(self.proxy_file)
        except (OSError, ValueError, IndexError) as exc:
            log.warning("X509 proxy %s: cannot read its lifetime (%s): renewing it", self.proxy_file, exc)
            left = None
        if left is not None and left >= cfg.proxy_renew_before:
            return max(1.0, min(float(cfg.proxy_verification_time), left - cfg.proxy_renew_before))
        if self._renew_proxy(left):
            return float(cfg.proxy_verification_time)
        return RETRY_AFTER_FAILURE

    def _renew_proxy(self, left: Optional[float]) -> bool:
        role = self.ctx.config.pilot.proxy_role
        new, why = self.channel.fetch_credential("get_proxy", {"role": role} if role else {})
        if new is None:
            log.warning("X509 proxy renewal through %s failed: %s", self.channel.base, why)
            return False
        folder = os.path.dirname(os.path.abspath(self.proxy_file))
        try:
            import tempfile

            fd, probe = tempfile.mkstemp(prefix=".probe-", dir=folder)
        except OSError as exc:
            log.warning("X509 proxy renewal: cannot write in %s: %s", folder, exc.strerror)
            return False
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(new)
            new_left = remaining_seconds(probe)
        except (OSError, ValueError, IndexError) as exc:
            log.warning("X509 proxy renewal: the server's answer is not a usable proxy (%s): kept the current one",
                        exc)
            return False
        finally:
            os.unlink(probe)
        if new_left <= 0 or (left is not None and new_left <= left):
            log.warning("X509 proxy renewal: the server's proxy has %.0f s left, ours %s: kept ours", new_left,
                        f"{left:.0f} s" if left is not None else "unknown")
            return False
        try:
            write_secret(self.proxy_file, new)
        except OSError as exc:
            log.warning("X509 proxy renewal: cannot replace %s: %s: kept the current one", self.proxy_file,
                        exc.strerror)
            return False
        self.renewed["proxy"] += 1
        log.info("X509 proxy %s renewed through %s: %.1f h left", self.proxy_file, self.channel.base, new_left / 3600)
        return True


def start_renewal(ctx, channel) -> Optional[CredentialRenewer]:
    """The renewal thread (started) when the channel can fetch credentials and there is something to renew."""
    if not hasattr(channel, "fetch_credential"):
        return None
    token_file = getattr(channel, "token_file", None)
    catchall = (ctx.queuedata.catchall or "").lower()
    if token_file and (not ctx.settings.token_renewal or "no_token_renewal" in catchall):
        log.info("token renewal off (%s)", "-y" if not ctx.settings.token_renewal else "queue catchall")
        token_file = None
    proxy_file: Optional[str] = None
    path = proxy_path()
    if ctx.config.pilot.proxy_renew_before > 0 and os.path.isfile(path):
        proxy_file = path
    if not token_file and not proxy_file:
        return None
    renewer = CredentialRenewer(ctx, channel, token_file, proxy_file)
    renewer.start()
    return renewer
