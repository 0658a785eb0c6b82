"""The supervisor's plan: worker processes per function, and what each one holds."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.config.loader import build_config
from runtime.config.resolved import RuntimeConfig
from runtime.config.settings import Settings
from runtime.supervisor import plan as plan_module
from runtime.supervisor.plan import Share, WorkerPlan, plan_workers

HANDLER = "handlers.orders.handler"


def config(functions: dict[str, dict[str, Any]], mappings: list[dict[str, Any]]) -> RuntimeConfig:
    return build_config(
        {"functions": functions, "eventSourceMappings": mappings},
        "t.yaml",
        Settings(),
        import_handlers=False,
    )


def sqs(fn: str, queue: str, **extra: Any) -> dict[str, Any]:
    return {
        "FunctionName": fn,
        "EventSourceArn": f"arn:aws:sqs:us-east-1:123456789012:{queue}",
        **extra,
    }


def test_each_function_gets_workers_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan_module, "usable_cores", lambda: 4)
    cfg = config(
        {"a": {"Handler": HANDLER}, "b": {"Handler": HANDLER}, "idle": {"Handler": HANDLER}},
        [sqs("a", "qa"), sqs("b", "qb"), sqs("idle", "qi", Enabled=False)],
    )
    plans = plan_workers(cfg, Settings())
    # Four cores over the two functions with enabled mappings; none for the idle one.
    assert [(p.function, p.index, p.count) for p in plans] == [
        ("a", 0, 2),
        ("a", 1, 2),
        ("b", 0, 2),
        ("b", 1, 2),
    ]
    ua, ub = cfg.mappings[0].uuid, cfg.mappings[1].uuid
    assert all(set(p.shares) == ({ua} if p.function == "a" else {ub}) for p in plans)


def test_workers_field_and_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan_module, "usable_cores", lambda: 2)
    cfg = config(
        {"a": {"Handler": HANDLER, "Workers": 3}, "b": {"Handler": HANDLER}},
        [sqs("a", "qa"), sqs("b", "qb")],
    )
    counts = {p.function: p.count for p in plan_workers(cfg, Settings(workers=2))}
    assert counts == {"a": 3, "b": 2}  # the field wins over ESM_WORKERS
    counts = {p.function: p.count for p in plan_workers(cfg, Settings())}
    assert counts == {"a": 3, "b": 1}  # at least one each when cores run out


def test_shares_split_the_mapping_and_the_reserved_concurrency() -> None:
    cfg = config(
        {"a": {"Handler": HANDLER, "ReservedConcurrentExecutions": 3}},
        [sqs("a", "qa", ScalingConfig={"MaximumConcurrency": 10})],
    )
    plans = plan_workers(cfg, Settings(workers=2))
    uuid = cfg.mappings[0].uuid
    assert [p.reserved for p in plans] == [2, 1]
    assert [p.shares[uuid] for p in plans] == [Share(2, 2), Share(1, 1)]


def test_a_worker_with_nothing_to_hold_is_not_started() -> None:
    cfg = config(
        {"a": {"Handler": HANDLER, "ReservedConcurrentExecutions": 1}},
        [sqs("a", "qa")],
    )
    plans = plan_workers(cfg, Settings(workers=3))
    assert [(p.index, p.count) for p in plans] == [(0, 3)]


def test_the_plan_travels_as_json() -> None:
    plan = WorkerPlan("fn", 1, 2, {"u-1": Share(1, 5)}, reserved=4)
    assert WorkerPlan.from_json(plan.to_json()) == plan


@pytest.mark.parametrize("reserved", [None, 1, 2, 3, 5])
@pytest.mark.parametrize("workers", [1, 2, 3, 4])
@pytest.mark.parametrize("maximum", [2, 3, 10])
def test_every_mapping_gets_a_worker_and_limits_hold(
    reserved: int | None, workers: int, maximum: int
) -> None:
    """Found by review: the reserved split and the rotated mapping split could miss each other,
    leaving a mapping with a share of 0 on every worker (it never ran)."""
    fn: dict[str, Any] = {"Handler": HANDLER}
    if reserved is not None:
        fn["ReservedConcurrentExecutions"] = reserved
    cfg = config(
        {"a": fn},
        [sqs("a", f"q{i}", ScalingConfig={"MaximumConcurrency": maximum}) for i in range(4)],
    )
    plans = plan_workers(cfg, Settings(workers=workers))
    for m in cfg.mappings:
        total = sum(p.shares[m.uuid].maximum for p in plans if m.uuid in p.shares)
        assert 1 <= total <= maximum, (m.index, total)
    for p in plans:
        if p.reserved is not None:
            assert all(s.maximum <= p.reserved for s in p.shares.values())
    if reserved is not None:
        assert sum(p.reserved or 0 for p in plans) <= reserved


def test_the_cgroup_cpu_limit_bounds_the_default_worker_count(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from runtime.supervisor.plan import cgroup_cpu_limit

    limit = tmp_path / "cpu.max"
    limit.write_text("250000 100000\n")
    assert cgroup_cpu_limit(str(limit)) == 3  # 2.5 CPUs, rounded up
    limit.write_text("50000 100000\n")
    assert cgroup_cpu_limit(str(limit)) == 1
    limit.write_text("max 100000\n")
    assert cgroup_cpu_limit(str(limit)) is None
    assert cgroup_cpu_limit(str(tmp_path / "absent")) is None
