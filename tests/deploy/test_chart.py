"""The Helm chart, checked offline (no Kubernetes API server can run here): `helm lint
--strict`, `helm template` for the default values and realistic value sets, every rendered
object against the Kubernetes 1.35 schemas (kubernetes-validate), assertions on what the
objects say, bad values refused with a clear message, and the image the chart expects
(deploy/Dockerfile) matching it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from runtime.config.loader import build_config
from runtime.config.settings import Settings
from tests.support.emulator import REPO

CHART = REPO / "helm" / "esm-runtime"
HELM = REPO / ".k8s-tools" / "helm" / "helm"
KUBERNETES_VALIDATE = REPO / ".venv" / "bin" / "kubernetes-validate"
VALUE_SETS = sorted((CHART / "ci").glob("*-values.yaml"))
CASES = [None, *VALUE_SETS]


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    if not HELM.exists():
        pytest.fail(f"{HELM} is missing: run deploy/setup.sh --test")
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=60)


def render(values: Path | None = None, *sets: str) -> list[dict[str, Any]]:
    args = ["template", "rel", str(CHART), "--namespace", "esm"]
    if values is not None:
        args += ["-f", str(values)]
    for s in sets:
        args += ["--set", s]
    out = helm(*args)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def refused(*args: str) -> str:
    out = helm("template", "rel", str(CHART), *args)
    assert out.returncode != 0, "rendered although the values are wrong"
    return out.stderr


def kind(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The one object of a kind (the dashboard's ConfigMap aside)."""
    [obj] = [
        o for o in objects if o["kind"] == name and not o["metadata"]["name"].endswith("-dashboard")
    ]
    return obj


def test_lint_strict() -> None:
    out = helm("lint", "--strict", str(CHART))
    assert out.returncode == 0, out.stdout + out.stderr
    for values in VALUE_SETS:
        out = helm("lint", "--strict", str(CHART), "-f", str(values))
        assert out.returncode == 0, f"{values.name}: {out.stdout}{out.stderr}"


@pytest.mark.parametrize("values", CASES, ids=lambda v: "defaults" if v is None else v.stem)
def test_every_object_validates_against_the_kubernetes_schemas(
    values: Path | None, tmp_path: Path
) -> None:
    objects = render(values)
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(objects))
    out = subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "-k", "1.35.0", str(rendered)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    crds = {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ScaledObject"}
    for line in (out.stdout + out.stderr).splitlines():
        if line.startswith("WARN"):
            # Only custom resources lack a built-in schema (their shape is asserted below).
            assert any(c in line for c in crds), line


@pytest.mark.parametrize("values", CASES, ids=lambda v: "defaults" if v is None else v.stem)
def test_the_pod_is_locked_down_and_probes_the_runtime_s_endpoints(values: Path | None) -> None:
    objects = render(values)
    deployment = kind(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == ["esm-runtime"]
    assert container["args"] == ["run", "/etc/esm/config.yaml"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    # The probes name the runtime's own endpoints on its port.
    routes = set(
        re.findall(r'add_get\("(/\w+)"', (REPO / "runtime/supervisor/http.py").read_text())
    )
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz" in routes
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz" in routes
    port = next(p for p in container["ports"] if p["name"] == "http")
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert port["containerPort"] == int(env["ESM_HTTP_PORT"]) == 8080
    # SIGTERM drains for ESM_DRAIN_TIMEOUT_SECONDS, then the supervisor waits 10 s more.
    drain = int(env["ESM_DRAIN_TIMEOUT_SECONDS"])
    assert pod["terminationGracePeriodSeconds"] > drain + 10
    # Every path the runtime writes is a volume (the root filesystem is read-only).
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {env["ESM_DATA_DIR"], env["PROMETHEUS_MULTIPROC_DIR"], env["TMPDIR"]} <= mounts
    # The rendered configuration is one the runtime accepts.
    config = yaml.safe_load(kind(objects, "ConfigMap")["data"]["config.yaml"])
    build_config(config, "config.yaml", Settings(), import_handlers=False)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/config"])


def test_a_configuration_change_rolls_the_pods() -> None:
    def checksum(*sets: str) -> str:
        deployment = kind(render(VALUE_SETS[0], *sets), "Deployment")
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    assert checksum() == checksum()
    assert checksum() != checksum("config.functions.orders.Timeout=31")


def test_value_sets_render_what_they_ask_for() -> None:
    sqs = render(CHART / "ci" / "sqs-values.yaml")
    assert kind(sqs, "Deployment")["spec"]["replicas"] == 2
    assert kind(sqs, "ServiceMonitor")["spec"]["endpoints"][0]["path"] == "/metrics"
    sa = kind(sqs, "ServiceAccount")
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith("orders-esm")

    kafka = render(CHART / "ci" / "kafka-sasl-values.yaml")
    pod = kind(kafka, "Deployment")["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["KAFKA_SCRAM"]["valueFrom"]["secretKeyRef"]["name"] == "kafka-scram"
    assert env["ESM_KAFKA_SESSION_TIMEOUT_MS"]["value"] == "30000"
    assert pod["terminationGracePeriodSeconds"] == 80  # drain 60 + 20
    assert {"name": "secret-kafka-ca", "secret": {"secretName": "kafka-ca"}} in pod["volumes"]

    streams = render(CHART / "ci" / "kinesis-dynamodb-values.yaml")
    env = {
        e["name"]: e.get("value")
        for e in kind(streams, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["ESM_LEASE_STORE"] == "dynamodb" and env["ESM_LEASE_TABLE"] == "esm-leases-prod"
    rules = kind(streams, "PrometheusRule")["spec"]["groups"][0]["rules"]
    assert {r["alert"] for r in rules} >= {"EsmIteratorAgeHigh", "EsmUnitBlocked"}

    everything = render(CHART / "ci" / "everything-values.yaml")
    kinds = {o["kind"] for o in everything}
    assert kinds >= {
        "Deployment",
        "ConfigMap",
        "Service",
        "ServiceAccount",
        "PersistentVolumeClaim",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "PodMonitor",
        "PrometheusRule",
        "ScaledObject",
        "Pod",
    }
    deployment = kind(everything, "Deployment")
    assert deployment["spec"]["strategy"]["type"] == "Recreate"  # one pod on the SQLite volume
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "api", "containerPort": 9001, "protocol": "TCP"} in container["ports"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ESM_API_PORT"] == "9001"
    assert env["ESM_API_CREDENTIALS_FILE"] == "/etc/esm-api/credentials.json"
    service_ports = {p["name"] for p in kind(everything, "Service")["spec"]["ports"]}
    assert service_ports == {"http", "api"}
    policy = kind(everything, "NetworkPolicy")["spec"]["ingress"]
    assert any(r["ports"][0]["port"] == "api" for r in policy)
    assert "replicas" not in deployment["spec"]  # KEDA owns the count
    keda = kind(everything, "ScaledObject")["spec"]["triggers"][0]["metadata"]
    assert keda["ignoreNullValues"] == "false"
    dashboards = [o for o in everything if o["metadata"]["name"].endswith("-dashboard")]
    assert dashboards[0]["metadata"]["labels"]["grafana_dashboard"] == "1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "replicaCount=-1"], "at '/replicaCount': minimum: got -1, want 0"),
        (["--set", "leases.store=etcd"], "at '/leases/store'"),
        (["--set", "drainTimeoutSeconds=-5"], "at '/drainTimeoutSeconds'"),
        (["--set", "config.functions.fn.Timeout=901"], "at '/config/functions/fn"),
        (["--set", "unknownKey=1"], "additional properties 'unknownKey' not allowed"),
        (
            ["--set", "terminationGracePeriodSeconds=35"],
            "terminationGracePeriodSeconds (35) must exceed drainTimeoutSeconds + 10 (40)",
        ),
        (
            [
                "-f",
                str(CHART / "ci" / "kinesis-dynamodb-values.yaml"),
                "--set",
                "leases.store=sqlite",
            ],
            "replicaCount > 1 with Kinesis or DynamoDB Streams mappings needs leases.store: "
            "dynamodb",
        ),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(args: list[str], message: str) -> None:
    assert message in refused(*args)


def test_an_unknown_mapping_field_is_refused(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "config": {
                    "functions": {"fn": {"Handler": "handlers.orders.handler"}},
                    "eventSourceMappings": [
                        {
                            "FunctionName": "fn",
                            "EventSourceArn": "arn:aws:sqs:us-east-1:123456789012:q",
                            "BatchSizee": 5,
                        }
                    ],
                }
            }
        )
    )
    assert "'/config/eventSourceMappings/0': additional properties 'BatchSizee'" in refused(
        "-f", str(values)
    )


def test_the_schema_is_generated_from_the_runtime_s_models() -> None:
    from deploy.chart_schema import SCHEMA_PATH
    from deploy.chart_schema import render as schema

    assert SCHEMA_PATH.read_text() == schema(), "run: .venv/bin/python deploy/chart_schema.py"


def test_the_image_matches_what_the_chart_expects() -> None:
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    deployment = kind(render(), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert 'ENTRYPOINT ["esm-runtime"]' in dockerfile
    assert 'CMD ["run", "/etc/esm/config.yaml"]' in dockerfile
    uid = pod["securityContext"]["runAsUser"]
    assert f"USER {uid}:{pod['securityContext']['runAsGroup']}" in dockerfile
    assert f"ESM_DATA_DIR={env['ESM_DATA_DIR']}" in dockerfile
    assert f"PROMETHEUS_MULTIPROC_DIR={env['PROMETHEUS_MULTIPROC_DIR']}" in dockerfile
    assert "EXPOSE 8080" in dockerfile
    assert "COPY handlers ./handlers" in dockerfile and "WORKDIR /app" in dockerfile


def env_of(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    pod = kind(objects, "Deployment")["spec"]["template"]["spec"]
    return {e["name"]: e for e in pod["containers"][0]["env"]}


def test_review_findings_on_real_clusters(tmp_path: Path) -> None:
    """Found by review: defaults that would have broken on a real cluster."""
    defaults = render()
    env = env_of(defaults)
    # Workers follow the CPU request, not the node's cores.
    assert env["ESM_WORKERS"]["valueFrom"]["resourceFieldRef"]["resource"] == "requests.cpu"
    # A slow start (source checks before /healthz) is covered by a startup probe.
    container = kind(defaults, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert (
        container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"]
        >= 120
    )
    # Numbers in settings stay numbers (a values file loads 33554432 as a float).
    values = tmp_path / "settings.yaml"
    values.write_text("settings:\n  UNIT_BUFFER_BYTES: 33554432\n  SQS_EXTEND_VISIBILITY: false\n")
    env = env_of(render(values))
    assert env["ESM_UNIT_BUFFER_BYTES"]["value"] == "33554432"
    assert env["ESM_SQS_EXTEND_VISIBILITY"]["value"] == "false"
    # Stream mappings on SQLite: never two pods at once, even during a rollout.
    streams = render(CHART / "ci" / "kinesis-dynamodb-values.yaml", "leases.store=sqlite",
                     "replicaCount=1")  # fmt: skip
    assert kind(streams, "Deployment")["spec"]["strategy"]["type"] == "Recreate"
    # The helm test pod is not selected as a runtime pod.
    [test_pod] = [o for o in defaults if o["kind"] == "Pod"]
    assert "app.kubernetes.io/name" not in test_pod["metadata"]["labels"]


def test_network_policy_egress_and_the_test_pod() -> None:
    objects = render(CHART / "ci" / "everything-values.yaml", "networkPolicy.allowAllEgress=false")
    policy = kind(objects, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert {"port": 53, "protocol": "UDP"} in policy["egress"][0]["ports"]
    peers = policy["ingress"][0]["from"]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "rel",
            "app.kubernetes.io/component": "test"}}} in peers  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "settings.HTTP_PORT=9000"], "settings.HTTP_PORT: set by the chart"),
        (["--set", "api.enabled=true"], "api.enabled needs api.credentialsSecret"),
        (["--set", "api.enabled=true", "--set", "api.credentialsSecret=k", "--set",
          "replicaCount=2"], "api.enabled with several replicas needs leases.store: dynamodb"),
        (
            ["--set", "leases.persistence.enabled=true", "--set", "replicaCount=2"],
            "leases.persistence (a ReadWriteOnce volume) is for one pod",
        ),
        (
            ["--set", "metrics.serviceMonitor.enabled=true", "--set",
             "metrics.podMonitor.enabled=true"],
            "enable serviceMonitor or podMonitor, not both",
        ),
        (["--set", "autoscaling.keda.enabled=true", "--set", "autoscaling.keda.minReplicas=0"],
         "at '/autoscaling/keda/minReplicas'"),
    ],
)  # fmt: skip
def test_combinations_that_cannot_work_are_refused(args: list[str], message: str) -> None:
    assert message in refused(*args)
