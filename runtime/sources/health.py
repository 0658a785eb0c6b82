"""Whether a running mapping's event source answers, told from its own fetches.

The supervisor's pre-flight check covers a source that cannot be reached when a mapping
starts. A broker, queue or stream endpoint that goes away *while* the mapping runs is seen
only by the workers' fetches, which fail and are retried with back-off. One failed fetch is a
blip; a source that has failed every fetch for ``after_seconds`` is down, and the operator
must hear of it the same way as at start: ``esm_event_source_unreachable`` goes to 1 (the
``EsmEventSourceUnreachable`` alert) and one error line says since when and why. The first
fetch that succeeds again sets it back to 0 with one line saying how long it lasted.

One instance per mapping in a worker, called from wherever that source fetches (the event
loop, or a Kafka consumer's own thread: never both). The gauge is multiprocess ``livemax``,
so the supervisor's 0 and any worker's 1 read as 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger("runtime.sources")


class SourceHealth:
    def __init__(
        self,
        gauge: Any,
        *,
        after_seconds: float,
        source: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._gauge = gauge
        self._after = after_seconds
        self._source = source
        self._clock = clock
        self._failing_since: float | None = None
        self.reported = False  # the gauge says 1

    @property
    def failing(self) -> bool:
        return self._failing_since is not None

    def failed(self, error: str) -> None:
        """A fetch (or the client's connection) failed."""
        now = self._clock()
        if self._failing_since is None:
            self._failing_since = now
        if not self.reported and now - self._failing_since >= self._after:
            self.reported = True
            self._gauge.set(1)
            log.error(
                "event source unreachable; retrying with back-off",
                source=self._source,
                failing_seconds=round(now - self._failing_since, 1),
                error=error[:500],
            )

    def answered(self) -> None:
        """A fetch succeeded (hot path: one attribute check when all is well)."""
        if self._failing_since is None:
            return
        if self.reported:
            self._gauge.set(0)
            log.info(
                "event source answers again",
                source=self._source,
                unreachable_seconds=round(self._clock() - self._failing_since, 1),
            )
        self._failing_since = None
        self.reported = False
