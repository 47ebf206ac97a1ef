"""Token and proxy renewal logic against a fake channel; JWT lifetime decoding; atomic 0600 replacement."""

import base64
import json
import os
import stat
import time
from types import SimpleNamespace

import pytest

from pilot.monitor import credentials as cred
from tests.unit.test_proxy import make_cert


def jwt(**claims):
    def b64(data):
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'RS256', 'typ': 'JWT'})}.{b64(claims)}.c2lnbmF0dXJl"


def test_jwt_lifetime_decoded_without_verifying():
    exp = int(time.time()) + 3600
    assert cred.token_expiry(jwt(exp=exp, sub="x")) == exp
    assert cred.token_expiry(jwt(sub="x")) is None
    for bad in ("not-a-token", "a.b", "a.!!!.c", f"x.{base64.urlsafe_b64encode(b'[1]').decode()}.y"):
        with pytest.raises(ValueError):
            cred.token_expiry(bad)


def test_write_secret_is_atomic_and_private(tmp_path):
    path = tmp_path / "token"
    path.write_text("old")
    os.chmod(path, 0o644)
    cred.write_secret(str(path), "new")
    assert path.read_text() == "new" and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(tmp_path) == ["token"]  # no temporary file left behind


class FakeChannel:
    base = "http://server"

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = []

    def fetch_credential(self, method, params):
        self.calls.append((method, params))
        return self.answers.pop(0) if self.answers else (None, "nothing more")


def ctx(renew_before=1800, download_check=3600, proxy_renew_before=3600, role=""):
    config = SimpleNamespace(token=SimpleNamespace(renew_before=renew_before, download_check=download_check,
                                                   client_name="pilot_server"),
                             pilot=SimpleNamespace(proxy_renew_before=proxy_renew_before, proxy_role=role,
                                                   proxy_verification_time=600))
    return SimpleNamespace(config=config)


def test_short_token_renewed_and_written(tmp_path, monkeypatch):
    monkeypatch.delenv("PANDA_AUTH_TOKEN_KEY", raising=False)
    path = tmp_path / "token"
    path.write_text(jwt(exp=int(time.time()) + 60))
    fresh = jwt(exp=int(time.time()) + 7200)
    channel = FakeChannel([(fresh, "")])
    renewer = cred.CredentialRenewer(ctx(), channel, str(path), None)
    wait = renewer._token_step()
    assert path.read_text() == fresh and renewer.renewed["token"] == 1
    assert channel.calls == [("get_access_token", {"client_name": "pilot_server"})]
    assert wait == 3600  # next look: download_check (the new token has 2 h, renew_before is 30 min)


def test_token_key_sent_when_configured(tmp_path, monkeypatch):
    (tmp_path / "key").write_text("secret-key\n")
    monkeypatch.setenv("PANDA_AUTH_TOKEN_KEY", "key")
    monkeypatch.setenv("OIDC_AUTH_DIR", str(tmp_path))
    path = tmp_path / "token"
    path.write_text(jwt(exp=int(time.time()) + 60))
    channel = FakeChannel([(jwt(exp=int(time.time()) + 7200), "")])
    cred.CredentialRenewer(ctx(), channel, str(path), None)._token_step()
    assert channel.calls[0][1] == {"client_name": "pilot_server", "token_key": "secret-key"}


@pytest.mark.parametrize("answer", [(None, "'token' not found"), ("garbage", ""), (jwt(exp=1), "")])
def test_bad_or_missing_renewal_keeps_the_token(tmp_path, answer, monkeypatch):
    monkeypatch.delenv("PANDA_AUTH_TOKEN_KEY", raising=False)
    path = tmp_path / "token"
    current = jwt(exp=int(time.time()) + 600)
    path.write_text(current)
    renewer = cred.CredentialRenewer(ctx(), FakeChannel([answer]), str(path), None)
    wait = renewer._token_step()
    assert path.read_text() == current and renewer.renewed["token"] == 0
    assert 5 <= wait <= cred.RETRY_AFTER_FAILURE


def test_token_with_time_left_waits_for_its_period(tmp_path):
    path = tmp_path / "token"
    path.write_text(jwt(exp=int(time.time()) + 86400))
    channel = FakeChannel([(jwt(exp=int(time.time()) + 2 * 86400), "")])
    renewer = cred.CredentialRenewer(ctx(), channel, str(path), None)
    renewer._token_step()  # first look: Pilot 3 refreshes at start
    assert len(channel.calls) == 1
    assert renewer._token_step() == 3600 and len(channel.calls) == 1  # not again before download_check


def test_proxy_renewed_only_when_short_and_only_with_a_longer_one(tmp_path):
    proxy = tmp_path / "x509up"
    make_cert(proxy, 1800)
    longer = make_cert(tmp_path / "longer", 86400)
    shorter = make_cert(tmp_path / "shorter", 600)
    channel = FakeChannel([(open(shorter).read(), ""), (open(longer).read(), "")])
    renewer = cred.CredentialRenewer(ctx(role="production"), channel, None, str(proxy))
    before = proxy.read_text()
    assert renewer._proxy_step() == cred.RETRY_AFTER_FAILURE and proxy.read_text() == before
    assert renewer._proxy_step() == 600 and proxy.read_text() == open(longer).read()
    assert channel.calls == [("get_proxy", {"role": "production"})] * 2
    assert stat.S_IMODE(os.stat(proxy).st_mode) == 0o600
    assert renewer._proxy_step() == 600 and len(channel.calls) == 2  # a day left: nothing to do
    assert sorted(os.listdir(tmp_path)) == ["longer", "shorter", "x509up"]


def test_thread_stops_at_once(tmp_path):
    path = tmp_path / "token"
    path.write_text(jwt(exp=int(time.time()) + 86400))
    renewer = cred.CredentialRenewer(ctx(), FakeChannel([]), str(path), None)
    renewer.start()
    time.sleep(0.2)
    started = time.monotonic()
    renewer.stop()
    renewer.join(5)
    assert not renewer.is_alive() and time.monotonic() - started < 1
