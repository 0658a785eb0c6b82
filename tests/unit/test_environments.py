"""Execution environments: per-invocation isolation of the handler module's globals."""

from __future__ import annotations

import asyncio
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from runtime.config.resolved import Function
from runtime.invoke.environments import EnvironmentPool
from runtime.invoke.handler import HandlerLoadError
from runtime.invoke.invoker import Invoker
from runtime.metrics import MappingMetrics

PATH = "tests.handlers.stateful.handler"


def function() -> Function:
    return Function("fn", PATH, 5, 128, {}, None, "us-east-1", "000000000000")


def test_first_environment_is_the_imported_module() -> None:
    pool = EnvironmentPool(PATH)
    env = pool.acquire_warm()
    assert env is not None
    assert env.module is sys.modules["tests.handlers.stateful"]
    assert pool.acquire_warm() is None  # only one warm environment so far


def test_new_environment_has_its_own_globals() -> None:
    pool = EnvironmentPool(PATH)
    first = pool.acquire_warm()
    second = pool.create()
    assert first is not None
    assert second.module is not first.module
    assert second.module.INSTANCE is not first.module.INSTANCE
    assert second.module.__name__ == "tests.handlers.stateful"
    assert second.module.__package__ == "tests.handlers"
    assert sys.modules["tests.handlers.stateful"] is first.module  # not replaced
    assert pool.size == 2


def test_released_environments_are_reused_discarded_ones_are_not() -> None:
    pool = EnvironmentPool(PATH)
    a = pool.acquire_warm()
    assert a is not None
    b = pool.create()
    pool.release(a)
    pool.discard(b)
    assert pool.acquire_warm() is a
    assert pool.acquire_warm() is None


def test_missing_handler_is_a_load_error() -> None:
    with pytest.raises(HandlerLoadError):
        EnvironmentPool("tests.handlers.stateful.nope")


def test_concurrent_invocations_never_share_an_environment() -> None:
    pool = EnvironmentPool(PATH)
    metrics = MappingMetrics.bind("fn", str(uuid.uuid4()))

    async def main() -> list[object]:
        with ThreadPoolExecutor(max_workers=8) as executor:
            invoker = Invoker(
                function(), pool, executor, concurrency_limit=4, on_stuck=lambda _: None
            )
            results = await asyncio.gather(*(invoker.invoke({}, metrics) for _ in range(24)))
        return list(results)

    results = asyncio.run(main())
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    instances = {r.response["instance"] for r in results}
    # At most 4 at once: at most 4 environments, each reused while warm.
    assert 2 <= len(instances) == pool.size <= 4
