"""A real S3-compatible server (moto's `moto_server`, from requirements-test.txt) on 127.0.0.1.

Authentication is ON: moto only checks SigV4 signatures once IAM is in force, so the first few calls (made here
with boto3, which is allowed in tests) create an IAM user with an S3 policy and an access key; everything after that
-- every pilot request -- must be correctly signed with that key or gets 403. `running_s3()` starts the server on a
free port, waits (bounded) until it answers, and stops it afterwards.

Use::

    def test_x(s3):
        s3.keys            # {"access_key": ..., "secret_key": ...}
        s3.endpoint        # "s3+http://127.0.0.1:PORT"
        s3.get("bucket", "key") -> bytes
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Iterator

import requests

START_TIMEOUT = 30  # moto_server answers within ~2 s here
BUCKETS = ("pilot-es", "pilot-logs", "pilot-data", "pilot-alt")
POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
# create_user, put_user_policy, create_access_key: the calls moto lets through before IAM applies
NO_AUTH_CALLS = 3


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _moto_command():
    """moto's server module under this interpreter (not the moto_server script: a venv shared between checkouts
    may carry a script whose #! names another checkout's path)."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        raise RuntimeError("moto[server] not installed: bash .ci/install-deps test (requirements-test.txt)") from None
    return [sys.executable, "-m", "moto.server"]


class S3Server:
    def __init__(self, port: int, keys: dict, workdir: str):
        self.port, self.keys, self.workdir = port, keys, workdir
        self.http = f"http://127.0.0.1:{port}"
        self.endpoint = f"s3+http://127.0.0.1:{port}"

    def client(self, keys=None):
        import boto3

        keys = keys or self.keys
        return boto3.client("s3", endpoint_url=self.http, region_name="us-east-1",
                            aws_access_key_id=keys["access_key"], aws_secret_access_key=keys["secret_key"])

    def get(self, bucket: str, key: str) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def head(self, bucket: str, key: str) -> dict:
        return self.client().head_object(Bucket=bucket, Key=key)

    def put(self, bucket: str, key: str, data: bytes, **extra) -> None:
        self.client().put_object(Bucket=bucket, Key=key, Body=data, **extra)

    def keys_of(self, bucket: str, prefix: str = "") -> list:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def env(self) -> dict:
        return {"S3_ACCESS_KEY": self.keys["access_key"], "S3_SECRET_KEY": self.keys["secret_key"]}

    def storage_entry(self, bucket: str, kind: str = "OS_ES", deterministic: bool = False) -> dict:
        """A CRIC-style object-store ddmendpoint on this server (protocols for every activity)."""
        protocol = [{"endpoint": self.endpoint, "path": f"/{bucket}", "flavour": "AWS-S3"}]
        acts = ("read_lan", "write_lan", "read_wan", "write_wan", "pl", "pw", "pr", "es_events", "es_failover",
                "es_events_read", "default")
        return {"is_deterministic": deterministic, "type": kind, "resource": {"settings": {"is_secure": False}},
                "arprotocols": {act: protocol for act in acts}}


@contextlib.contextmanager
def running_s3() -> Iterator[S3Server]:
    import boto3

    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="pilot-s3-")
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT=str(NO_AUTH_CALLS), AWS_DEFAULT_REGION="us-east-1")
    log = open(os.path.join(workdir, "moto.log"), "wb")
    proc = subprocess.Popen([*_moto_command(), "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=workdir)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {proc.returncode}: "
                                   f"{open(log.name, 'rb').read()[-2000:].decode(errors='replace')}")
            try:
                requests.get(f"http://127.0.0.1:{port}/moto-api/", timeout=2)
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not answer within {START_TIMEOUT} s") from None
                time.sleep(0.2)
        iam = boto3.client("iam", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                           aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        iam.create_user(UserName="pilot")
        iam.put_user_policy(UserName="pilot", PolicyName="s3", PolicyDocument=json.dumps(POLICY))
        made = iam.create_access_key(UserName="pilot")["AccessKey"]
        server = S3Server(port, {"access_key": made["AccessKeyId"], "secret_key": made["SecretAccessKey"]}, workdir)
        s3 = server.client()
        for bucket in BUCKETS:
            s3.create_bucket(Bucket=bucket)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)
