"""Bad input, per source: payloads that are not JSON while FilterCriteria look into them,
records too big for one invocation, and configurations that cannot run.

The reference is what AWS documents (esm-spec §3.3 and §6): on SQS, Kinesis and DynamoDB a
JSON filter pattern never matches a payload that is not JSON, whatever the pattern says (the
record is filtered out: an SQS message deleted, a stream record checkpointed past), while a
string pattern on an SQS body still filters a plain-text body; on Kafka a format mismatch
never drops a record: the pattern falls back to its metadata fields (here none), so the record
is delivered. A record whose event alone passes Lambda's 6 MB invocation limit is never
invoked: it is given up with ``MaximumPayloadSizeExceeded`` (to the on-failure destination, or
dropped, counted and logged with its coordinates) and its partition moves on; records that
each fit travel in batches cut at 6 MB. A configuration that cannot run makes ``run`` exit at
once with every problem named by its field.

Each scenario checks that exactly the records AWS delivers reach the handler, once, in order
per lane, and appends its row for docs/reliability.md (``report``).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from runtime.pipeline.records import MAX_PAYLOAD_BYTES
from tests.chaos.invariants import check, completed_numbers, read
from tests.chaos.sources import KEYS, SOURCES, Source, config
from tests.chaos.test_faults import report
from tests.support.aws import Queue, wait_until
from tests.support.aws import client as aws_client
from tests.support.kafka import committed, produce

pytestmark = pytest.mark.integration

KAFKA_PARTITIONS = 4  # tests.chaos.sources makes Kafka topics of 4 partitions
SEVEN_MB = 7 * 1024 * 1024
MIB = 1024 * 1024


# ------------------------------------------------------------------ writing raw records


@dataclass(frozen=True)
class Rec:
    """A numbered record as bytes (SQS body, Kafka value, Kinesis data, DynamoDB ``body``),
    whatever they hold; ``kind`` is the DynamoDB item's ``kind`` attribute (None: absent)."""

    n: int
    data: bytes
    kind: str | None = None

    @property
    def key(self) -> str:
        return f"k{self.n % KEYS}"


class Writer:
    """Writes records byte for byte to a source made by tests.chaos.sources (whose own
    ``produce`` only writes well-formed JSON), in order per ordering key."""

    def __init__(self, source: Source, sqs: Any, aws_endpoint: str) -> None:
        self.source, self.sqs, self.endpoint = source, sqs, aws_endpoint
        arn = str(source.mapping.get("EventSourceArn", ""))
        if source.name.startswith("sqs"):
            self.url = sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[1])["QueueUrl"]
        elif source.name == "kinesis":
            self.kinesis = aws_client("kinesis", aws_endpoint)
            self.stream = arn.split("/")[1]
        elif source.name == "dynamodb":
            self.ddb = aws_client("dynamodb", aws_endpoint)
            self.table = arn.split("/")[1]

    @property
    def topic(self) -> str:
        return str(self.source.mapping["Topics"][0])

    @property
    def bootstrap(self) -> str:
        servers = self.source.mapping["SelfManagedEventSource"]["Endpoints"]
        return str(servers["KAFKA_BOOTSTRAP_SERVERS"][0])

    def put(self, records: list[Rec]) -> None:
        name = self.source.name
        if name == "kafka":
            for p in range(KAFKA_PARTITIONS):  # partition n % 4: numbers increase per partition
                values = [r.data for r in records if r.n % KAFKA_PARTITIONS == p]
                produce(self.bootstrap, self.topic, values, partition=p,
                        config={"message.max.bytes": 20_000_000})  # fmt: skip
            return
        for r in records:
            if name.startswith("sqs"):
                fifo = {"MessageGroupId": r.key, "MessageDeduplicationId": uuid.uuid4().hex}
                extra = fifo if name == "sqs-fifo" else {}
                self.sqs.send_message(QueueUrl=self.url, MessageBody=r.data.decode(), **extra)
            elif name == "kinesis":
                self.kinesis.put_record(StreamName=self.stream, PartitionKey=r.key, Data=r.data)
            else:
                item = {"id": {"S": r.key}, "body": {"S": r.data.decode()}}
                if r.kind is not None:
                    item["kind"] = {"S": r.kind}
                self.ddb.put_item(TableName=self.table, Item=item)

    def refuses(self, size: int) -> str:
        """The error code with which the service refuses a record of ``size`` bytes."""
        try:
            if self.source.name.startswith("sqs"):
                fifo = {"MessageGroupId": "g", "MessageDeduplicationId": uuid.uuid4().hex}
                extra = fifo if self.source.name == "sqs-fifo" else {}
                self.sqs.send_message(QueueUrl=self.url, MessageBody="x" * size, **extra)
            elif self.source.name == "kinesis":
                self.kinesis.put_record(StreamName=self.stream, PartitionKey="k", Data=b"x" * size)
            else:
                item = {"id": {"S": "big"}, "body": {"S": "x" * size}}
                self.ddb.put_item(TableName=self.table, Item=item)
        except ClientError as exc:
            return str(exc.response["Error"]["Code"])
        raise AssertionError(f"{self.source.name} accepted a record of {size} bytes")

    def remaining(self) -> int:
        """SQS: messages still in the queue (visible or in flight)."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(
            attrs["ApproximateNumberOfMessagesNotVisible"]
        )


def started(record_file: Path) -> list[dict[str, Any]]:
    """The recorder's start lines (with ``bytes`` when CHAOS_EVENT_BYTES is set)."""
    if not record_file.exists():
        return []
    lines = [json.loads(x) for x in record_file.read_text().splitlines() if x.strip()]
    return [x for x in lines if x["phase"] == "start"]


@dataclass
class Delivery:
    """What reached the handler against what should have: the report's figures, and the
    problems the test then asserts away (reported first, so a failing run shows in the table)."""

    figures: dict[str, Any]
    problems: list[str]


def delivery(record_file: Path, source: Source, produced: int, expected: set[int]) -> Delivery:
    """Exactly ``expected`` handled, once each, in order per lane, no two at once per lane."""
    invocations = read(record_file)
    done = completed_numbers(invocations)
    verdict = check(invocations, 0, ordered=source.ordered)
    missing, extra = sorted(expected - set(done)), sorted(set(done) - expected)
    twice = sorted(n for n, c in done.items() if c > 1)
    problems = [
        *([f"missing {missing}"] if missing else []),
        *([f"delivered, though AWS drops them: {extra}"] if extra else []),
        *([f"delivered twice: {twice}"] if twice else []),
        *verdict.order_violations[:5],
        *verdict.overlaps[:5],
    ]
    figures = {
        "produced": produced,
        "lost": len(missing),
        "duplicates": sum(c - 1 for c in done.values()),
        "order_violations": len(verdict.order_violations),
        "overlaps": len(verdict.overlaps),
        "invocations": len(invocations),
    }
    return Delivery(figures, problems)


# ------------------------------------------------------------------ malformed payloads, filters

CLASSES = 6
"""Record n is of class n % 6:

0. JSON, ``kind: keep``;
1. JSON, ``kind: skip``;
2. JSON without ``kind``;
3. truncated JSON (``{"n": 3, ..., "kind": "keep" #3``): not JSON, though it reads "keep";
4. plain text ``raw-keep #n``;
5. plain text ``error #n``; on Kafka and Kinesis bytes that are not UTF-8 either.

DynamoDB items carry that text in their ``body`` attribute and ``kind`` as an attribute of its
own (keep for 0, 3, 4; skip for 1, 5; none for 2), which is what their filters look at.
"""

NOT_JSON = {3, 4, 5}

# Per source: the classes AWS delivers with the filters below (esm-spec §3.3).
DELIVERED = {
    # "kind is keep" OR "no kind" (JSON patterns: never a plain body) OR body "raw-keep*".
    "sqs": {0, 2, 4},
    "sqs-fifo": {0, 2, 4},
    # The same two JSON patterns; Kinesis refuses string patterns at create.
    "kinesis": {0, 2},
    # Attributes, not the body: a body that is not JSON is just a string attribute.
    "dynamodb": {0, 2, 3, 4},
    # A format mismatch falls back to the metadata fields: none here, so delivered.
    "kafka": {0, 2, 3, 4, 5},
}
# A second Kafka mapping with the string pattern ``value`` starts with "raw-keep": JSON values
# and bytes that are not UTF-8 fall back to (no) metadata and are delivered; the truncated JSON
# is a plain string that does not match.
KAFKA_STRING_DELIVERED = {0, 1, 2, 4, 5}


def filters(name: str) -> list[str]:
    if name == "dynamodb":
        return [
            '{"dynamodb": {"NewImage": {"kind": {"S": ["keep"]}}}}',
            # exists tests leaves: on the attribute's type key, as AWS's docs say (the
            # attribute itself is an object, and an object never "exists").
            '{"dynamodb": {"NewImage": {"kind": {"S": [{"exists": false}]}}}}',
        ]
    key = {"sqs": "body", "sqs-fifo": "body", "kinesis": "data", "kafka": "value"}[name]
    out = [
        f'{{"{key}": {{"kind": ["keep"]}}}}',
        f'{{"{key}": {{"kind": [{{"exists": false}}]}}}}',
    ]
    if name.startswith("sqs"):
        out.append('{"body": [{"prefix": "raw-keep"}]}')
    return out


def malformed_record(name: str, n: int) -> Rec:
    c = n % CLASSES
    fields: dict[str, Any] = {"n": n, "key": f"k{n % KEYS}"}
    kind = {0: "keep", 1: "skip", 3: "keep", 4: "keep", 5: "skip"}.get(c)
    if c in (0, 1):
        fields["kind"] = kind
    if c <= 2:
        data = json.dumps(fields).encode()
    elif c == 3:
        data = (json.dumps({**fields, "kind": "keep"})[:-1] + f" #{n}").encode()
    elif c == 4:
        data = f"raw-keep #{n}".encode()
    elif name in ("kafka", "kinesis"):
        data = b"\xff\xfe error #" + str(n).encode()
    else:
        data = f"error #{n}".encode()
    return Rec(n, data, kind)


def of_classes(count: int, classes: set[int]) -> set[int]:
    return {n for n in range(count) if n % CLASSES in classes}


@pytest.mark.parametrize("name", SOURCES)
def test_payloads_that_are_not_json_meet_filter_criteria_as_on_aws(
    name: str, source_of: Any, sqs: Any, aws_endpoint: str, runtime_factory: Any,
    record_file: Path, tmp_path: Path,
) -> None:  # fmt: skip
    source = source_of(name)
    count = 8 * CLASSES
    cfg = config(source, record_file)
    [mapping] = cfg["eventSourceMappings"]
    mapping["FilterCriteria"] = {"Filters": [{"Pattern": p} for p in filters(name)]}
    string_file = tmp_path / "string-filter.jsonl"
    if name == "kafka":
        fn = cfg["functions"]["fn"]
        cfg["functions"]["fn2"] = {
            **fn, "Environment": {"Variables": {"RECORD_FILE": str(string_file)}},
        }  # fmt: skip
        group = mapping["SelfManagedKafkaEventSourceConfig"]["ConsumerGroupId"]
        cfg["eventSourceMappings"].append({
            **mapping,
            "FunctionName": "fn2",
            "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": f"{group}-string"},
            "FilterCriteria": {"Filters": [{"Pattern": '{"value": [{"prefix": "raw-keep"}]}'}]},
        })  # fmt: skip
    writer = Writer(source, sqs, aws_endpoint)
    writer.put([malformed_record(name, n) for n in range(count)])
    rt = runtime_factory(cfg, env=source.env).start(timeout=60)

    def filtered(function: str) -> float:
        return float(rt.metric("lambda_filtered_out_events_total", function_name=function))

    def accounted(function: str, path: Path) -> bool:
        """Every record either handled or filtered out (rightly or not: checked below)."""
        return len(set(completed_numbers(read(path)))) + filtered(function) >= count

    expected = of_classes(count, DELIVERED[name])
    wait_until(lambda: accounted("fn", record_file), 30, interval=0.2, what="every record")
    if name == "kafka":
        wait_until(lambda: accounted("fn2", string_file), 30, interval=0.2, what="fn2's records")
    time.sleep(1)  # anything delivered that should not be arrives now
    got = delivery(record_file, source, count, expected)
    faults = f"{len(of_classes(count, NOT_JSON))} not JSON; {count - len(expected)} filtered out"
    if name == "kafka":
        string_expected = of_classes(count, KAFKA_STRING_DELIVERED)
        string_got = delivery(string_file, source, count, string_expected)
        got.problems += [f"string pattern: {p}" for p in string_got.problems]
        faults += f" (string pattern: {count - len(string_expected)})"
    report("payloads not JSON, with FilterCriteria", name, {**got.figures, "kills": faults})
    assert not got.problems, got.problems
    assert filtered("fn") == count - len(expected)
    if name.startswith("sqs"):
        # Filtered-out messages are deleted, as Lambda does (none waits for a redelivery).
        wait_until(lambda: writer.remaining() == 0, 10, what="filtered messages deleted")
    if name == "kafka":
        assert filtered("fn2") == count - len(string_expected)
        # Both groups commit past every record, matched or not.
        per_partition = dict.fromkeys(range(KAFKA_PARTITIONS), count // KAFKA_PARTITIONS)
        for group in (f"g-{writer.topic}", f"g-{writer.topic}-string"):
            wait_until(
                lambda g=group: committed(writer.bootstrap, g, writer.topic, KAFKA_PARTITIONS)
                == per_partition,
                15, what=f"{group} committed past every record",
            )  # fmt: skip
    assert "Traceback" not in rt.logs()
    assert rt.stop() == 0


# ------------------------------------------------------------------ oversized records


def padded(n: int, size: int) -> bytes:
    """Record n as JSON of exactly ``size`` bytes."""
    base = json.dumps({"n": n, "key": f"k{n % KEYS}", "pad": ""})
    return json.dumps({"n": n, "key": f"k{n % KEYS}", "pad": "x" * (size - len(base))}).encode()


# The largest record each service (and the emulator) accepts: SQS 1 MiB per message, Kinesis
# 1 MiB per record (up to 10 MiB only after UpdateMaxRecordSize, which ministack lacks),
# DynamoDB 400 KB per item. None of these alone passes 6 MB; several pass it together.
LARGEST = {"sqs": MIB, "sqs-fifo": MIB, "kinesis": MIB, "dynamodb": 399 * 1024}
# DynamoDB items are small: 20 of 400 KB (and 20 small ones) are needed to pass 6 MB.
BATCH = {"dynamodb": {"BatchSize": 100, "MaximumBatchingWindowInSeconds": 1}}
COUNT = {"dynamodb": 40}


@pytest.mark.parametrize("name", ["sqs", "sqs-fifo", "kinesis", "dynamodb"])
def test_records_the_service_accepts_travel_in_batches_under_6_mb(
    name: str, source_of: Any, sqs: Any, aws_endpoint: str, runtime_factory: Any,
    record_file: Path,
) -> None:  # fmt: skip
    """A 7 MB record cannot exist on these sources: the service refuses it at put. The largest
    it accepts, many at once, must still reach the handler, in batches the 6 MB limit cut."""
    source = source_of(name)
    writer = Writer(source, sqs, aws_endpoint)
    refusal = writer.refuses(SEVEN_MB)
    assert refusal in ("InvalidParameterValue", "ValidationException"), refusal
    count = COUNT.get(name, 24)
    largest = LARGEST[name]
    writer.put([Rec(n, padded(n, largest) if n % 2 == 0 else json.dumps(
        {"n": n, "key": f"k{n % KEYS}"}).encode()) for n in range(count)])  # fmt: skip
    cfg = config(source, record_file)
    cfg["eventSourceMappings"][0].update(BATCH.get(name, {}))
    env = {**source.env, "CHAOS_EVENT_BYTES": "1"}
    rt = runtime_factory(cfg, env=env).start(timeout=60)
    wait_until(
        lambda: set(completed_numbers(read(record_file))) >= set(range(count)),
        40, interval=0.2, what="every record handled",
    )  # fmt: skip
    time.sleep(0.5)
    got = delivery(record_file, source, count, set(range(count)))
    sizes = [s["bytes"] for s in started(record_file)]
    report("records at the service's size limit", name, {
        **got.figures,
        "kills": f"7 MB refused at put ({refusal}); {count // 2} x {largest // 1024} KiB",
    })  # fmt: skip
    assert not got.problems, got.problems
    assert max(sizes) <= MAX_PAYLOAD_BYTES, sizes
    # The 6 MB limit, not BatchSize, cut the batches: one was filled close to it.
    assert max(sizes) > MAX_PAYLOAD_BYTES - 2 * largest, sizes
    if name.startswith("sqs"):
        wait_until(lambda: writer.remaining() == 0, 10, what="every message deleted")
    assert rt.stop() == 0


def test_a_7_mb_kafka_record_is_given_up_and_its_partition_moves_on(
    source_of: Any, sqs: Any, aws_endpoint: str, runtime_factory: Any, record_file: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    """Tansu takes a 7 MB value; no invocation can carry it (base64 makes it 9.3 MB). It goes
    to the on-failure destination as ``MaximumPayloadSizeExceeded``, or, without one, is
    dropped, counted and logged naming its partition and offset; either way the records
    before and after it in its partition are delivered in order and committed past it."""
    with_destination = source_of("kafka")
    without = source_of("kafka")
    destination = Queue.create(sqs, "ofd-big")
    count, big = 24, 9  # 9 is the third record of partition 1 (offset 2)
    records = [Rec(n, padded(n, SEVEN_MB) if n == big else json.dumps(
        {"n": n, "key": f"k{n % KEYS}"}).encode()) for n in range(count)]  # fmt: skip
    writers = [Writer(s, sqs, aws_endpoint) for s in (with_destination, without)]
    for w in writers:
        w.put(records)
    cfg = config(with_destination, record_file)
    cfg["eventSourceMappings"][0]["DestinationConfig"] = {
        "OnFailure": {"Destination": destination.arn}
    }
    dropped_file = tmp_path / "no-destination.jsonl"
    fn = cfg["functions"]["fn"]
    cfg["functions"]["fn2"] = {
        **fn, "Environment": {"Variables": {"RECORD_FILE": str(dropped_file)}},
    }  # fmt: skip
    cfg["eventSourceMappings"].append({"FunctionName": "fn2", **without.mapping})
    env = {**with_destination.env, "CHAOS_EVENT_BYTES": "1"}
    rt = runtime_factory(cfg, env=env).start(timeout=60)
    rest = set(range(count)) - {big}
    for f in (record_file, dropped_file):
        wait_until(lambda f=f: set(completed_numbers(read(f))) >= rest, 40, interval=0.2,
                   what=f"every other record handled ({f.name})")  # fmt: skip
    time.sleep(0.5)  # a late invocation of the big record, if any, lands now
    problems = []
    for f, source in ((record_file, with_destination), (dropped_file, without)):
        got = delivery(f, source, count, rest)  # the big record is never invoked
        outcome = "sent to the destination" if f == record_file else "dropped and logged"
        where = "on-failure destination" if f == record_file else "no destination"
        report(f"a 7 MB record, {where}", "kafka", {
            **got.figures,
            "kills": f"1 x 7 MB never invoked: MaximumPayloadSizeExceeded, {outcome}",
        })  # fmt: skip
        problems += got.problems
        sizes = [s["bytes"] for s in started(f)]
        assert max(sizes) <= MAX_PAYLOAD_BYTES, sizes
    assert not problems, problems
    [msg] = wait_until(lambda: destination.drain(0.2), 20, what="the failure record")
    record = json.loads(msg["Body"])
    topic, dropped_topic = (w.topic for w in writers)
    assert record["requestContext"]["condition"] == "MaximumPayloadSizeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 0
    assert record["responseContext"] is None
    info = record["KafkaBatchInfo"]
    assert info["recordsInfo"][f"{topic}-1"]["firstRecordOffset"] == "2"
    assert info["batchSize"] == 1 and info["payloadSize"] > MAX_PAYLOAD_BYTES
    wait_until(lambda: rt.metric("lambda_dropped_events_total", function_name="fn2") == 1, 10)
    per_partition = dict.fromkeys(range(KAFKA_PARTITIONS), count // KAFKA_PARTITIONS)
    for w in writers:
        wait_until(
            lambda w=w: committed(w.bootstrap, f"g-{w.topic}", w.topic, KAFKA_PARTITIONS)
            == per_partition,
            15, what=f"{w.topic} committed past the big record",
        )  # fmt: skip
    # One log line per given-up record, naming its partition and offset (first = last).
    logs = [json.loads(x) for x in rt.logs().splitlines() if x.startswith("{")]
    given_up = {
        (x["event"], x["unit"], x["first"], x["last"], x["records"]) for x in logs
        if x.get("condition") == "MaximumPayloadSizeExceeded"
    }  # fmt: skip
    assert given_up == {
        ("batch given up and sent to the on-failure destination",
         f"{topic}-1", f"('{topic}-1', 2)", f"('{topic}-1', 2)", 1),
        ("batch given up without an on-failure destination: records dropped",
         f"{dropped_topic}-1", f"('{dropped_topic}-1', 2)", f"('{dropped_topic}-1', 2)", 1),
    }, given_up  # fmt: skip
    assert rt.stop() == 0


# ------------------------------------------------------------------ configurations that cannot run


def test_run_refuses_an_invalid_configuration_naming_every_problem(
    runtime_factory: Any, record_file: Path
) -> None:
    """Five problems in four places: ``run`` lists them all, each under its field, and exits
    before it starts anything."""
    queue = "arn:aws:sqs:us-east-1:000000000000:never-read"
    cfg = {
        "functions": {"fn": {"Handler": "tests.chaos.recorder.handler", "Timeout": 901}},
        "eventSourceMappings": [
            {"FunctionName": "fn", "EventSourceArn": queue, "BatchSize": 20},
            {"FunctionName": "ghost", "EventSourceArn": queue},
            {
                "FunctionName": "fn",
                "EventSourceArn": "arn:aws:kinesis:us-east-1:000000000000:stream/s",
                "FilterCriteria": {"Filters": [{"Pattern": '{"data": {"a": [{"prefix": 1}]}}'}]},
            },
        ],
    }
    began = time.monotonic()
    rt = runtime_factory(cfg).start(wait_ready=False)
    assert rt.proc is not None
    code = rt.proc.wait(30)
    took = time.monotonic() - began
    logs = rt.logs()
    problems = [
        "functions.fn.Timeout: Input should be less than or equal to 900 (got 901)",
        "eventSourceMappings[0].MaximumBatchingWindowInSeconds: Maximum batch window in "
        "seconds must be greater than 0 if maximum batch size is greater than 10",
        "eventSourceMappings[1].FunctionName: Function does not exist",
        "eventSourceMappings[2].StartingPosition: 1 validation error detected",
        "eventSourceMappings[2].FilterCriteria.Filters[0].Pattern: Invalid filter pattern "
        "definition.",
    ]
    report("invalid configuration", "all", {
        "produced": "", "lost": "", "duplicates": "", "order_violations": "", "overlaps": "",
        "kills": f"{len(problems)} problems: exit {code} after {took:.1f} s, all named",
    })  # fmt: skip
    assert code == 2, logs
    assert f"{len(problems)} problem(s)" in logs, logs
    missing = [p for p in problems if p not in logs]
    assert not missing, f"not named: {missing}\n{logs}"
    assert rt.worker_pids() == []
    assert took < 15, took


@pytest.mark.parametrize(
    "handler, problem",
    [
        (
            "handlers.no_such_module.handler",
            "functions.fn.Handler: Runtime.ImportModuleError: Unable to import module "
            "'handlers.no_such_module': ModuleNotFoundError",
        ),
        (
            "tests.chaos.recorder.no_such_function",
            "functions.fn.Handler: Runtime.HandlerNotFound: Handler 'no_such_function' missing "
            "on module 'tests.chaos.recorder'",
        ),
    ],
    ids=["module-missing", "function-missing"],
)
def test_run_refuses_a_handler_that_does_not_load(
    handler: str, problem: str, sqs: Any, runtime_factory: Any, record_file: Path
) -> None:
    """Handlers are imported by the workers (in their own environment); the first one that
    cannot makes the pod stop with the handler's name before any record is read."""
    queue = Queue.create(sqs, "unloadable", visibility_timeout=30)
    queue.send([{"n": 0, "key": "k0"}])
    cfg = {
        "functions": {"fn": {"Handler": handler, "Timeout": 5}},
        "eventSourceMappings": [{"FunctionName": "fn", "EventSourceArn": queue.arn}],
    }
    began = time.monotonic()
    rt = runtime_factory(cfg).start(wait_ready=False)
    assert rt.proc is not None
    code = rt.proc.wait(30)
    took = time.monotonic() - began
    logs = rt.logs()
    which = "module" if "no_such_module" in handler else "function"
    report(f"handler {which} missing", "sqs", {
        "produced": 1, "lost": 0, "duplicates": "", "order_violations": "", "overlaps": "",
        "kills": f"exit {code} after {took:.1f} s, handler named",
    })  # fmt: skip
    assert code == 2, logs
    assert f"1 configuration problem(s)\n  - {problem}" in logs, logs
    assert took < 15, took
    assert queue.counts() == (1, 0)  # nothing was read
