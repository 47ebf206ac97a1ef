"""Proxy lifetime from a PEM file with the standard library, against certificates made with `cryptography`."""

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from pilot.monitor.proxy import check_proxy, remaining_seconds


def make_cert(path, seconds, chain_seconds=None):
    """A cert (+key, +issuer cert) valid for `seconds` from now (negative: expired), like an RFC 3820 proxy file."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.timezone.utc)

    def cert(name, life):
        start = now - dt.timedelta(hours=2) if life < 0 else now - dt.timedelta(minutes=5)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(start)
                .not_valid_after(now + dt.timedelta(seconds=life)).sign(key, hashes.SHA256()))

    with open(path, "wb") as handle:
        handle.write(cert("proxy", seconds).public_bytes(serialization.Encoding.PEM))
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
        if chain_seconds is not None:
            handle.write(cert("user", chain_seconds).public_bytes(serialization.Encoding.PEM))
    return str(path)


def test_remaining_lifetime(tmp_path):
    left = remaining_seconds(make_cert(tmp_path / "p", 7200))
    assert 7100 < left <= 7200


def test_chain_minimum_wins(tmp_path):
    left = remaining_seconds(make_cert(tmp_path / "p", 7200, chain_seconds=600))
    assert 500 < left <= 600


def test_codes(tmp_path):
    assert check_proxy(make_cert(tmp_path / "ok", 7200), 3600, 1382) is None
    assert check_proxy(make_cert(tmp_path / "short", 600), 3600, 1382)[0] == 1382
    assert check_proxy(make_cert(tmp_path / "old", -60), 3600, 1382)[0] == 1373
    assert check_proxy(str(tmp_path / "missing"), 3600, 1382)[0] == 1163
    (tmp_path / "junk").write_text("not a certificate")
    assert check_proxy(str(tmp_path / "junk"), 3600, 1382)[0] == 1163
