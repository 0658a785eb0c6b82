"""Fixtures of the fault suite."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.chaos.sources import Source, make


@pytest.fixture
def source_of(
    request: pytest.FixtureRequest, sqs: Any, aws_endpoint: str
) -> Callable[[str], Source]:
    """Makes a fresh source of a name in tests.chaos.sources.SOURCES (Kafka starts the
    session's broker only when a test asks for it)."""

    def make_source(name: str) -> Source:
        bootstrap = request.getfixturevalue("kafka_bootstrap") if name == "kafka" else None
        return make(name, sqs=sqs, aws_endpoint=aws_endpoint, kafka_bootstrap=bootstrap)

    return make_source
