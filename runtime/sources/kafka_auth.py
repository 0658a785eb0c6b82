"""A Kafka mapping's ``SourceAccessConfigurations`` as librdkafka security settings.

Mapping (secrets already resolved, see :mod:`runtime.sources.kafka_secrets`):

===============================  ======================================================
Type                             librdkafka settings
===============================  ======================================================
BASIC_AUTH                       ``sasl.mechanism=PLAIN``, ``sasl.username``, ``sasl.password``
SASL_SCRAM_256_AUTH              ``sasl.mechanism=SCRAM-SHA-256``, username, password
SASL_SCRAM_512_AUTH              ``sasl.mechanism=SCRAM-SHA-512``, username, password
SERVER_ROOT_CA_CERTIFICATE       ``ssl.ca.pem`` (``certificate``)
CLIENT_CERTIFICATE_TLS_AUTH      ``ssl.certificate.pem`` (``certificate``, may hold the chain),
                                 ``ssl.key.pem`` (``privateKey``), ``ssl.key.password``
                                 (``privateKeyPassword``, when given and not empty)
VPC_SUBNET, VPC_SECURITY_GROUP   ignored: they place Lambda's pollers in a VPC; self-hosted,
                                 the pod's own network reaches the brokers
(anything else)                  refused: IAM_AUTH and IAM_OAUTHBEARER_AUTH (MSK IAM),
                                 OAUTHBEARER_* (not implemented), VIRTUAL_HOST (Amazon MQ)
===============================  ======================================================

``security.protocol``: Lambda runs SASL on self-managed Kafka only over TLS ("Lambda doesn't
support SASL/SCRAM with plaintext"; SASL/PLAIN "must use TLS encryption"), and a root CA or a
client certificate only makes sense with TLS. So, with ``tls=None`` (infer), TLS is used when a
SASL mechanism, a SERVER_ROOT_CA_CERTIFICATE or a CLIENT_CERTIFICATE_TLS_AUTH is configured;
a mapping without any of them is PLAINTEXT. ``tls=True`` forces TLS (e.g. brokers with a public
certificate and no authentication: ``SSL``); ``tls=False`` says the brokers do not speak TLS, which
gives ``SASL_PLAINTEXT`` for SASL (a development cluster) and is refused together with a CA or
client certificate. Without ``ssl.ca.pem`` librdkafka verifies brokers against the system's CA
store. SASL together with a client certificate is passed on as given (``SASL_SSL`` plus the
certificate); Lambda's console offers one method at a time.

Errors (:class:`KafkaAuthError`) name the field, type, URI and secret key concerned, never a
secret's value. Log a configuration through :func:`redacted`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from runtime.config.model import SourceAccessConfiguration, SourceAccessType
from runtime.sources.base import SourceError
from runtime.sources.kafka_secrets import SecretError, check_secret_uri

T = SourceAccessType

SASL_MECHANISMS: dict[SourceAccessType, str] = {
    T.BASIC_AUTH: "PLAIN",
    T.SASL_SCRAM_256_AUTH: "SCRAM-SHA-256",
    T.SASL_SCRAM_512_AUTH: "SCRAM-SHA-512",
}
TLS_TYPES = frozenset({T.SERVER_ROOT_CA_CERTIFICATE, T.CLIENT_CERTIFICATE_TLS_AUTH})
# Types whose URI names a secret.
SECRET_TYPES = frozenset(SASL_MECHANISMS) | TLS_TYPES
# Accepted and ignored: network placement of Lambda's pollers, meaningless self-hosted.
IGNORED_TYPES = frozenset({T.VPC_SUBNET, T.VPC_SECURITY_GROUP})
UNSUPPORTED_TYPES: dict[SourceAccessType, str] = {
    T.IAM_AUTH: "IAM authentication is for Amazon MSK and is not supported",
    T.IAM_OAUTHBEARER_AUTH: "IAM authentication is for Amazon MSK and is not supported",
    T.OAUTHBEARER_AUTH: "OAuth (SASL/OAUTHBEARER) authentication is not supported",
    T.OAUTHBEARER_SCOPE: "OAuth (SASL/OAUTHBEARER) authentication is not supported",
    T.OAUTHBEARER_AUDIENCE: "OAuth (SASL/OAUTHBEARER) authentication is not supported",
    T.OAUTHBEARER_LOGICAL_CLUSTER: "OAuth (SASL/OAUTHBEARER) authentication is not supported",
    T.OAUTHBEARER_IDENTITY_POOL: "OAuth (SASL/OAUTHBEARER) authentication is not supported",
    T.VIRTUAL_HOST: "VIRTUAL_HOST is for Amazon MQ (RabbitMQ), not Kafka",
}

# librdkafka settings whose values are secret (or private) and must not be logged.
# Settings whose values may be logged. Everything else is masked: an allow-list, so that a
# secret-bearing setting nobody thought of (sasl.oauthbearer.config, sasl.jaas.config, a new
# librdkafka key passed through ESM_KAFKA_CONSUMER_CONFIG) is never printed.
SAFE_SETTINGS = frozenset(
    {
        "auto.offset.reset",
        "bootstrap.servers",
        "client.id",
        "client.rack",
        "compression.codec",
        "debug",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "enable.partition.eof",
        "group.id",
        "group.instance.id",
        "isolation.level",
        "partition.assignment.strategy",
        "sasl.mechanism",
        "sasl.mechanisms",
        "sasl.username",
        "security.protocol",
        "ssl.ca.location",
        "ssl.ca.pem",
        "ssl.endpoint.identification.algorithm",
    }
)
# Numeric tuning knobs (timeouts, sizes, counts) are never secrets.
_SAFE_SUFFIXES = (".ms", ".bytes", ".kbytes", ".messages", ".max", ".count", ".retries")
REDACTED = "***"

_FIELD = "SourceAccessConfigurations"
_V = TypeVar("_V")


class KafkaAuthError(SourceError):
    """SourceAccessConfigurations that cannot become librdkafka settings; lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def access_problems(access: Sequence[SourceAccessConfiguration]) -> list[str]:
    """Problems of the access configurations that need no secret (for ``validate``, too)."""
    problems: list[str] = []
    sasl = [a.type for a in access if a.type in SASL_MECHANISMS]
    if len(sasl) > 1:
        problems.append(
            f"{_FIELD}: more than one SASL mechanism ({', '.join(sasl)}); give exactly one of "
            "BASIC_AUTH, SASL_SCRAM_256_AUTH, SASL_SCRAM_512_AUTH"
        )
    for tls_type in sorted(TLS_TYPES):
        if sum(1 for a in access if a.type is tls_type) > 1:
            problems.append(f"{_FIELD}: {tls_type} is given more than once")
    for a in access:
        if a.type in UNSUPPORTED_TYPES:
            problems.append(f"{_FIELD}: {a.type}: {UNSUPPORTED_TYPES[a.type]}")
        elif a.type in SECRET_TYPES:
            try:
                check_secret_uri(a.uri)
            except SecretError as exc:
                problems.append(f"{_FIELD}: {a.type}: {exc}")
    return problems


def secret_uris(access: Sequence[SourceAccessConfiguration]) -> list[str]:
    """The URIs to resolve for :func:`librdkafka_security`, in order, without repeats."""
    return list(dict.fromkeys(a.uri for a in access if a.type in SECRET_TYPES))


def librdkafka_security(
    access: Sequence[SourceAccessConfiguration],
    secrets: Mapping[str, dict[str, str]],
    tls: bool | None = None,
) -> dict[str, str]:
    """librdkafka security settings for ``access``; ``secrets`` maps each URI to its secret.

    ``tls``: whether the brokers use TLS; None infers it (see the module docstring).
    Raises :class:`KafkaAuthError` listing every problem found.
    """
    problems = access_problems(access)
    if problems:
        raise KafkaAuthError(problems)
    conf: dict[str, str] = {}
    for a in access:
        if a.type not in SECRET_TYPES:
            continue  # ignored types (VPC_*)
        secret = secrets.get(a.uri)
        if secret is None:
            problems.append(f"{_FIELD}: {a.type}: secret {a.uri!r} was not resolved")
            continue
        if a.type in SASL_MECHANISMS:
            user, password = _require(a, secret, ("username", "password"), problems)
            conf["sasl.mechanism"] = SASL_MECHANISMS[a.type]
            conf["sasl.username"] = user
            conf["sasl.password"] = password
        elif a.type is T.SERVER_ROOT_CA_CERTIFICATE:
            (ca,) = _require(a, secret, ("certificate",), problems)
            _check_pem(a, "certificate", ca, "CERTIFICATE", problems)
            conf["ssl.ca.pem"] = ca
        else:  # CLIENT_CERTIFICATE_TLS_AUTH
            if secret.get("certificate") and not secret.get("privateKey"):
                problems.append(
                    f"{_FIELD}: {a.type}: secret {a.uri!r} has a certificate but no "
                    "'privateKey': a client certificate needs its private key"
                )
                continue
            cert, key = _require(a, secret, ("certificate", "privateKey"), problems)
            _check_pem(a, "certificate", cert, "CERTIFICATE", problems)
            _check_pem(a, "privateKey", key, "PRIVATE KEY", problems)
            conf["ssl.certificate.pem"] = cert
            conf["ssl.key.pem"] = key
            if secret.get("privateKeyPassword"):
                conf["ssl.key.password"] = secret["privateKeyPassword"]

    uses_sasl = any(a.type in SASL_MECHANISMS for a in access)
    tls_material = sorted({a.type for a in access if a.type in TLS_TYPES})
    if tls is False and tls_material:
        problems.append(
            f"{_FIELD}: {' and '.join(tls_material)} given, but the brokers are set not to use TLS"
        )
    if problems:
        raise KafkaAuthError(problems)
    use_tls = tls if tls is not None else bool(uses_sasl or tls_material)
    protocol = ("SASL_" if uses_sasl else "") + ("SSL" if use_tls else "PLAINTEXT")
    return {"security.protocol": protocol, **conf}


def redacted(conf: Mapping[str, _V]) -> dict[str, _V | str]:
    """``conf`` fit for a log line: only settings known to be safe keep their values."""
    return {k: (v if is_safe_setting(k) else REDACTED) for k, v in conf.items()}


def is_safe_setting(name: str) -> bool:
    return name in SAFE_SETTINGS or name.endswith(_SAFE_SUFFIXES)


def _require(
    a: SourceAccessConfiguration,
    secret: Mapping[str, str],
    keys: tuple[str, ...],
    problems: list[str],
) -> list[str]:
    values = []
    for key in keys:
        value = secret.get(key)
        if value is None:
            problems.append(f"{_FIELD}: {a.type}: secret {a.uri!r} has no {key!r}")
        elif not value.strip():
            problems.append(f"{_FIELD}: {a.type}: secret {a.uri!r} has an empty {key!r}")
        values.append(value or "")
    return values


def _check_pem(
    a: SourceAccessConfiguration, key: str, value: str, label: str, problems: list[str]
) -> None:
    """A cheap shape check, so a pasted value of the wrong kind gets a clear message."""
    if value.strip() and not ("-----BEGIN " in value and f"{label}-----" in value):
        problems.append(
            f"{_FIELD}: {a.type}: {key!r} of secret {a.uri!r} is not a PEM {label.lower()} "
            f"(-----BEGIN ...{label}-----)"
        )
