"""Invoker: one handler run with Lambda's context, timeout, concurrency and error shapes.

Everything runs in-process: each test drives its own event loop with ``asyncio.run`` and a
``ThreadPoolExecutor`` for sync handlers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import structlog
from prometheus_client import REGISTRY

import runtime.invoke.invoker as invoker_mod
from runtime.config.resolved import Function
from runtime.invoke.context import LambdaContext
from runtime.invoke.environments import Environment
from runtime.invoke.handler import LoadedHandler
from runtime.invoke.invoker import FunctionError, InvocationResult, Invoker
from runtime.metrics import MappingMetrics
from runtime.pipeline.records import MAX_PAYLOAD_BYTES

FN_NAME = "orders"
REGION = "eu-west-1"
ACCOUNT = "123456789012"


def function(timeout: int = 3, memory: int = 256) -> Function:
    return Function(
        name=FN_NAME,
        handler="tests.unit.test_invoker.handler",
        timeout_seconds=timeout,
        memory_size=memory,
        environment={},
        reserved_concurrency=None,
        region=REGION,
        account=ACCOUNT,
    )


class OnePool:
    """An environment pool around one in-test function (environments share this module)."""

    def __init__(self, handler: LoadedHandler) -> None:
        self.handler = handler
        self.released = 0
        self.discarded = 0

    def acquire_warm(self) -> Environment:
        return Environment(self.handler, sys.modules[__name__])

    def create(self) -> Environment:  # pragma: no cover - acquire_warm never runs dry
        return self.acquire_warm()

    def release(self, env: Environment) -> None:
        self.released += 1

    def discard(self, env: Environment) -> None:
        self.discarded += 1


def loaded(func: Callable[..., Any]) -> Any:
    return OnePool(
        LoadedHandler(
            path=f"tests.unit.test_invoker.{func.__name__}",
            func=func,
            is_async=asyncio.iscoroutinefunction(func),
        )
    )


class Metrics:
    """A MappingMetrics bound to a fresh mapping uuid, with readers for its samples."""

    def __init__(self) -> None:
        self.uuid = str(uuid.uuid4())
        self.bound = MappingMetrics.bind(FN_NAME, self.uuid)

    def value(self, name: str) -> float:
        labels = {"function_name": FN_NAME, "event_source_mapping_uuid": self.uuid}
        v = REGISTRY.get_sample_value(name, labels)
        return 0.0 if v is None else v

    @property
    def invocations(self) -> float:
        return self.value("lambda_invocations_total")

    @property
    def errors(self) -> float:
        return self.value("lambda_errors_total")

    @property
    def throttles(self) -> float:
        return self.value("lambda_throttles_total")

    @property
    def concurrent(self) -> float:
        return self.value("lambda_concurrent_executions")

    @property
    def duration_count(self) -> float:
        return self.value("lambda_duration_seconds_count")


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="handler")
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


class Stuck:
    """Records on_stuck calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, message: str) -> None:
        self.calls.append(message)


def invoke_once(
    func: Callable[..., Any],
    executor: ThreadPoolExecutor,
    metrics: Metrics,
    *,
    event: Any = None,
    timeout: int = 3,
    stuck: Stuck | None = None,
) -> InvocationResult:
    async def main() -> InvocationResult:
        inv = Invoker(
            function(timeout),
            loaded(func),
            executor,
            concurrency_limit=None,
            on_stuck=stuck if stuck is not None else Stuck(),
        )
        return await inv.invoke({"Records": []} if event is None else event, metrics.bound)

    return asyncio.run(main())


UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

# ---------------------------------------------------------------------------- success


def _result_value() -> dict[str, Any]:
    return {
        "tuple": (1, 2, (3, "x")),
        "decimal": decimal.Decimal("1.5"),
        "nested": {"list": [decimal.Decimal("-0.25")], "none": None, "bool": True},
        "text": "héllo",
    }


_EXPECTED = {
    "tuple": [1, 2, [3, "x"]],
    "decimal": 1.5,
    "nested": {"list": [-0.25], "none": None, "bool": True},
    "text": "héllo",
}


def sync_ok(event: Any, context: Any) -> Any:
    return _result_value()


async def async_ok(event: Any, context: Any) -> Any:
    await asyncio.sleep(0)
    return _result_value()


@pytest.mark.parametrize("handler", [sync_ok, async_ok], ids=["sync", "async"])
def test_success_json_round_trip(
    handler: Callable[..., Any], executor: ThreadPoolExecutor, metrics: Metrics
) -> None:
    result = invoke_once(handler, executor, metrics)
    assert result.ok
    assert result.error is None
    assert result.response == _EXPECTED
    assert type(result.response["tuple"]) is list
    assert type(result.response["tuple"][2]) is list
    assert type(result.response["decimal"]) is float
    assert UUID_RE.match(result.request_id)
    assert 0 <= result.duration < 1
    assert metrics.invocations == 1
    assert metrics.errors == 0
    assert metrics.duration_count == 1
    assert metrics.concurrent == 0


def test_response_is_a_copy_not_the_returned_object(
    executor: ThreadPoolExecutor, metrics: Metrics
) -> None:
    returned = {"batchItemFailures": [{"itemIdentifier": "m-1"}]}

    def handler(event: Any, context: Any) -> Any:
        return returned

    result = invoke_once(handler, executor, metrics)
    assert result.response == returned
    assert result.response is not returned
    assert result.response["batchItemFailures"] is not returned["batchItemFailures"]


def test_decimal_marshalled_like_awslambdaric(
    executor: ThreadPoolExecutor, metrics: Metrics
) -> None:
    def handler(event: Any, context: Any) -> Any:
        return {"n": decimal.Decimal("3"), "big": decimal.Decimal("12345678901234567890")}

    result = invoke_once(handler, executor, metrics)
    assert result.ok
    assert type(result.response["n"]) is int
    assert result.response == {"n": 3, "big": 12345678901234567890}


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("ok", "ok"), (0, 0), (False, False), ([], []), ({}, {}), ((), [])],
)
def test_scalar_and_empty_responses(
    value: Any, expected: Any, executor: ThreadPoolExecutor, metrics: Metrics
) -> None:
    def handler(event: Any, context: Any) -> Any:
        return value

    result = invoke_once(handler, executor, metrics)
    assert result.ok
    assert result.response == expected
    assert type(result.response) is type(expected)


def test_handler_receives_the_event_object(executor: ThreadPoolExecutor, metrics: Metrics) -> None:
    seen: list[Any] = []
    event = {"Records": [{"messageId": "m-1"}]}

    def handler(ev: Any, context: Any) -> None:
        seen.append(ev)

    invoke_once(handler, executor, metrics, event=event)
    assert seen == [event]


# ---------------------------------------------------------------------------- errors


class OrderRejectedError(Exception):
    pass


def _fail_deep(n: int) -> None:
    raise OrderRejectedError(f"order {n} rejected")


def sync_raises(event: Any, context: Any) -> None:
    _fail_deep(42)


async def async_raises(event: Any, context: Any) -> None:
    await asyncio.sleep(0)
    _fail_deep(42)


@pytest.mark.parametrize("handler", [sync_raises, async_raises], ids=["sync", "async"])
def test_exception_becomes_function_error(
    handler: Callable[..., Any], executor: ThreadPoolExecutor, metrics: Metrics
) -> None:
    result = invoke_once(handler, executor, metrics)
    assert not result.ok
    assert result.response is None
    err = result.error
    assert err is not None
    assert err.error_type == "OrderRejectedError"
    assert err.error_message == "order 42 rejected"
    trace = "".join(err.stack_trace)
    assert f"in {handler.__name__}\n    _fail_deep(42)\n" in trace
    assert 'in _fail_deep\n    raise OrderRejectedError(f"order {n} rejected")\n' in trace
    assert err.stack_trace[-1].startswith(f'  File "{__file__}", line ')
    assert err.stack_trace[-1].endswith(
        'in _fail_deep\n    raise OrderRejectedError(f"order {n} rejected")\n'
    )
    assert metrics.invocations == 1
    assert metrics.errors == 1


def test_exception_with_empty_message(executor: ThreadPoolExecutor, metrics: Metrics) -> None:
    def handler(event: Any, context: Any) -> None:
        raise KeyError("missing")

    result = invoke_once(handler, executor, metrics)
    assert result.error is not None
    assert result.error.error_type == "KeyError"
    assert result.error.error_message == "'missing'"  # str(KeyError) quotes, as awslambdaric


@pytest.mark.parametrize("handler", [sync_raises, async_raises], ids=["sync", "async"])
def test_stack_trace_starts_at_the_handler(
    handler: Callable[..., Any], executor: ThreadPoolExecutor, metrics: Metrics
) -> None:
    result = invoke_once(handler, executor, metrics)
    assert result.error is not None
    first = result.error.stack_trace[0]
    assert first.startswith(f'  File "{__file__}", line ')
    assert f"in {handler.__name__}\n" in first


def sync_exits(event: Any, context: Any) -> None:
    sys.exit(3)


async def async_exits(event: Any, context: Any) -> None:
    await asyncio.sleep(0)
    sys.exit(3)


@pytest.mark.parametrize("handler", [sync_exits, async_exits], ids=["sync", "async"])
def test_system_exit_does_not_escape(
    handler: Callable[..., Any], executor: ThreadPoolExecutor, metrics: Metrics
) -> None:
    async def main() -> tuple[InvocationResult, InvocationResult]:
        inv = Invoker(
            function(), loaded(handler), executor, concurrency_limit=None, on_stuck=Stuck()
        )
        first = await inv.invoke({}, metrics.bound)
        # the loop and the pool are still usable afterwards
        await asyncio.sleep(0)
        second = await inv.invoke({}, metrics.bound)
        return first, second

    first, second = asyncio.run(main())
    for result in (first, second):
        assert result.error is not None
        assert result.error.error_type == "Runtime.ExitError"
        assert "Runtime exited" in result.error.error_message
        assert result.response is None
    assert metrics.errors == 2
    assert metrics.concurrent == 0


# (9d16a98 wrote "RequestId: Error: Runtime exited (3)", without the id; fixed in 2d12633)
@pytest.mark.parametrize("handler", [sync_exits, async_exits], ids=["sync", "async"])
def test_system_exit_message_names_the_request(
    handler: Callable[..., Any], executor: ThreadPoolExecutor, metrics: Metrics
) -> None:
    result = invoke_once(handler, executor, metrics)
    assert result.error is not None
    assert result.error.error_message.startswith(
        f"RequestId: {result.request_id} Error: Runtime exited"
    )


def test_keyboard_interrupt_is_a_function_error(
    executor: ThreadPoolExecutor, metrics: Metrics
) -> None:
    def handler(event: Any, context: Any) -> None:
        raise KeyboardInterrupt

    result = invoke_once(handler, executor, metrics)
    assert result.error is not None
    assert result.error.error_type == "KeyboardInterrupt"


@pytest.mark.parametrize(
    ("value", "type_name"),
    [({"x": object()}, "object"), ({1, 2}, "set"), ({"b": b"raw"}, "bytes")],
)
def test_non_serialisable_response_is_marshal_error(
    value: Any, type_name: str, executor: ThreadPoolExecutor, metrics: Metrics
) -> None:
    def handler(event: Any, context: Any) -> Any:
        return value

    result = invoke_once(handler, executor, metrics)
    assert result.response is None
    assert result.error == FunctionError(
        "Runtime.MarshalError",
        f"Unable to marshal response: Object of type {type_name} is not JSON serializable",
    )
    assert metrics.errors == 1


def test_too_deeply_nested_response_is_marshal_error(
    executor: ThreadPoolExecutor, metrics: Metrics
) -> None:
    """json.dumps raises RecursionError, not TypeError, for this: it must still end the
    invocation as a marshal error (it once escaped and left the batch unacknowledged)."""

    def handler(event: Any, context: Any) -> Any:
        value: Any = []
        for _ in range(100_000):
            value = [value]
        return value

    result = invoke_once(handler, executor, metrics)
    assert result.response is None
    assert result.error is not None
    assert result.error.error_type == "Runtime.MarshalError"
    assert result.error.error_message.startswith("Unable to marshal response: maximum recursion")
    assert metrics.errors == 1


def test_response_at_payload_limit_is_accepted(
    executor: ThreadPoolExecutor, metrics: Metrics
) -> None:
    def handler(event: Any, context: Any) -> Any:
        return "x" * (MAX_PAYLOAD_BYTES - 2)  # plus two quotes: exactly 6 MB of JSON

    result = invoke_once(handler, executor, metrics)
    assert result.ok
    assert len(result.response) == MAX_PAYLOAD_BYTES - 2


def test_response_over_payload_limit_is_rejected(
    executor: ThreadPoolExecutor, metrics: Metrics
) -> None:
    def handler(event: Any, context: Any) -> Any:
        return "x" * (MAX_PAYLOAD_BYTES - 1)

    result = invoke_once(handler, executor, metrics)
    assert result.response is None
    assert result.error == FunctionError(
        "Function.ResponseSizeTooLarge",
        f"Response payload size ({MAX_PAYLOAD_BYTES + 1} bytes) exceeded maximum allowed "
        f"payload size ({MAX_PAYLOAD_BYTES} bytes).",
    )


# ---------------------------------------------------------------------------- timeouts


def test_sync_handler_past_timeout(executor: ThreadPoolExecutor, metrics: Metrics) -> None:
    release = threading.Event()
    finished = threading.Event()

    def slow(event: Any, context: Any) -> str:
        release.wait(10)
        finished.set()
        return "late"

    stuck = Stuck()
    try:
        result = invoke_once(slow, executor, metrics, timeout=1, stuck=stuck)
    finally:
        release.set()
    assert result.error == FunctionError(
        "Sandbox.Timedout",
        f"RequestId: {result.request_id} Error: Task timed out after 1.00 seconds",
    )
    assert result.response is None
    assert 0.99 <= result.duration < 1.5
    assert stuck.calls == [
        "sync handler tests.unit.test_invoker.slow still running after its 1s timeout; "
        "its thread cannot be stopped"
    ]
    assert metrics.errors == 1
    assert metrics.concurrent == 0
    assert finished.wait(5)


def test_async_handler_past_timeout_is_cancelled(
    executor: ThreadPoolExecutor, metrics: Metrics
) -> None:
    cancelled = threading.Event()

    async def slow(event: Any, context: Any) -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "late"

    stuck = Stuck()
    result = invoke_once(slow, executor, metrics, timeout=1, stuck=stuck)
    assert result.error == FunctionError(
        "Sandbox.Timedout",
        f"RequestId: {result.request_id} Error: Task timed out after 1.00 seconds",
    )
    assert cancelled.is_set()
    assert stuck.calls == []
    assert 0.99 <= result.duration < 1.5
    assert metrics.errors == 1


def test_async_handler_that_raises_while_cancelled_is_still_a_timeout(
    executor: ThreadPoolExecutor, metrics: Metrics
) -> None:
    async def slow(event: Any, context: Any) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    stuck = Stuck()
    result = invoke_once(slow, executor, metrics, timeout=1, stuck=stuck)
    assert result.error is not None
    assert result.error.error_type == "Sandbox.Timedout"
    assert stuck.calls == []


def test_async_handler_ignoring_cancellation_calls_on_stuck(
    executor: ThreadPoolExecutor, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(invoker_mod, "_CANCEL_GRACE_SECONDS", 0.2)
    stop = threading.Event()
    swallowed: list[int] = []

    async def stubborn(event: Any, context: Any) -> str:
        deadline = time.monotonic() + 10
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                await asyncio.sleep(0.02)
            except asyncio.CancelledError:
                swallowed.append(1)
        return "done"

    stuck = Stuck()

    async def main() -> InvocationResult:
        inv = Invoker(
            function(1), loaded(stubborn), executor, concurrency_limit=None, on_stuck=stuck
        )
        result = await inv.invoke({}, metrics.bound)
        stop.set()
        await asyncio.sleep(0.1)  # let the stubborn task finish before the loop closes
        return result

    result = asyncio.run(main())
    assert result.error == FunctionError(
        "Sandbox.Timedout",
        f"RequestId: {result.request_id} Error: Task timed out after 1.00 seconds",
    )
    assert len(swallowed) >= 1
    assert stuck.calls == [
        "async handler tests.unit.test_invoker.stubborn ignored cancellation after its 1s timeout"
    ]
    assert 1.15 <= result.duration < 1.7  # timeout + grace


def test_handler_just_within_timeout_succeeds(
    executor: ThreadPoolExecutor, metrics: Metrics
) -> None:
    def quick(event: Any, context: Any) -> str:
        time.sleep(0.3)
        return "ok"

    stuck = Stuck()
    result = invoke_once(quick, executor, metrics, timeout=1, stuck=stuck)
    assert result.ok
    assert result.response == "ok"
    assert stuck.calls == []


# ---------------------------------------------------------------------------- threads and loops


def test_sync_handler_runs_in_a_thread_without_event_loop(
    executor: ThreadPoolExecutor, metrics: Metrics
) -> None:
    seen: dict[str, Any] = {}

    def handler(event: Any, context: Any) -> None:
        seen["thread"] = threading.current_thread()
        try:
            asyncio.get_running_loop()
        except RuntimeError as exc:
            seen["loop_error"] = str(exc)
        else:
            seen["loop_error"] = None
        # and a handler may run its own loop (what AsyncBatchProcessor does)
        seen["own_loop"] = asyncio.run(asyncio.sleep(0, result="inner"))

    result = invoke_once(handler, executor, metrics)
    assert result.ok
    assert seen["thread"] is not threading.main_thread()
    assert seen["thread"].name.startswith("handler")
    assert seen["loop_error"] == "no running event loop"
    assert seen["own_loop"] == "inner"


def test_async_handler_runs_on_the_invoking_loop(
    executor: ThreadPoolExecutor, metrics: Metrics
) -> None:
    seen: dict[str, Any] = {}

    async def handler(event: Any, context: Any) -> None:
        seen["loop"] = asyncio.get_running_loop()
        seen["thread"] = threading.current_thread()

    async def main() -> asyncio.AbstractEventLoop:
        inv = Invoker(
            function(), loaded(handler), executor, concurrency_limit=None, on_stuck=Stuck()
        )
        await inv.invoke({}, metrics.bound)
        return asyncio.get_running_loop()

    loop = asyncio.run(main())
    assert seen["loop"] is loop
    assert seen["thread"] is threading.main_thread()


def test_sync_handler_sees_request_id_in_structlog_contextvars(
    executor: ThreadPoolExecutor, metrics: Metrics
) -> None:
    seen: dict[str, Any] = {}

    def handler(event: Any, context: Any) -> None:
        seen.update(structlog.contextvars.get_contextvars())
        seen["ctx_id"] = context.aws_request_id

    result = invoke_once(handler, executor, metrics)
    assert seen["aws_request_id"] == result.request_id == seen["ctx_id"]


# ---------------------------------------------------------------------------- concurrency


def _overlap_run(
    executor: ThreadPoolExecutor, metrics: Metrics, limit: int | None, n: int = 2
) -> list[tuple[float, float]]:
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()

    def handler(event: Any, context: Any) -> None:
        start = time.monotonic()
        time.sleep(0.2)
        with lock:
            spans.append((start, time.monotonic()))

    async def main() -> list[InvocationResult]:
        inv = Invoker(
            function(), loaded(handler), executor, concurrency_limit=limit, on_stuck=Stuck()
        )
        return await asyncio.gather(*(inv.invoke({}, metrics.bound) for _ in range(n)))

    results = asyncio.run(main())
    assert all(r.ok for r in results)
    return sorted(spans)


def test_concurrency_limit_one_serialises_and_counts_a_throttle(
    executor: ThreadPoolExecutor, metrics: Metrics
) -> None:
    spans = _overlap_run(executor, metrics, limit=1)
    (_, first_end), (second_start, _) = spans
    assert second_start >= first_end  # the second waited for the first
    assert metrics.throttles == 1
    assert metrics.invocations == 2
    assert metrics.concurrent == 0


def test_concurrency_limit_two_of_three(executor: ThreadPoolExecutor, metrics: Metrics) -> None:
    spans = _overlap_run(executor, metrics, limit=2, n=3)
    a, b, c = spans
    assert b[0] < a[1]  # the first two overlapped
    assert c[0] >= min(a[1], b[1])  # the third waited for one of them
    assert metrics.throttles == 1


def test_without_a_limit_invocations_overlap_and_never_throttle(
    executor: ThreadPoolExecutor, metrics: Metrics
) -> None:
    spans = _overlap_run(executor, metrics, limit=None)
    (_, first_end), (second_start, _) = spans
    assert second_start < first_end
    assert metrics.throttles == 0


def test_concurrent_gauge_counts_running_invocations(
    executor: ThreadPoolExecutor, metrics: Metrics
) -> None:
    seen: list[float] = []
    gate = asyncio.Event()

    async def handler(event: Any, context: Any) -> None:
        await gate.wait()

    async def main() -> None:
        inv = Invoker(
            function(), loaded(handler), executor, concurrency_limit=None, on_stuck=Stuck()
        )
        tasks = [asyncio.create_task(inv.invoke({}, metrics.bound)) for _ in range(3)]
        await asyncio.sleep(0.05)
        seen.append(metrics.concurrent)
        gate.set()
        await asyncio.gather(*tasks)
        seen.append(metrics.concurrent)

    asyncio.run(main())
    assert seen == [3.0, 0.0]


def test_limit_is_released_after_an_error(executor: ThreadPoolExecutor, metrics: Metrics) -> None:
    async def main() -> list[InvocationResult]:
        inv = Invoker(
            function(), loaded(sync_raises), executor, concurrency_limit=1, on_stuck=Stuck()
        )
        first = await inv.invoke({}, metrics.bound)
        second = await asyncio.wait_for(inv.invoke({}, metrics.bound), 2)
        return [first, second]

    results = asyncio.run(main())
    assert [r.error.error_type for r in results if r.error] == ["OrderRejectedError"] * 2
    assert metrics.throttles == 0


# ---------------------------------------------------------------------------- context


STREAM_RE = re.compile(r"^(\d{4})/(\d{2})/(\d{2})/\[\$LATEST\][0-9a-f]{32}$")


def test_context_attributes(executor: ThreadPoolExecutor, metrics: Metrics) -> None:
    contexts: list[Any] = []
    remaining: list[tuple[int, int]] = []

    def handler(event: Any, context: Any) -> None:
        first = context.get_remaining_time_in_millis()
        time.sleep(0.05)
        remaining.append((first, context.get_remaining_time_in_millis()))
        contexts.append(context)

    async def main() -> list[InvocationResult]:
        inv = Invoker(
            function(timeout=3, memory=256),
            loaded(handler),
            executor,
            concurrency_limit=None,
            on_stuck=Stuck(),
        )
        return [await inv.invoke({}, metrics.bound) for _ in range(2)]

    results = asyncio.run(main())
    c1, c2 = contexts
    for ctx, result in zip(contexts, results, strict=True):
        assert isinstance(ctx, LambdaContext)
        assert ctx.function_name == "orders"
        assert ctx.function_version == "$LATEST"
        assert ctx.invoked_function_arn == "arn:aws:lambda:eu-west-1:123456789012:function:orders"
        assert ctx.memory_limit_in_mb == "256"
        assert isinstance(ctx.memory_limit_in_mb, str)
        assert ctx.aws_request_id == result.request_id
        assert UUID_RE.match(ctx.aws_request_id)
        assert ctx.log_group_name == "/aws/lambda/orders"
        m = STREAM_RE.match(ctx.log_stream_name)
        assert m, ctx.log_stream_name
        today = dt.datetime.now(dt.UTC).date()
        assert dt.date(int(m[1]), int(m[2]), int(m[3])) in (
            today,
            today - dt.timedelta(days=1),  # the test ran across midnight UTC
        )
        assert ctx.identity is None
        assert ctx.client_context is None
    assert c1.aws_request_id != c2.aws_request_id
    assert c1.log_stream_name == c2.log_stream_name  # one stream per worker process
    for first, later in remaining:
        assert 2800 < first <= 3000
        assert 30 <= first - later < 1000


def test_remaining_time_keeps_decreasing_and_stops_at_zero() -> None:
    now_ms = int(time.time() * 1000)
    ctx = LambdaContext(function(), "rid", now_ms + 150)
    first = ctx.get_remaining_time_in_millis()
    assert 0 < first <= 150
    time.sleep(0.05)
    second = ctx.get_remaining_time_in_millis()
    assert second < first
    past = LambdaContext(function(), "rid", now_ms - 5000)
    assert past.get_remaining_time_in_millis() == 0


def test_async_handler_gets_the_same_context(
    executor: ThreadPoolExecutor, metrics: Metrics
) -> None:
    seen: list[Any] = []

    async def handler(event: Any, context: Any) -> None:
        seen.append((context.function_name, context.get_remaining_time_in_millis()))

    result = invoke_once(handler, executor, metrics, timeout=2)
    assert result.ok
    ((name, left),) = seen
    assert name == "orders"
    assert 1800 < left <= 2000


def test_uuid_per_invoke_is_unique(executor: ThreadPoolExecutor, metrics: Metrics) -> None:
    async def handler(event: Any, context: Any) -> str:
        return str(context.aws_request_id)

    async def main() -> list[InvocationResult]:
        inv = Invoker(
            function(), loaded(handler), executor, concurrency_limit=None, on_stuck=Stuck()
        )
        return list(await asyncio.gather(*(inv.invoke({}, metrics.bound) for _ in range(20))))

    results = asyncio.run(main())
    ids = [r.request_id for r in results]
    assert len(set(ids)) == 20
    assert [r.response for r in results] == ids
