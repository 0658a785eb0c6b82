"""Lambda FilterCriteria patterns: parse, validate, compile once, match many (esm-spec §3).

The grammar and the matching semantics are those of aws/event-ruler, the library behind
EventBridge patterns that Lambda's filtering documents as the same syntax. The reference data
is in ``tests/conformance/filtering_cases.jsonl`` (see ``FILTERING_SOURCES.md``).

Model (event-ruler's):

* A pattern is flattened into *paths*: nested keys joined with ``.`` (so ``{"a": {"b": [..]}}``
  and ``{"a.b": [..]}`` are the same rule, and both match an event whose key ``a.b`` is
  literally dotted). Each path has a *rule list* whose matchers are OR-ed; paths are AND-ed.
* ``$or`` forks the rule into alternatives (disjunctive normal form, ``$or`` may nest); a path
  written twice in one alternative keeps the last rule list (as event-ruler's map ``put``).
* An event's *fields* are its leaf values (not objects, not arrays) with their dotted paths.
  A value inside an array is a field of the array's path, so a condition on a path whose event
  value is an array matches when any element matches. Fields coming from different elements of
  the same array cannot be combined in one match (*array consistency*): ``{"a": {"b": [1],
  "c": [2]}}`` does not match ``{"a": [{"b": 1}, {"c": 2}]}``.
* ``{"exists": true}`` needs a leaf value at the path; ``{"exists": false}`` needs none
  (an object or an empty array at the path has no leaf value, so it counts as absent).

Numbers: event-ruler compares JSON numbers by value (as IEEE doubles), for ``numeric`` and
also for plain number literals (``[300]`` matches ``300.0``; the AWS-validated case
``number_comparison_float`` agrees) and number anything-but. Lambda's documentation says
instead that "300, 300.0 and 3.0e2 are not considered equal"; ``number_match=
"representation"`` gives that behaviour for plain literals, as far as Python's ``json`` can
tell: a literal matches when ``json.dumps`` of the event's parsed number equals ``json.dumps``
of the literal's (int 300 differs from float 300.0, but ``3.0e2`` and ``300.0`` both parse to
the float 300.0 and cannot be told apart once decoded).

Deliberate differences from event-ruler, all on inputs outside the AWS-validated data:

* ``{}`` (the whole pattern empty) is accepted and matches every record (event-ruler rejects
  empty objects; nested empty objects are rejected here too). The config layer relies on it.
* ``{"exists": false}`` under arrays is checked against the array elements the rest of the
  match uses; event-ruler checks it against the elements chosen *so far* in its traversal order,
  which makes its answer depend on how field names sort.
* Patterns whose ``$or`` alternatives multiply to more than ``MAX_ALTERNATIVES``, or nested more
  than ``MAX_NESTING`` objects deep, are rejected (event-ruler has no such limits).
* An empty list under ``anything-but`` (``{"anything-but": {"prefix": []}}``) is rejected.
* Trailing text after the JSON object is an error (Jackson stops reading after the object).
* IPv4 addresses with leading zeros (``010.0.0.1``) are not addresses (Python's parser).
* EventBridge's "Rule is too complex" wildcard limit is not applied (it is not event-ruler's
  and nothing says Lambda has it).

Matching is compiled once per pattern: a fast evaluator walks the pattern's paths with direct
key lookups and type-specialised leaf tests; events with arrays of objects on those paths, or
dotted keys that could reach them, go to the general algorithm (fields with their array
memberships, then a memoised search for an array-consistent choice). This module parses,
validates and compiles; :mod:`runtime.filtering.fast_match` and
:mod:`runtime.filtering.array_match` are the two matchers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from runtime.filtering._values import (
    FilterPatternError,
    Leaf,
    NumberLiteral,
    NumberMatch,
    ValueSpec,
    build_leaf,
    comparable_text,
    parse_cidr,
    parse_wildcard,
)
from runtime.filtering.array_match import Collector, Condition, Search, TrieNode
from runtime.filtering.fast_match import FastNode, build_fast, match_fast

__all__ = [
    "MAX_ALTERNATIVES",
    "MAX_NESTING",
    "CompiledPattern",
    "FilterPatternError",
    "compile_pattern",
]

MAX_ALTERNATIVES = 1024
"""Most alternatives (``$or`` branches multiplied out) one pattern may have."""
MAX_NESTING = 64
"""Most levels of nested objects (``$or`` objects included) in a pattern."""

_OR = "$or"
# Field names event-ruler refuses inside $or objects (operators and reserved words).
_RESERVED_IN_OR = frozenset(
    {
        "exactly",
        "equals-ignore-case",
        "prefix",
        "suffix",
        "anything-but",
        "exists",
        "wildcard",
        "numeric",
        "cidr",
        "=",
        "<",
        "<=",
        ">",
        ">=",
        "regex",
        "not-wildcard",
        "not-equals-ignore-case",
        "date-after",
        "date-on-or-after",
        "date-before",
        "date-on-or-before",
        "in-date-range",
        "ip-address-in-range",
        "ip-address-not-in-range",
    }
)
_ONE_KEY = "Only one key allowed in match expression"
_TOO_MANY_NUMERIC = "Too many elements in numeric expression"
_ANYTHING_BUT_VALUE = "Value of anything-but must be an array or single string/number value."
_TOO_DEEP = f"Pattern is nested more than {MAX_NESTING} levels deep"


# ------------------------------------------------------------------------------------------
# Reading the JSON text
# ------------------------------------------------------------------------------------------


def _int(text: str) -> NumberLiteral:
    return NumberLiteral(text, int(text))


def _float(text: str) -> NumberLiteral:
    return NumberLiteral(text, float(text))


def _no_constant(name: str) -> Any:
    raise FilterPatternError(f"Non-standard token '{name}' is not allowed")


def _last_value_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Lambda: "If a pattern contains duplicate keys, Lambda uses only the last value".
    return dict(pairs)


def _read(text: str) -> Any:
    try:
        return json.loads(
            text,
            object_pairs_hook=_last_value_wins,
            parse_int=_int,
            parse_float=_float,
            parse_constant=_no_constant,
        )
    except json.JSONDecodeError as exc:
        raise FilterPatternError(str(exc)) from None
    except RecursionError:
        raise FilterPatternError(_TOO_DEEP) from None
    except ValueError as exc:  # e.g. an integer literal longer than Python's digit limit
        if isinstance(exc, FilterPatternError):
            raise
        raise FilterPatternError(f"Invalid number: {exc}") from None


def _json_text(value: Any) -> str:
    """How a parsed pattern value is shown in a message (the token event-ruler would show)."""
    if isinstance(value, NumberLiteral):
        return value.text
    if isinstance(value, dict):
        return "{"
    if isinstance(value, list):
        return "["
    if isinstance(value, str):
        return value
    return json.dumps(value)


# ------------------------------------------------------------------------------------------
# Rules: path -> rule list, per alternative
# ------------------------------------------------------------------------------------------

Rule = dict[str, list[ValueSpec]]


def _parse_pattern(document: Any) -> list[Rule]:
    if not isinstance(document, dict):
        raise FilterPatternError("Filter is not an object")
    rules: list[Rule] = []
    if document:
        _parse_object(document, (), rules, inside_or=False, depth=1)
    return rules or [{}]


def _parse_object(
    obj: dict[str, Any], prefix: tuple[str, ...], rules: list[Rule], *, inside_or: bool, depth: int
) -> None:
    if not obj:
        raise FilterPatternError("Empty objects are not allowed")
    if depth > MAX_NESTING:
        raise FilterPatternError(_TOO_DEEP)
    for key, value in obj.items():
        if key == _OR:
            _parse_or(value, prefix, rules, depth)
            continue
        if inside_or and key in _RESERVED_IN_OR:
            raise FilterPatternError(
                f"{key} is Ruler reserved fieldName which cannot be used inside {_OR}."
            )
        if isinstance(value, dict):
            _parse_object(value, (*prefix, key), rules, inside_or=inside_or, depth=depth + 1)
        elif isinstance(value, list):
            specs = _parse_rule_list(value)
            if not rules:
                rules.append({})
            path = ".".join((*prefix, key))
            for rule in rules:
                rule[path] = specs  # a later rule list for the same path replaces the earlier
        else:
            raise FilterPatternError(f'"{key}" must be an object or an array')


def _parse_or(value: Any, prefix: tuple[str, ...], rules: list[Rule], depth: int) -> None:
    current = [dict(rule) for rule in rules]
    rules.clear()
    if not isinstance(value, list):
        raise FilterPatternError(f"It must be an Array followed with {_OR}.")
    for item in value:
        if not isinstance(item, dict):
            raise FilterPatternError(f"Only JSON object is allowed in array of {_OR} relationship.")
        forked = [dict(rule) for rule in current] or [{}]
        _parse_object(item, prefix, forked, inside_or=True, depth=depth + 1)
        rules.extend(forked)
        if len(rules) > MAX_ALTERNATIVES:
            raise FilterPatternError(f"Pattern has more than {MAX_ALTERNATIVES} {_OR} alternatives")
    if len(value) < 2:
        raise FilterPatternError(f"There must have at least 2 Objects in {_OR} relationship.")


def _parse_rule_list(values: list[Any]) -> list[ValueSpec]:
    specs: list[ValueSpec] = []
    for value in values:
        if isinstance(value, dict):
            specs.append(_parse_match_expression(value))
        elif isinstance(value, str):
            specs.append(ValueSpec("exact", strings=(value,)))
        elif isinstance(value, NumberLiteral):
            specs.append(ValueSpec("number", numbers=(value,)))
        elif value is None or value is True or value is False:
            specs.append(ValueSpec("literal", literal=value))
        else:
            raise FilterPatternError("Match value must be String, number, true, false, or null")
    if not specs:
        raise FilterPatternError("Empty arrays are not allowed")
    return specs


def _single_key(expression: dict[str, Any], message: str = _ONE_KEY) -> None:
    if len(expression) > 1:
        raise FilterPatternError(message)


def _parse_match_expression(expression: dict[str, Any]) -> ValueSpec:
    if not expression:
        raise FilterPatternError("Match expression name not found")
    name, value = next(iter(expression.items()))
    parser = _MATCH_TYPES.get(name)
    if parser is None:
        raise FilterPatternError(f"Unrecognized match type {name}")
    spec = parser(value)
    _single_key(expression, _TOO_MANY_NUMERIC if name in ("numeric", "anything-but") else _ONE_KEY)
    return spec


def _string_operand(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise FilterPatternError(f"{what} match pattern must be a string")
    return value


def _parse_exactly(value: Any) -> ValueSpec:
    return ValueSpec("exact", strings=(_string_operand(value, "exact"),))


def _ignore_case_operand(value: Any, operator: str) -> str:
    # {"prefix": {"equals-ignore-case": "x"}} and the suffix form
    if not value:
        raise FilterPatternError(f"{operator.capitalize()} expression name not found")
    name, operand = next(iter(value.items()))
    if name != "equals-ignore-case":
        raise FilterPatternError(f"Unsupported {operator} pattern: {name}")
    text = _string_operand(operand, "equals-ignore-case")
    _single_key(value)
    return text


def _parse_prefix(value: Any) -> ValueSpec:
    if isinstance(value, dict):
        return ValueSpec("prefix-ignore-case", strings=(_ignore_case_operand(value, "prefix"),))
    return ValueSpec("prefix", strings=(_string_operand(value, "prefix"),))


def _parse_suffix(value: Any) -> ValueSpec:
    if isinstance(value, dict):
        return ValueSpec("suffix-ignore-case", strings=(_ignore_case_operand(value, "suffix"),))
    return ValueSpec("suffix", strings=(_string_operand(value, "suffix"),))


def _parse_equals_ignore_case(value: Any) -> ValueSpec:
    return ValueSpec("equals-ignore-case", strings=(_string_operand(value, "equals-ignore-case"),))


def _parse_wildcard(value: Any) -> ValueSpec:
    text = _string_operand(value, "wildcard")
    return ValueSpec("wildcard", wildcards=(parse_wildcard(text),))


def _parse_cidr(value: Any) -> ValueSpec:
    # event-ruler's message for a non-string cidr says "prefix" (AWS returns it verbatim).
    return ValueSpec("cidr", cidr=parse_cidr(_string_operand(value, "prefix")))


def _parse_exists(value: Any) -> ValueSpec:
    if value is not True and value is not False:
        raise FilterPatternError("exists match pattern must be either true or false.")
    return ValueSpec("exists", exists=value)


# -- numeric --------------------------------------------------------------------------------


def _comparable(literal: NumberLiteral) -> float:
    value = comparable_text(literal.text)
    if value is None:
        raise FilterPatternError(f"Cannot compare number : {literal.text}")
    return value


def _parse_numeric(value: Any) -> ValueSpec:
    """``{"numeric": [op, n]}`` or ``{"numeric": [">"|">=", n, "<"|"<=", m]}``.

    Errors come in event-ruler's order: the shape of the list first, then whether the numbers
    can be compared, then whether the range is empty.
    """
    if not isinstance(value, list):
        raise FilterPatternError("Value of numeric must be an array.")
    end = object()
    items: Iterator[Any] = iter(value)
    operator = next(items, end)
    if not isinstance(operator, str):
        shown = "]" if operator is end else _json_text(operator)
        raise FilterPatternError(f"Invalid member in numeric match: {shown}")
    operand = next(items, end)
    if operator not in ("=", "<", "<=", ">", ">="):
        raise FilterPatternError(f"Unrecognized numeric range operator: {operator}")
    if not isinstance(operand, NumberLiteral):
        name = "equals" if operator == "=" else operator
        raise FilterPatternError(f"Value of {name} must be numeric")
    following = next(items, end)
    if operator in ("=", "<", "<="):
        if following is not end:
            raise FilterPatternError(_TOO_MANY_NUMERIC)
        bound = _comparable(operand)
        if operator == "=":
            return ValueSpec("numeric", ranges=((bound, False, bound, False),))
        return ValueSpec("numeric", ranges=((None, False, bound, operator == "<"),))
    if following is end:
        return ValueSpec("numeric", ranges=((_comparable(operand), operator == ">", None, False),))
    if not isinstance(following, str):
        raise FilterPatternError(f"Bad value in numeric range: {_json_text(following)}")
    if following not in ("<", "<="):
        raise FilterPatternError(f"Bad numeric range operator: {following}")
    top_operand = next(items, end)
    if not isinstance(top_operand, NumberLiteral):
        raise FilterPatternError(f"Value of {following} must be numeric")
    if next(items, end) is not end:
        raise FilterPatternError("Too many terms in numeric range expression")
    bottom, top = _comparable(operand), _comparable(top_operand)
    if not bottom < top:
        raise FilterPatternError("Bottom must be less than top")
    return ValueSpec("numeric", ranges=((bottom, operator == ">", top, following == "<"),))


# -- anything-but ---------------------------------------------------------------------------

_ANYTHING_BUT_OBJECT = {
    "equals-ignore-case": "anything-but-ignore-case",
    "prefix": "anything-but-prefix",
    "suffix": "anything-but-suffix",
    "wildcard": "anything-but-wildcard",
}
_ANYTHING_BUT_TYPE_ERROR = {
    "anything-but-ignore-case": (
        "Inside anything-but/equals-ignore-case list, number|start|null|boolean is not supported."
    ),
    "anything-but-prefix": "prefix/suffix match pattern must be a string",
    "anything-but-suffix": "prefix/suffix match pattern must be a string",
    "anything-but-wildcard": "wildcard match pattern must be a string",
}


def _parse_anything_but(value: Any) -> ValueSpec:
    if isinstance(value, dict):
        return _parse_anything_but_object(value)
    if isinstance(value, list):
        return _parse_anything_but_list(value)
    if isinstance(value, str):
        return ValueSpec("anything-but", strings=(value,))
    if isinstance(value, NumberLiteral):
        _comparable(value)
        return ValueSpec("anything-but-numbers", numbers=(value,))
    raise FilterPatternError(_ANYTHING_BUT_VALUE)


def _parse_anything_but_list(values: list[Any]) -> ValueSpec:
    strings: list[str] = []
    numbers: list[NumberLiteral] = []
    for value in values:
        if isinstance(value, str):
            strings.append(value)
        elif isinstance(value, NumberLiteral):
            _comparable(value)
            numbers.append(value)
        else:
            raise FilterPatternError(
                "Inside anything but list, start|null|boolean is not supported."
            )
    if bool(strings) == bool(numbers):
        raise FilterPatternError(
            "Inside anything but list, either all values are number or string, "
            "mixed type is not supported"
        )
    if numbers:
        return ValueSpec("anything-but-numbers", numbers=tuple(numbers))
    return ValueSpec("anything-but", strings=tuple(strings))


def _parse_anything_but_object(value: dict[str, Any]) -> ValueSpec:
    if not value:
        raise FilterPatternError("Anything-But expression name not found")
    name, operand = next(iter(value.items()))
    kind = _ANYTHING_BUT_OBJECT.get(name)
    if kind is None:
        raise FilterPatternError(f"Unsupported anything-but pattern: {name}")
    if isinstance(operand, list):
        operands = operand
        if not operands:
            raise FilterPatternError("Empty arrays are not allowed")
    elif isinstance(operand, str | NumberLiteral):
        operands = [operand]
    else:
        raise FilterPatternError(_ANYTHING_BUT_VALUE)
    texts: list[str] = []
    for item in operands:
        if not isinstance(item, str):
            raise FilterPatternError(_ANYTHING_BUT_TYPE_ERROR[kind])
        if not item and kind in ("anything-but-prefix", "anything-but-suffix"):
            raise FilterPatternError("Null prefix/suffix not allowed")
        texts.append(item)
    _single_key(value, _TOO_MANY_NUMERIC)
    if kind == "anything-but-wildcard":
        return ValueSpec(kind, wildcards=tuple(parse_wildcard(t) for t in texts))
    return ValueSpec(kind, strings=tuple(texts))


_MATCH_TYPES: dict[str, Callable[[Any], ValueSpec]] = {
    "exactly": _parse_exactly,
    "prefix": _parse_prefix,
    "suffix": _parse_suffix,
    "equals-ignore-case": _parse_equals_ignore_case,
    "wildcard": _parse_wildcard,
    "numeric": _parse_numeric,
    "anything-but": _parse_anything_but,
    "exists": _parse_exists,
    "cidr": _parse_cidr,
}


@dataclass(slots=True)
class _Alternative:
    conditions: list[Condition]
    fast: FastNode


class CompiledPattern:
    """A validated filter pattern, ready to match parsed events (``dict`` from ``json.loads``).

    ``fields`` is the set of top-level keys the pattern looks at (the first segment of each
    path), so a caller can skip decoding payload fields no pattern filters on.
    """

    __slots__ = ("_alternatives", "_matches_nothing_present", "_trie", "fields", "source")

    def __init__(self, source: str, rules: list[Rule], number_match: NumberMatch) -> None:
        self.source = source
        self._trie = TrieNode()
        path_ids: dict[str, int] = {}
        leaves: dict[int, Leaf] = {}
        self._alternatives: list[_Alternative] = []
        for rule in rules:
            conditions: list[Condition] = []
            fast_paths: list[tuple[list[str], Leaf]] = []
            for path, specs in rule.items():
                path_id = path_ids.get(path)
                if path_id is None:
                    path_id = path_ids[path] = len(path_ids)
                    node = self._trie
                    for segment in path.split("."):
                        node = node.children.setdefault(segment, TrieNode())
                    node.path_id = path_id
                # rule lists are shared between alternatives: compile each one once
                leaf = leaves.get(id(specs))
                if leaf is None:
                    leaf = leaves[id(specs)] = build_leaf(specs, number_match)
                conditions.append(Condition(path_id, leaf.test, leaf.allow_absent))
                fast_paths.append((path.split("."), leaf))
            self._alternatives.append(_Alternative(conditions, build_fast(fast_paths)))
        self.fields: frozenset[str] = frozenset(p.split(".", 1)[0] for p in path_ids)
        self._matches_nothing_present = any(
            all(c.allow_absent for c in alt.conditions) for alt in self._alternatives
        )

    def __repr__(self) -> str:
        return f"CompiledPattern({self.source!r})"

    @property
    def alternatives(self) -> int:
        """How many alternatives (``$or`` branches multiplied out) the pattern has."""
        return len(self._alternatives)

    def matches(self, event: Any) -> bool:
        """Whether the parsed event matches the pattern."""
        if type(event) is not dict:
            if not isinstance(event, Mapping):
                return self._matches_nothing_present
            event = dict(event)
        for alternative in self._alternatives:
            result = match_fast(alternative.fast, event)
            if result is None:
                return self._matches_general(event)
            if result:
                return True
        return False

    def _matches_general(self, event: Mapping[str, Any]) -> bool:
        collector = Collector()
        collector.visit_object(self._trie, event, ())
        fields = collector.fields
        return any(Search(alt.conditions, fields).run() for alt in self._alternatives)


def compile_pattern(text: str, *, number_match: NumberMatch = "numeric") -> CompiledPattern:
    """Parse and validate a ``FilterCriteria.Filters[].Pattern`` and compile it.

    Raises :class:`FilterPatternError` with the reason (event-ruler's/AWS's wording) when the
    text is not valid JSON or not a valid pattern. ``number_match`` chooses how plain number
    literals compare (see the module documentation); ``numeric`` operators always compare
    values.
    """
    if number_match not in ("numeric", "representation"):
        raise ValueError(f"number_match must be 'numeric' or 'representation': {number_match!r}")
    rules = _parse_pattern(_read(text))
    return CompiledPattern(text, rules, number_match)
