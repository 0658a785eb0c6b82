"""RecordFilter on payloads that are not JSON (esm-spec §3.3), in-process.

Defect: on SQS and Kinesis a JSON pattern that only asks for a field's absence
(``{"exists": false}``) matched a body or data that is not JSON at all (the plain string has no
fields, so none is present), and such records reached the handler; AWS drops them ("plain
string | JSON pattern | drop"). tests/chaos/test_bad_input.py found it end to end.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from runtime.config.sources import SourceKind
from runtime.pipeline.filtering import RecordFilter

ABSENT = {
    SourceKind.SQS: '{"body": {"kind": [{"exists": false}]}}',
    SourceKind.KINESIS: '{"data": {"kind": [{"exists": false}]}}',
}


def sqs(body: str) -> dict[str, Any]:
    return {"messageId": "m-1", "body": body, "attributes": {}, "messageAttributes": {}}


def kinesis(data: bytes) -> dict[str, Any]:
    return {"kinesis": {"partitionKey": "k", "data": base64.b64encode(data).decode()}}


def kafka(value: bytes) -> dict[str, Any]:
    return {"topic": "t", "partition": 0, "offset": 0, "value": base64.b64encode(value).decode()}


@pytest.mark.parametrize(
    "record",
    [sqs("not json"), sqs('{"kind": "keep"'), sqs("")],
    ids=["text", "truncated-json", "empty"],
)
def test_a_json_pattern_never_matches_an_sqs_body_that_is_not_json(record: dict[str, Any]) -> None:
    f = RecordFilter(SourceKind.SQS, [ABSENT[SourceKind.SQS], '{"body": {"kind": ["keep"]}}'])
    assert not f.matches(record)


@pytest.mark.parametrize(
    "data", [b"not json", b'{"kind": "keep"', b"\xff\xfe"], ids=["text", "truncated", "not-utf8"]
)
def test_a_json_pattern_never_matches_kinesis_data_that_is_not_json(data: bytes) -> None:
    assert not RecordFilter(SourceKind.KINESIS, [ABSENT[SourceKind.KINESIS]]).matches(kinesis(data))


def test_absence_patterns_still_match_json_payloads_without_the_field() -> None:
    assert RecordFilter(SourceKind.SQS, [ABSENT[SourceKind.SQS]]).matches(sqs('{"n": 1}'))
    json_data = kinesis(json.dumps({"n": 1}).encode())
    assert RecordFilter(SourceKind.KINESIS, [ABSENT[SourceKind.KINESIS]]).matches(json_data)
    # A JSON scalar is JSON: the pattern is evaluated on it as event-ruler does.
    assert RecordFilter(SourceKind.SQS, [ABSENT[SourceKind.SQS]]).matches(sqs("42"))


def test_string_patterns_still_filter_plain_sqs_bodies() -> None:
    f = RecordFilter(SourceKind.SQS, ['{"body": [{"prefix": "raw-keep"}]}', ABSENT[SourceKind.SQS]])
    assert f.matches(sqs("raw-keep #4"))
    assert not f.matches(sqs("error #5"))
    assert not f.matches(sqs('{"kind": "keep"'))  # truncated JSON is a plain string


def test_kafka_still_falls_back_to_metadata_on_a_format_mismatch() -> None:
    f = RecordFilter(SourceKind.KAFKA, ['{"value": {"kind": [{"exists": false}]}}'])
    assert f.matches(kafka(b"not json"))
    assert f.matches(kafka(b"\xff\xfe"))
    assert not RecordFilter(SourceKind.KAFKA, ['{"value": {"kind": ["keep"]}}']).matches(
        kafka(b'{"kind": "skip"}')
    )
