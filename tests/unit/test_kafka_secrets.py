"""Secret URIs (env://, file://, Secrets Manager ARNs) resolved to dicts of strings."""

from __future__ import annotations

import asyncio
import json
import os
import traceback
from pathlib import Path
from typing import Any, cast

import pytest
from botocore.exceptions import ClientError, NoCredentialsError

from runtime.sources.aws import AwsClients
from runtime.sources.base import SourceError
from runtime.sources.kafka_secrets import (
    SecretError,
    check_secret_uri,
    is_secrets_manager_arn,
    resolve_local_secret,
    resolve_secret,
    resolve_secrets,
)

SENTINEL = "s3cr3t-SENTINEL-value"
ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:kafka/creds-AbCdEf"


def file_uri(path: Path) -> str:
    return f"file://{path}"


def assert_no_secret(exc: BaseException, secret: str = SENTINEL) -> None:
    """Neither the message, the repr nor the formatted traceback (causes included) leaks."""
    assert secret not in str(exc)
    assert secret not in repr(exc)
    assert secret not in "".join(traceback.format_exception(exc))


# --- env:// -----------------------------------------------------------------------------------


def test_env_json_object(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_CREDS", json.dumps({"username": "alice", "password": SENTINEL}))
    assert resolve_local_secret("env://KAFKA_CREDS") == {"username": "alice", "password": SENTINEL}


def test_env_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    with pytest.raises(SecretError, match=r"'env://NOPE_NOT_SET'.*NOPE_NOT_SET is not set"):
        resolve_local_secret("env://NOPE_NOT_SET")


@pytest.mark.parametrize("uri", ["env://", "env://1ABC", "env://A-B", "env://A B", "env://A/B"])
def test_env_bad_variable_name(uri: str) -> None:
    with pytest.raises(SecretError, match="environment variable name"):
        resolve_local_secret(uri)
    with pytest.raises(SecretError, match="environment variable name"):
        check_secret_uri(uri)


def test_env_invalid_json_names_position_not_content(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_CREDS", f'{{"password": "{SENTINEL}"')
    message = r"environment variable KAFKA_CREDS is not valid JSON \("
    with pytest.raises(SecretError, match=message) as info:
        resolve_local_secret("env://KAFKA_CREDS")
    assert "line 1 column" in str(info.value)
    # JSONDecodeError.doc is the whole secret: it must not travel with the error.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None
    assert_no_secret(info.value)


def test_env_empty_value_is_invalid_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_CREDS", "")
    with pytest.raises(SecretError, match="not valid JSON"):
        resolve_local_secret("env://KAFKA_CREDS")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (f'["{SENTINEL}"]', "an array"),
        (f'"{SENTINEL}"', "a string"),
        ("42", "a number"),
        ("null", "null"),
        ("true", "a boolean"),
    ],
)
def test_env_not_an_object(monkeypatch: pytest.MonkeyPatch, text: str, kind: str) -> None:
    monkeypatch.setenv("KAFKA_CREDS", text)
    with pytest.raises(SecretError, match=f"must be a JSON object, not {kind}$") as info:
        resolve_local_secret("env://KAFKA_CREDS")
    assert_no_secret(info.value)


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (12345, "a number"),
        (None, "null"),
        (False, "a boolean"),
        ([SENTINEL], "an array"),
        ({"x": SENTINEL}, "an object"),
    ],
)
def test_env_non_string_value(monkeypatch: pytest.MonkeyPatch, value: Any, kind: str) -> None:
    monkeypatch.setenv("KAFKA_CREDS", json.dumps({"username": SENTINEL, "password": value}))
    with pytest.raises(
        SecretError,
        match=f"value of 'password' in environment variable KAFKA_CREDS must be a "
        f"string, not {kind}",
    ) as info:
        resolve_local_secret("env://KAFKA_CREDS")
    assert_no_secret(info.value)


# --- file:// (JSON file) -----------------------------------------------------------------------


def test_file_json(tmp_path: Path) -> None:
    path = tmp_path / "creds.json"
    path.write_text(json.dumps({"certificate": "-----BEGIN CERTIFICATE-----\nx\n"}) + "\n")
    assert resolve_local_secret(file_uri(path)) == {
        "certificate": "-----BEGIN CERTIFICATE-----\nx\n"
    }


def test_file_localhost_and_percent_encoding(tmp_path: Path) -> None:
    path = tmp_path / "my creds.json"
    path.write_text('{"username": "u", "password": "p"}')
    encoded = str(path).replace(" ", "%20")
    assert resolve_local_secret(f"file://{encoded}")["username"] == "u"
    assert resolve_local_secret(f"file://localhost{encoded}")["password"] == "p"


def test_file_missing(tmp_path: Path) -> None:
    uri = file_uri(tmp_path / "absent.json")
    with pytest.raises(SecretError, match=r"absent\.json does not exist"):
        resolve_local_secret(uri)


def test_file_unreadable(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("{}")
    uri = file_uri(tmp_path / "plain" / "child.json")  # a file used as a directory
    with pytest.raises(SecretError, match=r"cannot read .*child\.json: Not a directory") as info:
        resolve_local_secret(uri)
    assert uri in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_file_permission_denied(tmp_path: Path) -> None:
    path = tmp_path / "creds.json"
    path.write_text(json.dumps({"password": SENTINEL}))
    path.chmod(0)
    try:
        with pytest.raises(SecretError, match=r"cannot read .*Permission denied"):
            resolve_local_secret(file_uri(path))
    finally:
        path.chmod(0o600)


def test_file_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "creds.json"
    path.write_text(f"username=alice\npassword={SENTINEL}\n")
    with pytest.raises(SecretError, match=r"file .*creds\.json is not valid JSON") as info:
        resolve_local_secret(file_uri(path))
    assert info.value.__context__ is None
    assert_no_secret(info.value)


def test_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "creds.json"
    path.write_bytes(b'{"password": "\xff' + SENTINEL.encode() + b'"}')
    with pytest.raises(SecretError, match="is not UTF-8 text") as info:
        resolve_local_secret(file_uri(path))
    assert info.value.__context__ is None  # UnicodeDecodeError.object holds the bytes
    assert_no_secret(info.value)


@pytest.mark.parametrize(
    "uri",
    [
        "file://relative/creds.json",  # "relative" is a host, not a directory
        "file://host.example/etc/creds",
        "file:///etc/creds?x=1",
        "file:///etc/creds#frag",
    ],
)
def test_file_uri_shape(uri: str) -> None:
    with pytest.raises(SecretError, match=r"secret 'file://"):
        resolve_local_secret(uri)
    with pytest.raises(SecretError):
        check_secret_uri(uri)


# --- file:// (directory: a mounted Kubernetes Secret) ----------------------------------------


def kubernetes_secret_volume(root: Path, data: dict[str, str]) -> Path:
    """The layout kubelet writes: keys are links into ..data, which links to a timestamped dir."""
    root.mkdir()
    stamped = root / "..2026_01_01_00_00_00.000000001"
    stamped.mkdir()
    for key, value in data.items():
        (stamped / key).write_text(value)
    (root / "..data").symlink_to(stamped.name)
    for key in data:
        (root / key).symlink_to(Path("..data") / key)
    return root


def test_directory_kubernetes_secret_volume(tmp_path: Path) -> None:
    root = kubernetes_secret_volume(
        tmp_path / "kafka", {"username": "alice\n", "password": SENTINEL + "\n"}
    )
    assert resolve_local_secret(file_uri(root)) == {"username": "alice", "password": SENTINEL}
    assert resolve_local_secret(file_uri(root) + "/") == {"username": "alice", "password": SENTINEL}


def test_directory_strips_exactly_one_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("one\n\n")
    (tmp_path / "b").write_bytes(b"crlf\r\n")
    (tmp_path / "c").write_text("none")
    (tmp_path / "d").write_text("")
    (tmp_path / "pem").write_text("-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n")
    assert resolve_local_secret(file_uri(tmp_path)) == {
        "a": "one\n",
        "b": "crlf",
        "c": "none",
        "d": "",
        "pem": "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----",
    }


def test_directory_skips_hidden_entries_and_subdirectories(tmp_path: Path) -> None:
    (tmp_path / "username").write_text("u")
    (tmp_path / ".hidden").write_text("h")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "password").write_text("p")
    assert resolve_local_secret(file_uri(tmp_path)) == {"username": "u"}


def test_directory_empty(tmp_path: Path) -> None:
    (tmp_path / "..data").mkdir()
    with pytest.raises(SecretError, match="holds no secret keys"):
        resolve_local_secret(file_uri(tmp_path))


def test_directory_broken_key_link(tmp_path: Path) -> None:
    (tmp_path / "username").write_text("u")
    (tmp_path / "password").symlink_to(tmp_path / "gone")
    with pytest.raises(SecretError, match="does not exist"):
        resolve_local_secret(file_uri(tmp_path))


def test_directory_key_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "password").write_bytes(b"\xfe" + SENTINEL.encode())
    with pytest.raises(SecretError, match=r"password is not UTF-8 text") as info:
        resolve_local_secret(file_uri(tmp_path))
    assert_no_secret(info.value)


# --- other URIs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri", ["https://vault.example/kafka", "vault://kafka", "/etc/secrets/kafka", "kafka-creds"]
)
def test_unsupported_scheme(uri: str) -> None:
    message = r"unsupported secret URI \(use env://VAR, file:///path or arn:aws:secretsmanager"
    with pytest.raises(SecretError, match=message):
        resolve_local_secret(uri)
    with pytest.raises(SecretError, match=message):
        check_secret_uri(uri)
    with pytest.raises(SecretError, match=message):
        asyncio.run(resolve_secret(uri, None))


def test_arn_needs_resolve_secret() -> None:
    with pytest.raises(SecretError, match=r"needs AWS access; resolve it with resolve_secret"):
        resolve_local_secret(ARN)


@pytest.mark.parametrize(
    "uri",
    [
        "arn:aws:secretsmanager:eu-west-1:123:secret:x",  # account is not 12 digits
        "arn:aws:secretsmanager::123456789012:secret:x",  # no region
        "arn:aws:sqs:eu-west-1:123456789012:queue",
        "arn:aws:secretsmanager:eu-west-1:123456789012:parameter:x",
    ],
)
def test_malformed_arn(uri: str) -> None:
    with pytest.raises(SecretError, match="not a Secrets Manager secret ARN"):
        check_secret_uri(uri)
    with pytest.raises(SecretError, match="not a Secrets Manager secret ARN"):
        resolve_local_secret(uri)
    with pytest.raises(SecretError, match="not a Secrets Manager secret ARN"):
        asyncio.run(resolve_secret(uri, None))


@pytest.mark.parametrize(
    "uri",
    [
        "env://KAFKA",
        "file:///etc/secrets/kafka",
        "file://localhost/etc/secrets/kafka",
        ARN,
        "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:k",
        "arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:k",
    ],
)
def test_valid_uris(uri: str) -> None:
    check_secret_uri(uri)


def test_is_secrets_manager_arn() -> None:
    assert is_secrets_manager_arn(ARN)
    assert not is_secrets_manager_arn("env://X")


def test_secret_error_is_a_source_error() -> None:
    assert issubclass(SecretError, SourceError)


# --- Secrets Manager through a fake client ------------------------------------------------


class FakeSecretsManager:
    def __init__(self, response: dict[str, Any] | None = None, error: Exception | None = None):
        self.response = response or {}
        self.error = error
        self.calls: list[dict[str, Any]] = []

    async def get_secret_value(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if self.error is not None:
            raise self.error
        return self.response


class FakeClients:
    def __init__(self, sm: FakeSecretsManager) -> None:
        self.sm = sm
        self.asked: list[tuple[str, str | None]] = []

    async def client(self, service: str, region: str | None) -> Any:
        self.asked.append((service, region))
        return self.sm


def clients_for(sm: FakeSecretsManager) -> tuple[AwsClients, FakeClients]:
    fake = FakeClients(sm)
    return cast(AwsClients, fake), fake


def test_secrets_manager_secret_string() -> None:
    sm = FakeSecretsManager(
        {"ARN": ARN, "SecretString": json.dumps({"username": "bob", "password": SENTINEL})}
    )
    clients, fake = clients_for(sm)
    assert asyncio.run(resolve_secret(ARN, clients)) == {"username": "bob", "password": SENTINEL}
    assert fake.asked == [("secretsmanager", "eu-west-1")]
    assert sm.calls == [{"SecretId": ARN}]


def test_secrets_manager_client_certificate_shape() -> None:
    secret = {
        "certificate": "-----BEGIN CERTIFICATE-----\nleaf\n-----END CERTIFICATE-----\n"
        "-----BEGIN CERTIFICATE-----\nintermediate\n-----END CERTIFICATE-----\n",
        "privateKey": "-----BEGIN PRIVATE KEY-----\nk\n-----END PRIVATE KEY-----\n",
        "privateKeyPassword": "pw",
    }
    clients, _ = clients_for(FakeSecretsManager({"SecretString": json.dumps(secret)}))
    assert asyncio.run(resolve_secret(ARN, clients)) == secret


def test_secrets_manager_without_clients() -> None:
    with pytest.raises(SecretError, match="needs AWS clients"):
        asyncio.run(resolve_secret(ARN, None))


def test_secrets_manager_binary_secret() -> None:
    clients, _ = clients_for(FakeSecretsManager({"SecretBinary": SENTINEL.encode()}))
    with pytest.raises(SecretError, match="has no SecretString") as info:
        asyncio.run(resolve_secret(ARN, clients))
    assert_no_secret(info.value)


def test_secrets_manager_client_error() -> None:
    error = ClientError(
        {
            "Error": {
                "Code": "ResourceNotFoundException",
                "Message": "Secrets Manager can't find the specified secret.",
            }
        },
        "GetSecretValue",
    )
    clients, _ = clients_for(FakeSecretsManager(error=error))
    with pytest.raises(SecretError) as info:
        asyncio.run(resolve_secret(ARN, clients))
    assert str(info.value) == (
        f"secret {ARN!r}: Secrets Manager GetSecretValue failed (ResourceNotFoundException): "
        "Secrets Manager can't find the specified secret."
    )
    assert info.value.__cause__ is error


def test_secrets_manager_access_denied_without_message() -> None:
    error = ClientError({"Error": {"Code": "AccessDeniedException"}}, "GetSecretValue")
    clients, _ = clients_for(FakeSecretsManager(error=error))
    with pytest.raises(SecretError, match=r"GetSecretValue failed \(AccessDeniedException\)$"):
        asyncio.run(resolve_secret(ARN, clients))


def test_secrets_manager_no_credentials() -> None:
    clients, _ = clients_for(FakeSecretsManager(error=NoCredentialsError()))
    with pytest.raises(SecretError, match="GetSecretValue failed: Unable to locate credentials"):
        asyncio.run(resolve_secret(ARN, clients))


def test_secrets_manager_invalid_json() -> None:
    clients, _ = clients_for(FakeSecretsManager({"SecretString": f"user:{SENTINEL}"}))
    with pytest.raises(SecretError, match=r"SecretString is not valid JSON") as info:
        asyncio.run(resolve_secret(ARN, clients))
    assert_no_secret(info.value)


def test_resolve_secret_local_uris_need_no_clients(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_CREDS", '{"username": "e"}')
    (tmp_path / "username").write_text("f\n")
    assert asyncio.run(resolve_secret("env://KAFKA_CREDS", None)) == {"username": "e"}
    assert asyncio.run(resolve_secret(file_uri(tmp_path), None)) == {"username": "f"}


def test_resolve_secrets_resolves_each_uri_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CA", '{"certificate": "c"}')
    sm = FakeSecretsManager({"SecretString": '{"username": "u", "password": "p"}'})
    clients, _ = clients_for(sm)
    got = asyncio.run(resolve_secrets([ARN, "env://CA", ARN], clients))
    assert got == {ARN: {"username": "u", "password": "p"}, "env://CA": {"certificate": "c"}}
    assert len(sm.calls) == 1
