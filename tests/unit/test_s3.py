"""SigV4 signing against AWS's published example, key sources, and the stored-object verification rule."""

import datetime
import types

import pytest

from pilot.config import load_config
from pilot.transfer.base import TransferFailure
from pilot.transfer.s3 import _disagreement, _stored_sums
from pilot.transfer.s3keys import find_keys
from pilot.transfer.sigv4 import EMPTY_SHA256, sign
from tests.unit.helpers import TlsServer


def test_sigv4_matches_the_aws_documentation_example():
    # "Example: GET Object" of the AWS S3 SigV4 documentation (header-based authentication)
    headers = sign("GET", "examplebucket.s3.amazonaws.com", "/test.txt", "AKIAIOSFODNN7EXAMPLE",
                   "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1", {"Range": "bytes=0-9"},
                   payload_hash=EMPTY_SHA256, now=datetime.datetime(2013, 5, 24, tzinfo=datetime.timezone.utc))
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    assert headers["x-amz-date"] == "20130524T000000Z"


def ctx(env=None):
    return types.SimpleNamespace(config=load_config(env=env or {}))


def test_key_sources_in_order(tmp_path):
    keys = tmp_path / "keys.json"
    keys.write_text('{"EP": {"access_key": "A1", "secret_key": "S1"}, "name": "A2", "name.pub": "S2"}')
    env = {"S3_ACCESS_KEY": "A3", "S3_SECRET_KEY": "S3", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}
    with_file = ctx({"PILOT_CFG_S3_KEYS_FILE": str(keys)})
    assert find_keys(with_file, "EP", {}, env).access_key == "A1"
    assert find_keys(with_file, "OTHER", {"access_key": "name", "secret_key": "name.pub"}, env).secret_key == "S2"
    assert find_keys(with_file, "OTHER", {}, env).access_key == "A3"
    assert find_keys(ctx(), "EP", {}, {"AWS_ACCESS_KEY_ID": "A4", "AWS_SECRET_ACCESS_KEY": "S4",
                                       "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}).access_key == "A4"
    creds = tmp_path / "credentials"
    creds.write_text("[default]\naws_access_key_id = A5\naws_secret_access_key = S5\n")
    found = find_keys(ctx(), "EP", {}, {"AWS_SHARED_CREDENTIALS_FILE": str(creds)})
    assert found.access_key == "A5" and "S5" not in repr(found)
    with pytest.raises(TransferFailure) as err:
        find_keys(ctx(), "EP", {}, {"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"})
    assert err.value.code == 1364
    (tmp_path / "bad.json").write_text("[1]")
    with pytest.raises(TransferFailure) as err:
        find_keys(ctx({"PILOT_CFG_S3_KEYS_FILE": str(tmp_path / "bad.json")}), "EP", {}, {})
    assert err.value.code == 1364


def test_stored_object_must_match_size_md5_and_adler32():
    md5 = "0" * 32
    ok = _stored_sums({"ETag": f'"{md5}"', "Content-Length": "5", "x-amz-meta-adler32": "0000000a"})
    assert _disagreement(ok, 5, md5, "0000000a") == ""
    assert "size" in _disagreement(ok, 6, md5, "0000000a")
    assert "md5" in _disagreement(ok, 5, "1" * 32, "0000000a")
    assert "adler32" in _disagreement(ok, 5, md5, "0000000b")
    multipart = _stored_sums({"ETag": '"abc-3"', "Content-Length": "5"})
    assert _disagreement(multipart, 5, md5, "0000000a") == ""  # a multipart ETag is not an MD5


def test_s3_trusts_what_the_pilot_trusts(tmp_path, monkeypatch):
    """S3 requests go through net.Client: a store whose certificate the pilot's trust does not verify fails at
    once (not retried), and --cacert with the store's CA makes the same request go through."""
    from pilot.job import FileSpec
    from pilot.settings import Settings
    from pilot.transfer.s3 import S3Copytool

    monkeypatch.delenv("X509_CERT_DIR", raising=False)
    monkeypatch.setenv("S3_ACCESS_KEY", "A")
    monkeypatch.setenv("S3_SECRET_KEY", "S")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    tls = TlsServer(tmp_path)
    try:
        url = f"s3+https://{tls.url.split('://')[1].rsplit('/', 1)[0]}//bucket/key"
        spec = FileSpec("key", "input")
        untrusting = types.SimpleNamespace(config=load_config(env={}), storage={}, settings=Settings(queue="Q"))
        with pytest.raises(TransferFailure) as failed:
            S3Copytool("").exists(url, spec, untrusting)
        assert failed.value.code == 1099 and not failed.value.retry
        assert "TLS certificate verification failed (self-signed certificate), trusting system CAs" in str(failed.value)
        trusting = types.SimpleNamespace(config=load_config(env={}), storage={},
                                         settings=Settings(queue="Q", cacert=tls.cert))
        assert S3Copytool("").exists(url, spec, trusting) is True
        assert tls.handshakes == 2
    finally:
        tls.close()
