"""Per-unit flow control: pause a unit whose records pile up, resume it once they drained.

An ordered source fetches ahead of the handler. Without a bound, a slow handler lets one
partition hold everything its consumer fetched (with 1 MB records, gigabytes). Each unit
therefore counts the records it holds (fetched and not yet completed: waiting, batching or in
flight) and their bytes; past either bound the unit is paused at the source alone, so other
units, heartbeats and rebalances go on, and it is resumed once both counts are back under
half their bound (hysteresis, so a unit near its bound is not paused and resumed on every
fetch: pausing makes librdkafka drop its prefetched data).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FlowLimits:
    max_records: int
    max_bytes: int

    def __post_init__(self) -> None:
        if self.max_records < 1 or self.max_bytes < 1:
            raise ValueError("flow limits must be positive")


@dataclass(slots=True)
class UnitFlow:
    limits: FlowLimits
    records: int = 0  # held: fetched and not completed
    bytes: int = 0
    paused: bool = False

    def hold(self, records: int, nbytes: int) -> bool:
        """Count newly fetched records; True when the unit must be paused now."""
        self.records += records
        self.bytes += nbytes
        if not self.paused and (
            self.records >= self.limits.max_records or self.bytes >= self.limits.max_bytes
        ):
            self.paused = True
            return True
        return False

    def release(self, records: int, nbytes: int) -> bool:
        """Count completed records; True when the unit must be resumed now."""
        self.records = max(0, self.records - records)
        self.bytes = max(0, self.bytes - nbytes)
        if (
            self.paused
            and self.records <= self.limits.max_records // 2
            and self.bytes <= self.limits.max_bytes // 2
        ):
            self.paused = False
            return True
        return False
