"""Secrets named by a ``SourceAccessConfigurations`` URI, resolved to a dict of strings.

Lambda keeps every Kafka credential in AWS Secrets Manager; self-hosted, the same secret can
also come from the pod itself. Three URI forms are accepted:

* ``env://VAR``: the environment variable ``VAR`` holds the secret as a JSON object
  (Kubernetes ``env[].valueFrom.secretKeyRef``).
* ``file:///path``: ``path`` is a JSON file holding the object, or a directory in which each
  file is one key and its contents the value (a mounted Kubernetes Secret volume:
  ``/etc/secrets/kafka/username``, ``/etc/secrets/kafka/password``). One trailing newline is
  stripped from each file; hidden entries (Kubernetes' ``..data`` links) and subdirectories
  are skipped.
* ``arn:aws:secretsmanager:<region>:<account>:secret:<name>``: ``GetSecretValue`` in the ARN's
  region; ``SecretString`` is the JSON object, exactly as Lambda reads it.

The object's keys are Lambda's: ``username``/``password`` (BASIC_AUTH, SASL_SCRAM_*),
``certificate``/``privateKey``/``privateKeyPassword`` (CLIENT_CERTIFICATE_TLS_AUTH),
``certificate`` (SERVER_ROOT_CA_CERTIFICATE). Every value must be a string.

Errors name the URI and what is wrong, never a secret's contents. A JSON syntax error is
re-raised without its cause, since :class:`json.JSONDecodeError` carries the whole document.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from runtime.sources.aws import AwsClients, error_code
from runtime.sources.base import SourceError

ENV_SCHEME = "env://"
FILE_SCHEME = "file://"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SECRETS_MANAGER_ARN = re.compile(
    r"^arn:aws[a-zA-Z-]*:secretsmanager:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):secret:\S+$"
)
_SUPPORTED = (
    "use env://VAR, file:///path or arn:aws:secretsmanager:<region>:<account>:secret:<name>"
)


class SecretError(SourceError):
    """A secret URI that cannot be resolved. The message names the URI, never the secret."""


def check_secret_uri(uri: str) -> None:
    """Raise :class:`SecretError` if ``uri`` is not a usable secret URI (syntax only)."""
    if uri.startswith(ENV_SCHEME):
        _env_name(uri)
    elif uri.startswith(FILE_SCHEME):
        _file_path(uri)
    elif uri.startswith("arn:"):
        _secrets_manager_region(uri)
    else:
        raise SecretError(f"secret {uri!r}: unsupported secret URI ({_SUPPORTED})")


def is_secrets_manager_arn(uri: str) -> bool:
    return SECRETS_MANAGER_ARN.match(uri) is not None


def resolve_local_secret(uri: str) -> dict[str, str]:
    """Resolve an ``env://`` or ``file://`` secret URI (no AWS access)."""
    if uri.startswith(ENV_SCHEME):
        name = _env_name(uri)
        text = os.environ.get(name)
        if text is None:
            raise SecretError(f"secret {uri!r}: environment variable {name} is not set")
        return _parse_json(uri, text, f"environment variable {name}")
    if uri.startswith(FILE_SCHEME):
        path = _file_path(uri)
        if path.is_dir():
            return _read_directory(uri, path)
        return _parse_json(uri, _read_text(uri, path), f"file {path}")
    if uri.startswith("arn:"):
        _secrets_manager_region(uri)  # a malformed ARN gets its own message
        raise SecretError(
            f"secret {uri!r}: a Secrets Manager ARN needs AWS access; resolve it with "
            "resolve_secret()"
        )
    raise SecretError(f"secret {uri!r}: unsupported secret URI ({_SUPPORTED})")


async def resolve_secret(uri: str, clients: AwsClients | None) -> dict[str, str]:
    """Resolve any supported secret URI; Secrets Manager ARNs go through ``clients``.

    Local sources are read synchronously: they are small files or environment variables, read
    once when a source starts.
    """
    if not uri.startswith("arn:"):
        return resolve_local_secret(uri)
    region = _secrets_manager_region(uri)
    if clients is None:
        raise SecretError(f"secret {uri!r}: a Secrets Manager ARN needs AWS clients")
    client = await clients.client("secretsmanager", region)
    try:
        response: dict[str, Any] = await client.get_secret_value(SecretId=uri)
    except ClientError as exc:
        code = error_code(exc) or "unknown error"
        detail = exc.response.get("Error", {}).get("Message") or ""
        raise SecretError(
            f"secret {uri!r}: Secrets Manager GetSecretValue failed ({code})"
            + (f": {detail}" if detail else "")
        ) from exc
    except BotoCoreError as exc:
        raise SecretError(f"secret {uri!r}: Secrets Manager GetSecretValue failed: {exc}") from exc
    text = response.get("SecretString")
    if not isinstance(text, str):
        raise SecretError(
            f"secret {uri!r}: has no SecretString (binary secrets are not supported; store "
            "the JSON object as a string)"
        )
    return _parse_json(uri, text, "SecretString")


async def resolve_secrets(
    uris: Iterable[str], clients: AwsClients | None
) -> dict[str, dict[str, str]]:
    """Resolve each distinct URI once, keyed by URI (the shape ``librdkafka_security`` takes)."""
    resolved: dict[str, dict[str, str]] = {}
    for uri in uris:
        if uri not in resolved:
            resolved[uri] = await resolve_secret(uri, clients)
    return resolved


def _env_name(uri: str) -> str:
    name = uri[len(ENV_SCHEME) :]
    if not _ENV_NAME.match(name):
        raise SecretError(
            f"secret {uri!r}: env:// must be followed by an environment variable name "
            "(letters, digits and _, not starting with a digit)"
        )
    return name


def _file_path(uri: str) -> Path:
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
        raise SecretError(
            f"secret {uri!r}: a file URI needs an absolute path, written file:///path "
            "(three slashes)"
        )
    if parts.query or parts.fragment:
        raise SecretError(f"secret {uri!r}: a file URI takes no query or fragment")
    return Path(unquote(parts.path))


def _secrets_manager_region(uri: str) -> str:
    match = SECRETS_MANAGER_ARN.match(uri)
    if match is None:
        raise SecretError(
            f"secret {uri!r}: not a Secrets Manager secret ARN "
            "(arn:aws:secretsmanager:<region>:<account>:secret:<name>)"
        )
    return match["region"]


def _read_text(uri: str, path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SecretError(f"secret {uri!r}: {path} does not exist") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SecretError(f"secret {uri!r}: cannot read {path}: {reason}") from None
    # The UnicodeDecodeError holds the file's bytes: it must not become the error's context.
    text: str | None = None
    with contextlib.suppress(UnicodeDecodeError):
        text = data.decode("utf-8")
    if text is None:
        raise SecretError(f"secret {uri!r}: {path} is not UTF-8 text")
    return text


def _read_directory(uri: str, path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        entries = sorted(path.iterdir())
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SecretError(f"secret {uri!r}: cannot list {path}: {reason}") from None
    for entry in entries:
        if entry.name.startswith(".") or entry.is_dir():
            continue  # Kubernetes' ..data / ..<timestamp> entries, and anything nested
        text = _read_text(uri, entry)
        if text.endswith("\r\n"):
            text = text[:-2]
        elif text.endswith("\n"):
            text = text[:-1]
        values[entry.name] = text
    if not values:
        raise SecretError(f"secret {uri!r}: directory {path} holds no secret keys (files)")
    return values


def _parse_json(uri: str, text: str, where: str) -> dict[str, str]:
    problem: str | None = None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        # Keep only the position: the exception's ``doc`` is the secret itself, so it must not
        # travel as this error's cause or context (hence the raise outside this block).
        problem = f"{where} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    if problem is not None:
        raise SecretError(f"secret {uri!r}: {problem}")
    if not isinstance(data, dict):
        raise SecretError(f"secret {uri!r}: {where} must be a JSON object, not {_json_type(data)}")
    for key, value in data.items():
        if not isinstance(value, str):
            raise SecretError(
                f"secret {uri!r}: value of {key!r} in {where} must be a string, "
                f"not {_json_type(value)}"
            )
    return data


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
