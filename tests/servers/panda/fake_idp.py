"""
Minimal local OIDC "identity provider" so that the real PanDA server's token path (token_authType = oidc;
pandaserver/srvcore/panda_request.py + oidc_utils.TokenDecoder) can be exercised offline. From
shared/recipes/panda-server/40_fake_idp.py, with the port as a parameter. Run with the server venv's python.

  fake_idp.py setup <auth_dir> <out_dir> [port]  RSA key, JWKS, discovery doc, <auth_dir>/atlas_auth_config.json
  fake_idp.py token <out_dir> <role> [port]      print a signed access token (groups: atlas, atlas/<role>)
  fake_idp.py serve <out_dir> <port>             serve <out_dir> on http://127.0.0.1:<port>/ (discovery + jwks)

A pilot then sends  Authorization: Bearer <token>  and  Origin: atlas.<role>  (vo.role, or vo:role).
tests/integration/panda_server.py mints the same tokens in-process (PandaServer.mint_token).
"""

import base64
import functools
import http.server
import json
import os
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

CLIENT_ID = "panda-test-client"
KID = "test-key-1"


def b64u(n: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()


def write_json(path, data):
    with open(path, "w") as handle:
        json.dump(data, handle)


def setup(auth_dir, out_dir, port=25099):
    os.makedirs(auth_dir, exist_ok=True)
    os.makedirs(out_dir + "/.well-known", exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fd = os.open(out_dir + "/key.pem", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub = key.public_key().public_numbers()
    issuer = f"http://127.0.0.1:{port}/"
    write_json(out_dir + "/jwks", {"keys": [{"kty": "RSA", "kid": KID, "use": "sig", "alg": "RS256",
                                             "n": b64u(pub.n), "e": b64u(pub.e)}]})
    write_json(out_dir + "/.well-known/openid-configuration", {"issuer": issuer, "jwks_uri": issuer + "jwks"})
    # file name "<vo>_auth_config.json" -> VO 'atlas'; the Origin header 'atlas.<role>' selects the role
    write_json(os.path.join(auth_dir, "atlas_auth_config.json"),
               {"client_id": CLIENT_ID, "oidc_config_url": issuer + ".well-known/openid-configuration",
                "vo": "atlas", "audience": CLIENT_ID})


def token(out_dir, role, port=25099):
    with open(out_dir + "/key.pem", "rb") as handle:
        key = serialization.load_pem_private_key(handle.read(), password=None)
    now = int(time.time())
    claims = {"iss": f"http://127.0.0.1:{port}/", "sub": "pilot-robot", "aud": CLIENT_ID, "iat": now, "nbf": now,
              "exp": now + 3600, "name": "Test Pilot", "preferred_username": "testpilot",
              "groups": ["atlas", f"atlas/{role}"]}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": KID})


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "setup":
        setup(sys.argv[2], sys.argv[3], *(int(a) for a in sys.argv[4:5]))
    elif cmd == "token":
        print(token(sys.argv[2], sys.argv[3], *(int(a) for a in sys.argv[4:5])))
    elif cmd == "serve":
        handler = functools.partial(QuietHandler, directory=sys.argv[2])
        http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[3])), handler).serve_forever()
    else:
        sys.exit(__doc__)
