"""SourceAccessConfigurations -> librdkafka security settings, and their redaction.

The last tests build real confluent_kafka Consumers from rendered settings (PEMs made with the
``openssl`` command at test time): librdkafka checks every key and PEM when the client is
created, before any connection.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import traceback
from collections.abc import Mapping
from pathlib import Path

import confluent_kafka
import pytest

from runtime.config.model import SourceAccessConfiguration, SourceAccessType
from runtime.sources.base import SourceError
from runtime.sources.kafka_auth import (
    REDACTED,
    UNSUPPORTED_TYPES,
    KafkaAuthError,
    access_problems,
    librdkafka_security,
    redacted,
    secret_uris,
)
from runtime.sources.kafka_secrets import resolve_local_secret

T = SourceAccessType
SENTINEL = "s3cr3t-SENTINEL-value"
KEY_SENTINEL = "KEYSENTINEL"

SASL_URI = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:kafka/sasl-AbCdEf"
CA_URI = "file:///etc/secrets/kafka-ca"
CERT_URI = "env://KAFKA_CLIENT_CERT"

CA_PEM = "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"
CERT_PEM = (
    "-----BEGIN CERTIFICATE-----\nLEAF\n-----END CERTIFICATE-----\n"
    "-----BEGIN CERTIFICATE-----\nINTERMEDIATE\n-----END CERTIFICATE-----\n"
)
KEY_PEM = f"-----BEGIN PRIVATE KEY-----\n{KEY_SENTINEL}\n-----END PRIVATE KEY-----\n"

SASL_SECRET = {"username": "alice", "password": SENTINEL}
CA_SECRET = {"certificate": CA_PEM}
CERT_SECRET = {"certificate": CERT_PEM, "privateKey": KEY_PEM}

SECRETS: dict[str, dict[str, str]] = {
    SASL_URI: SASL_SECRET,
    CA_URI: CA_SECRET,
    CERT_URI: CERT_SECRET,
}


def sac(type_: SourceAccessType | str, uri: str) -> SourceAccessConfiguration:
    return SourceAccessConfiguration.model_validate({"Type": str(type_), "URI": uri})


def error_of(
    access: list[SourceAccessConfiguration],
    secrets: Mapping[str, dict[str, str]] = SECRETS,
    tls: bool | None = None,
) -> KafkaAuthError:
    with pytest.raises(KafkaAuthError) as info:
        librdkafka_security(access, secrets, tls)
    return info.value


# --- mapping ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "mechanism"),
    [
        (T.BASIC_AUTH, "PLAIN"),
        (T.SASL_SCRAM_256_AUTH, "SCRAM-SHA-256"),
        (T.SASL_SCRAM_512_AUTH, "SCRAM-SHA-512"),
    ],
)
def test_sasl_mechanisms_use_tls_by_default(type_: SourceAccessType, mechanism: str) -> None:
    assert librdkafka_security([sac(type_, SASL_URI)], SECRETS) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": mechanism,
        "sasl.username": "alice",
        "sasl.password": SENTINEL,
    }


@pytest.mark.parametrize(
    ("tls", "protocol"), [(None, "SASL_SSL"), (True, "SASL_SSL"), (False, "SASL_PLAINTEXT")]
)
def test_sasl_protocol(tls: bool | None, protocol: str) -> None:
    conf = librdkafka_security([sac(T.SASL_SCRAM_512_AUTH, SASL_URI)], SECRETS, tls)
    assert conf["security.protocol"] == protocol


@pytest.mark.parametrize(
    ("tls", "protocol"), [(None, "PLAINTEXT"), (True, "SSL"), (False, "PLAINTEXT")]
)
def test_no_authentication(tls: bool | None, protocol: str) -> None:
    assert librdkafka_security([], {}, tls) == {"security.protocol": protocol}


@pytest.mark.parametrize("tls", [None, True])
def test_server_root_ca_only(tls: bool | None) -> None:
    assert librdkafka_security([sac(T.SERVER_ROOT_CA_CERTIFICATE, CA_URI)], SECRETS, tls) == {
        "security.protocol": "SSL",
        "ssl.ca.pem": CA_PEM,
    }


@pytest.mark.parametrize("tls", [None, True])
def test_client_certificate(tls: bool | None) -> None:
    assert librdkafka_security([sac(T.CLIENT_CERTIFICATE_TLS_AUTH, CERT_URI)], SECRETS, tls) == {
        "security.protocol": "SSL",
        "ssl.certificate.pem": CERT_PEM,
        "ssl.key.pem": KEY_PEM,
    }


def test_client_certificate_with_key_password() -> None:
    secrets = {CERT_URI: {**CERT_SECRET, "privateKeyPassword": SENTINEL}}
    conf = librdkafka_security([sac(T.CLIENT_CERTIFICATE_TLS_AUTH, CERT_URI)], secrets)
    assert conf["ssl.key.password"] == SENTINEL


def test_client_certificate_empty_key_password_is_omitted() -> None:
    secrets = {CERT_URI: {**CERT_SECRET, "privateKeyPassword": ""}}
    conf = librdkafka_security([sac(T.CLIENT_CERTIFICATE_TLS_AUTH, CERT_URI)], secrets)
    assert "ssl.key.password" not in conf


def test_everything_together() -> None:
    access = [
        sac(T.VPC_SUBNET, "subnet:subnet-0123456789abcdef0"),
        sac(T.SASL_SCRAM_256_AUTH, SASL_URI),
        sac(T.SERVER_ROOT_CA_CERTIFICATE, CA_URI),
        sac(T.CLIENT_CERTIFICATE_TLS_AUTH, CERT_URI),
        sac(T.VPC_SECURITY_GROUP, "security_group:sg-0123456789abcdef0"),
    ]
    assert librdkafka_security(access, SECRETS) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "alice",
        "sasl.password": SENTINEL,
        "ssl.ca.pem": CA_PEM,
        "ssl.certificate.pem": CERT_PEM,
        "ssl.key.pem": KEY_PEM,
    }


def test_sasl_with_root_ca() -> None:
    access = [sac(T.BASIC_AUTH, SASL_URI), sac(T.SERVER_ROOT_CA_CERTIFICATE, CA_URI)]
    conf = librdkafka_security(access, SECRETS)
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["ssl.ca.pem"] == CA_PEM


@pytest.mark.parametrize("tls", [None, False])
def test_vpc_types_are_ignored(tls: bool | None) -> None:
    access = [
        sac(T.VPC_SUBNET, "subnet:subnet-0123456789abcdef0"),
        sac(T.VPC_SECURITY_GROUP, "security_group:sg-0123456789abcdef0"),
    ]
    assert access_problems(access) == []
    assert secret_uris(access) == []
    assert librdkafka_security(access, {}, tls) == {"security.protocol": "PLAINTEXT"}


def test_extra_secret_keys_are_ignored() -> None:
    secrets = {SASL_URI: {**SASL_SECRET, "note": "rotated monthly"}}
    conf = librdkafka_security([sac(T.BASIC_AUTH, SASL_URI)], secrets)
    assert "note" not in json.dumps(conf)


def test_secret_uris_in_order_without_repeats() -> None:
    access = [
        sac(T.VPC_SUBNET, "subnet:subnet-1"),
        sac(T.CLIENT_CERTIFICATE_TLS_AUTH, CERT_URI),
        sac(T.SERVER_ROOT_CA_CERTIFICATE, CERT_URI),
        sac(T.BASIC_AUTH, SASL_URI),
    ]
    assert secret_uris(access) == [CERT_URI, SASL_URI]


def test_same_secret_for_ca_and_client_certificate() -> None:
    secrets = {CERT_URI: CERT_SECRET}
    access = [
        sac(T.SERVER_ROOT_CA_CERTIFICATE, CERT_URI),
        sac(T.CLIENT_CERTIFICATE_TLS_AUTH, CERT_URI),
    ]
    conf = librdkafka_security(access, secrets)
    assert conf["ssl.ca.pem"] == conf["ssl.certificate.pem"] == CERT_PEM


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pair",
    [
        (T.BASIC_AUTH, T.SASL_SCRAM_256_AUTH),
        (T.SASL_SCRAM_256_AUTH, T.SASL_SCRAM_512_AUTH),
        (T.BASIC_AUTH, T.SASL_SCRAM_512_AUTH),
        (T.BASIC_AUTH, T.BASIC_AUTH),
    ],
)
def test_more_than_one_sasl_mechanism(pair: tuple[SourceAccessType, SourceAccessType]) -> None:
    access = [sac(t, SASL_URI) for t in pair]
    err = error_of(access)
    assert err.problems == [
        f"SourceAccessConfigurations: more than one SASL mechanism ({pair[0]}, {pair[1]}); give "
        "exactly one of BASIC_AUTH, SASL_SCRAM_256_AUTH, SASL_SCRAM_512_AUTH"
    ]
    assert access_problems(access) == err.problems


@pytest.mark.parametrize("type_", [T.SERVER_ROOT_CA_CERTIFICATE, T.CLIENT_CERTIFICATE_TLS_AUTH])
def test_tls_material_given_twice(type_: SourceAccessType) -> None:
    err = error_of([sac(type_, CA_URI), sac(type_, CERT_URI)])
    assert err.problems == [f"SourceAccessConfigurations: {type_} is given more than once"]


@pytest.mark.parametrize("type_", sorted(UNSUPPORTED_TYPES))
def test_unsupported_types(type_: SourceAccessType) -> None:
    err = error_of([sac(type_, SASL_URI)])
    assert len(err.problems) == 1
    assert err.problems[0].startswith(f"SourceAccessConfigurations: {type_}: ")
    assert "not supported" in err.problems[0] or "Amazon MQ" in err.problems[0]


def test_unsupported_type_messages() -> None:
    assert "Amazon MSK" in error_of([sac(T.IAM_AUTH, "x")]).problems[0]
    assert "OAUTHBEARER" in error_of([sac(T.OAUTHBEARER_AUTH, SASL_URI)]).problems[0]
    assert "Amazon MQ" in error_of([sac(T.VIRTUAL_HOST, "/vhost")]).problems[0]


def test_every_type_is_handled() -> None:
    from runtime.sources.kafka_auth import IGNORED_TYPES, SECRET_TYPES

    assert set(SourceAccessType) == SECRET_TYPES | IGNORED_TYPES | set(UNSUPPORTED_TYPES)


def test_all_problems_are_listed_at_once() -> None:
    err = error_of(
        [
            sac(T.IAM_AUTH, "x"),
            sac(T.BASIC_AUTH, SASL_URI),
            sac(T.SASL_SCRAM_512_AUTH, SASL_URI),
            sac(T.SERVER_ROOT_CA_CERTIFICATE, "https://example.com/ca.pem"),
        ]
    )
    assert len(err.problems) == 3
    assert str(err) == "; ".join(err.problems)


def test_bad_secret_uri() -> None:
    err = error_of([sac(T.SERVER_ROOT_CA_CERTIFICATE, "https://example.com/ca.pem")])
    assert err.problems == [
        "SourceAccessConfigurations: SERVER_ROOT_CA_CERTIFICATE: secret "
        "'https://example.com/ca.pem': unsupported secret URI (use env://VAR, file:///path or "
        "arn:aws:secretsmanager:<region>:<account>:secret:<name>)"
    ]


def test_unresolved_secret() -> None:
    err = error_of([sac(T.BASIC_AUTH, SASL_URI)], {})
    assert err.problems == [
        f"SourceAccessConfigurations: BASIC_AUTH: secret {SASL_URI!r} was not resolved"
    ]


@pytest.mark.parametrize("missing", ["username", "password"])
def test_sasl_secret_missing_key(missing: str) -> None:
    secret = {k: v for k, v in SASL_SECRET.items() if k != missing}
    err = error_of([sac(T.SASL_SCRAM_512_AUTH, SASL_URI)], {SASL_URI: secret})
    assert err.problems == [
        f"SourceAccessConfigurations: SASL_SCRAM_512_AUTH: secret {SASL_URI!r} has no {missing!r}"
    ]


def test_sasl_secret_empty_values() -> None:
    err = error_of([sac(T.BASIC_AUTH, SASL_URI)], {SASL_URI: {"username": "", "password": " \n"}})
    assert err.problems == [
        f"SourceAccessConfigurations: BASIC_AUTH: secret {SASL_URI!r} has an empty 'username'",
        f"SourceAccessConfigurations: BASIC_AUTH: secret {SASL_URI!r} has an empty 'password'",
    ]


def test_root_ca_secret_without_certificate() -> None:
    err = error_of([sac(T.SERVER_ROOT_CA_CERTIFICATE, CA_URI)], {CA_URI: {"cert": CA_PEM}})
    assert err.problems == [
        f"SourceAccessConfigurations: SERVER_ROOT_CA_CERTIFICATE: secret {CA_URI!r} has no "
        "'certificate'"
    ]


def test_root_ca_not_pem() -> None:
    err = error_of([sac(T.SERVER_ROOT_CA_CERTIFICATE, CA_URI)], {CA_URI: {"certificate": "MIIB"}})
    assert err.problems == [
        f"SourceAccessConfigurations: SERVER_ROOT_CA_CERTIFICATE: 'certificate' of secret "
        f"{CA_URI!r} is not a PEM certificate (-----BEGIN ...CERTIFICATE-----)"
    ]


def test_client_certificate_without_private_key() -> None:
    err = error_of(
        [sac(T.CLIENT_CERTIFICATE_TLS_AUTH, CERT_URI)], {CERT_URI: {"certificate": CERT_PEM}}
    )
    assert err.problems == [
        f"SourceAccessConfigurations: CLIENT_CERTIFICATE_TLS_AUTH: secret {CERT_URI!r} has a "
        "certificate but no 'privateKey': a client certificate needs its private key"
    ]


def test_client_certificate_with_empty_private_key() -> None:
    secrets = {CERT_URI: {"certificate": CERT_PEM, "privateKey": ""}}
    err = error_of([sac(T.CLIENT_CERTIFICATE_TLS_AUTH, CERT_URI)], secrets)
    assert "needs its private key" in str(err)


def test_client_certificate_missing_certificate() -> None:
    err = error_of(
        [sac(T.CLIENT_CERTIFICATE_TLS_AUTH, CERT_URI)], {CERT_URI: {"privateKey": KEY_PEM}}
    )
    assert err.problems == [
        f"SourceAccessConfigurations: CLIENT_CERTIFICATE_TLS_AUTH: secret {CERT_URI!r} has no "
        "'certificate'"
    ]


def test_client_certificate_not_pem() -> None:
    secrets = {CERT_URI: {"certificate": "MIIB" + SENTINEL, "privateKey": SENTINEL}}
    err = error_of([sac(T.CLIENT_CERTIFICATE_TLS_AUTH, CERT_URI)], secrets)
    assert err.problems == [
        f"SourceAccessConfigurations: CLIENT_CERTIFICATE_TLS_AUTH: 'certificate' of secret "
        f"{CERT_URI!r} is not a PEM certificate (-----BEGIN ...CERTIFICATE-----)",
        f"SourceAccessConfigurations: CLIENT_CERTIFICATE_TLS_AUTH: 'privateKey' of secret "
        f"{CERT_URI!r} is not a PEM private key (-----BEGIN ...PRIVATE KEY-----)",
    ]


@pytest.mark.parametrize(
    ("access", "named"),
    [
        ([sac(T.SERVER_ROOT_CA_CERTIFICATE, CA_URI)], "SERVER_ROOT_CA_CERTIFICATE given"),
        ([sac(T.CLIENT_CERTIFICATE_TLS_AUTH, CERT_URI)], "CLIENT_CERTIFICATE_TLS_AUTH given"),
        (
            [
                sac(T.BASIC_AUTH, SASL_URI),
                sac(T.SERVER_ROOT_CA_CERTIFICATE, CA_URI),
                sac(T.CLIENT_CERTIFICATE_TLS_AUTH, CERT_URI),
            ],
            "CLIENT_CERTIFICATE_TLS_AUTH and SERVER_ROOT_CA_CERTIFICATE given",
        ),
    ],
)
def test_tls_material_with_tls_off(access: list[SourceAccessConfiguration], named: str) -> None:
    err = error_of(access, tls=False)
    assert err.problems == [
        f"SourceAccessConfigurations: {named}, but the brokers are set not to use TLS"
    ]


def test_kafka_auth_error_is_a_source_error() -> None:
    assert issubclass(KafkaAuthError, SourceError)


# --- secrets never leak ----------------------------------------------------------------------


LEAKY_CASES: list[
    tuple[list[SourceAccessConfiguration], dict[str, dict[str, str]], bool | None]
] = [
    ([sac(T.BASIC_AUTH, SASL_URI)], {SASL_URI: {"username": SENTINEL}}, None),
    ([sac(T.BASIC_AUTH, SASL_URI)], {SASL_URI: {"password": SENTINEL}}, None),
    ([sac(T.BASIC_AUTH, SASL_URI), sac(T.SASL_SCRAM_256_AUTH, SASL_URI)], SECRETS, None),
    ([sac(T.CLIENT_CERTIFICATE_TLS_AUTH, CERT_URI)], {CERT_URI: {"certificate": SENTINEL}}, None),
    (
        [sac(T.CLIENT_CERTIFICATE_TLS_AUTH, CERT_URI)],
        {CERT_URI: {"certificate": CERT_PEM + SENTINEL, "privateKey": "x" + SENTINEL}},
        None,
    ),
    (
        [sac(T.CLIENT_CERTIFICATE_TLS_AUTH, CERT_URI)],
        {CERT_URI: {**CERT_SECRET, "privateKeyPassword": SENTINEL}},
        False,
    ),
    ([sac(T.SERVER_ROOT_CA_CERTIFICATE, CA_URI)], {CA_URI: {"certificate": SENTINEL}}, None),
    ([sac(T.IAM_AUTH, SASL_URI), sac(T.BASIC_AUTH, SASL_URI)], SECRETS, False),
]


@pytest.mark.parametrize(("access", "secrets", "tls"), LEAKY_CASES)
def test_errors_never_contain_secret_values(
    access: list[SourceAccessConfiguration], secrets: dict[str, dict[str, str]], tls: bool | None
) -> None:
    err = error_of(access, secrets, tls)
    for text in (str(err), repr(err), "".join(traceback.format_exception(err)), *err.problems):
        assert SENTINEL not in text
        assert KEY_SENTINEL not in text


# --- redaction -------------------------------------------------------------------------------


def test_redacted_masks_secret_settings() -> None:
    access = [
        sac(T.SASL_SCRAM_512_AUTH, SASL_URI),
        sac(T.SERVER_ROOT_CA_CERTIFICATE, CA_URI),
        sac(T.CLIENT_CERTIFICATE_TLS_AUTH, CERT_URI),
    ]
    conf = librdkafka_security(
        access, {**SECRETS, CERT_URI: {**CERT_SECRET, "privateKeyPassword": "kp"}}
    )
    shown = redacted(conf)
    assert shown == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "alice",
        "sasl.password": REDACTED,
        "ssl.ca.pem": CA_PEM,
        "ssl.certificate.pem": REDACTED,
        "ssl.key.pem": REDACTED,
        "ssl.key.password": REDACTED,
    }
    assert SENTINEL not in repr(shown) and KEY_SENTINEL not in repr(shown)
    assert conf["sasl.password"] == SENTINEL  # the input is left alone


def test_redacted_keeps_only_settings_known_to_be_safe() -> None:
    """An allow-list: secret-bearing settings nobody listed are masked too."""
    conf: dict[str, object] = {
        "bootstrap.servers": "b:9092",
        "session.timeout.ms": 45000,
        "fetch.max.bytes": 1024,
        "enable.auto.commit": False,
        "sasl.password": SENTINEL,
        "ssl.keystore.password": SENTINEL,
        "sasl.oauthbearer.client.secret": SENTINEL,
        "sasl.oauthbearer.config": f"principal=me secret={SENTINEL}",
        "sasl.jaas.config": SENTINEL,
        "some.future.setting": SENTINEL,
    }
    assert redacted(conf) == {
        "bootstrap.servers": "b:9092",
        "session.timeout.ms": 45000,
        "fetch.max.bytes": 1024,
        "enable.auto.commit": False,
        "sasl.password": REDACTED,
        "ssl.keystore.password": REDACTED,
        "sasl.oauthbearer.client.secret": REDACTED,
        "sasl.oauthbearer.config": REDACTED,
        "sasl.jaas.config": REDACTED,
        "some.future.setting": REDACTED,
    }
    assert redacted({}) == {}


# --- librdkafka accepts the rendered settings ------------------------------------------------


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A throwaway CA, a client certificate it signed, its key (plain, encrypted), another key."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=ca")
    run("req", *ec, "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=client")
    run(
        "x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "client.pem", "-days", "1",
    )  # fmt: skip
    run("pkcs8", "-topk8", "-in", "client.key", "-out", "client.enc.key", "-passout", "pass:kp4ss")
    run("req", *ec, "-keyout", "other.key", "-out", "other.csr", "-subj", "/CN=other")
    return {
        name: (d / name).read_text()
        for name in ("ca.pem", "client.pem", "client.key", "client.enc.key", "other.key")
    }


def consumer(security: dict[str, str]) -> None:
    """Create (librdkafka validates the configuration and loads the PEMs) and close at once."""
    c = confluent_kafka.Consumer(
        {
            "bootstrap.servers": "127.0.0.1:1",
            "group.id": "kafka-auth-test",
            "log_level": 0,  # no "connection refused" chatter
            **security,
        }
    )
    c.close()


def write_secret_dir(root: Path, data: dict[str, str]) -> str:
    root.mkdir()
    for key, value in data.items():
        (root / key).write_text(value)
    return f"file://{root}"


def test_librdkafka_accepts_sasl_ssl_with_mtls(pems: dict[str, str], tmp_path: Path) -> None:
    """SCRAM over TLS with a private root CA and a client certificate chain + encrypted key,
    the secrets read from Kubernetes-style secret directories."""
    sasl_uri = write_secret_dir(tmp_path / "sasl", {"username": "alice\n", "password": "pw\n"})
    ca_uri = write_secret_dir(tmp_path / "ca", {"certificate": pems["ca.pem"]})
    cert_uri = write_secret_dir(
        tmp_path / "cert",
        {
            "certificate": pems["client.pem"] + pems["ca.pem"],
            "privateKey": pems["client.enc.key"],
            "privateKeyPassword": "kp4ss\n",
        },
    )
    access = [
        sac(T.SASL_SCRAM_512_AUTH, sasl_uri),
        sac(T.SERVER_ROOT_CA_CERTIFICATE, ca_uri),
        sac(T.CLIENT_CERTIFICATE_TLS_AUTH, cert_uri),
    ]
    secrets = {uri: resolve_local_secret(uri) for uri in secret_uris(access)}
    security = librdkafka_security(access, secrets)
    assert security["security.protocol"] == "SASL_SSL"
    assert security["ssl.key.password"] == "kp4ss"
    consumer(security)


@pytest.mark.parametrize("type_", [T.BASIC_AUTH, T.SASL_SCRAM_256_AUTH, T.SASL_SCRAM_512_AUTH])
def test_librdkafka_accepts_each_sasl_mechanism(
    pems: dict[str, str], type_: SourceAccessType
) -> None:
    access = [sac(type_, SASL_URI), sac(T.SERVER_ROOT_CA_CERTIFICATE, CA_URI)]
    consumer(
        librdkafka_security(
            access, {SASL_URI: SASL_SECRET, CA_URI: {"certificate": pems["ca.pem"]}}
        )
    )
    consumer(librdkafka_security([sac(type_, SASL_URI)], SECRETS, tls=False))  # SASL_PLAINTEXT


def test_librdkafka_accepts_ssl_with_plain_key(pems: dict[str, str]) -> None:
    secrets = {
        CA_URI: {"certificate": pems["ca.pem"]},
        CERT_URI: {"certificate": pems["client.pem"], "privateKey": pems["client.key"]},
    }
    access = [
        sac(T.SERVER_ROOT_CA_CERTIFICATE, CA_URI),
        sac(T.CLIENT_CERTIFICATE_TLS_AUTH, CERT_URI),
    ]
    security = librdkafka_security(access, secrets)
    assert security["security.protocol"] == "SSL"
    consumer(security)
    consumer(librdkafka_security([], {}, tls=True))  # SSL against the system CA store
    consumer(librdkafka_security([], {}))  # PLAINTEXT


@pytest.mark.parametrize(
    ("key", "password", "expected"),
    [("other.key", None, "key values mismatch"), ("client.enc.key", "wrong", "ssl.key.pem")],
)
def test_librdkafka_really_checks_the_pems(
    pems: dict[str, str], key: str, password: str | None, expected: str
) -> None:
    """Proof that the tests above exercise librdkafka's checks: a bad key is refused."""
    cert = {"certificate": pems["client.pem"], "privateKey": pems[key]}
    if password is not None:
        cert["privateKeyPassword"] = password
    security = librdkafka_security([sac(T.CLIENT_CERTIFICATE_TLS_AUTH, CERT_URI)], {CERT_URI: cert})
    with pytest.raises(confluent_kafka.KafkaException, match=expected):
        consumer(security)
