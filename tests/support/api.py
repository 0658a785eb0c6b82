"""Talking to the runtime's mapping API as users do: boto3, the AWS CLI, raw signed requests."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from tests.support.aws import REGION
from tests.support.emulator import REPO, free_port

KEY_ID = "AKIAESMRUNTIMETEST01"
SECRET = "esm-runtime-test-secret-key-0123456789abcd"
AWS_CLI = REPO / ".aws-venv" / "bin" / "aws"


def api_env(data_dir: Path, port: int | None = None, **extra: str) -> dict[str, str]:
    """Environment that turns the mapping API on, for RuntimeProcess(env=...)."""
    return {
        "ESM_API_CREDENTIALS": json.dumps({KEY_ID: SECRET}),
        "ESM_API_PORT": str(port or free_port()),
        "ESM_API_HOST": "127.0.0.1",
        "ESM_DATA_DIR": str(data_dir),
        "ESM_MAPPING_SYNC_SECONDS": "0.5",
        **extra,
    }


def lambda_client(port: int, *, secret: str = SECRET, key: str = KEY_ID) -> Any:
    return boto3.client(
        "lambda",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


def aws_cli(port: int, *args: str, check: bool = True) -> Any:
    """Run ``aws lambda <args> --endpoint-url ...`` and return its parsed JSON output."""
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    env.pop("AWS_PROFILE", None)
    done = subprocess.run(
        [
            str(AWS_CLI),
            "lambda",
            *args,
            "--endpoint-url",
            f"http://127.0.0.1:{port}",
            "--output",
            "json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"aws lambda {' '.join(args)}: {done.returncode}\n{done.stderr}")
    if done.returncode != 0:
        return done
    return json.loads(done.stdout) if done.stdout.strip() else None


def raw_request(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    sign: bool = True,
    secret: str = SECRET,
    amz_date: str | None = None,
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """One HTTP request, signed like boto3 signs it (or not at all); the status, headers and
    JSON body of the answer."""
    url = f"http://127.0.0.1:{port}{path}"
    headers = {"Content-Type": "application/json"}
    if sign:
        request = AWSRequest(method=method, url=url, data=body, headers=headers)
        signer = SigV4Auth(Credentials(KEY_ID, secret), "lambda", REGION)
        if amz_date is not None:
            request.context["timestamp"] = amz_date
            request.headers["X-Amz-Date"] = amz_date
            canonical = signer.canonical_request(request)
            string = signer.string_to_sign(request, canonical)
            signature = signer.signature(string, request)
            scope = f"{KEY_ID}/{amz_date[:8]}/{REGION}/lambda/aws4_request"
            signed = ";".join(signer.headers_to_sign(request))
            request.headers["Authorization"] = (
                f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders={signed}, "
                f"Signature={signature}"
            )
        else:
            signer.add_auth(request)
        headers = dict(request.headers.items())
    req = urllib.request.Request(url, data=body or None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read()
            return r.status, dict(r.headers.items()), json.loads(text) if text else {}
    except urllib.error.HTTPError as e:
        text = e.read()
        return e.code, dict(e.headers.items()), json.loads(text) if text else {}
