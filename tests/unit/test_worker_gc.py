"""The worker's garbage-collector tuning (runtime.cli.tune_gc, ESM_WORKER_GC_THRESHOLD)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from runtime.cli import tune_gc
from runtime.config.settings import Settings


@pytest.fixture
def restored_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_the_threshold_is_raised_and_start_up_objects_are_frozen(restored_gc: None) -> None:
    _, second, third = gc.get_threshold()
    tune_gc(50_000)
    assert gc.get_threshold() == (50_000, second, third)
    assert gc.get_freeze_count() > 0


def test_zero_keeps_pythons_default(restored_gc: None) -> None:
    before = gc.get_threshold()
    tune_gc(0)
    assert gc.get_threshold() == before


def test_the_default_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ESM_WORKER_GC_THRESHOLD", raising=False)
    assert Settings().worker_gc_threshold == 50_000
    monkeypatch.setenv("ESM_WORKER_GC_THRESHOLD", "0")
    assert Settings().worker_gc_threshold == 0
