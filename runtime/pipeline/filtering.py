"""FilterCriteria in the pipeline: which records reach the handler (esm-spec §3).

Patterns are compiled once (:mod:`runtime.filtering.patterns`); filters are OR-ed. Each source
contributes data, not code: the key holding its payload (SQS ``body``, Kinesis ``data``,
DynamoDB ``dynamodb``, Kafka ``value``), how to decode that payload for matching, and what a
mismatch between the payload's format and the pattern means (esm-spec §3.3):

- SQS, Kinesis, DynamoDB: a JSON pattern never matches a non-JSON payload and a string
  pattern never matches a JSON payload (the record is filtered out), even a pattern that only
  asks for a field's absence (``{"exists": false}``), which a plain string would satisfy;
- Kafka: a format mismatch never filters a record out on format grounds: the pattern is then
  evaluated on the record's metadata only.

The payload is decoded only when some pattern looks at it, and only once per record. The
view handed to the patterns is a shallow copy of the record with the decoded payload; the
record the handler receives is untouched.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from runtime.config.sources import SourceKind
from runtime.filtering.patterns import CompiledPattern, FilterPatternError, compile_pattern
from runtime.pipeline.records import Record

_MISSING = object()


class PlainText(str):
    """A payload that is not JSON (nor UTF-8, for Kinesis data), as patterns see it.

    Marked so that a JSON pattern on the payload never matches it on the sources that drop on
    a format mismatch: the matcher alone would accept a string for a pattern that only asks
    for absent fields (``{"body": {"kind": [{"exists": false}]}}``), and AWS drops it.
    """

    __slots__ = ()


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _json_or_plain(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return PlainText(text)


def _decode_base64_text(data: str) -> str | None:
    try:
        return base64.b64decode(data, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def sqs_view(payload: dict[str, Any]) -> dict[str, Any]:
    """The SQS record with ``body`` JSON-decoded when it is JSON (else :class:`PlainText`)."""
    return {**payload, "body": _json_or_plain(payload["body"])}


def kinesis_view(payload: dict[str, Any]) -> dict[str, Any]:
    """The record's ``kinesis`` block with ``data`` base64-decoded and JSON-decoded.

    Non-JSON data stays a string, a :class:`PlainText` (so JSON patterns on ``data`` do not
    match it); so does data that is not UTF-8, as an empty one.
    """
    inner = payload.get("kinesis", payload)
    text = _decode_base64_text(inner.get("data", ""))
    return {**inner, "data": _json_or_plain(text) if text is not None else PlainText()}


def dynamodb_view(payload: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB records are JSON already: filtered as they are."""
    return payload


def kafka_view(payload: dict[str, Any]) -> dict[str, Any]:
    """The Kafka record with ``value`` base64 → UTF-8 → JSON (or the plain string).

    A value that is not UTF-8 is removed: only metadata can then be filtered on.
    """
    if "value" not in payload:
        return payload
    text = _decode_base64_text(payload["value"])
    view = dict(payload)
    if text is None:
        del view["value"]
    else:
        view["value"] = _json_or_text(text)
    return view


@dataclass(frozen=True, slots=True)
class SourceFiltering:
    """What filtering needs to know about a source."""

    data_key: str
    view: Callable[[dict[str, Any]], dict[str, Any]]
    on_mismatch: Literal["drop", "metadata"]
    # Patterns for this source must give the data key an object (Kinesis, DynamoDB).
    data_must_be_object: bool


SOURCE_FILTERING: dict[SourceKind, SourceFiltering] = {
    SourceKind.SQS: SourceFiltering("body", sqs_view, "drop", False),
    SourceKind.KINESIS: SourceFiltering("data", kinesis_view, "drop", True),
    SourceKind.DYNAMODB: SourceFiltering("dynamodb", dynamodb_view, "drop", True),
    SourceKind.KAFKA: SourceFiltering("value", kafka_view, "metadata", False),
    SourceKind.MSK: SourceFiltering("value", kafka_view, "metadata", False),
}


@dataclass(frozen=True, slots=True)
class _Filter:
    full: CompiledPattern
    # Kafka: the same pattern without its data key, and the shape the data key asks for.
    metadata_only: CompiledPattern | None
    wants_object: bool | None  # None: the pattern does not look at the data key


def check_patterns(kind: SourceKind, patterns: list[str]) -> list[str]:
    """Problems of a mapping's patterns: ``Filters[i].Pattern: reason`` lines."""
    problems = []
    rules = SOURCE_FILTERING[kind]
    for i, text in enumerate(patterns):
        try:
            compiled = compile_pattern(text)
        except FilterPatternError as exc:
            problems.append(
                f"FilterCriteria.Filters[{i}].Pattern: Invalid filter pattern definition. ({exc})"
            )
            continue
        if rules.data_must_be_object and rules.data_key in compiled.fields:
            body = json.loads(text).get(rules.data_key)
            if not isinstance(body, dict):
                problems.append(
                    f"FilterCriteria.Filters[{i}].Pattern: Invalid filter pattern definition. "
                    f"({rules.data_key!r} must be filtered with a JSON object for this source)"
                )
    return problems


class RecordFilter:
    """A mapping's compiled FilterCriteria."""

    def __init__(self, kind: SourceKind, patterns: list[str]) -> None:
        self._rules = SOURCE_FILTERING[kind]
        key = self._rules.data_key
        self._filters: list[_Filter] = []
        for text in patterns:
            full = compile_pattern(text)
            metadata_only = None
            wants_object = None
            if key in full.fields:
                spec = json.loads(text)
                wants_object = isinstance(spec.get(key), dict)
                if self._rules.on_mismatch == "metadata":
                    rest = {k: v for k, v in spec.items() if k != key}
                    metadata_only = compile_pattern(json.dumps(rest)) if rest else None
            self._filters.append(_Filter(full, metadata_only, wants_object))
        self._needs_data = any(f.wants_object is not None for f in self._filters)

    def split(self, records: list[Record]) -> tuple[list[Record], list[Record]]:
        """(kept, filtered out), both in the original order."""
        kept: list[Record] = []
        dropped: list[Record] = []
        for r in records:
            (kept if self.matches(r.payload) else dropped).append(r)
        return kept, dropped

    def matches(self, payload: dict[str, Any]) -> bool:
        view = self._rules.view(payload) if self._needs_data else payload
        key = self._rules.data_key
        for f in self._filters:
            if f.wants_object is not None and self._rules.on_mismatch == "metadata":
                data = view.get(key, _MISSING)
                fits = data is not _MISSING and isinstance(data, dict) == f.wants_object
                if not fits:
                    # Kafka: a format mismatch falls back to the pattern's metadata part
                    # (with none, the record is kept: never filtered on format grounds).
                    if f.metadata_only is None or f.metadata_only.matches(view):
                        return True
                    continue
            elif f.wants_object and type(view.get(key)) is PlainText:
                continue  # SQS, Kinesis: a JSON pattern never matches a non-JSON payload
            if f.full.matches(view):
                return True
        return False
