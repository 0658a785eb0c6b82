"""split() and ConcurrencyScaler (esm-spec §5.1), driven by a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.pipeline.scaling import ConcurrencyScaler, ScalingPolicy, split

# ---------------------------------------------------------------------------- split


@given(st.integers(min_value=0, max_value=5000), st.integers(min_value=1, max_value=64))
def test_split_sums_to_total_and_differs_by_at_most_one(total: int, parts: int) -> None:
    shares = [split(total, parts, i) for i in range(parts)]
    assert sum(shares) == total
    assert max(shares) - min(shares) <= 1
    assert all(s >= 0 for s in shares)
    # the larger shares come first
    assert shares == sorted(shares, reverse=True)


@pytest.mark.parametrize(
    ("total", "parts", "expected"),
    [
        (10, 3, [4, 3, 3]),
        (5, 5, [1, 1, 1, 1, 1]),
        (2, 4, [1, 1, 0, 0]),
        (0, 3, [0, 0, 0]),
        (1000, 1, [1000]),
        (7, 2, [4, 3]),
    ],
)
def test_split_examples(total: int, parts: int, expected: list[int]) -> None:
    assert [split(total, parts, i) for i in range(parts)] == expected


# ---------------------------------------------------------------------------- policy


@pytest.mark.parametrize(
    ("minimum", "initial", "maximum"),
    [(0, 5, 10), (3, 2, 10), (1, 11, 10), (1, 5, 4)],
)
def test_policy_rejects_inconsistent_limits(minimum: int, initial: int, maximum: int) -> None:
    with pytest.raises(ValueError, match="need 1 <= minimum <= initial <= maximum"):
        ScalingPolicy(
            initial=initial,
            maximum=maximum,
            step=1,
            interval_seconds=1,
            error_cooldown_seconds=1,
            minimum=minimum,
        )


def test_policy_accepts_equal_limits() -> None:
    p = ScalingPolicy(initial=3, maximum=3, step=1, interval_seconds=1, error_cooldown_seconds=1)
    assert (p.minimum, p.initial, p.maximum, p.idle_intervals) == (1, 3, 3, 5)


# ---------------------------------------------------------------------------- scaler


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(
    *,
    initial: int = 5,
    maximum: int = 50,
    step: int = 10,
    interval: float = 1.0,
    cooldown: float = 10.0,
    minimum: int = 1,
    idle_intervals: int = 5,
) -> tuple[ConcurrencyScaler, FakeClock]:
    clock = FakeClock()
    policy = ScalingPolicy(
        initial=initial,
        maximum=maximum,
        step=step,
        interval_seconds=interval,
        error_cooldown_seconds=cooldown,
        minimum=minimum,
        idle_intervals=idle_intervals,
    )
    return ConcurrencyScaler(policy, clock=clock), clock


def full_fetch(s: ConcurrencyScaler) -> None:
    s.on_fetch(returned=10, requested=10)


def next_interval(s: ConcurrencyScaler, clock: FakeClock, interval: float = 1.0) -> int:
    clock.now += interval
    return s.tick()


def test_starts_at_initial() -> None:
    s, _ = make(initial=5)
    assert s.limit == 5
    assert s.tick() == 5  # no interval has passed yet


def test_ramps_by_step_per_interval_while_fetches_are_full() -> None:
    s, clock = make(initial=5, maximum=50, step=10)
    seen = []
    for _ in range(4):
        full_fetch(s)
        seen.append(next_interval(s, clock))
    assert seen == [15, 25, 35, 45]
    assert s.limit == 45


def test_never_above_maximum() -> None:
    s, clock = make(initial=5, maximum=32, step=10)
    seen = []
    for _ in range(6):
        full_fetch(s)
        seen.append(next_interval(s, clock))
    assert seen == [15, 25, 32, 32, 32, 32]


@pytest.mark.parametrize(
    ("returned", "requested"),
    [(9, 10), (0, 10), (0, 0), (1, 2)],
)
def test_fetch_that_is_not_full_does_not_ramp(returned: int, requested: int) -> None:
    s, clock = make(initial=5)
    s.on_fetch(returned=returned, requested=requested)
    assert next_interval(s, clock) == 5


def test_one_full_fetch_among_partial_ones_counts_as_backlog() -> None:
    s, clock = make(initial=5, step=10)
    s.on_fetch(3, 10)
    s.on_fetch(10, 10)
    s.on_fetch(0, 10)
    assert next_interval(s, clock) == 15


def test_no_change_between_intervals() -> None:
    s, clock = make(initial=5, step=10, interval=1.0)
    full_fetch(s)
    clock.now += 0.5
    assert s.tick() == 5
    clock.now += 0.49
    assert s.tick() == 5
    # the backlog signal is kept until the interval has passed
    clock.now += 0.01
    assert s.tick() == 15
    # and it is consumed by that tick: the next interval without a full fetch holds
    clock.now += 0.999
    assert s.tick() == 15
    clock.now += 0.001
    assert s.tick() == 15


def test_backlog_signal_is_consumed_per_interval() -> None:
    s, clock = make(initial=5, step=10)
    full_fetch(s)
    assert next_interval(s, clock) == 15
    assert next_interval(s, clock) == 15  # no new full fetch
    full_fetch(s)
    assert next_interval(s, clock) == 25


def test_late_tick_applies_a_single_step() -> None:
    s, clock = make(initial=5, step=10)
    full_fetch(s)
    clock.now += 10  # ten intervals late
    assert s.tick() == 15


def test_function_error_decreases_by_step() -> None:
    s, clock = make(initial=5, step=10)
    for _ in range(3):
        full_fetch(s)
        next_interval(s, clock)
    assert s.limit == 35
    s.on_function_error()
    assert next_interval(s, clock) == 25


def test_function_error_wins_over_backlog_in_the_same_interval() -> None:
    s, clock = make(initial=5, step=10)
    full_fetch(s)
    next_interval(s, clock)
    full_fetch(s)
    s.on_function_error()
    assert next_interval(s, clock) == 5


def test_function_error_never_below_minimum() -> None:
    s, clock = make(initial=5, step=10, minimum=2)
    s.on_function_error()
    assert next_interval(s, clock) == 2
    s.on_function_error()
    assert next_interval(s, clock) == 2


def test_function_error_default_minimum_is_one() -> None:
    s, clock = make(initial=5, step=3)
    s.on_function_error()
    assert next_interval(s, clock) == 2
    s.on_function_error()
    assert next_interval(s, clock) == 1
    s.on_function_error()
    assert next_interval(s, clock) == 1


def test_function_error_takes_effect_only_at_the_interval() -> None:
    s, clock = make(initial=5, step=2)
    s.on_function_error()
    clock.now += 0.5
    assert s.tick() == 5
    clock.now += 0.5
    assert s.tick() == 3


def test_error_cooldown_blocks_increases() -> None:
    s, clock = make(initial=5, step=10, cooldown=10.0, interval=1.0)
    full_fetch(s)
    assert next_interval(s, clock) == 15  # t=101
    s.on_function_error()  # at t=101
    assert next_interval(s, clock) == 5  # t=102: error
    seen = []
    for _ in range(8):  # t=103..110: backlog, still in the cooldown
        full_fetch(s)
        seen.append(next_interval(s, clock))
    assert seen == [5] * 8
    assert clock.now == 110.0
    full_fetch(s)
    assert next_interval(s, clock) == 15  # t=111 >= 101 + 10: cooldown over


def test_error_cooldown_is_measured_from_the_last_error() -> None:
    s, clock = make(initial=5, maximum=50, step=1, cooldown=3.0)
    s.on_function_error()  # t=100
    assert next_interval(s, clock) == 4  # t=101
    full_fetch(s)
    assert next_interval(s, clock) == 4  # t=102
    s.on_function_error()  # t=102: cooldown now ends at 105
    assert next_interval(s, clock) == 3  # t=103
    full_fetch(s)
    assert next_interval(s, clock) == 3  # t=104
    full_fetch(s)
    assert next_interval(s, clock) == 4  # t=105: 105 - 102 >= 3


def test_quiet_intervals_step_back_down_towards_initial() -> None:
    s, clock = make(initial=5, maximum=50, step=10, idle_intervals=3)
    for _ in range(4):
        full_fetch(s)
        next_interval(s, clock)
    assert s.limit == 45
    seen = [next_interval(s, clock) for _ in range(12)]
    # one step down every 3 quiet intervals, stopping at initial
    assert seen == [45, 45, 35, 35, 35, 25, 25, 25, 15, 15, 15, 5]
    assert [next_interval(s, clock) for _ in range(6)] == [5] * 6


def test_quiet_step_down_does_not_undershoot_initial() -> None:
    s, clock = make(initial=5, maximum=32, step=10, idle_intervals=1)
    for _ in range(3):
        full_fetch(s)
        next_interval(s, clock)
    assert s.limit == 32
    assert next_interval(s, clock) == 22
    assert next_interval(s, clock) == 12
    assert next_interval(s, clock) == 5  # not 2
    assert next_interval(s, clock) == 5


def test_backlog_resets_quiet_count() -> None:
    s, clock = make(initial=5, maximum=50, step=10, idle_intervals=3)
    full_fetch(s)
    next_interval(s, clock)
    assert s.limit == 15
    next_interval(s, clock)
    next_interval(s, clock)  # two quiet intervals
    full_fetch(s)
    assert next_interval(s, clock) == 25  # backlog: ramps and resets the quiet count
    assert next_interval(s, clock) == 25
    assert next_interval(s, clock) == 25
    assert next_interval(s, clock) == 15  # third quiet interval after the backlog


def test_backlog_during_cooldown_still_resets_quiet_count() -> None:
    s, clock = make(initial=5, maximum=50, step=10, idle_intervals=2, cooldown=100.0)
    for _ in range(3):
        full_fetch(s)
        next_interval(s, clock)
    assert s.limit == 35
    s.on_function_error()
    assert next_interval(s, clock) == 25
    assert next_interval(s, clock) == 25  # quiet 1
    full_fetch(s)
    assert next_interval(s, clock) == 25  # backlog but cooling down: no ramp, quiet reset
    assert next_interval(s, clock) == 25  # quiet 1
    assert next_interval(s, clock) == 15  # quiet 2


def test_after_cooldown_backlog_recovers_from_below_initial() -> None:
    s, clock = make(initial=5, maximum=50, step=2, cooldown=3.0)
    s.on_function_error()  # t=100
    assert next_interval(s, clock) == 3  # t=101
    s.on_function_error()  # t=101
    assert next_interval(s, clock) == 1  # t=102
    full_fetch(s)
    assert next_interval(s, clock) == 1  # t=103: 103 - 101 < 3, cooling down
    full_fetch(s)
    assert next_interval(s, clock) == 3  # t=104
    full_fetch(s)
    assert next_interval(s, clock) == 5


def test_errors_without_backlog_hold_at_minimum() -> None:
    s, clock = make(initial=5, step=10)
    for _ in range(3):
        s.on_function_error()
        next_interval(s, clock)
    assert s.limit == 1


def test_quiet_error_free_intervals_recover_to_initial() -> None:
    s, clock = make(initial=5, maximum=50, step=2, cooldown=2.0, idle_intervals=3)
    s.on_function_error()
    next_interval(s, clock)
    s.on_function_error()
    next_interval(s, clock)
    assert s.limit == 1
    # a long quiet, error-free period, well past the cooldown and many idle_intervals
    for _ in range(100):
        next_interval(s, clock)
    assert s.limit == 5


def test_recovery_below_initial_waits_for_cooldown_and_steps_by_step() -> None:
    # (a bug in 9d16a98: the limit stayed at `minimum` for good; fixed in 2d12633)
    s, clock = make(initial=5, maximum=50, step=2, cooldown=3.0, idle_intervals=3)
    s.on_function_error()  # t=100
    assert next_interval(s, clock) == 3  # t=101
    s.on_function_error()  # t=101
    assert next_interval(s, clock) == 1  # t=102
    assert next_interval(s, clock) == 1  # t=103: 103 - 101 < 3, cooling down
    assert next_interval(s, clock) == 3  # t=104: quiet, error-free, cooled down
    assert next_interval(s, clock) == 5  # capped at initial, not 6...
    assert [next_interval(s, clock) for _ in range(10)] == [5] * 10  # ...and no higher


# ---------------------------------------------------------------------------- worker shares


# With ReservedConcurrentExecutions=1, 2 workers and 2 mappings of the function, 9d16a98 let
# worker 1 run mapping 1 with function_share == 0, and Invoker(concurrency_limit=0) had no
# semaphore: 2 invocations at once against a reserved concurrency of 1 (fixed in 2d12633).
@pytest.mark.parametrize(
    ("reserved", "workers", "mappings"),
    [(1, 2, 2), (2, 2, 2), (1, 3, 3), (3, 4, 2), (5, 8, 1), (7, 3, 4)],
)
def test_worker_shares_respect_reserved_concurrency(
    reserved: int, workers: int, mappings: int
) -> None:
    from runtime.config.loader import build_config
    from runtime.config.settings import Settings
    from runtime.supervisor.plan import function_share, mapping_share

    raw = {
        "functions": {
            "fn": {
                "Handler": "tests.handlers.behave.handler",
                "ReservedConcurrentExecutions": reserved,
            }
        },
        "eventSourceMappings": [
            {"FunctionName": "fn", "EventSourceArn": f"arn:aws:sqs:us-east-1:123456789012:q{i}"}
            for i in range(mappings)
        ],
    }
    settings = Settings()
    cfg = build_config(raw, "esm.yaml", settings, import_handlers=False)
    fn = cfg.functions["fn"]
    possible = 0
    served: set[int] = set()
    for worker in range(workers):
        shares = [mapping_share(m, settings, worker, workers) for m in cfg.mappings]
        served.update(i for i, share in enumerate(shares) if share is not None)
        mapping_max = sum(share.maximum for share in shares if share is not None)
        if mapping_max == 0:
            continue
        fn_share = function_share(fn, worker, workers)
        # a worker that runs a mapping of the function must get a share of its concurrency
        assert fn_share, f"worker {worker}: mapping shares {shares}, function share {fn_share}"
        possible += min(fn_share, mapping_max)
    assert possible <= reserved
    assert served == set(range(mappings))  # every mapping is polled by some worker
