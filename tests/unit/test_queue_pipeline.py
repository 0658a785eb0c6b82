"""The queue-source pipeline in-process: how much it fetches at small concurrency limits.

A fake queue hands out at most ``per_receive`` messages per fetch (SQS returns fewer than asked
for all the time). Batches must fill to BatchSize while there is a backlog, whatever the
limit, without the runtime ever holding more batches than the limit allows.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import pytest

from runtime.config.loader import build_config
from runtime.config.settings import Settings
from runtime.invoke.invoker import InvocationResult
from runtime.metrics import MappingMetrics
from runtime.pipeline.queue import QueuePipeline
from runtime.pipeline.records import Record
from runtime.pipeline.scaling import ConcurrencyScaler, ScalingPolicy


class FakeQueue:
    envelope_bytes = 14
    max_fetch = 10
    parse_identifier = staticmethod(lambda v: v)

    def __init__(self, messages: int, per_receive: int) -> None:
        self.backlog = deque(range(messages))
        self.per_receive = per_receive
        self.asked: list[int] = []
        self.deleted: list[int] = []

    async def check(self) -> None: ...

    async def start(self) -> None: ...

    async def fetch(self, max_records: int) -> list[Record]:
        self.asked.append(max_records)
        await asyncio.sleep(0.001)
        n = min(max_records, self.per_receive, len(self.backlog))
        if not n:
            await asyncio.sleep(0.05)  # an empty long poll
        return [
            Record({"messageId": str(i)}, 30, str(i), i)
            for i in (self.backlog.popleft() for _ in range(n))
        ]

    async def complete(self, succeeded: list[Record], failed: list[Record]) -> int:
        self.deleted.extend(r.ack for r in succeeded)
        return len(succeeded)

    async def release(self, records: list[Record], delay_seconds: int = 0) -> None: ...

    async def close(self) -> None: ...

    def build_event(self, records: list[Record]) -> dict[str, Any]:
        return {"Records": [r.payload for r in records]}


class Invoker:
    def __init__(self) -> None:
        self.batches: list[int] = []
        self.running = 0
        self.most = 0

    async def invoke(self, event: dict[str, Any], metrics: Any, start_if: Any = None) -> Any:
        self.running += 1
        self.most = max(self.most, self.running)
        self.batches.append(len(event["Records"]))
        await asyncio.sleep(0.01)
        self.running -= 1
        return InvocationResult("r", None, None, 0.01)


def mapping(batch_size: int, window: int) -> Any:
    raw = {
        "functions": {"fn": {"Handler": "handlers.orders.handler"}},
        "eventSourceMappings": [
            {
                "FunctionName": "fn",
                "EventSourceArn": "arn:aws:sqs:us-east-1:123456789012:q",
                "BatchSize": batch_size,
                "MaximumBatchingWindowInSeconds": window,
            }
        ],
    }
    return build_config(raw, "t.yaml", Settings(), import_handlers=False).mappings[0]


@pytest.mark.parametrize(
    ("batch_size", "per_receive", "limit"),
    [(10, 3, 1), (50, 10, 1), (50, 10, 2), (100, 7, 1)],
)
def test_batches_fill_to_batch_size_at_small_limits(
    batch_size: int, per_receive: int, limit: int
) -> None:
    async def scenario() -> tuple[FakeQueue, Invoker, float]:
        m = mapping(batch_size, window=5)
        queue, invoker = FakeQueue(4 * batch_size, per_receive), Invoker()
        scaler = ConcurrencyScaler(ScalingPolicy(limit, limit, 1, 60.0, 0.0))
        p = QueuePipeline(
            m,
            queue,
            invoker,
            scaler,
            MappingMetrics.bind("fn", m.uuid),
            max_pollers=64,  # type: ignore[arg-type]
        )
        started = time.monotonic()
        await p.start()
        while len(queue.deleted) < 4 * batch_size and time.monotonic() - started < 4:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - started
        await p.drain(1.0)
        return queue, invoker, elapsed

    queue, invoker, elapsed = asyncio.run(scenario())
    # Every batch full, none waited for its 5 s window, never more batches at once than allowed.
    assert invoker.batches == [batch_size] * 4
    assert elapsed < 3
    assert invoker.most <= limit
    # A top-up never asks for more than the open batch still has room for.
    assert max(queue.asked) <= min(10, batch_size)
