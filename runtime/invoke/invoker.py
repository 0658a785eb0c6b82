"""Running a handler once: context, timeout, concurrency, and Lambda's error shapes.

Sync handlers run on a thread pool (so there is no running event loop in their thread, which
Powertools' AsyncBatchProcessor relies on); async handlers run on the worker's loop. The result
goes through JSON exactly as Lambda's runtime would send it (``Runtime.MarshalError`` when it
cannot), so response parsing sees what AWS's poller would see.

A handler past its ``Timeout`` fails the batch with Lambda's timeout error. An async handler is
cancelled; a sync handler's thread cannot be stopped, so the invoker reports it through
``on_stuck`` and the worker recycles itself once its other batches are done.
"""

from __future__ import annotations

import asyncio
import contextvars
import decimal
import json
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import structlog

from runtime.config.resolved import Function
from runtime.invoke.context import LambdaContext
from runtime.invoke.environments import Environment, EnvironmentPool
from runtime.invoke.handler import HandlerLoadError
from runtime.metrics import MappingMetrics
from runtime.pipeline.records import MAX_PAYLOAD_BYTES

log = structlog.get_logger("runtime.invoke")

# How long a cancelled async handler may take to unwind before the worker is recycled.
_CANCEL_GRACE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class FunctionError:
    error_type: str
    error_message: str
    stack_trace: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class InvocationResult:
    request_id: str
    response: Any  # the JSON-decoded response; None on error
    error: FunctionError | None
    duration: float  # seconds spent in the handler

    @property
    def ok(self) -> bool:
        return self.error is None


def _json_default(o: Any) -> Any:
    # awslambdaric serialises Decimal (what boto3's DynamoDB types use) as the number it
    # holds: integral values keep every digit.
    if isinstance(o, decimal.Decimal):
        return int(o) if o.is_finite() and o == o.to_integral_value() else float(o)
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def _error_from(exc: BaseException, request_id: str) -> FunctionError:
    if isinstance(exc, SystemExit):
        return FunctionError(
            "Runtime.ExitError", f"RequestId: {request_id} Error: Runtime exited ({exc.code})"
        )
    # The first frame is the runtime's own call wrapper; Lambda's stackTrace starts at the
    # user's code.
    frames = traceback.extract_tb(exc.__traceback__)[1:]
    return FunctionError(
        error_type=type(exc).__name__,
        error_message=str(exc),
        stack_trace=tuple(traceback.format_list(frames)),
    )


def _call_sync(func: Callable[[Any, Any], Any], event: Any, context: Any) -> tuple[bool, Any]:
    """Run a sync handler; nothing, not even SystemExit, escapes into the pool's future."""
    try:
        return True, func(event, context)
    except BaseException as exc:
        return False, exc


async def _call_async(
    func: Callable[[Any, Any], Any], event: Any, context: Any
) -> tuple[bool, Any]:
    """Run an async handler; SystemExit and friends become a failed result, not a dead loop."""
    try:
        return True, await func(event, context)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        return False, exc


class Invoker:
    """Invokes one function. Shared by every mapping of that function in a worker."""

    def __init__(
        self,
        function: Function,
        environments: EnvironmentPool,
        executor: Executor,
        *,
        concurrency_limit: int | None,
        on_stuck: Callable[[str], None],
    ) -> None:
        self.function = function
        self._environments = environments
        self._executor = executor
        self._sem = asyncio.Semaphore(concurrency_limit) if concurrency_limit is not None else None
        self._on_stuck = on_stuck
        # Sync handler threads still running past their timeout (they cannot be stopped).
        self.stuck_handlers = 0

    async def invoke(
        self, event: Any, metrics: MappingMetrics, start_if: Callable[[], bool] | None = None
    ) -> InvocationResult | None:
        """Invoke once. ``start_if`` is asked last, after every wait (reserved concurrency, a
        cold start): when it says no (the batch's unit was handed off meanwhile), the handler
        is not called and None comes back."""
        request_id = str(uuid.uuid4())
        structlog.contextvars.bind_contextvars(aws_request_id=request_id)
        if self._sem is not None:
            if self._sem.locked():
                metrics.throttles.inc()
            await self._sem.acquire()
        try:
            metrics.concurrent.inc()
            try:
                return await self._run(event, request_id, metrics, start_if)
            finally:
                metrics.concurrent.dec()
        finally:
            if self._sem is not None:
                self._sem.release()

    async def _lease(self) -> Environment:
        env = self._environments.acquire_warm()
        if env is not None:
            return env
        # A cold start: the module's top level runs in a pool thread, not on the loop.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._environments.create)

    async def _run(
        self,
        event: Any,
        request_id: str,
        metrics: MappingMetrics,
        start_if: Callable[[], bool] | None,
    ) -> InvocationResult | None:
        timeout = float(self.function.timeout_seconds)
        try:
            env = await self._lease()
        except HandlerLoadError as exc:
            metrics.invocations.inc()
            metrics.errors.inc()
            return InvocationResult(request_id, None, FunctionError(exc.error_type, exc.message), 0)
        except Exception as exc:  # the module's top level raised in a new environment
            metrics.invocations.inc()
            metrics.errors.inc()
            init_error = FunctionError("Runtime.ImportModuleError", f"{type(exc).__name__}: {exc}")
            return InvocationResult(request_id, None, init_error, 0.0)
        if start_if is not None and not start_if():
            self._environments.release(env)
            return None
        metrics.invocations.inc()
        deadline_ms = int(time.time() * 1000 + timeout * 1000)
        context = LambdaContext(self.function, request_id, deadline_ms)
        started = time.perf_counter()
        if env.handler.is_async:
            completed, ok, value = await self._run_async(env, event, context, timeout)
        else:
            completed, ok, value = await self._run_sync(env, event, context, timeout)
        duration = time.perf_counter() - started
        metrics.duration.observe(duration)
        if completed:
            self._environments.release(env)
        else:
            self._environments.discard(env)

        error: FunctionError | None
        response: Any = None
        if not completed:
            error = FunctionError(
                "Sandbox.Timedout",
                f"RequestId: {request_id} Error: Task timed out after {timeout:.2f} seconds",
            )
        elif not ok:
            error = _error_from(value, request_id)
        else:
            response, error = self._marshal(value)
        if error is not None:
            metrics.errors.inc()
        return InvocationResult(request_id, response, error, duration)

    async def _run_sync(
        self, env: Environment, event: Any, context: LambdaContext, limit_seconds: float
    ) -> tuple[bool, bool, Any]:
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        fut = loop.run_in_executor(
            self._executor, ctx.run, _call_sync, env.handler.func, event, context
        )
        try:
            done, _ = await asyncio.wait({fut}, timeout=limit_seconds)
        except asyncio.CancelledError:
            # The batch was cancelled (a hand-off or a drain ran out of time): the thread goes
            # on and cannot be stopped, so it counts as stuck until it ends.
            if not fut.done():
                self.stuck_handlers += 1
                fut.add_done_callback(self._unstuck)
            raise
        if not done:
            self.stuck_handlers += 1
            fut.add_done_callback(self._unstuck)
            self._on_stuck(
                f"sync handler {env.handler.path} still running after its {limit_seconds:.0f}s "
                "timeout; its thread cannot be stopped"
            )
            return False, False, None
        ok, value = fut.result()
        return True, ok, value

    def _unstuck(self, _: object) -> None:
        self.stuck_handlers -= 1

    async def _run_async(
        self, env: Environment, event: Any, context: LambdaContext, limit_seconds: float
    ) -> tuple[bool, bool, Any]:
        task = asyncio.ensure_future(_call_async(env.handler.func, event, context))
        try:
            done, _ = await asyncio.wait({task}, timeout=limit_seconds)
        except asyncio.CancelledError:
            # Cancelled from outside: the handler is cancelled too, and counts as stuck until
            # it has actually ended.
            if not task.done():
                task.cancel()
                self.stuck_handlers += 1
                task.add_done_callback(self._unstuck)
                task.add_done_callback(lambda t: t.cancelled() or t.exception())
            raise
        if not done:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=_CANCEL_GRACE_SECONDS)
            if not done:
                task.add_done_callback(lambda t: t.cancelled() or t.exception())
                self.stuck_handlers += 1
                task.add_done_callback(self._unstuck)
                self._on_stuck(
                    f"async handler {env.handler.path} ignored cancellation after its "
                    f"{limit_seconds:.0f}s timeout"
                )
            elif not task.cancelled():
                task.exception()  # retrieved so asyncio does not warn about it
            return False, False, None
        if task.cancelled():
            return True, False, asyncio.CancelledError("handler task was cancelled")
        ok, value = task.result()
        return True, ok, value

    @staticmethod
    def _marshal(value: Any) -> tuple[Any, FunctionError | None]:
        if value is None:
            return None, None
        try:
            text = json.dumps(value, default=_json_default)
        except Exception as exc:  # TypeError, ValueError, RecursionError (too deeply nested)...
            return None, FunctionError("Runtime.MarshalError", f"Unable to marshal response: {exc}")
        if len(text) > MAX_PAYLOAD_BYTES:
            return None, FunctionError(
                "Function.ResponseSizeTooLarge",
                f"Response payload size ({len(text)} bytes) exceeded maximum allowed payload "
                f"size ({MAX_PAYLOAD_BYTES} bytes).",
            )
        return json.loads(text), None
