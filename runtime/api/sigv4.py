"""Authenticating API callers by their AWS Signature Version 4, as AWS does.

boto3, the AWS CLI and Terraform sign every request with the caller's access key; the API
knows the keys it accepts (``ESM_API_CREDENTIALS``) and recomputes each signature with
botocore's own signer over exactly the headers the caller signed, so nothing of the signing
algorithm is written here. AWS's limits apply: the request's date (``X-Amz-Date``) must be
within 15 minutes of the server's clock (a replayed request is refused once it is older than
that), the credential scope must name the service (``lambda``) and the date of the request,
and the signature must match. Every refusal names its reason (never a secret) and is a 403.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

# AWS refuses requests whose date is more than 15 minutes from its clock.
MAX_SKEW = dt.timedelta(minutes=15)
SERVICE = "lambda"

_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256\s+"
    r"Credential=(?P<key>[^/\s,]+)/(?P<date>\d{8})/(?P<region>[^/\s,]+)/(?P<service>[^/\s,]+)"
    r"/aws4_request,\s*SignedHeaders=(?P<headers>[^,\s]+),\s*Signature=(?P<sig>[0-9a-f]{64})$"
)


class SignatureError(Exception):
    """Why a request is refused (shown to the caller: never includes a secret)."""


@dataclass(frozen=True, slots=True)
class Caller:
    access_key: str
    region: str


def check_headers(
    headers: Mapping[str, str],
    secrets: Mapping[str, str],
    *,
    now: dt.datetime | None = None,
) -> None:
    """What can be refused before the body is read: the Authorization header's form, the
    access key, the date, the scope (SignatureError if anything is wrong)."""
    _parse(headers, secrets, now)


def _parse(
    headers: Mapping[str, str], secrets: Mapping[str, str], now: dt.datetime | None
) -> tuple[dict[str, str], re.Match[str], str]:
    lower = {k.lower(): v for k, v in headers.items()}
    auth = lower.get("authorization")
    if not auth:
        raise SignatureError("Missing Authentication Token")
    m = _AUTH.match(auth.strip())
    if m is None:
        raise SignatureError("Authorization header is not an AWS4-HMAC-SHA256 signature")
    key = m["key"]
    if key not in secrets:
        raise SignatureError("The security token included in the request is invalid.")
    amz_date = lower.get("x-amz-date")
    if not amz_date:
        raise SignatureError("Missing X-Amz-Date header")
    try:
        when = dt.datetime.strptime(amz_date, SIGV4_TIMESTAMP).replace(tzinfo=dt.UTC)
    except ValueError:
        raise SignatureError("Malformed X-Amz-Date header") from None
    now = now or dt.datetime.now(dt.UTC)
    if abs(now - when) > MAX_SKEW:
        raise SignatureError(
            f"Signature expired: {amz_date} is now earlier or later than "
            f"{(now - MAX_SKEW).strftime(SIGV4_TIMESTAMP)} - "
            f"{(now + MAX_SKEW).strftime(SIGV4_TIMESTAMP)}"
        )
    if m["date"] != amz_date[:8]:
        raise SignatureError("Credential scope date does not match X-Amz-Date")
    if m["service"] != SERVICE:
        raise SignatureError(f"Credential should be scoped to correct service: '{SERVICE}'.")
    signed = m["headers"].split(";")
    if "host" not in signed:
        raise SignatureError("The host header must be signed")
    missing = [h for h in signed if h not in lower]
    if missing:
        raise SignatureError(f"Signed header missing from the request: {missing[0]}")
    return lower, m, amz_date


def verify(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    secrets: Mapping[str, str],
    *,
    now: dt.datetime | None = None,
) -> Caller:
    """The caller of a correctly signed request, or SignatureError saying why not.

    ``url`` is the full URL as the caller addressed it (scheme, host and port, path, query);
    ``secrets`` maps accepted access key ids to their secret keys. The body is always
    covered: a declared payload hash (``X-Amz-Content-SHA256``) must be the body's own, so
    ``UNSIGNED-PAYLOAD`` and streaming payloads are refused."""
    lower, m, amz_date = _parse(headers, secrets, now)
    key = m["key"]
    signed = m["headers"].split(";")
    declared = lower.get("x-amz-content-sha256")
    if declared is not None and declared != hashlib.sha256(body).hexdigest():
        raise SignatureError(
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        )
    request = AWSRequest(method=method, url=url, headers={h: lower[h] for h in signed}, data=body)
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(key, secrets[key]), SERVICE, m["region"])
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, m["sig"]):
        raise SignatureError(
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method."
        )
    return Caller(key, m["region"])
