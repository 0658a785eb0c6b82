"""Tumbling windows on Kinesis (esm-spec §2.6): state carried between the invocations of a
window, a final invocation per window, checkpoints only after it, early termination past
1 MB of state, a response without state failing the invocation."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.aws import client, wait_until
from tests.support.records import starts
from tests.support.streams import STREAM_ENV, create_stream, put, put_many, stream_mapping

pytestmark = pytest.mark.integration

WINDOW = 6  # long enough that a loaded machine never splits the test's records


def wait_for_window_start(seconds: int) -> None:
    """Sleep until just after a window boundary, so a test's records share one window."""
    now = time.time()
    time.sleep(seconds - now % seconds + 0.1)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**STREAM_ENV, "ESM_DATA_DIR": str(tmp_path / "data")}


def test_state_is_carried_through_a_window_and_checkpointed_after_its_final_invoke(
    aws_endpoint, runtime_factory, record_file, env
):
    kinesis = client("kinesis", aws_endpoint)
    arn = create_stream(kinesis, 1)
    cfg = stream_mapping(
        arn,
        record_file,
        handler="tests.handlers.windows.handler",
        BatchSize=2,
        TumblingWindowInSeconds=WINDOW,
    )
    rt = runtime_factory(cfg, env=env).start()
    wait_until(lambda: rt.metric("esm_owned_units") == 1, 20)
    wait_for_window_start(WINDOW)
    # One call, so that the four records are in one window.
    put_many(kinesis, arn, [("a", {"n": 1}), ("b", {"n": 10}), ("a", {"n": 2}), ("b", {"n": 20})])
    time.sleep(0.5)
    assert rt.metric("lambda_committed_events_total") == 0, "nothing before the final invoke"
    wait_until(lambda: any(s["final"] for s in starts(record_file)), 15)
    wait_until(lambda: rt.metric("lambda_committed_events_total") == 4, 10)
    invs = starts(record_file)
    data = [i for i in invs if not i["final"]]
    [final] = [i for i in invs if i["final"]]
    assert [i["values"] for i in data] == [[{"n": 1}, {"n": 10}], [{"n": 2}, {"n": 20}]]
    assert data[0]["state"] == {} and data[1]["state"] == {"a": 1, "b": 10}
    assert final["state"] == {"a": 3, "b": 30} and final["sequences"] == []
    assert final["early"] is False
    assert final["shard"].startswith("shardId-") and final["arn"] == arn
    start, end = (
        time.mktime(time.strptime(invs[0]["window"][k], "%Y-%m-%dT%H:%M:%SZ"))
        for k in ("start", "end")
    )
    assert end - start == WINDOW and all(i["window"] == invs[0]["window"] for i in invs)
    assert rt.stop() == 0


def test_a_response_without_state_fails_and_a_big_state_ends_the_window_early(
    aws_endpoint, runtime_factory, record_file, env
):
    kinesis = client("kinesis", aws_endpoint)
    arn = create_stream(kinesis, 1)
    cfg = stream_mapping(
        arn,
        record_file,
        handler="tests.handlers.windows.handler",
        BatchSize=1,
        TumblingWindowInSeconds=60,
    )
    rt = runtime_factory(cfg, env=env).start()
    wait_until(lambda: rt.metric("esm_owned_units") == 1, 20)
    if time.time() % 60 > 45:  # keep the three records in one window
        wait_for_window_start(60)
    put(kinesis, arn, [("a", {"n": 1, "no_state": True}), ("a", {"n": 2, "big_state": True}),
                       ("a", {"n": 4})])  # fmt: skip
    wait_until(lambda: any(s["early"] for s in starts(record_file)), 20)
    wait_until(lambda: len(starts(record_file)) >= 5, 20)
    invs = starts(record_file)
    # The first record's response had no state: an error, retried with the same state.
    assert invs[0]["values"] == invs[1]["values"] == [{"n": 1, "no_state": True}]
    assert invs[1]["state"] == {}
    assert rt.metric("lambda_errors_total") >= 1
    # The second record's state passed 1 MB: a final invocation ended the window early...
    early = invs[3]
    assert early["final"] is True and early["early"] is True and early["sequences"] == []
    assert early["state"]["a"] == 3
    # ... and the window went on with a fresh state.
    assert invs[4]["values"] == [{"n": 4}] and invs[4]["state"] == {}
    assert invs[4]["window"] == invs[0]["window"]
    # Records up to the early end are checkpointed; the last waits for the window's end.
    wait_until(lambda: rt.metric("lambda_committed_events_total") == 2, 10)
