"""``esm-runtime invoke``: run one function's handler here, once, and say what the runtime
would do with its answer.

The event is a sample shipped with the runtime (``--sample kinesis``: AWS's documented
examples for every source), a recorded event from a file, or records fetched from the real
source of one of the function's mappings without acknowledging anything (``--from-source``):
SQS messages are received once each and made visible again at once (their receive count grows
by one, which counts toward a redrive policy's maxReceiveCount); Kinesis and DynamoDB Streams
records are read from the start of the first shard that has any (no lease, no checkpoint);
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
import logging
import sys
from collections.abc import Hashable
from importlib import resources
from typing import Any

from runtime.config.resolved import Function, Mapping, RuntimeConfig
from runtime.config.settings import Settings
from runtime.config.sources import SourceKind
from runtime.invoke.response import OutcomeKind
from runtime.pipeline.records import Record

# How long fetched SQS messages stay hidden while more are fetched (made visible right after).
_FETCH_HIDE_SECONDS = 30

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


def records_of(event: dict[str, Any], kind: SourceKind) -> list[Record]:
    """The event's records as the pipeline holds them: the identifier a batchItemFailures
    entry names, and the lane whose order a failure stops (FIFO message group, shard,
    partition; none for standard queues)."""
    out = []
    if kind in (SourceKind.KAFKA, SourceKind.MSK):
        for part, records in event["records"].items():
            for r in records:
                out.append(Record(r, 0, (part, r["offset"]), None, lane=part))
        return out
    for r in event["Records"]:
        if kind is SourceKind.SQS:
            group = (r.get("attributes") or {}).get("MessageGroupId")
            out.append(Record(r, 0, r["messageId"], None, lane=group))
        elif kind is SourceKind.KINESIS:
            shard = str(r.get("eventID", "")).rpartition(":")[0] or "shard"
            out.append(Record(r, 0, r["kinesis"]["sequenceNumber"], None, lane=shard))
        else:
            out.append(Record(r, 0, r["dynamodb"]["SequenceNumber"], None, lane="shard"))
    return out


def identifiers(event: dict[str, Any], kind: SourceKind) -> list[Hashable]:
    """The batchItemFailures identifier of every record, in the event's order."""
    return [r.item_id for r in records_of(event, kind)]


def apply_filters(
    event: dict[str, Any], kind: SourceKind, mapping: Mapping | None
) -> tuple[dict[str, Any], int]:
    """The event the handler gets after the mapping's FilterCriteria, and how many records
    were filtered out."""
    if mapping is None or not mapping.filter_patterns:
        return event, 0
    from runtime.pipeline.filtering import RecordFilter

    keep = RecordFilter(mapping.source.kind, list(mapping.filter_patterns)).matches
    if kind in (SourceKind.KAFKA, SourceKind.MSK):
        parts = {p: [r for r in rs if keep(r)] for p, rs in event["records"].items()}
        kept = {p: rs for p, rs in parts.items() if rs}
        before = sum(len(rs) for rs in event["records"].values())
        return {**event, "records": kept}, before - sum(len(rs) for rs in kept.values())
    records = [r for r in event["Records"] if keep(r)]
    return {**event, "Records": records}, len(event["Records"]) - len(records)


def explain(
    event: dict[str, Any],
    kind: SourceKind,
    response: Any,
    error: dict[str, str] | None,
    mapping: Mapping | None,
    filtered_out: int = 0,
) -> dict[str, Any]:
    """What the runtime does with this answer: the outcome and the actions, in words. The
    pipeline's own rules decide: the response rules, and a failure stopping its lane."""
    from runtime.invoke.response import (
        SUCCESS,
        BatchOutcome,
        OutcomeKind,
        parse_batch_response,
        string_identifier,
    )
    from runtime.pipeline.execution import split_by_outcome
    from runtime.sources.kafka_records import kafka_identifier

    records = records_of(event, kind)
    ids = [r.item_id for r in records]
    report = mapping.report_batch_item_failures if mapping is not None else True
    notes = []
    if mapping is None:
        notes.append(
            "no mapping of this function reads this source: assuming ReportBatchItemFailures "
            "and Lambda's defaults otherwise"
        )
    if error is not None:
        outcome = BatchOutcome(
            OutcomeKind.FAILURE,
            reason=f"the function raised {error['errorType']}: {error['errorMessage']}",
        )
    elif report:
        kafka = kind in (SourceKind.KAFKA, SourceKind.MSK)
        parser = kafka_identifier if kafka else string_identifier
        outcome = parse_batch_response(response, set(ids), parser)
    else:
        outcome = SUCCESS
    done, failed = split_by_outcome(outcome, records)
    if kind is SourceKind.SQS:
        actions = _sqs_actions(done, failed, filtered_out, mapping)
    else:
        actions = _ordered_actions(records, failed, outcome.kind, kind, filtered_out, mapping)
    return {
        "records": len(records),
        "filteredOut": filtered_out,
        "outcome": outcome.kind.value,
        "reason": outcome.reason or "",
        "failed": [_show(r.item_id) for r in failed],
        "actions": actions,
        "notes": notes,
    }


def _show(ident: Hashable) -> Any:
    if isinstance(ident, tuple):
        return {"partition": ident[0], "offset": ident[1]}
    return ident


def _sqs_actions(
    done: list[Record], failed: list[Record], filtered_out: int, m: Mapping | None
) -> list[str]:
    out = []
    if filtered_out:
        keep = m is not None and m.raw.filtered_out_messages == "Keep"
        out.append(
            f"{'leave' if keep else 'delete'} {filtered_out} message(s) that the filters "
            f"dropped{' in the queue (FilteredOutMessages: Keep)' if keep else ''}"
        )
    if done:
        out.append(f"delete {len(done)} message(s) from the queue")
    if failed:
        shown = ", ".join(str(r.item_id) for r in failed[:5]) + (", ..." if len(failed) > 5 else "")
        out.append(
            f"leave {len(failed)} message(s) in the queue ({shown}): received again after the "
            "visibility timeout; moved to the queue's dead-letter queue after its "
            "maxReceiveCount receives"
        )
        if any(r.lane is not None for r in failed):
            out.append(
                "in a FIFO queue, the messages after a failed one in its message group come "
                "back with it, to keep the group's order"
            )
    return out


def _ordered_actions(
    records: list[Record],
    failed: list[Record],
    outcome: OutcomeKind,
    kind: SourceKind,
    filtered_out: int,
    m: Mapping | None,
) -> list[str]:
    kafka = kind in (SourceKind.KAFKA, SourceKind.MSK)
    unit = "offset" if kafka else "sequence number"
    raw = m.raw if m is not None else None
    retries = raw.maximum_retry_attempts if raw and raw.maximum_retry_attempts is not None else -1
    bisect = bool(raw and raw.bisect_batch_on_function_error)
    destination = (
        raw.destination_config.on_failure.destination
        if raw and raw.destination_config and raw.destination_config.on_failure
        else None
    )
    out = []
    if filtered_out:
        out.append(f"pass over {filtered_out} record(s) that the filters dropped (checkpointed)")
    lanes: dict[Hashable, list[Record]] = {}
    for r in records:
        lanes.setdefault(r.lane, []).append(r)
    bad = {id(r) for r in failed}
    for lane, lane_records in lanes.items():
        where = f"{'partition' if kafka else 'shard'} {lane}: " if len(lanes) > 1 else ""
        lane_failed = [r for r in lane_records if id(r) in bad]
        if not lane_failed:
            last = _show(lane_records[-1].item_id)
            out.append(f"{where}checkpoint after the last record ({unit} {last}); read on")
            continue
        first = lane_failed[0]
        kept = lane_records.index(first)
        if outcome is OutcomeKind.PARTIAL:
            if kept:
                out.append(
                    f"{where}checkpoint the {kept} record(s) before {unit} {_show(first.item_id)}"
                )
            out.append(
                f"{where}retry from {unit} {_show(first.item_id)} (the lowest failed record) "
                "and after"
            )
        else:
            out.append(
                f"{where}retry the whole batch" + (", split in halves (bisect)" if bisect else "")
            )
    if failed:
        if retries == -1:
            out.append(
                "retries without limit until it succeeds or the records expire "
                "(MaximumRetryAttempts -1): the "
                + ("partition" if kafka else "shard")
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
    """Messages received once each (hidden for a moment so that no call returns one twice)
    and made visible again at once: their receive count grows by one, nothing else."""
    from runtime.sources.sqs import lambda_record

    sqs = await clients.client("sqs", m.source.region)
    got = await sqs.get_queue_url(QueueName=m.source.name, QueueOwnerAWSAccountId=m.source.account)
    url = got["QueueUrl"]
    region = m.source.region or "us-east-1"
    messages: list[dict[str, Any]] = []
    try:
        while len(messages) < limit:
            page = await sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=min(10, limit - len(messages)),
                VisibilityTimeout=_FETCH_HIDE_SECONDS,
                WaitTimeSeconds=1,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            if not page.get("Messages"):
                break
            messages += page["Messages"]
    finally:
        for i in range(0, len(messages), 10):
            await sqs.change_message_visibility_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(j), "ReceiptHandle": x["ReceiptHandle"], "VisibilityTimeout": 0}
                    for j, x in enumerate(messages[i : i + 10])
                ],
            )
    return {"Records": [lambda_record(x, m.source.arn or "", region) for x in messages]}


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
        if records:
            break  # one shard's records: the runtime never mixes shards in a batch
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
    conf["enable.auto.commit"] = False  # whatever ESM_KAFKA_CONSUMER_CONFIG says

    def read() -> list[dict[str, Any]]:
        consumer = Consumer(conf, logger=logging.getLogger("librdkafka"))
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
    event, filtered_out = apply_filters(event, kind, mapping)
    if not identifiers(event, kind):
        report = explain(event, kind, None, None, mapping, filtered_out)
        print(
            f"the mapping's filters dropped all {filtered_out} record(s): no invocation",
            file=sys.stderr,
        )
        print(json.dumps(report, indent=2) if args.output == "json" else text_actions(report))
        return 0
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
    report = explain(event, kind, result.response, error, mapping, filtered_out)
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
    return "\n".join([*lines, text_actions(shown)])


def text_actions(report: dict[str, Any]) -> str:
    lines = ["The runtime would:"]
    lines += [f"  - {a}" for a in report["actions"]]
    lines += [f"Note: {n}" for n in report["notes"]]
    return "\n".join(lines)
