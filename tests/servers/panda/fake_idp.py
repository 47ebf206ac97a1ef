"""
Minimal local OIDC "identity provider" so that the real PanDA server's token path
(token_authType = oidc; pandaserver/srvcore/panda_request.py + oidc_utils.TokenDecoder) can be exercised offline.

  python fake_idp.py setup <auth_dir> <out_dir> [port] -> writes RSA key, JWKS, discovery doc, <auth_dir>/atlas_auth_config.json
  python fake_idp.py token <out_dir> <role> [port]    -> prints a signed access token (groups: atlas, atlas/<role>)
  python fake_idp.py serve <out_dir> <port>           -> serves <out_dir> over http://127.0.0.1:<port>/ (discovery + jwks)

The pilot then sends:  Authorization: Bearer <token>   and   Origin: atlas.<role>   (vo.role, or vo:role)
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


def setup(auth_dir, out_dir, port=25099):
    os.makedirs(auth_dir, exist_ok=True)
    os.makedirs(out_dir + "/.well-known", exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with open(out_dir + "/key.pem", "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    pub = key.public_key().public_numbers()
    issuer = f"http://127.0.0.1:{port}/"
    json.dump({"keys": [{"kty": "RSA", "kid": KID, "use": "sig", "alg": "RS256", "n": b64u(pub.n), "e": b64u(pub.e)}]}, open(out_dir + "/jwks", "w"))
    json.dump({"issuer": issuer, "jwks_uri": issuer + "jwks"}, open(out_dir + "/.well-known/openid-configuration", "w"))
    # file name "<vo>_auth_config.json" -> VO 'atlas', default group 'user'; Origin header 'atlas.<role>' selects the role
    json.dump({"client_id": CLIENT_ID, "oidc_config_url": issuer + ".well-known/openid-configuration", "vo": "atlas", "audience": CLIENT_ID},
              open(os.path.join(auth_dir, "atlas_auth_config.json"), "w"))


def token(out_dir, role, port=25099):
    key = serialization.load_pem_private_key(open(out_dir + "/key.pem", "rb").read(), password=None)
    now = int(time.time())
    claims = {"iss": f"http://127.0.0.1:{port}/", "sub": "pilot-robot", "aud": CLIENT_ID, "iat": now, "nbf": now, "exp": now + 3600,
              "name": "Test Pilot", "preferred_username": "testpilot", "groups": ["atlas", f"atlas/{role}"]}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": KID})


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "setup":
        setup(sys.argv[2], sys.argv[3], *(int(a) for a in sys.argv[4:5]))
    elif cmd == "token":
        print(token(sys.argv[2], sys.argv[3], *(int(a) for a in sys.argv[4:5])))
    elif cmd == "serve":
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[2])
        http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[3])), handler).serve_forever()
