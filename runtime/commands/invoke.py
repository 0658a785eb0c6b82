"""``esm-runtime invoke``: run one function's handler here, once, and say what the runtime
would do with its answer.

The event is a sample shipped with the runtime (``--sample kinesis``: AWS's documented
examples for every source), a recorded event from a file, or records fetched from the real
source of one of the function's mappings without acknowledging anything (``--from-source``):
SQS messages are received with a visibility timeout of 0 (they are visible again at once, but
their receive count grows, which counts toward a redrive policy's maxReceiveCount); Kinesis and
DynamoDB Streams records are read from the start of each shard (no lease, no checkpoint);
Kafka records are read from the mapping's consumer group's committed offsets without joining
the group or committing. The handler runs through the runtime's own invoker (its timeout, its
JSON rules, the function's environment variables), and the answer is interpreted by the same
rules the pipeline applies: which records would be deleted or checkpointed, which retried,
what goes to the on-failure destination.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Hashable
from importlib import resources
from typing import Any

from runtime.config.resolved import Function, Mapping, RuntimeConfig
from runtime.config.settings import Settings
from runtime.config.sources import SourceKind

SAMPLES = {
    "sqs": "sqs.json",
    "sqs-fifo": "sqs-fifo.json",
    "kinesis": "kinesis.json",
    "dynamodb": "dynamodb.json",
    "kafka": "kafka.json",
    "msk": "msk.json",
}


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "invoke",
        help="run a function's handler once, locally, and show what the runtime would do",
        description=(__doc__ or "").split("\n\n")[0],
    )
    p.add_argument("config", help="the runtime's YAML file (functions and mappings)")
    p.add_argument("function", help="the function to invoke")
    event = p.add_mutually_exclusive_group(required=True)
    event.add_argument("--sample", choices=sorted(SAMPLES), help="a sample event of a source")
    event.add_argument("--event", help="a JSON file holding a Lambda event")
    event.add_argument(
        "--from-source",
        action="store_true",
        help="records fetched from a mapping's source, not acknowledged",
    )
    p.add_argument("--mapping", help="the mapping (UUID) to fetch from or to interpret for")
    p.add_argument("--max-records", type=int, default=10, help="records to fetch (default 10)")
    p.add_argument("--output", choices=("text", "json"), default="text")


def sample_event(name: str) -> dict[str, Any]:
    text = resources.files("runtime.samples").joinpath(SAMPLES[name]).read_text()
    event: dict[str, Any] = json.loads(text)
    return event


def kind_of(event: Any) -> SourceKind:
    """The source an event comes from, by its own fields."""
    if isinstance(event, dict):
        if event.get("eventSource") == "aws:kafka":
            return SourceKind.MSK
        if event.get("eventSource") == "SelfManagedKafka":
            return SourceKind.KAFKA
        records = event.get("Records")
        if isinstance(records, list) and records and isinstance(records[0], dict):
            source = records[0].get("eventSource")
            if source == "aws:sqs":
                return SourceKind.SQS
            if source == "aws:kinesis":
                return SourceKind.KINESIS
            if source == "aws:dynamodb":
                return SourceKind.DYNAMODB
    raise ValueError(
        "not an event of a known source (SQS, Kinesis, DynamoDB Streams, Kafka or MSK)"
    )


def _same_family(a: SourceKind, b: SourceKind) -> bool:
    kafka = {SourceKind.KAFKA, SourceKind.MSK}
    return a == b or (a in kafka and b in kafka)


def choose_mapping(
    config: RuntimeConfig, function: str, uuid: str | None, kind: SourceKind | None
) -> Mapping | None:
    mine = [m for m in config.mappings if m.function.name == function]
    if uuid is not None:
        for m in mine:
            if m.uuid == uuid.lower():
                return m
        raise ValueError(f"function {function} has no mapping {uuid}")
    if kind is not None:
        mine = [m for m in mine if _same_family(m.source.kind, kind)]
    if len(mine) > 1 and kind is None:
        raise ValueError(
            f"function {function} has {len(mine)} mappings: choose one with --mapping "
            + ", ".join(m.uuid for m in mine)
        )
    return mine[0] if mine else None


# ------------------------------------------------------------------ interpreting an answer


def identifiers(event: dict[str, Any], kind: SourceKind) -> list[Hashable]:
    """The batchItemFailures identifier of every record, in the event's order."""
    if kind is SourceKind.SQS:
        return [r["messageId"] for r in event["Records"]]
    if kind is SourceKind.KINESIS:
        return [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
    if kind is SourceKind.DYNAMODB:
        return [r["dynamodb"]["SequenceNumber"] for r in event["Records"]]
    return [
        (f"{r['topic']}-{r['partition']}", r["offset"])
        for records in event["records"].values()
        for r in records
    ]


def explain(
    event: dict[str, Any],
    kind: SourceKind,
    response: Any,
    error: dict[str, str] | None,
    mapping: Mapping | None,
) -> dict[str, Any]:
    """What the runtime does with this answer: the outcome and the actions, in words."""
    from runtime.invoke.response import OutcomeKind, parse_batch_response, string_identifier
    from runtime.sources.kafka_records import kafka_identifier

    ids = identifiers(event, kind)
    report = mapping.report_batch_item_failures if mapping is not None else True
    notes = []
    if mapping is None:
        notes.append(
            "no mapping of this function reads this source: assuming "
            "ReportBatchItemFailures and Lambda's defaults"
        )
    if error is not None:
        outcome = "failure"
        reason = f"the function raised {error['errorType']}: {error['errorMessage']}"
        failed = list(ids)
    elif report:
        parser = (
            string_identifier
            if kind not in (SourceKind.KAFKA, SourceKind.MSK)
            else (kafka_identifier)
        )
        parsed = parse_batch_response(response, set(ids), parser)
        outcome = parsed.kind.value
        reason = parsed.reason or ""
        if parsed.kind is OutcomeKind.FAILURE:
            failed = list(ids)
        else:
            failed = [i for i in ids if i in parsed.failed_ids]
    else:
        outcome, reason, failed = "success", "", []
    done = [i for i in ids if i not in failed]
    if kind is SourceKind.SQS:
        actions = _sqs_actions(done, failed, mapping)
    else:
        actions = _ordered_actions(ids, failed, outcome, kind, mapping)
    return {
        "records": len(ids),
        "outcome": outcome,
        "reason": reason,
        "failed": [_show(i) for i in failed],
        "actions": actions,
        "notes": notes,
    }


def _show(ident: Hashable) -> Any:
    if isinstance(ident, tuple):
        return {"partition": ident[0], "offset": ident[1]}
    return ident


def _sqs_actions(done: list[Hashable], failed: list[Hashable], m: Mapping | None) -> list[str]:
    out = []
    if done:
        out.append(f"delete {len(done)} message(s) from the queue")
    if failed:
        out.append(
            f"leave {len(failed)} message(s) in the queue ({', '.join(map(str, failed[:5]))}"
            f"{', ...' if len(failed) > 5 else ''}): received again after the visibility "
            "timeout; moved to the queue's dead-letter queue after its maxReceiveCount receives"
        )
    return out


def _ordered_actions(
    ids: list[Hashable], failed: list[Hashable], outcome: str, kind: SourceKind, m: Mapping | None
) -> list[str]:
    unit = "offset" if kind in (SourceKind.KAFKA, SourceKind.MSK) else "sequence number"
    raw = m.raw if m is not None else None
    retries = raw.maximum_retry_attempts if raw and raw.maximum_retry_attempts is not None else -1
    bisect = bool(raw and raw.bisect_batch_on_function_error)
    destination = (
        raw.destination_config.on_failure.destination
        if raw and raw.destination_config and raw.destination_config.on_failure
        else None
    )
    if not failed:
        return [f"checkpoint after the last record ({unit} {_show(ids[-1])}); read on"]
    first = min(failed, key=ids.index)
    out = []
    if outcome == "partial":
        kept = ids.index(first)
        if kept:
            out.append(f"checkpoint the {kept} record(s) before {unit} {_show(first)}")
        out.append(f"retry from {unit} {_show(first)} (the lowest failed record) and after")
    else:
        out.append("retry the whole batch" + (", split in halves (bisect)" if bisect else ""))
    if retries == -1:
        out.append(
            "retries without limit until it succeeds or the records expire "
            "(MaximumRetryAttempts -1): the "
            + ("partition" if unit == "offset" else "shard")
            + " waits meanwhile"
        )
    else:
        after = f"after {retries} retr{'y' if retries == 1 else 'ies'}"
        if destination:
            out.append(f"{after}, send the batch's description to {destination}, then read on")
        else:
            out.append(f"{after}, skip the records (no on-failure destination) and read on")
    return out


# ------------------------------------------------------------------ fetching from a source


async def fetch(m: Mapping, settings: Settings, limit: int) -> dict[str, Any]:
    """An event of up to ``limit`` records from the mapping's source, acknowledging nothing."""
    from runtime.sources.aws import AwsClients

    clients = AwsClients(settings, max_pool_connections=4)
    try:
        if m.source.kind is SourceKind.SQS:
            return await _fetch_sqs(m, clients, limit)
        if m.source.kind in (SourceKind.KINESIS, SourceKind.DYNAMODB):
            return await _fetch_stream(m, clients, settings, limit)
        return await _fetch_kafka(m, clients, settings, limit)
    finally:
        await clients.close()


async def _fetch_sqs(m: Mapping, clients: Any, limit: int) -> dict[str, Any]:
    from runtime.sources.sqs import lambda_record

    sqs = await clients.client("sqs", m.source.region)
    url = (
        await sqs.get_queue_url(QueueName=m.source.name, QueueOwnerAWSAccountId=m.source.account)
    )["QueueUrl"]
    records: list[dict[str, Any]] = []
    while len(records) < limit:
        got = await sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=min(10, limit - len(records)),
            VisibilityTimeout=0,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = got.get("Messages", [])
        if not messages:
            break
        seen = {r["messageId"] for r in records}
        fresh = [x for x in messages if x["MessageId"] not in seen]
        if not fresh:
            break
        region = m.source.region or "us-east-1"
        records += [lambda_record(x, m.source.arn or "", region) for x in fresh]
    return {"Records": records[:limit]}


async def _fetch_stream(m: Mapping, clients: Any, settings: Settings, limit: int) -> dict[str, Any]:
    from runtime.sources.stream_records import dynamodb_payload, kinesis_payload

    arn = m.source.arn or ""
    region = m.source.region or settings.region
    records: list[dict[str, Any]] = []
    if m.source.kind is SourceKind.KINESIS:
        api = await clients.client("kinesis", m.source.region)
        shards = (await api.list_shards(StreamARN=arn))["Shards"]
    else:
        api = await clients.client("dynamodbstreams", m.source.region)
        shards = (await api.describe_stream(StreamArn=arn))["StreamDescription"]["Shards"]
    for shard in shards:
        if len(records) >= limit:
            break
        sid = shard["ShardId"]
        stream = {"StreamARN" if m.source.kind is SourceKind.KINESIS else "StreamArn": arn}
        got = await api.get_shard_iterator(**stream, ShardId=sid, ShardIteratorType="TRIM_HORIZON")
        it = got["ShardIterator"]
        for _ in range(5):  # a few pages: empty pages happen before the first records
            if not it or len(records) >= limit:
                break
            page = await api.get_records(ShardIterator=it, Limit=limit - len(records))
            for raw in page.get("Records", []):
                if m.source.kind is SourceKind.KINESIS:
                    record = kinesis_payload(
                        raw,
                        shard_id=sid,
                        region=region,
                        stream_arn=arn,
                        invoke_identity_arn=m.function.role_arn,
                    )
                    records.append(record)
                else:
                    records.append(dynamodb_payload(raw, stream_arn=arn))
            it = page.get("NextShardIterator")
            if page.get("Records"):
                break
    return {"Records": records[:limit]}


async def _fetch_kafka(m: Mapping, clients: Any, settings: Settings, limit: int) -> dict[str, Any]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from runtime.metrics import MappingMetrics
    from runtime.sources.kafka_records import kafka_event, kafka_record
    from runtime.sources.kafka_setup import make_kafka_source

    metrics = MappingMetrics.bind(m.function.name, m.uuid)
    source = await make_kafka_source(m, clients, settings, metrics, 0)
    conf = source.consumer_config()
    conf["client.id"] = f"esm-invoke-{m.uuid[:8]}"

    def read() -> list[dict[str, Any]]:
        consumer = Consumer(conf, logger=None)
        try:
            meta = consumer.list_topics(source.topic, timeout=10)
            partitions = [
                TopicPartition(source.topic, p) for p in meta.topics[source.topic].partitions
            ]
            # The group's committed offsets, read without joining the group.
            committed = consumer.committed(partitions, timeout=10)
            start = [
                TopicPartition(
                    tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                )
                for tp in committed
            ]
            consumer.assign(start)
            out: list[dict[str, Any]] = []
            idle = 0
            while len(out) < limit and idle < 3:
                batch = consumer.consume(limit - len(out), timeout=1.0)
                if not batch:
                    idle += 1
                for msg in batch:
                    if msg.error():
                        continue
                    headers = msg.headers()
                    record = kafka_record(
                        str(msg.topic()),
                        int(msg.partition() or 0),
                        int(msg.offset() or 0),
                        msg.timestamp(),
                        _bytes(msg.key()),
                        _bytes(msg.value()),
                        [(k, _bytes(v)) for k, v in headers] if isinstance(headers, list) else None,
                    )
                    out.append(record)
            return out
        finally:
            consumer.close()  # enable.auto.commit is off: nothing is committed

    payloads = await asyncio.to_thread(read)
    arn = m.source.arn if m.source.kind is SourceKind.MSK else None
    return kafka_event(payloads, bootstrap_servers=source.bootstrap_servers, event_source_arn=arn)


def _bytes(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


# ------------------------------------------------------------------ the command


async def _invoke(function: Function, event: dict[str, Any]) -> Any:
    from concurrent.futures import ThreadPoolExecutor

    from runtime.invoke.environments import EnvironmentPool
    from runtime.invoke.invoker import Invoker
    from runtime.metrics import MappingMetrics

    invoker = Invoker(
        function,
        EnvironmentPool(function.handler),
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="invoke"),
        concurrency_limit=None,
        on_stuck=lambda _: None,
    )
    return await invoker.invoke(event, MappingMetrics.bind(function.name, "invoke"))


def run(args: argparse.Namespace) -> int:
    from runtime.config.loader import ConfigError, function_environment, load_config
    from runtime.invoke.handler import HandlerLoadError, load_handler

    settings = Settings()
    try:
        config = load_config(args.config, settings, import_handlers=False)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    function = config.functions.get(args.function)
    if function is None:
        print(
            f"{args.config}: no function {args.function!r} (functions: "
            f"{', '.join(sorted(config.functions)) or 'none'})",
            file=sys.stderr,
        )
        return 2
    try:
        if args.from_source:
            mapping = choose_mapping(config, function.name, args.mapping, None)
            if mapping is None:
                raise ValueError(f"function {function.name} has no mapping to fetch from")
            event = asyncio.run(fetch(mapping, settings, args.max_records))
            kind = mapping.source.kind
        else:
            if args.sample:
                event = sample_event(args.sample)
            else:
                with open(args.event) as f:
                    event = json.load(f)
            kind = kind_of(event)
            mapping = choose_mapping(config, function.name, args.mapping, kind)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not identifiers(event, kind):
        print("no records to invoke with (the source is empty)", file=sys.stderr)
        return 1
    with function_environment(function.environment):
        try:
            load_handler(function.handler)
        except HandlerLoadError as exc:
            print(f"functions.{function.name}.Handler: {exc}", file=sys.stderr)
            return 2
        result = asyncio.run(_invoke(function, event))
    error = (
        {"errorType": result.error.error_type, "errorMessage": result.error.error_message}
        if result.error is not None
        else None
    )
    report = explain(event, kind, result.response, error, mapping)
    shown = {
        "function": function.name,
        "mapping": mapping.uuid if mapping else None,
        "requestId": result.request_id,
        "durationMs": round(result.duration * 1000, 1),
        "response": result.response,
        "error": error,
        **report,
    }
    if args.output == "json":
        print(json.dumps(shown, indent=2, default=str))
    else:
        print(text(shown, event))
    return 0


def text(shown: dict[str, Any], event: dict[str, Any]) -> str:
    lines = [
        f"Invoked {shown['function']} with {shown['records']} record(s) in "
        f"{shown['durationMs']} ms (request {shown['requestId']})",
    ]
    if shown["error"]:
        lines.append(f"Error: {shown['error']['errorType']}: {shown['error']['errorMessage']}")
    else:
        lines.append(f"Response: {json.dumps(shown['response'])}")
    lines.append(
        f"Outcome: {shown['outcome']}" + (f" ({shown['reason']})" if shown["reason"] else "")
    )
    lines.append("The runtime would:")
    lines += [f"  - {a}" for a in shown["actions"]]
    lines += [f"Note: {n}" for n in shown["notes"]]
    return "\n".join(lines)
