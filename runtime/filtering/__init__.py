"""Lambda event filtering (``FilterCriteria``): the pattern language and its matcher.

``compile_pattern(text)`` validates a pattern (raising :class:`FilterPatternError` with the
reason) and returns a :class:`CompiledPattern` whose ``matches(event)`` tests parsed events.
How records are turned into the events a pattern sees (SQS ``body`` decoding, Kinesis
``data``, Kafka ``value``) is :mod:`runtime.pipeline.filtering`'s job.
"""

from runtime.filtering.patterns import (
    MAX_ALTERNATIVES,
    MAX_NESTING,
    CompiledPattern,
    FilterPatternError,
    compile_pattern,
)

__all__ = [
    "MAX_ALTERNATIVES",
    "MAX_NESTING",
    "CompiledPattern",
    "FilterPatternError",
    "compile_pattern",
]
