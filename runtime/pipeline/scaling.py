"""How many batches of one mapping may be in flight at once, and how that number moves.

Lambda's SQS rule (esm-spec §5.1): start at 5 concurrent batches, add more while messages are
available, never pass MaximumConcurrency; on function errors back off; on partial batch
failures (ReportBatchItemFailures) do not. Lambda ramps by +300 per minute; here the ramp is a
setting (``ESM_SCALING_STEP`` every ``ESM_SCALING_INTERVAL_SECONDS``, 10 per second = 600 per
minute by default), and when the source goes quiet the limit steps back down to the initial
value.

A mapping's limits are split across worker processes (:func:`split`), and each worker scales its
own share; the sum never passes the mapping's maximum.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


def split(total: int, parts: int, index: int) -> int:
    """The ``index``-th of ``parts`` near-equal integer shares of ``total``."""
    base, extra = divmod(total, parts)
    return base + (1 if index < extra else 0)


@dataclass(frozen=True, slots=True)
class ScalingPolicy:
    initial: int
    maximum: int
    step: int
    interval_seconds: float
    error_cooldown_seconds: float
    minimum: int = 1
    idle_intervals: int = 5  # quiet intervals before stepping down towards ``initial``

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.initial <= self.maximum:
            raise ValueError(
                f"need 1 <= minimum <= initial <= maximum, got "
                f"{self.minimum}, {self.initial}, {self.maximum}"
            )


class ConcurrencyScaler:
    """Tracks the current concurrency limit from fetch and invocation signals.

    ``on_fetch`` reports whether a fetch came back full (there is a backlog); ``on_function_error``
    reports a failed invocation; ``tick`` applies the policy once per interval and returns the
    new limit. No timers inside: the pipeline calls ``tick``.
    """

    def __init__(self, policy: ScalingPolicy, clock: Callable[[], float] = time.monotonic):
        self.policy = policy
        self.limit = policy.initial
        self._clock = clock
        self._last_tick = clock()
        self._backlog_seen = False
        self._error_seen = False
        self._last_error_at = float("-inf")
        self._quiet_intervals = 0

    def on_fetch(self, returned: int, requested: int) -> None:
        if returned >= requested > 0:
            self._backlog_seen = True

    def on_function_error(self) -> None:
        self._error_seen = True
        self._last_error_at = self._clock()

    def tick(self) -> int:
        now = self._clock()
        p = self.policy
        if now - self._last_tick < p.interval_seconds:
            return self.limit
        self._last_tick = now
        cooling = now - self._last_error_at < p.error_cooldown_seconds
        if self._error_seen:
            self.limit = max(p.minimum, self.limit - p.step)
            self._quiet_intervals = 0
        elif self._backlog_seen:
            self._quiet_intervals = 0
            if not cooling:
                self.limit = min(p.maximum, self.limit + p.step)
        elif self.limit < p.initial:
            # Errors pushed it below the starting point; healthy again: recover.
            if not cooling:
                self.limit = min(p.initial, self.limit + p.step)
        else:
            self._quiet_intervals += 1
            if self._quiet_intervals >= p.idle_intervals and self.limit > p.initial:
                self.limit = max(p.initial, self.limit - p.step)
                self._quiet_intervals = 0
        self._error_seen = False
        self._backlog_seen = False
        return self.limit
