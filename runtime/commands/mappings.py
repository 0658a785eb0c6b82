"""``esm-runtime mappings``: manage the mappings of a running runtime through its API.

The command is a Lambda API client like boto3 or the AWS CLI (botocore underneath): it signs
requests with the caller's usual AWS credentials (``--profile``, ``AWS_PROFILE``, the
environment) and talks to ``--endpoint-url`` (or ``ESM_API_URL``). Output is a table on a
terminal and JSON otherwise or with ``--output json``, so scripts get exactly what the API
answered.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:9001"
_COLUMNS = ("UUID", "State", "Function", "Source", "BatchSize", "LastProcessingResult")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "mappings",
        help="list, get, create, update, delete, enable or disable mappings of a running runtime",
        description="Manage the mappings of a running runtime through its mapping API.",
    )
    p.add_argument(
        "--endpoint-url",
        default=os.environ.get("ESM_API_URL", DEFAULT_URL),
        help=f"the runtime's API (ESM_API_URL; default {DEFAULT_URL})",
    )
    p.add_argument("--profile", help="AWS profile whose keys sign the requests")
    p.add_argument("--region", help="region in the signature (default: the profile's)")
    p.add_argument("--output", choices=("table", "json"), help="default: table on a terminal")
    ops = p.add_subparsers(dest="operation", required=True)
    ls = ops.add_parser("list", help="every mapping (ListEventSourceMappings)")
    ls.add_argument("--function-name")
    ls.add_argument("--event-source-arn")
    for name, text in (
        ("get", "one mapping"),
        ("delete", "delete (in-flight batches finish first)"),
        ("enable", "resume polling (from the checkpoint)"),
        ("disable", "pause polling"),
    ):
        ops.add_parser(name, help=text).add_argument("uuid")
    for name in ("create", "update"):
        c = ops.add_parser(
            name,
            help=f"{name} a mapping from Lambda's fields (flags, or a JSON/YAML file)",
        )
        if name == "update":
            c.add_argument("uuid")
        c.add_argument("--file", help="YAML or JSON with the mapping's fields (Lambda names)")
        c.add_argument("--function-name")
        if name == "create":
            c.add_argument("--event-source-arn")
            c.add_argument(
                "--starting-position", choices=("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")
            )
        c.add_argument("--batch-size", type=int)
        c.add_argument("--maximum-batching-window-in-seconds", type=int)
        c.add_argument("--enabled", action=argparse.BooleanOptionalAction, default=None)


def _client(args: argparse.Namespace) -> Any:
    import botocore.session
    from botocore.config import Config

    session = botocore.session.Session(profile=args.profile)
    region = args.region or session.get_config_variable("region") or "us-east-1"
    return session.create_client(
        "lambda",
        endpoint_url=args.endpoint_url,
        region_name=region,
        config=Config(retries={"max_attempts": 2}),
    )


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if args.file:
        import yaml

        loaded = yaml.safe_load(Path(args.file).read_text())
        if not isinstance(loaded, dict):
            raise SystemExit(f"{args.file}: must hold the mapping's fields as an object")
        fields.update(loaded)
    flags = {
        "FunctionName": args.function_name,
        "EventSourceArn": getattr(args, "event_source_arn", None),
        "StartingPosition": getattr(args, "starting_position", None),
        "BatchSize": args.batch_size,
        "MaximumBatchingWindowInSeconds": args.maximum_batching_window_in_seconds,
        "Enabled": args.enabled,
    }
    fields.update({k: v for k, v in flags.items() if v is not None})
    return fields


def run(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    op = args.operation
    try:
        client = _client(args)
        if op == "list":
            result: Any = _list_all(client, args.function_name, args.event_source_arn)
        elif op == "get":
            result = client.get_event_source_mapping(UUID=args.uuid)
        elif op == "delete":
            result = client.delete_event_source_mapping(UUID=args.uuid)
        elif op in ("enable", "disable"):
            result = client.update_event_source_mapping(UUID=args.uuid, Enabled=op == "enable")
        elif op == "create":
            result = client.create_event_source_mapping(**_fields(args))
        else:
            result = client.update_event_source_mapping(UUID=args.uuid, **_fields(args))
    except ClientError as exc:
        err = exc.response.get("Error", {})
        print(f"{err.get('Code')}: {err.get('Message')}", file=sys.stderr)
        return 1
    except (BotoCoreError, ValueError) as exc:  # unreachable, no credentials, unknown profile
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if isinstance(result, dict):
        result.pop("ResponseMetadata", None)
    output = args.output or ("table" if sys.stdout.isatty() else "json")
    if output == "json":
        print(json.dumps(result, indent=2, default=str))
    else:
        rows = result["EventSourceMappings"] if op == "list" else [result]
        print(table(rows))
    return 0


def _list_all(client: Any, function_name: str | None, source: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if function_name:
        kwargs["FunctionName"] = function_name
    if source:
        kwargs["EventSourceArn"] = source
    found: list[dict[str, Any]] = []
    while True:
        page = client.list_event_source_mappings(**kwargs)
        found.extend(page.get("EventSourceMappings", []))
        if not page.get("NextMarker"):
            return {"EventSourceMappings": found}
        kwargs["Marker"] = page["NextMarker"]


def _source(m: dict[str, Any]) -> str:
    if m.get("EventSourceArn"):
        return str(m["EventSourceArn"])
    servers = (m.get("SelfManagedEventSource") or {}).get("Endpoints", {})
    topics = ",".join(m.get("Topics") or [])
    return ",".join(servers.get("KAFKA_BOOTSTRAP_SERVERS", [])) + (f" {topics}" if topics else "")


def table(rows: list[dict[str, Any]]) -> str:
    """Mappings as aligned columns (the full JSON is one ``--output json`` away)."""
    cells = [
        (
            str(m.get("UUID", "")),
            str(m.get("State", "")),
            str(m.get("FunctionArn", "")).rsplit(":function:", 1)[-1],
            _source(m),
            str(m.get("BatchSize", "")),
            str(m.get("LastProcessingResult", "")),
        )
        for m in rows
    ]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(_COLUMNS)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(_COLUMNS, widths, strict=True)).rstrip()]
    for c in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
    if not cells:
        lines.append("(no mappings)")
    return "\n".join(lines)
