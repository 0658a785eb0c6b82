"""``LastProcessingResult`` per mapping, from what the workers count.

Lambda reports the last batch's result on each mapping (``OK``, ``PROBLEM: Function call
failed``). The workers already count invocations and function errors per mapping (the
``lambda_invocations`` and ``lambda_errors`` counters every process writes); the supervisor
reads them across processes each sync round and compares with the previous round: new errors
mean ``PROBLEM: Function call failed``, new invocations without errors mean ``OK``, nothing new
keeps the previous result. Per round, not per batch: a round with both successes and failures
reports the problem.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from runtime.sources.base import SASL_AUTHENTICATION_FAILED

NO_RECORDS = "No records processed"
OK = "OK"
FUNCTION_FAILED = "PROBLEM: Function call failed"
# Lambda's text for a source it cannot connect to; ours adds what failed.
CONNECTION_ERROR = (
    "PROBLEM: Connection error. Please check your event source connection configuration."
)
# Lambda's text for a Kafka mapping whose SASL credentials the brokers refuse.
SASL_FAILED = f"PROBLEM: {SASL_AUTHENTICATION_FAILED}"

_UUID = "event_source_mapping_uuid"


class ProcessingResults:
    def __init__(self) -> None:
        self._registry = CollectorRegistry()
        MultiProcessCollector(self._registry)  # type: ignore[no-untyped-call]
        self._seen: dict[str, tuple[float, float]] = {}
        self._results: dict[str, str] = {}
        self._problems: dict[str, str] = {}

    def result(self, mapping_uuid: str) -> str:
        problem = self._problems.get(mapping_uuid)
        if problem is not None:
            head = (
                SASL_FAILED if problem.startswith(SASL_AUTHENTICATION_FAILED) else CONNECTION_ERROR
            )
            return f"{head} ({problem})"
        return self._results.get(mapping_uuid, NO_RECORDS)

    def set_problem(self, mapping_uuid: str, problem: str | None) -> None:
        """A source that does not answer wins over the last batch's result until it does."""
        if problem is None:
            self._problems.pop(mapping_uuid, None)
        else:
            self._problems[mapping_uuid] = problem

    def update(self) -> None:
        """Read the counters of every process and move each mapping's result on."""
        counts: dict[str, list[float]] = {}
        for family in self._registry.collect():
            if family.name not in ("lambda_invocations", "lambda_errors"):
                continue
            slot = 0 if family.name == "lambda_invocations" else 1
            for sample in family.samples:
                if not sample.name.endswith("_total"):
                    continue
                uuid = sample.labels.get(_UUID)
                if uuid:
                    counts.setdefault(uuid, [0.0, 0.0])[slot] += sample.value
        for uuid, (invocations, errors) in counts.items():
            before = self._seen.get(uuid, (0.0, 0.0))
            if errors > before[1]:
                self._results[uuid] = FUNCTION_FAILED
            elif invocations > before[0]:
                self._results[uuid] = OK
            self._seen[uuid] = (invocations, errors)
