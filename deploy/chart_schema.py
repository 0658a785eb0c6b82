"""Writes helm/esm-runtime/values.schema.json: the chart's values, with the runtime's own
configuration models for ``config`` (functions and eventSourceMappings), so a wrong field or
value fails ``helm install`` / ``helm template`` with the schema's message, and the chart can
never drift from what the runtime accepts (a test regenerates it and compares).

    .venv/bin/python deploy/chart_schema.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runtime.config.model import EventSourceMappingConfig, FunctionConfig

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "helm" / "esm-runtime" / "values.schema.json"


def _model(model: Any, defs: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = model.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    defs.update(schema.pop("$defs", {}))
    return schema


def _obj(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties, **extra}


STRING = {"type": "string"}
BOOL = {"type": "boolean"}
ANY_OBJECT = {"type": "object"}
ANY_LIST = {"type": "array"}
NAME = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}


def values_schema() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    function = _model(FunctionConfig, defs)
    mapping = _model(EventSourceMappingConfig, defs)
    monitor = _obj({"enabled": BOOL, "interval": STRING, "labels": ANY_OBJECT})
    replicas = {"type": "integer", "minimum": 0, "maximum": 1000}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "esm-runtime chart values",
        **_obj(
            {
                "nameOverride": STRING,
                "fullnameOverride": STRING,
                "image": _obj(
                    {
                        "repository": {"type": "string", "minLength": 1},
                        "tag": {"type": ["string", "number"]},
                        "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
                    },
                    required=["repository"],
                ),
                "imagePullSecrets": ANY_LIST,
                "replicaCount": replicas,
                "config": _obj(
                    {
                        "functions": {
                            "type": "object",
                            "propertyNames": NAME,
                            "additionalProperties": function,
                        },
                        "eventSourceMappings": {"type": "array", "items": mapping},
                    }
                ),
                "workers": {"type": ["integer", "null"], "minimum": 1, "maximum": 256},
                "drainTimeoutSeconds": {"type": "integer", "minimum": 0, "maximum": 3600},
                "terminationGracePeriodSeconds": {
                    "type": ["integer", "null"],
                    "minimum": 1,
                    "maximum": 7200,
                },
                "aws": _obj(
                    {
                        "region": {"type": "string", "pattern": "^[a-z]{2,4}(-[a-z]+)+-\\d$"},
                        "endpointUrl": STRING,
                        "credentialsSecret": STRING,
                        "accountId": {"type": "string", "pattern": "^(\\d{12})?$"},
                    }
                ),
                "leases": _obj(
                    {
                        "store": {"enum": ["sqlite", "dynamodb"]},
                        "table": {"type": "string", "pattern": "^[a-zA-Z0-9_.-]{3,255}$"},
                        "failoverSeconds": {"type": "number", "minimum": 1.5, "maximum": 600},
                        "persistence": _obj(
                            {
                                "enabled": BOOL,
                                "size": STRING,
                                "storageClass": STRING,
                                "accessModes": {"type": "array", "items": STRING},
                            }
                        ),
                    }
                ),
                "api": _obj(
                    {
                        "enabled": BOOL,
                        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                        "credentialsSecret": STRING,
                        "credentialsKey": {"type": "string", "pattern": "^[-._a-zA-Z0-9]+$"},
                        "table": {"type": "string", "pattern": "^[a-zA-Z0-9_.-]{3,255}$"},
                        "from": ANY_LIST,
                    }
                ),
                "settings": {
                    "type": "object",
                    "propertyNames": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"},
                    "additionalProperties": {"type": ["string", "number", "boolean"]},
                },
                "env": ANY_LIST,
                "envFrom": ANY_LIST,
                "secretMounts": {
                    "type": "array",
                    "items": _obj(
                        {
                            "name": {"type": "string", "pattern": "^[a-z0-9-]{1,40}$"},
                            "secretName": {"type": "string", "minLength": 1},
                            "mountPath": {"type": "string", "pattern": "^/"},
                        },
                        required=["name", "secretName", "mountPath"],
                    ),
                },
                "serviceAccount": _obj(
                    {
                        "create": BOOL,
                        "name": STRING,
                        "annotations": ANY_OBJECT,
                        "automountServiceAccountToken": BOOL,
                    }
                ),
                "podAnnotations": ANY_OBJECT,
                "podLabels": ANY_OBJECT,
                "resources": ANY_OBJECT,
                "podSecurityContext": ANY_OBJECT,
                "securityContext": ANY_OBJECT,
                "probes": _obj(
                    {"startup": ANY_OBJECT, "liveness": ANY_OBJECT, "readiness": ANY_OBJECT}
                ),
                "volumes": _obj({"metricsSizeLimit": STRING, "tmpSizeLimit": STRING}),
                "service": _obj(
                    {
                        "type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                    }
                ),
                "nodeSelector": ANY_OBJECT,
                "tolerations": ANY_LIST,
                "affinity": ANY_OBJECT,
                "topologySpreadConstraints": ANY_LIST,
                "podDisruptionBudget": _obj(
                    {"enabled": BOOL, "maxUnavailable": {"type": ["integer", "string"]}}
                ),
                "networkPolicy": _obj(
                    {
                        "enabled": BOOL,
                        "metricsFrom": ANY_LIST,
                        "allowAllEgress": BOOL,
                        "egress": ANY_LIST,
                    }
                ),
                "metrics": _obj(
                    {
                        "serviceMonitor": monitor,
                        "podMonitor": monitor,
                        "prometheusRule": _obj(
                            {
                                "enabled": BOOL,
                                "labels": ANY_OBJECT,
                                "iteratorAgeMilliseconds": {"type": "number", "minimum": 0},
                                "offsetLag": {"type": "number", "minimum": 0},
                                "errorRatio": {"type": "number", "minimum": 0, "maximum": 1},
                                "blockedUnitSeconds": {"type": "number", "minimum": 0},
                                "workerRestartsPer15m": {"type": "number", "minimum": 0},
                                "checkpointFailuresPer10m": {"type": "number", "minimum": 0},
                            }
                        ),
                        "dashboard": _obj({"enabled": BOOL, "labels": ANY_OBJECT}),
                    }
                ),
                "autoscaling": _obj(
                    {
                        "hpa": _obj(
                            {
                                "enabled": BOOL,
                                "minReplicas": {"type": "integer", "minimum": 1},
                                "maxReplicas": {"type": "integer", "minimum": 1},
                                "metricName": {"type": "string", "minLength": 1},
                                "targetAverageValue": {"type": ["string", "number"]},
                            }
                        ),
                        "keda": _obj(
                            {
                                "enabled": BOOL,
                                "minReplicas": {"type": "integer", "minimum": 1},
                                "maxReplicas": {"type": "integer", "minimum": 1},
                                "serverAddress": {"type": "string", "pattern": "^https?://"},
                                "query": {"type": "string", "minLength": 1},
                                "threshold": {"type": ["string", "number"]},
                                "pollingInterval": {"type": "integer", "minimum": 1},
                                "cooldownPeriod": {"type": "integer", "minimum": 0},
                            }
                        ),
                    }
                ),
                "tests": _obj({"enabled": BOOL, "image": STRING}),
                "global": ANY_OBJECT,
            },
            required=["image", "config", "leases"],
        ),
        "$defs": defs,
    }


def render() -> str:
    return json.dumps(values_schema(), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    SCHEMA_PATH.write_text(render())
    print(f"wrote {SCHEMA_PATH}")
