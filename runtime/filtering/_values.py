"""Leaf-value tests: what one rule list (``"field": [...]``) accepts for one event value.

A rule list is an OR of value matchers (exact values, prefix, numeric, anything-but, ...). Each
matcher is parsed into a :class:`ValueSpec` by :mod:`runtime.filtering.patterns`;
:func:`build_leaf` folds the specs of one list into tests specialised by the value's JSON type
(string, finite number, anything), so a match costs one type check plus a set lookup, a
``str.startswith(tuple)`` or a comparison. Everything is compiled once per pattern: sets,
tuples of prefixes, numeric bounds as floats, wildcards as literal segments, case-insensitive
literals as regexes, CIDR blocks as integer ranges.

Semantics follow aws/event-ruler (the engine behind EventBridge and Lambda filtering), which
matches on the JSON text of a value: strings are quoted, so prefix/suffix/wildcard/
equals-ignore-case/cidr only ever match strings, numeric matchers only match JSON numbers,
and anything-but matches every leaf value that is not excluded (including null, booleans
and values of the other type).
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

LeafTest = Callable[[Any], bool]
NumberMatch = Literal["numeric", "representation"]


class FilterPatternError(ValueError):
    """The pattern is not a valid filter pattern; the message is the precise reason."""


# ------------------------------------------------------------------------------------------
# Numbers
# ------------------------------------------------------------------------------------------


def comparable_text(text: str) -> float | None:
    """The double a JSON number's text denotes, if event-ruler can compare it numerically.

    event-ruler (2.x) parses numbers exactly (BigDecimal) and compares them as IEEE doubles;
    a number whose exact value is not a double (``12345678901234567890``, ``0.1000000000000001``)
    or that overflows is "not comparable": numeric operators reject it in a pattern and never
    match it in an event.
    """
    try:
        exact = Decimal(text)
    except InvalidOperation:
        return None
    value = float(exact)
    if not math.isfinite(value) or Decimal(repr(value)) != exact:
        return None
    return value


def comparable_value(value: Any) -> float | None:
    """The double of a parsed JSON number (int/float/Decimal, not bool), or None if it has none.

    Floats are doubles already (a float that came from ``json.loads`` may have lost digits of
    its text: that is invisible here). Ints and Decimals are comparable when they are exactly
    a double; infinities and NaN never are.
    """
    if type(value) is float:
        return value if value - value == 0.0 else None
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    try:
        as_float = float(value)
    except (OverflowError, ValueError):
        return None
    if not math.isfinite(as_float) or as_float != value:
        return None
    return as_float


def _number_text(value: Any) -> str:
    """The JSON text Python's json module writes for a parsed number."""
    return json.dumps(value) if not isinstance(value, Decimal) else str(value)


# ------------------------------------------------------------------------------------------
# IP addresses (cidr, and exact strings that are IP literals)
# ------------------------------------------------------------------------------------------

# event-ruler's own shape checks come first (so that a hostname is never "resolved").
_IPV4_SHAPE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")
_IPV6_SHAPE = re.compile(r"[0-9a-fA-F:]*:[0-9a-fA-F:]*")

IpKey = tuple[int, int]  # (4 or 6, address as int)


def parse_ip(text: str) -> IpKey | None:
    """(version, int) of an IPv4/IPv6 literal, or None.

    IPv4-mapped IPv6 addresses (``::ffff:a00:1``) count as IPv4, as Java's InetAddress does.
    Python's parser is stricter than Java's on one point: IPv4 octets with leading zeros
    (``010.0.0.1``) are not addresses.
    """
    try:
        if _IPV4_SHAPE.fullmatch(text):
            return 4, int(ipaddress.IPv4Address(text))
        if _IPV6_SHAPE.fullmatch(text):
            v6 = ipaddress.IPv6Address(text)
            mapped = v6.ipv4_mapped
            return (4, int(mapped)) if mapped is not None else (6, int(v6))
    except ValueError:
        return None
    return None


def _cidr_ip(text: str) -> IpKey:
    if not (_IPV4_SHAPE.fullmatch(text) or _IPV6_SHAPE.fullmatch(text)):
        raise FilterPatternError(f"Nonstandard IP address: {text}")
    key = parse_ip(text)
    if key is None:
        raise FilterPatternError(f"Invalid IP address: {text}")
    return key


_MASK_BITS = re.compile(r"[+-]?[0-9]+")


def parse_cidr(text: str) -> tuple[int, int, int]:
    """(version, lowest, highest) address of a ``cidr`` pattern, with event-ruler's checks.

    As in event-ruler, the range starts at the address as written (``10.0.0.5/24`` covers
    10.0.0.5-10.0.0.255) and a full-length mask (/32, /128) is rejected.
    """
    parts = text.split("/")
    while parts and parts[-1] == "":  # Java's String.split drops trailing empty strings
        parts.pop()
    if len(parts) != 2:
        raise FilterPatternError("Malformed CIDR, one '/' required")
    ip_text, mask_text = parts
    if not _MASK_BITS.fullmatch(mask_text) or not -(2**31) <= int(mask_text) < 2**31:
        raise FilterPatternError("Malformed CIDR, mask bits must be an integer")
    mask = int(mask_text)
    if mask < 0:
        raise FilterPatternError("Malformed CIDR, mask bits must not be negative")
    version, address = _cidr_ip(ip_text)
    width = 32 if version == 4 else 128
    if mask > width - 1:
        raise FilterPatternError(f"IPv{version} mask bits must be < {width}")
    return version, address, address | ((1 << (width - mask)) - 1)


# ------------------------------------------------------------------------------------------
# Wildcards
# ------------------------------------------------------------------------------------------


def parse_wildcard(text: str) -> tuple[str, ...]:
    """The literal segments between the unescaped ``*`` of a wildcard pattern.

    ``\\*`` is a literal star and ``\\\\`` a literal backslash; any other backslash and two
    consecutive stars are errors. Positions in messages are event-ruler's: UTF-8 byte offsets
    in the quoted value (so the first character of the pattern is at pos 1).
    """
    segments: list[str] = []
    current: list[str] = []
    pos = 1
    i = 0
    while i < len(text):
        char = text[i]
        if char == "*":
            if i + 1 < len(text) and text[i + 1] == "*":
                raise FilterPatternError(f"Consecutive wildcard characters at pos {pos}")
            segments.append("".join(current))
            current = []
        elif char == "\\":
            following = text[i + 1] if i + 1 < len(text) else ""
            if following not in ("*", "\\"):
                raise FilterPatternError(f"Invalid escape character at pos {pos}")
            current.append(following)
            pos += 1
            i += 1
        else:
            current.append(char)
        pos += len(char.encode("utf-8", "surrogatepass"))
        i += 1
    segments.append("".join(current))
    return tuple(segments)


def wildcard_test(segments: tuple[str, ...]) -> Callable[[str], bool]:
    """A matcher for the segments of :func:`parse_wildcard` (``*`` matches any run, even empty).

    No regex: anchored first/last segments and a leftmost ``str.find`` for each middle segment,
    which is exact for ``*``-only globs and linear (no backtracking blow-up).
    """
    if len(segments) == 1:
        literal = segments[0]
        return lambda value: value == literal
    first, last, middle = segments[0], segments[-1], segments[1:-1]
    min_length = sum(len(s) for s in segments)
    head, tail = len(first), len(last)

    def test(value: str) -> bool:
        if len(value) < min_length or not value.startswith(first) or not value.endswith(last):
            return False
        pos, end = head, len(value) - tail
        for segment in middle:
            found = value.find(segment, pos, end)
            if found < 0:
                return False
            pos = found + len(segment)
        return True

    return test


# ------------------------------------------------------------------------------------------
# Case-insensitive strings
# ------------------------------------------------------------------------------------------


def _ignore_case_regex(literals: Iterable[str]) -> re.Pattern[str]:
    # Python's IGNORECASE is a character-for-character simple case fold (like event-ruler's
    # per-character upper/lower alternatives), so match lengths equal literal lengths.
    alternatives = "|".join(re.escape(s) for s in literals)
    return re.compile(f"(?:{alternatives})", re.IGNORECASE)


def _ignore_case_equals(literals: Iterable[str]) -> Callable[[str], bool]:
    regex = _ignore_case_regex(literals)
    return lambda value: regex.fullmatch(value) is not None


def _ignore_case_prefix(literals: Iterable[str]) -> Callable[[str], bool]:
    regex = _ignore_case_regex(literals)
    return lambda value: regex.match(value) is not None


def _ignore_case_suffix(literal: str) -> Callable[[str], bool]:
    regex, size = _ignore_case_regex([literal]), len(literal)
    return lambda value: (
        len(value) >= size and regex.fullmatch(value, len(value) - size) is not None
    )


# ------------------------------------------------------------------------------------------
# Value specs and the per-list leaf test
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NumberLiteral:
    """A number as written in the pattern: its text and what Python's json makes of it."""

    text: str
    value: int | float


@dataclass(slots=True)
class ValueSpec:
    """One matcher of a rule list, in a form :func:`build_leaf` can fold."""

    kind: str
    strings: tuple[str, ...] = ()
    numbers: tuple[NumberLiteral, ...] = ()
    literal: Any = None  # True / False / None for the JSON literals
    ranges: tuple[tuple[float | None, bool, float | None, bool], ...] = ()
    wildcards: tuple[tuple[str, ...], ...] = ()
    cidr: tuple[int, int, int] | None = None
    exists: bool = False


@dataclass(slots=True)
class _Fold:
    """Everything the specs of one rule list accept, grouped by event value type."""

    exact_strings: set[str] = field(default_factory=set)
    ip_literals: set[IpKey] = field(default_factory=set)
    prefixes: list[str] = field(default_factory=list)
    suffixes: list[str] = field(default_factory=list)
    string_tests: list[Callable[[str], bool]] = field(default_factory=list)
    number_values: set[float] = field(default_factory=set)
    number_texts: set[str] = field(default_factory=set)
    number_tests: list[Callable[[float], bool]] = field(default_factory=list)
    # anything-but matchers: each accepts strings / numbers except its own exclusions
    string_excluding: list[Callable[[str], bool]] = field(default_factory=list)
    number_excluding: list[Callable[[float | None], bool]] = field(default_factory=list)
    true_ok: bool = False
    false_ok: bool = False
    null_ok: bool = False
    any_leaf: bool = False
    allow_absent: bool = False


def _range_test(bounds: tuple[float | None, bool, float | None, bool]) -> Callable[[float], bool]:
    low, low_open, high, high_open = bounds
    if low is None and high is not None:
        return (lambda x: x < high) if high_open else (lambda x: x <= high)
    if high is None and low is not None:
        return (lambda x: x > low) if low_open else (lambda x: x >= low)
    assert low is not None and high is not None
    if low_open and high_open:
        return lambda x: low < x < high
    if low_open:
        return lambda x: low < x <= high
    if high_open:
        return lambda x: low <= x < high
    return lambda x: low <= x <= high


def _fold(specs: Iterable[ValueSpec], number_match: NumberMatch) -> _Fold:
    f = _Fold()
    for spec in specs:
        kind = spec.kind
        if kind == "exact":
            for s in spec.strings:
                f.exact_strings.add(s)
                ip = parse_ip(s)
                if ip is not None:  # event-ruler turns IP literals into single-address ranges
                    f.ip_literals.add(ip)
        elif kind == "number":
            for n in spec.numbers:
                if number_match == "representation":
                    f.number_texts.add(json.dumps(n.value))
                    continue
                value = comparable_text(n.text)
                if value is not None:
                    f.number_values.add(value)
                else:  # not comparable: only the same literal text matches
                    f.number_texts.add(n.text)
        elif kind == "literal":
            if spec.literal is True:
                f.true_ok = True
            elif spec.literal is False:
                f.false_ok = True
            else:
                f.null_ok = True
        elif kind == "prefix":
            f.prefixes.extend(spec.strings)
        elif kind == "suffix":
            f.suffixes.extend(spec.strings)
        elif kind == "equals-ignore-case":
            f.string_tests.append(_ignore_case_equals(spec.strings))
        elif kind == "prefix-ignore-case":
            f.string_tests.append(_ignore_case_prefix(spec.strings))
        elif kind == "suffix-ignore-case":
            f.string_tests.extend(_ignore_case_suffix(s) for s in spec.strings)
        elif kind == "wildcard":
            f.string_tests.extend(wildcard_test(w) for w in spec.wildcards)
        elif kind == "cidr":
            assert spec.cidr is not None
            version, low, high = spec.cidr

            def in_cidr(v: str, version: int = version, low: int = low, high: int = high) -> bool:
                ip = parse_ip(v)
                return ip is not None and ip[0] == version and low <= ip[1] <= high

            f.string_tests.append(in_cidr)
        elif kind == "numeric":
            f.number_tests.extend(_range_test(r) for r in spec.ranges)
        elif kind == "exists":
            if spec.exists:
                f.any_leaf = True
            else:
                f.allow_absent = True
        elif kind.startswith("anything-but"):
            _fold_anything_but(f, spec)
        else:  # pragma: no cover - the parser only produces the kinds above
            raise AssertionError(kind)
    return f


def _fold_anything_but(f: _Fold, spec: ValueSpec) -> None:
    kind = spec.kind
    f.true_ok = f.false_ok = f.null_ok = True  # nothing excludes a JSON literal
    if kind == "anything-but-numbers":
        excluded_numbers = frozenset(
            value for n in spec.numbers if (value := comparable_text(n.text)) is not None
        )
        f.number_excluding.append(lambda x: x is None or x not in excluded_numbers)
        f.string_excluding.append(lambda v: True)
        return
    f.number_excluding.append(lambda x: True)
    if kind == "anything-but":
        excluded = frozenset(spec.strings)
        f.string_excluding.append(lambda v: v not in excluded)
    elif kind == "anything-but-prefix":
        prefixes = tuple(spec.strings)
        f.string_excluding.append(lambda v: not v.startswith(prefixes))
    elif kind == "anything-but-suffix":
        suffixes = tuple(spec.strings)
        f.string_excluding.append(lambda v: not v.endswith(suffixes))
    elif kind == "anything-but-ignore-case":
        equal = _ignore_case_equals(spec.strings)
        f.string_excluding.append(lambda v: not equal(v))
    elif kind == "anything-but-wildcard":
        tests = tuple(wildcard_test(w) for w in spec.wildcards)
        f.string_excluding.append(lambda v: not any(t(v) for t in tests))
    else:  # pragma: no cover
        raise AssertionError(kind)


def _any_of(tests: list[Callable[[Any], bool]]) -> Callable[[Any], bool] | None:
    if not tests:
        return None
    if len(tests) == 1:
        return tests[0]
    frozen = tuple(tests)
    return lambda v: any(t(v) for t in frozen)


def _string_test(f: _Fold) -> Callable[[str], bool] | None:
    parts: list[Callable[[str], bool]] = []
    exact = frozenset(f.exact_strings)
    if exact:
        ips = frozenset(f.ip_literals)
        if ips:
            parts.append(lambda v: v in exact or parse_ip(v) in ips)
        else:
            parts.append(exact.__contains__)
    if f.prefixes:
        prefixes = tuple(f.prefixes)
        parts.append(lambda v: v.startswith(prefixes))
    if f.suffixes:
        suffixes = tuple(f.suffixes)
        parts.append(lambda v: v.endswith(suffixes))
    parts.extend(f.string_tests)
    parts.extend(f.string_excluding)
    return _any_of(parts)


def _never(value: Any) -> bool:
    return False


def _always(value: Any) -> bool:
    return True


def _number_tests(
    f: _Fold, number_match: NumberMatch
) -> tuple[Callable[[Any], bool], Callable[[float], bool] | None]:
    """(test for any number, test for a number already known to be a finite double).

    The second is None when plain number literals compare by representation: a double no
    longer tells an int from a float, so every number takes the first test.
    """
    values = frozenset(f.number_values)
    texts = frozenset(f.number_texts)
    ranges = _any_of(list(f.number_tests))
    excluding = tuple(f.number_excluding)
    if not (values or texts or ranges or excluding):
        return _never, _never

    parts: list[Callable[[float], bool]] = []
    if values:
        parts.append(values.__contains__)
    if ranges is not None:
        parts.append(ranges)
    parts.extend(excluding)
    on_double = _any_of(parts) or _never

    def on_number(v: Any) -> bool:
        x = comparable_value(v)
        if x is not None and on_double(x):
            return True
        by_text = number_match == "representation" or x is None
        if texts and by_text and _number_text(v) in texts:
            return True
        return x is None and any(e(None) for e in excluding)

    if texts and number_match == "representation":
        return on_number, None
    return on_number, on_double


@dataclass(frozen=True, slots=True)
class Leaf:
    """What one rule list accepts, as tests specialised by the JSON type of the value."""

    test: LeafTest
    """Any leaf value (not an object or an array)."""
    on_str: Callable[[str], bool]
    """A ``str``."""
    on_double: Callable[[float], bool] | None
    """A finite ``float``, or an ``int`` within ±2**53 converted to float; None: use ``test``."""
    allow_absent: bool
    """The list holds ``{"exists": false}``: satisfied when the path has no leaf value."""


def build_leaf(specs: Iterable[ValueSpec], number_match: NumberMatch) -> Leaf:
    """Fold the matchers of one rule list into type-specialised tests (see :class:`Leaf`)."""
    f = _fold(specs, number_match)
    if f.any_leaf:
        return Leaf(_always, _always, _always, f.allow_absent)
    on_string = _string_test(f) or _never
    on_number, on_double = _number_tests(f, number_match)
    true_ok, false_ok, null_ok = f.true_ok, f.false_ok, f.null_ok

    def test(v: Any) -> bool:
        kind = type(v)
        if kind is str:
            return on_string(v)
        if kind is int or kind is float:
            return on_number(v)
        if v is None:
            return null_ok
        if v is True:
            return true_ok
        if v is False:
            return false_ok
        if isinstance(v, str):
            return on_string(str(v))
        if isinstance(v, int | float | Decimal):
            return on_number(v)
        return False  # not a JSON value: only {"exists": true} accepts it

    return Leaf(test, on_string, on_double, f.allow_absent)
