"""The general matching algorithm of a compiled filter pattern, for events the fast evaluator
(:mod:`runtime.filtering.fast_match`) cannot decide: an array where the pattern continues into
objects, a dotted event key that could reach a pattern path, a value that is not plain JSON.

The event's fields on the pattern's paths are collected with their array memberships
(:class:`Collector`, over a trie of the paths: :class:`TrieNode`); then, per alternative, a
memoised search looks for an array-consistent choice of fields that satisfies every condition
(:class:`Search`): fields from different elements of one array never combine in one match.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime.filtering._values import LeafTest

_MISSING: Any = object()
_Membership = tuple[tuple[int, int], ...]
_Fields = dict[int, list[tuple[Any, _Membership]]]


@dataclass(slots=True)
class Condition:
    """One path of one alternative: the leaf test of its rule list."""

    path_id: int
    test: LeafTest
    allow_absent: bool


@dataclass(slots=True)
class TrieNode:
    children: dict[str, TrieNode] = field(default_factory=dict)
    path_id: int | None = None

    def descend(self, segments: list[str]) -> TrieNode | None:
        node: TrieNode | None = self
        for segment in segments:
            assert node is not None
            node = node.children.get(segment)
            if node is None:
                return None
        return node

    @property
    def deep(self) -> bool:
        """Whether a dotted event key (``"x.y"``) in an object here can reach a pattern path."""
        return any(child.children for child in self.children.values())


_SearchKey = tuple[int, tuple[int, ...], tuple[tuple[int, int], ...]]


@dataclass(slots=True)
class _Group:
    """A path's candidate fields, indexed by array membership (outermost array first)."""

    values: list[Any] = field(default_factory=list)  # fields outside any further array
    arrays: dict[int, dict[int, _Group]] = field(default_factory=dict)

    @classmethod
    def of(cls, candidates: list[tuple[Any, _Membership]]) -> _Group:
        root = cls()
        for value, membership in candidates:
            group = root
            for array, index in membership:
                group = group.arrays.setdefault(array, {}).setdefault(index, cls())
            group.values.append(value)
        return root

    def compatible(self, chosen: dict[int, int]) -> Iterator[tuple[Any, _Membership]]:
        """The fields whose array elements agree with ``chosen``, without visiting the others."""
        pending: list[tuple[_Group, _Membership]] = [(self, ())]
        while pending:
            group, membership = pending.pop()
            for value in group.values:
                yield value, membership
            for array, elements in group.arrays.items():
                index = chosen.get(array)
                if index is None:
                    pending.extend((g, (*membership, (array, i))) for i, g in elements.items())
                elif index in elements:
                    pending.append((elements[index], (*membership, (array, index))))


class Search:
    """Is there an array-consistent choice of fields satisfying every condition of one alternative?

    Conditions are taken in order. One that a field outside any array satisfies needs no
    choice; otherwise each array element that can satisfy it is tried (and, for
    ``{"exists": false}``, being absent, checked once every choice is made). Only fields that
    agree with the choices so far are visited, options that differ only in arrays no later
    condition looks at are tried once, and failures are remembered by the choices that can
    still matter: events with many array elements cannot make the search explode.
    """

    def __init__(self, conditions: list[Condition], fields: _Fields) -> None:
        self.conditions = conditions
        self.groups = [_Group.of(fields.get(c.path_id, [])) for c in conditions]
        arrays = [
            frozenset(a for _, m in fields.get(c.path_id, ()) for a, _ in m) for c in conditions
        ]
        later: list[frozenset[int]] = [frozenset()] * (len(conditions) + 1)
        for i in range(len(conditions) - 1, -1, -1):
            later[i] = later[i + 1] | arrays[i]
        # arrays whose choice still matters from condition i on: those of the fields of the
        # conditions i.., and of the earlier conditions that may have been deferred as absent
        self.visible: list[frozenset[int]] = []
        maybe_absent: frozenset[int] = frozenset()
        for i in range(len(conditions) + 1):
            self.visible.append(later[i] | maybe_absent)
            if i < len(conditions) and conditions[i].allow_absent:
                maybe_absent |= arrays[i]
        self.absent_groups = {
            c.path_id: group for c, group in zip(conditions, self.groups, strict=True)
        }
        self.failed: set[_SearchKey] = set()

    def _key(self, i: int, chosen: dict[int, int], absent: tuple[int, ...]) -> _SearchKey:
        visible = self.visible[i]
        return i, absent, tuple(sorted(kv for kv in chosen.items() if kv[0] in visible))

    def run(
        self, i: int = 0, chosen: dict[int, int] | None = None, absent: tuple[int, ...] = ()
    ) -> bool:
        chosen = {} if chosen is None else chosen
        conditions = self.conditions
        while i < len(conditions):
            key = None
            if chosen and self.failed:
                key = self._key(i, chosen, absent)
                if key in self.failed:
                    return False
            condition, group = conditions[i], self.groups[i]
            if any(condition.test(v) for v in group.values):
                i += 1  # a field outside any array: no choice can do better
                continue
            can_be_absent = condition.allow_absent and not group.values
            visible = self.visible[i + 1]
            options = {
                tuple(kv for kv in membership if kv[0] in visible)
                for value, membership in group.compatible(chosen)
                if membership and condition.test(value)
            }
            if not options:
                if not can_be_absent:
                    return False
                absent = (*absent, condition.path_id)
                i += 1
                continue
            for option in options:
                extended = dict(chosen)
                extended.update(option)
                if self.run(i + 1, extended, absent):
                    return True
            if can_be_absent and self.run(i + 1, chosen, (*absent, condition.path_id)):
                return True
            self.failed.add(key or self._key(i, chosen, absent))
            return False
        return not any(
            True for path_id in absent for _ in self.absent_groups[path_id].compatible(chosen)
        )


class Collector:
    """The event's fields on the pattern's paths, with their array memberships."""

    def __init__(self) -> None:
        self.fields: _Fields = {}
        self._arrays = 0

    def visit_object(self, node: TrieNode, obj: Mapping[Any, Any], membership: _Membership) -> None:
        for key, child in node.children.items():
            value = obj.get(key, _MISSING)
            if value is not _MISSING:
                self.visit(child, value, membership)
        if node.deep:
            for key, value in obj.items():
                if isinstance(key, str) and "." in key:
                    target = node.descend(key.split("."))
                    if target is not None:
                        self.visit(target, value, membership)

    def visit(self, node: TrieNode, value: Any, membership: _Membership) -> None:
        if isinstance(value, Mapping):
            if node.children:
                self.visit_object(node, value, membership)
        elif isinstance(value, list | tuple):
            # nested arrays without recursion: each array gets its own id
            pending: list[tuple[list[Any] | tuple[Any, ...], _Membership]] = [(value, membership)]
            while pending:
                items, outer = pending.pop()
                self._arrays += 1
                array = self._arrays
                for index, element in enumerate(items):
                    inner = (*outer, (array, index))
                    if isinstance(element, list | tuple):
                        pending.append((element, inner))
                    else:
                        self.visit(node, element, inner)
        elif node.path_id is not None:
            self.fields.setdefault(node.path_id, []).append((value, membership))
