"""The mappings a pod runs: the configuration file's, then the ones stored through the API.

The YAML file stays the declarative source (GitOps): its mappings are always run as written
and the API shows them but does not change them. Stored mappings are appended after them and
validated by the very same loader, with the file's functions. A stored mapping that no longer
fits (its function left the file, the file now declares the same source and function, a rule
it breaks) is not run and not deleted: it is shown with ``State: Disabled`` and the reason, and
runs again once the file allows it. So a restart runs exactly: the file, plus every stored
mapping that is valid against it.

The merged document is what the workers load (written to a file by the supervisor), so a
worker validates and resolves exactly what the supervisor planned.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from runtime.api.store import StoredMapping
from runtime.config.loader import ConfigError, build_config
from runtime.config.resolved import Mapping, RuntimeConfig
from runtime.config.settings import Settings

_INDEXED = re.compile(r"^eventSourceMappings\[(\d+)\]\.?")
# States in which a stored mapping is not part of the running set at all.
GONE_STATES = frozenset({"Deleting"})


@dataclass(frozen=True)
class Catalog:
    config: RuntimeConfig
    document: dict[str, Any]  # the merged YAML document the workers load
    declared: frozenset[str]  # UUIDs of the file's mappings
    stored: dict[str, StoredMapping] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)  # stored UUID -> why not run

    def mapping(self, uuid: str) -> Mapping | None:
        for m in self.config.mappings:
            if m.uuid == uuid:
                return m
        return None


def declared_mappings(document: Any) -> list[Any]:
    raw = document.get("eventSourceMappings") if isinstance(document, dict) else None
    return list(raw) if isinstance(raw, list) else []


def stored_body(record: StoredMapping) -> dict[str, Any]:
    """The record as a YAML mapping entry (its UUID pinned)."""
    return {**record.body, "UUID": record.uuid}


def problem_text(problem: str) -> str:
    """A loader problem without its ``eventSourceMappings[i].`` prefix."""
    return _INDEXED.sub("", problem, count=1)


def merge(
    document: Any,
    stored: Iterable[StoredMapping],
    settings: Settings,
    path: str,
) -> Catalog:
    """The file's mappings plus every stored one that validates against the file.

    Raises ConfigError only for problems of the file itself (validated at start, so never in
    practice)."""
    base = copy.deepcopy(document) if isinstance(document, dict) else {}
    declared = declared_mappings(base)
    records = {r.uuid: r for r in stored}
    candidates = [r for r in records.values() if r.state not in GONE_STATES]
    problems: dict[str, str] = {}
    while True:
        entries = declared + [stored_body(r) for r in candidates]
        merged = {**base, "eventSourceMappings": entries}
        try:
            config = build_config(merged, path, settings, import_handlers=False)
        except ConfigError as exc:
            bad = _stored_problems(exc.problems, len(declared), candidates)
            if not bad:
                raise
            for uuid, text in bad.items():
                problems[uuid] = text
            candidates = [r for r in candidates if r.uuid not in bad]
            continue
        declared_uuids = frozenset(m.uuid for m in config.mappings[: len(declared)])
        return Catalog(config, merged, declared_uuids, records, problems)


def _stored_problems(
    problems: list[str], first_stored: int, candidates: list[StoredMapping]
) -> dict[str, str]:
    bad: dict[str, list[str]] = {}
    for p in problems:
        m = _INDEXED.match(p)
        if m is None or int(m[1]) < first_stored:
            continue
        bad.setdefault(candidates[int(m[1]) - first_stored].uuid, []).append(problem_text(p))
    return {uuid: "; ".join(texts) for uuid, texts in bad.items()}
