"""parse_batch_response with SQS string identifiers: esm-spec §2.1 partial batch response rules."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.invoke.response import (
    SUCCESS,
    BatchOutcome,
    OutcomeKind,
    parse_batch_response,
    string_identifier,
)

IDS = frozenset({"m-1", "m-2", "m-3", "m-4"})


def parse(response: Any, batch_ids: frozenset[str] = IDS) -> BatchOutcome:
    return parse_batch_response(response, batch_ids, string_identifier)


# ---------------------------------------------------------------------------- string_identifier


@pytest.mark.parametrize("value", ["m-1", "x", " "])
def test_string_identifier_accepts_non_empty_strings(value: str) -> None:
    assert string_identifier(value) == value


@pytest.mark.parametrize("value", ["", None, 1, 1.5, True, ["m-1"], {"id": "m-1"}])
def test_string_identifier_rejects_everything_else(value: Any) -> None:
    assert string_identifier(value) is None


# ---------------------------------------------------------------------------- success


@pytest.mark.parametrize(
    "response",
    [
        None,
        [],
        {},
        {"batchItemFailures": None},
        {"batchItemFailures": []},
        {"somethingElse": [{"itemIdentifier": "nope"}]},
    ],
    ids=[
        "null",
        "empty-array",  # AWS-recorded: [empty_list_success] (Kinesis, DynamoDB Streams)
        "empty-object",
        "null-list",
        "empty-list",
        "no-batchItemFailures-key",
    ],
)
def test_success(response: Any) -> None:
    outcome = parse(response)
    assert outcome == SUCCESS
    assert outcome.kind is OutcomeKind.SUCCESS
    assert outcome.failed_ids == frozenset()
    assert outcome.reason is None


# ---------------------------------------------------------------------------- partial


def test_partial_subset() -> None:
    outcome = parse({"batchItemFailures": [{"itemIdentifier": "m-2"}, {"itemIdentifier": "m-4"}]})
    assert outcome == BatchOutcome(OutcomeKind.PARTIAL, failed_ids=frozenset({"m-2", "m-4"}))
    assert outcome.reason is None


def test_partial_single() -> None:
    outcome = parse({"batchItemFailures": [{"itemIdentifier": "m-1"}]})
    assert outcome.kind is OutcomeKind.PARTIAL
    assert outcome.failed_ids == frozenset({"m-1"})


def test_partial_duplicates_collapse() -> None:
    outcome = parse(
        {
            "batchItemFailures": [
                {"itemIdentifier": "m-3"},
                {"itemIdentifier": "m-3"},
                {"itemIdentifier": "m-1"},
            ]
        }
    )
    assert outcome.kind is OutcomeKind.PARTIAL
    assert outcome.failed_ids == frozenset({"m-1", "m-3"})


def test_partial_naming_every_record() -> None:
    items = [{"itemIdentifier": i} for i in sorted(IDS)]
    outcome = parse({"batchItemFailures": items})
    assert outcome.kind is OutcomeKind.PARTIAL
    assert outcome.failed_ids == IDS


def test_partial_extra_keys_in_item_are_ignored() -> None:
    outcome = parse({"batchItemFailures": [{"itemIdentifier": "m-2", "reason": "bad"}]})
    assert outcome.kind is OutcomeKind.PARTIAL
    assert outcome.failed_ids == frozenset({"m-2"})


def test_partial_other_top_level_keys_are_ignored() -> None:
    outcome = parse({"batchItemFailures": [{"itemIdentifier": "m-2"}], "statusCode": 200})
    assert outcome.failed_ids == frozenset({"m-2"})


# ---------------------------------------------------------------------------- failure


def assert_failure(outcome: BatchOutcome, reason: str) -> None:
    assert outcome.kind is OutcomeKind.FAILURE
    assert outcome.failed_ids == frozenset()
    assert outcome.reason == reason


def test_unknown_identifier_fails_whole_batch() -> None:
    outcome = parse({"batchItemFailures": [{"itemIdentifier": "m-1"}, {"itemIdentifier": "zz"}]})
    assert_failure(outcome, "batchItemFailures[1].itemIdentifier 'zz' is not in the batch")


def test_identifier_of_another_batch_fails() -> None:
    outcome = parse({"batchItemFailures": [{"itemIdentifier": "m-1"}]}, frozenset({"m-9"}))
    assert_failure(outcome, "batchItemFailures[0].itemIdentifier 'm-1' is not in the batch")


def test_empty_string_identifier_fails() -> None:
    outcome = parse({"batchItemFailures": [{"itemIdentifier": ""}]})
    assert_failure(outcome, "batchItemFailures[0].itemIdentifier is null, empty or malformed: ''")


def test_null_identifier_fails() -> None:
    outcome = parse({"batchItemFailures": [{"itemIdentifier": "m-1"}, {"itemIdentifier": None}]})
    assert_failure(outcome, "batchItemFailures[1].itemIdentifier is null, empty or malformed: None")


def test_non_string_identifier_fails() -> None:
    outcome = parse({"batchItemFailures": [{"itemIdentifier": 42}]})
    assert_failure(outcome, "batchItemFailures[0].itemIdentifier is null, empty or malformed: 42")


def test_bad_key_name_fails() -> None:
    # the exact response AWS's test_report_batch_item_failures_invalid_result_json_batch_fails uses
    outcome = parse({"batchItemFailures": [{"foo": "notvalid"}]})
    assert_failure(outcome, "batchItemFailures[0] has no itemIdentifier")


def test_wrong_case_key_name_fails() -> None:
    outcome = parse({"batchItemFailures": [{"ItemIdentifier": "m-1"}]})
    assert_failure(outcome, "batchItemFailures[0] has no itemIdentifier")


def test_empty_item_fails() -> None:
    outcome = parse({"batchItemFailures": [{"itemIdentifier": "m-1"}, {}]})
    assert_failure(outcome, "batchItemFailures[1] has no itemIdentifier")


@pytest.mark.parametrize("item", ["m-1", 1, None, ["m-1"], True])
def test_item_not_an_object_fails(item: Any) -> None:
    outcome = parse({"batchItemFailures": [item]})
    assert_failure(outcome, "batchItemFailures[0] has no itemIdentifier")


def test_bad_item_after_good_ones_fails_whole_batch() -> None:
    outcome = parse(
        {"batchItemFailures": [{"itemIdentifier": "m-1"}, {"itemIdentifier": "m-2"}, "m-3"]}
    )
    assert_failure(outcome, "batchItemFailures[2] has no itemIdentifier")


@pytest.mark.parametrize(
    ("items", "json_type"),
    [
        ("m-1", "string"),
        (1, "number"),
        (0, "number"),
        (1.5, "number"),
        (True, "boolean"),
        (False, "boolean"),
        ("", "string"),
    ],
)
def test_batch_item_failures_not_a_list_fails(items: Any, json_type: str) -> None:
    outcome = parse({"batchItemFailures": items})
    assert_failure(outcome, f"batchItemFailures is a JSON {json_type}, not a list")


def test_batch_item_failures_an_object_fails() -> None:
    # the reason names the Python type ("dict") rather than the JSON one ("object"): cosmetic
    outcome = parse({"batchItemFailures": {"itemIdentifier": "m-1"}})
    assert outcome.kind is OutcomeKind.FAILURE
    assert outcome.failed_ids == frozenset()
    assert outcome.reason is not None
    assert outcome.reason.startswith("batchItemFailures is a JSON ")
    assert outcome.reason.endswith(", not a list")


@pytest.mark.parametrize(
    ("response", "json_type"),
    [
        ("", "string"),
        ("ok", "string"),
        ('{"batchItemFailures": []}', "string"),
        ([{"itemIdentifier": "m-1"}], "array"),
        ([None], "array"),
        (0, "number"),
        (1, "number"),
        (2.5, "number"),
        (True, "boolean"),
        (False, "boolean"),
    ],
)
def test_response_not_an_object_fails(response: Any, json_type: str) -> None:
    outcome = parse(response)
    assert_failure(outcome, f"response is a JSON {json_type}, not an object")


def test_failure_reason_is_human_readable_and_truncated() -> None:
    long_id = "x" * 500
    outcome = parse({"batchItemFailures": [{"itemIdentifier": long_id}]})
    assert outcome.kind is OutcomeKind.FAILURE
    assert outcome.reason is not None
    assert outcome.reason.startswith("batchItemFailures[0].itemIdentifier 'xxx")
    assert outcome.reason.endswith(" is not in the batch")
    # the identifier's repr is cut to 100 characters so a log line stays readable
    assert len(outcome.reason) == len("batchItemFailures[0].itemIdentifier ") + 100 + len(
        " is not in the batch"
    )


def test_every_failure_has_a_reason() -> None:
    for response in (
        "x",
        {"batchItemFailures": 1},
        {"batchItemFailures": [{}]},
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"itemIdentifier": "nope"}]},
    ):
        outcome = parse(response)
        assert outcome.kind is OutcomeKind.FAILURE
        assert isinstance(outcome.reason, str)
        assert outcome.reason


def test_empty_batch_ids_any_identifier_fails() -> None:
    outcome = parse({"batchItemFailures": [{"itemIdentifier": "m-1"}]}, frozenset())
    assert outcome.kind is OutcomeKind.FAILURE


def test_empty_batch_ids_empty_list_succeeds() -> None:
    assert parse({"batchItemFailures": []}, frozenset()) == SUCCESS
