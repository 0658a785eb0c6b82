"""Fixtures shared by every suite: one ministack per test session, AWS clients, the runtime."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.aws import client
from tests.support.emulator import Ministack, Tansu
from tests.support.runtime import RuntimeProcess


@pytest.fixture(scope="session")
def aws_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("ESM_TEST_AWS_ENDPOINT")
    if given:
        yield given
        return
    emu = Ministack(tmp_path_factory.mktemp("ministack"))
    emu.start()
    try:
        yield emu.endpoint
    finally:
        emu.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Kafka-protocol broker (Tansu) for the session; ESM_TEST_KAFKA reuses one."""
    given = os.environ.get("ESM_TEST_KAFKA")
    if given:
        yield given
        return
    broker = Tansu(tmp_path_factory.mktemp("tansu"))
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def sqs(aws_endpoint: str) -> Any:
    return client("sqs", aws_endpoint)


@pytest.fixture
def record_file(tmp_path: Path) -> Path:
    return tmp_path / "invocations.jsonl"


@pytest.fixture
def runtime_factory(
    tmp_path: Path, aws_endpoint: str, request: pytest.FixtureRequest
) -> Iterator[Callable[..., RuntimeProcess]]:
    """Make runtimes for a test; all are stopped (and their logs shown on failure) at the end."""
    made: list[RuntimeProcess] = []

    def make(config: dict[str, Any], **kwargs: Any) -> RuntimeProcess:
        rt = RuntimeProcess(config, tmp_path, aws_endpoint, **kwargs)
        made.append(rt)
        return rt

    yield make
    for rt in made:
        if rt.proc is not None and rt.proc.poll() is None:
            rt.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for rt in made:
            print(f"----- runtime log {rt.log_path.name} (last 8000 chars) -----")
            print(rt.logs()[-8000:])


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep
