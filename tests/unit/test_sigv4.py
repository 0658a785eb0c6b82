"""API callers authenticated by SigV4: requests signed as boto3 signs them pass, and every
kind of wrong request is refused with its reason."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from runtime.api.sigv4 import SignatureError, verify

KEY, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SECRETS = {KEY: SECRET}
URL = "http://127.0.0.1:9000/2015-03-31/event-source-mappings/?FunctionName=fn&MaxItems=5"
BODY = b'{"FunctionName": "fn", "BatchSize": 10}'
WHEN = dt.datetime(2026, 12, 4, 12, 0, 0, tzinfo=dt.UTC)


def signed(
    *,
    method: str = "POST",
    url: str = URL,
    body: bytes = BODY,
    key: str = KEY,
    secret: str = SECRET,
    service: str = "lambda",
    at: dt.datetime = WHEN,
) -> dict[str, str]:
    request = AWSRequest(
        method=method, url=url, data=body, headers={"Content-Type": "application/json"}
    )
    with mock.patch("botocore.auth.get_current_datetime", return_value=at.replace(tzinfo=None)):
        SigV4Auth(Credentials(key, secret), service, "us-east-1").add_auth(request)
    headers = dict(request.headers.items())
    headers["Host"] = "127.0.0.1:9000"
    return headers


def test_a_request_signed_as_boto3_signs_it_passes() -> None:
    caller = verify("POST", URL, signed(), BODY, SECRETS, now=WHEN + dt.timedelta(minutes=3))
    assert caller.access_key == KEY and caller.region == "us-east-1"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda h, b, n: (h, b + b" ", n), "does not match the signature"),
        (lambda h, b, n: ({**h, "X-Amz-Date": "20261204T120500Z"}, b, n), "does not match"),
        (lambda h, b, n: ({k: v for k, v in h.items() if k != "Authorization"}, b, n),
         "Missing Authentication Token"),
        (lambda h, b, n: (h, b, n + dt.timedelta(minutes=16)), "Signature expired"),
        (lambda h, b, n: (h, b, n - dt.timedelta(minutes=16)), "Signature expired"),
        (lambda h, b, n: ({k: v for k, v in h.items() if k != "X-Amz-Date"}, b, n),
         "Missing X-Amz-Date"),
    ],
)  # fmt: skip
def test_tampered_expired_or_incomplete_requests_are_refused(change, reason) -> None:  # type: ignore[no-untyped-def]
    headers, body, now = change(signed(), BODY, WHEN)
    with pytest.raises(SignatureError, match=reason):
        verify("POST", URL, headers, body, SECRETS, now=now)


def test_a_wrong_secret_an_unknown_key_or_another_service_are_refused() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify("POST", URL, signed(secret="x" * 40), BODY, SECRETS, now=WHEN)
    with pytest.raises(SignatureError, match="security token included in the request is invalid"):
        verify("POST", URL, signed(key="AKIDOTHER"), BODY, SECRETS, now=WHEN)
    with pytest.raises(SignatureError, match="scoped to correct service"):
        verify("POST", URL, signed(service="sqs"), BODY, SECRETS, now=WHEN)


def test_the_query_string_and_method_are_signed() -> None:
    headers = signed(method="GET", body=b"")
    verify("GET", URL, headers, b"", SECRETS, now=WHEN)
    with pytest.raises(SignatureError):
        verify("GET", URL.replace("MaxItems=5", "MaxItems=6"), headers, b"", SECRETS, now=WHEN)
    with pytest.raises(SignatureError):
        verify("DELETE", URL, headers, b"", SECRETS, now=WHEN)


def test_refusals_never_show_the_secret() -> None:
    with pytest.raises(SignatureError) as err:
        verify("POST", URL, signed(secret="y" * 40), BODY, SECRETS, now=WHEN)
    assert SECRET not in str(err.value)


@pytest.mark.parametrize("declared", ["UNSIGNED-PAYLOAD", "hash of another body"])
def test_the_body_is_always_covered_by_the_signature(declared: str) -> None:
    """A client may sign a payload hash header instead of the body: the hash must then be the
    body's own, or a man in the middle could swap the body under a valid signature."""
    import hashlib

    value = hashlib.sha256(b"{}").hexdigest() if declared.startswith("hash") else declared
    request = AWSRequest(method="PUT", url=URL, data=b"{}", headers={"X-Amz-Content-SHA256": value})
    with mock.patch("botocore.auth.get_current_datetime", return_value=WHEN.replace(tzinfo=None)):
        SigV4Auth(Credentials(KEY, SECRET), "lambda", "us-east-1").add_auth(request)
    headers = {**dict(request.headers.items()), "Host": "127.0.0.1:9000"}
    swapped = b'{"Enabled": false}'
    with pytest.raises(SignatureError, match="x-amz-content-sha256"):
        verify("PUT", URL, headers, swapped, SECRETS, now=WHEN)
    if declared.startswith("hash"):  # the body it was signed for passes
        assert verify("PUT", URL, headers, b"{}", SECRETS, now=WHEN).access_key == KEY
