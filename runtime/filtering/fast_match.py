"""The fast evaluator of a compiled filter pattern: direct key lookups and type-specialised leaf
tests, for events whose pattern paths cross no array of objects (the common case by far).

Without arrays of objects on the way, every condition of an alternative is independent of the
others, so one walk of the pattern's paths decides, failing at the first condition that does
not hold. Where that is not so (an array of objects, a dotted event key that could reach a
pattern path, a value that is not plain JSON), :func:`match_fast` says it cannot tell
(``None``) and :mod:`runtime.filtering.array_match` decides.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime.filtering._values import Leaf, LeafTest

# The fast evaluator's node: (keys whose pattern continues into objects, leaf entries, child
# entries); a dotted event key "x.y" matters only when "x" is one of the first.
# A leaf entry is a condition on the key's own value:
#   (key, test for str, test for finite double or None, test for any leaf, allow_absent)
# a child entry is the pattern continuing inside the key's object:
#   (key, node, whether the node's conditions all hold when the key is absent)
_FastLeaf = tuple[str, Callable[[str], bool], Callable[[float], bool] | None, LeafTest, bool]
_FastChild = tuple[str, "FastNode", bool]
FastNode = tuple[frozenset[str], tuple[_FastLeaf, ...], tuple[_FastChild, ...]]

_MISSING: Any = object()
_BAIL = None  # "cannot tell without the general algorithm"
_EXACT_INT = 2**53  # ints within ±2**53 are exactly doubles


def _dotted_key_matters(obj: dict[str, Any], deep_keys: frozenset[str]) -> bool:
    """Whether a dotted key of ``obj`` may reach a pattern path (``deep_keys``: see FastNode)."""
    try:
        if "." not in "".join(obj):  # the common case, in C
            return False
    except TypeError:  # a key that is not a string: let the general algorithm look
        return True
    return any("." in key and key.partition(".")[0] in deep_keys for key in obj)


def _leaves(values: list[Any] | tuple[Any, ...]) -> Iterator[Any]:
    """The leaf values of an array (nested arrays flattened, objects skipped), no recursion."""
    stack: list[Iterator[Any]] = [iter(values)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list | tuple):
                stack.append(iter(value))
                break
            if not isinstance(value, Mapping):
                yield value
        else:
            stack.pop()


def match_fast(node: FastNode, obj: dict[str, Any]) -> bool | None:
    """Match one alternative on an object whose pattern paths cross no array of objects.

    Returns None ("bail") on an array where the pattern continues into objects, a dotted key
    that may matter or a value that is not plain JSON: the general algorithm decides those.
    Without arrays every condition is independent, so the first failing one decides.
    """
    deep_keys, leaves, children = node
    if deep_keys and _dotted_key_matters(obj, deep_keys):
        return _BAIL
    for key, on_str, on_double, test, allow_absent in leaves:
        value = obj.get(key, _MISSING)
        kind = type(value)
        if kind is str:
            if not on_str(value):
                return False
        elif kind is int:
            if on_double is not None and -_EXACT_INT <= value <= _EXACT_INT:
                if not on_double(float(value)):
                    return False
            elif not test(value):
                return False
        elif kind is float:
            if on_double is not None and value - value == 0.0:  # finite
                if not on_double(value):
                    return False
            elif not test(value):
                return False
        elif value is _MISSING or kind is dict:  # no leaf value at this path
            if not allow_absent:
                return False
        elif kind is list:  # any leaf element satisfies the condition
            present = False
            for leaf in _leaves(value):
                if test(leaf):
                    break
                present = True
            else:
                if present or not allow_absent:
                    return False
        elif kind is bool or value is None:
            if not test(value):
                return False
        else:
            return _BAIL
    for key, child, absent_ok in children:
        value = obj.get(key, _MISSING)
        kind = type(value)
        if kind is dict:
            result = match_fast(child, value)
            if result is not True:
                return result
        elif kind is list or not (value is _MISSING or kind in _SCALARS):
            return _BAIL
        elif not absent_ok:
            return False
    return True


_SCALARS = frozenset({str, int, float, bool, type(None)})


def build_fast(rule_paths: list[tuple[list[str], Leaf]]) -> FastNode:
    """The fast evaluator's tree for one alternative."""

    @dataclass
    class Draft:
        leaf: Leaf | None = None
        children: dict[str, Draft] = field(default_factory=dict)

        def absent_ok(self) -> bool:
            own = self.leaf is None or self.leaf.allow_absent
            return own and all(c.absent_ok() for c in self.children.values())

        def freeze(self) -> FastNode:
            leaves = tuple(
                (key, c.leaf.on_str, c.leaf.on_double, c.leaf.test, c.leaf.allow_absent)
                for key, c in self.children.items()
                if c.leaf is not None
            )
            children = tuple(
                (key, c.freeze(), c.absent_ok()) for key, c in self.children.items() if c.children
            )
            deep_keys = frozenset(key for key, c in self.children.items() if c.children)
            return deep_keys, leaves, children

    root = Draft()
    for segments, leaf in rule_paths:
        node = root
        for segment in segments:
            node = node.children.setdefault(segment, Draft())
        node.leaf = leaf
    return root.freeze()
