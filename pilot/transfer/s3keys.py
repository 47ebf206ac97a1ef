"""Object-store credentials: which access/secret key pair signs requests to one S3 endpoint.

Sources, first found wins (the keys are never logged):
1. [S3] keys_file (JSON, mode 0600 recommended): ``{"<endpoint name>": {"access_key": ..., "secret_key": ...}}``
   and/or ``{"<key name>": "<value>"}`` for the key NAMES the endpoint's storage data gives in CRIC's
   ``resource.settings`` (``access_key``, ``secret_key``): the names Pilot 3 sent to the server's ``getKeyPair``.
2. Environment: ``S3_ACCESS_KEY``/``S3_SECRET_KEY`` (what Pilot 3 exports for its rucio object-store uploads),
   then ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (+ ``AWS_SESSION_TOKEN``).
3. The AWS shared credentials file (``AWS_SHARED_CREDENTIALS_FILE`` or ``~/.aws/credentials``), profile
   ``PANDA_PILOT_AWS_PROFILE`` (Pilot 3's s3 copytool), ``AWS_PROFILE`` or ``default``.
The server's legacy ``getKeyPair`` (a secret handed to any production pilot) is not used: sites give keys to the
pilot through one of the above. Nothing found is 1364 (MISSINGCREDENTIALS).
"""

from __future__ import annotations

import configparser
import json
import os
from typing import Optional

from ..records import FrozenRecord, frozen_record
from .base import TransferFailure


@frozen_record
class Keys(FrozenRecord):
    access_key: str
    secret_key: str
    session_token: str = ""
    source: str = ""  # where they came from, for logs (never the keys)

    def __repr__(self) -> str:  # never print a secret by accident
        return f"Keys(access_key=***, source={self.source!r})"


def _from_keys_file(path: str, endpoint: str, settings: dict) -> Optional[Keys]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise TransferFailure(1364, f"cannot read [S3] keys_file {path}: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise TransferFailure(1364, f"[S3] keys_file {path} is not a JSON object")
    entry = data.get(endpoint)
    if isinstance(entry, dict) and entry.get("access_key") and entry.get("secret_key"):
        return Keys(str(entry["access_key"]), str(entry["secret_key"]), str(entry.get("session_token") or ""),
                    f"keys_file[{endpoint}]")
    access_name, secret_name = settings.get("access_key"), settings.get("secret_key")
    if access_name and secret_name and isinstance(data.get(access_name), str) and isinstance(data.get(secret_name),
                                                                                          str):
        return Keys(data[access_name], data[secret_name], "", f"keys_file[{access_name}]")
    return None


def _from_env(env) -> Optional[Keys]:
    for access, secret in (("S3_ACCESS_KEY", "S3_SECRET_KEY"), ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")):
        if env.get(access) and env.get(secret):
            return Keys(env[access], env[secret], env.get("AWS_SESSION_TOKEN", ""), f"${access}")
    return None


def _from_shared_file(env) -> Optional[Keys]:
    path = env.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.expanduser("~/.aws/credentials")
    if not os.path.isfile(path):
        return None
    profile = env.get("PANDA_PILOT_AWS_PROFILE") or env.get("AWS_PROFILE") or "default"
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        raise TransferFailure(1364, f"cannot parse AWS credentials file {path}") from None
    if not parser.has_section(profile):
        return None
    section = parser[profile]
    if section.get("aws_access_key_id") and section.get("aws_secret_access_key"):
        return Keys(section["aws_access_key_id"], section["aws_secret_access_key"],
                    section.get("aws_session_token", ""), f"{path}[{profile}]")
    return None


def find_keys(ctx, endpoint: str, settings: dict, env=None) -> Keys:
    env = os.environ if env is None else env
    keys_file = str(ctx.config.s3.keys_file or "")
    found = (_from_keys_file(keys_file, endpoint, settings) if keys_file else None) or _from_env(env) \
        or _from_shared_file(env)
    if found is None:
        raise TransferFailure(1364, f"no S3 keys for {endpoint or 'the object store'}: set [S3] keys_file, "
                                    f"S3_ACCESS_KEY/S3_SECRET_KEY or an AWS credentials profile", retry=False)
    return found
