"""Merging the configuration file's mappings with stored ones: the file wins, and a stored
mapping that does not fit is set aside with its reason, never dropped silently."""

from __future__ import annotations

from typing import Any

from runtime.api.catalog import merge
from runtime.api.store import StoredMapping
from runtime.config.settings import Settings

SETTINGS = Settings(account_id="111111111111", region="us-east-1")
Q1 = "arn:aws:sqs:us-east-1:111111111111:one"
Q2 = "arn:aws:sqs:us-east-1:111111111111:two"


def document(*mappings: dict[str, Any]) -> dict[str, Any]:
    return {
        "functions": {"fn": {"Handler": "handlers.orders.handler"}},
        "eventSourceMappings": list(mappings),
    }


def stored(uuid: str, state: str = "Enabled", **body: Any) -> StoredMapping:
    return StoredMapping(uuid, {"FunctionName": "fn", **body}, state, 1.0)


def test_stored_mappings_run_after_the_file_s() -> None:
    cat = merge(
        document({"FunctionName": "fn", "EventSourceArn": Q1}),
        [stored("11111111-1111-1111-1111-111111111111", EventSourceArn=Q2, BatchSize=7)],
        SETTINGS,
        "config.yaml",
    )
    assert [m.source.arn for m in cat.config.mappings] == [Q1, Q2]
    assert len(cat.declared) == 1 and not cat.problems
    m = cat.mapping("11111111-1111-1111-1111-111111111111")
    assert m is not None and m.batch_size == 7


def test_the_file_wins_and_the_stored_duplicate_is_set_aside_with_its_reason() -> None:
    uuid = "22222222-2222-2222-2222-222222222222"
    cat = merge(
        document({"FunctionName": "fn", "EventSourceArn": Q1}),
        [stored(uuid, EventSourceArn=Q1)],
        SETTINGS,
        "config.yaml",
    )
    assert [m.source.arn for m in cat.config.mappings] == [Q1]
    assert "already exists" in cat.problems[uuid]
    assert uuid in cat.stored  # kept, shown, not deleted


def test_a_stored_mapping_of_a_function_the_file_no_longer_has_is_set_aside() -> None:
    uuid = "33333333-3333-3333-3333-333333333333"
    cat = merge(
        document(),
        [stored(uuid, EventSourceArn=Q2) .replace(body={"FunctionName": "gone",
                                                         "EventSourceArn": Q2})],
        SETTINGS,
        "config.yaml",
    )  # fmt: skip
    assert cat.config.mappings == ()
    assert cat.problems[uuid].startswith("FunctionName: Function does not exist")


def test_deleting_mappings_are_not_run_and_disabled_ones_are_planned_out() -> None:
    gone, off = "44444444-4444-4444-4444-444444444444", "55555555-5555-5555-5555-555555555555"
    cat = merge(
        document(),
        [stored(gone, "Deleting", EventSourceArn=Q1),
         stored(off, "Disabled", EventSourceArn=Q2, Enabled=False)],
        SETTINGS,
        "config.yaml",
    )  # fmt: skip
    assert [m.uuid for m in cat.config.mappings] == [off]
    assert not cat.config.mappings[0].enabled
