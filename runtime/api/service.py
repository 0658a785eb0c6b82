"""The mapping API's operations, with Lambda's semantics: what is valid, what each call
answers, which error it raises.

Validation is the configuration loader's own: a new or changed mapping is merged with the
file and the stored mappings (:func:`runtime.api.catalog.merge`), so the API accepts exactly
what the YAML file would, and reports it with the messages AWS uses where they are recorded.
A new or changed source is also checked once against the real queue or stream, as Lambda
checks an SQS queue's visibility timeout at create time.

Changes are written to the store and applied asynchronously, as on Lambda: Create answers
``Creating``, Update ``Updating`` (or ``Enabling``/``Disabling``) with the previous values,
Delete ``Deleting``; the pods' mapping sync (:mod:`runtime.supervisor.mapping_sync`) applies
the change (draining the function's workers) and then settles the state.
"""

from __future__ import annotations

import base64
import re
import time
import uuid as uuid_module
from collections.abc import Awaitable, Callable
from typing import Any

from runtime.api.catalog import Catalog, merge
from runtime.api.errors import ApiError, conflict, in_use, invalid, not_found
from runtime.api.shapes import Status, configuration, mapping_arn
from runtime.api.store import MappingStore, StoreConflict, StoredMapping
from runtime.config.loader import function_name_of
from runtime.config.model import StartingPosition
from runtime.config.resolved import Mapping
from runtime.config.settings import Settings
from runtime.config.sources import SourceKind

# Fields only CreateEventSourceMapping takes (esm-spec §1.2, "Update vs Create").
CREATE_ONLY = frozenset(
    {
        "EventSourceArn",
        "Queues",
        "SelfManagedEventSource",
        "StartingPosition",
        "StartingPositionTimestamp",
        "Tags",
        "Topics",
        "UUID",
    }
)
LIST_PAGE_MAX = 100  # "returns a maximum of 100 items in each response"
# Lambda's pattern for TagResource/UntagResource/ListTags resources (recorded).
RESOURCE_PATTERN = (
    r"arn:(aws[a-zA-Z-]*):lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:"
    r"(function:[a-zA-Z0-9-_]+(:(\$LATEST|[a-zA-Z0-9-_]+))?|layer:([a-zA-Z0-9-_]+)|"
    r"code-signing-config:csc-[a-z0-9]{17}|event-source-mapping:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-"
    r"[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|capacity-provider:[a-zA-Z0-9-_]+)"
)
_RESOURCE = re.compile(RESOURCE_PATTERN)
_SETTLING = {"Creating", "Enabling", "Updating", "Disabling", "Deleting"}

SourceCheck = Callable[[Mapping], Awaitable[str | None]]


def settled_state(record: StoredMapping) -> str:
    return "Enabled" if record.enabled else "Disabled"


def error_for(problems: list[str]) -> ApiError:
    """The Lambda error for the loader's problems with one mapping."""
    for p in problems:
        if "already exists. Please update or delete the existing mapping" in p:
            return conflict(re.sub(r"\s*\(eventSourceMappings\[\d+\]\)$", "", p.split(": ", 1)[-1]))
    texts = []
    for p in problems:
        field, _, text = p.partition(": ")
        if field == "EventSourceArn" and text.startswith("required"):
            text = "Unrecognized event source."
        elif field == "FunctionName" and text.startswith("Function does not exist"):
            text = "Function does not exist"
        elif not text.startswith(("1 validation error", "Unsupported", "Maximum batch window")):
            text = p
        texts.append(text)
    return invalid("; ".join(texts))


class MappingService:
    def __init__(
        self,
        *,
        document: Any,
        path: str,
        settings: Settings,
        store: MappingStore,
        catalog: Callable[[], Catalog],
        changed: Callable[[], None],
        check_source: SourceCheck,
        declared_since: float,
        processing: Callable[[str], str] = lambda _: "No records processed",
    ) -> None:
        self._document = document
        self._path = path
        self._settings = settings
        self._store = store
        self._catalog = catalog
        self._changed = changed
        self._check_source = check_source
        self._declared_since = declared_since
        self._processing = processing  # a mapping's LastProcessingResult, from the workers

    # ------------------------------------------------------------------ views

    def _declared(self, uuid: str) -> Mapping | None:
        cat = self._catalog()
        return cat.mapping(uuid) if uuid in cat.declared else None

    def _declared_status(self, m: Mapping) -> Status:
        return Status(
            "Enabled" if m.enabled else "Disabled", self._declared_since, self._processing(m.uuid)
        )

    def _view(self, record: StoredMapping, records: list[StoredMapping]) -> dict[str, Any]:
        """A stored mapping as Lambda shows it; one that cannot run is Disabled, with why."""
        cat = self._catalog()
        problem = cat.problems.get(record.uuid)
        m = cat.mapping(record.uuid)
        if m is None:
            m, problem2 = self._resolve(record, records)
            problem = problem or problem2
        state, reason = record.state, record.reason
        result = None
        if problem is not None and record.state not in _SETTLING:
            state, reason, result = "Disabled", "ESM_CONFIG_NOT_VALID", f"PROBLEM: {problem}"
        status = Status(
            state, record.last_modified, result or self._processing(record.uuid), reason=reason
        )
        if result is not None and m is not None:
            # Shown for every source (Lambda omits it for SQS, but the reason must be seen).
            return {**configuration(m, status), "LastProcessingResult": result}
        if m is None:  # cannot even be resolved any more (its function left the file)
            return {
                "UUID": record.uuid,
                "FunctionArn": record.body.get("FunctionName"),
                "EventSourceArn": record.body.get("EventSourceArn"),
                "LastModified": record.last_modified,
                "LastProcessingResult": status.last_processing_result,
                "State": state,
                "StateTransitionReason": reason or "USER_INITIATED",
            }
        return configuration(m, status)

    def _resolve(
        self, record: StoredMapping, records: list[StoredMapping]
    ) -> tuple[Mapping | None, str | None]:
        """Resolve a stored mapping against the file and the other stored mappings."""
        others = [r for r in records if r.uuid != record.uuid]
        cat = merge(
            self._document, [*others, record.replace(state="Enabled")], self._settings, self._path
        )
        return cat.mapping(record.uuid), cat.problems.get(record.uuid)

    async def _records(self) -> list[StoredMapping]:
        # In creation order, as the pods merge them (a later duplicate is the one set aside).
        return sorted(await self._store.all(), key=lambda r: (r.last_modified, r.uuid))

    async def _find(self, uuid: str) -> tuple[StoredMapping | None, list[StoredMapping]]:
        records = await self._records()
        for r in records:
            if r.uuid == uuid.lower():
                return r, records
        return None, records

    # ------------------------------------------------------------------ operations

    async def get(self, uuid: str) -> dict[str, Any]:
        declared = self._declared(uuid.lower())
        if declared is not None:
            return configuration(declared, self._declared_status(declared))
        record, records = await self._find(uuid)
        if record is None:
            raise not_found()
        return self._view(record, records)

    async def list_mappings(
        self,
        event_source_arn: str | None,
        function_name: str | None,
        marker: str | None,
        max_items: int | None,
    ) -> dict[str, Any]:
        if max_items is not None and not 1 <= max_items <= 10000:
            raise invalid(
                f"1 validation error detected: Value '{max_items}' at 'maxItems' failed to "
                "satisfy constraint: Member must have value between 1 and 10000"
            )
        records = await self._records()
        views = [
            configuration(m, self._declared_status(m))
            for m in self._catalog().config.mappings
            if m.uuid in self._catalog().declared
        ]
        views += [
            self._view(r, records) for r in sorted(records, key=lambda r: (r.last_modified, r.uuid))
        ]
        fname = function_name_of(function_name) if function_name else None
        if function_name and fname is None:
            raise invalid(f"FunctionName: not a function name or ARN ({function_name!r})")
        selected = [
            v
            for v in views
            if (event_source_arn is None or v.get("EventSourceArn") == event_source_arn)
            and (fname is None or _function_of(v) == fname)
        ]
        start = _decode_marker(marker)
        size = min(max_items or LIST_PAGE_MAX, LIST_PAGE_MAX)
        page = selected[start : start + size]
        out: dict[str, Any] = {"EventSourceMappings": page}
        if start + size < len(selected):
            out["NextMarker"] = _encode_marker(start + size)
        return out

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        body = dict(body)
        _check_starting_position(body)
        tags = body.pop("Tags", None) or {}
        if not isinstance(tags, dict):
            raise invalid("Tags: must be a map of strings")
        if "UUID" in body:
            raise invalid("UUID: is chosen by the service")
        new = StoredMapping(
            uuid=str(uuid_module.uuid4()),
            body=body,
            state="Creating",
            last_modified=time.time(),
            tags={str(k): str(v) for k, v in tags.items()},
        )
        records = await self._records()
        m = self._validate(new, records)
        await self._check(m)
        try:
            new = await self._store.create(new)
        except StoreConflict as exc:  # a UUID collision: practically impossible
            raise conflict(str(exc)) from None
        # Another create of the same source and function may have raced this one (on this
        # pod or another) through the check above: the later one (by time, then UUID) loses.
        settled = merge(self._document, await self._records(), self._settings, self._path)
        if new.uuid in settled.problems:
            await self._store.delete(new)
            raise error_for(settled.problems[new.uuid].split("; "))
        self._changed()
        return configuration(m, Status("Creating", new.last_modified))

    async def update(self, uuid: str, body: dict[str, Any]) -> dict[str, Any]:
        record, records = await self._find(uuid)
        if record is None:
            if self._declared(uuid.lower()) is not None:
                raise self._declared_error(uuid)
            raise not_found()
        given = sorted(set(body) & CREATE_ONLY)
        if given:
            raise invalid(
                f"{', '.join(given)}: cannot be changed after the mapping is created "
                "(create a new mapping instead)"
            )
        if record.state in ("Creating", "Deleting"):
            raise in_use(
                f"Cannot update the event source mapping {record.uuid} while it is "
                f"{record.state.upper()}. Please try again later."
            )
        old_m, _ = self._resolve(record, records)
        new_body = _apply_update(record.body, body)
        _check_kafka_group(record.body, new_body)
        changed_enabled = bool(new_body.get("Enabled", True)) != record.enabled
        state = (
            ("Enabling" if new_body.get("Enabled", True) else "Disabling")
            if changed_enabled
            else "Updating"
        )
        candidate = record.replace(
            body=new_body, state=state, last_modified=time.time(), reason=None
        )
        m = self._validate(candidate, records)
        if _source_changed(record.body, new_body) and candidate.enabled:
            await self._check(m)
        try:
            await self._store.replace(candidate)
        except StoreConflict:
            raise conflict(
                f"The event source mapping {record.uuid} was changed by another request; "
                "read it again and retry"
            ) from None
        self._changed()
        shown = old_m or m
        return configuration(shown, Status(state, candidate.last_modified))

    async def delete(self, uuid: str) -> dict[str, Any]:
        # A stored mapping first: one whose UUID the file declares too (copied into it) must
        # stay deletable.
        record, records = await self._find(uuid)
        if record is None:
            if self._declared(uuid.lower()) is not None:
                raise self._declared_error(uuid)
            raise not_found()
        if record.state in ("Updating", "Enabling", "Disabling"):
            raise in_use(
                f"Cannot delete the event source mapping {record.uuid} while it is "
                f"{record.state.upper()}. Please try again later."
            )
        view = self._view(record, records)
        if record.state != "Deleting":
            deleting = record.replace(state="Deleting", last_modified=time.time(), reason=None)
            try:
                await self._store.replace(deleting)
            except StoreConflict:
                raise conflict(
                    f"The event source mapping {record.uuid} was changed by another request; "
                    "read it again and retry"
                ) from None
            self._changed()
            view["LastModified"] = deleting.last_modified
        view["State"] = "Deleting"
        return view

    # ------------------------------------------------------------------ tags

    async def list_tags(self, resource: str) -> dict[str, str]:
        uuid = self._tag_target(resource)
        declared = self._declared(uuid)
        if declared is not None:
            return dict(declared.raw.tags or {})
        record, _ = await self._find(uuid)
        if record is None:
            raise not_found(f"Event source mapping not found: {resource}")
        return dict(record.tags)

    async def tag(self, resource: str, tags: dict[str, str]) -> None:
        await self._change_tags(resource, lambda t: {**t, **tags})

    async def untag(self, resource: str, keys: list[str]) -> None:
        await self._change_tags(resource, lambda t: {k: v for k, v in t.items() if k not in keys})

    async def _change_tags(
        self, resource: str, change: Callable[[dict[str, str]], dict[str, str]]
    ) -> None:
        uuid = self._tag_target(resource)
        if self._declared(uuid) is not None:
            raise self._declared_error(uuid)
        for _ in range(5):  # tags change under a revision check like everything else
            record, _records = await self._find(uuid)
            if record is None:
                raise not_found(f"Event source mapping not found: {resource}")
            try:
                await self._store.replace(record.replace(tags=change(record.tags)))
                return
            except StoreConflict:
                continue
        raise conflict(f"The event source mapping {uuid} keeps changing; retry")

    def _tag_target(self, resource: str) -> str:
        if not _RESOURCE.fullmatch(resource):
            raise ApiError(
                "ValidationException",
                f"1 validation error detected: Value '{resource}' at 'resource' failed to satisfy "
                f"constraint: Member must satisfy regular expression pattern: {RESOURCE_PATTERN}",
            )
        kind, _, rest = resource.split(":", 5)[5].partition(":")
        if kind != "event-source-mapping":
            raise invalid(
                f"Tags of {kind} resources are not kept by this runtime (functions are defined "
                "in its configuration file); only event source mappings can be tagged"
            )
        return rest.lower()

    # ------------------------------------------------------------------ helpers

    def _declared_error(self, uuid: str) -> ApiError:
        return conflict(
            f"The event source mapping {uuid} is declared in the configuration file "
            f"({self._path}); change it there"
        )

    def _validate(self, record: StoredMapping, records: list[StoredMapping]) -> Mapping:
        others = [r for r in records if r.uuid != record.uuid]
        cat = merge(self._document, [*others, record], self._settings, self._path)
        problem = cat.problems.get(record.uuid)
        m = cat.mapping(record.uuid)
        if problem is not None or m is None:
            raise error_for((problem or "invalid mapping").split("; "))
        return m

    async def _check(self, m: Mapping) -> None:
        if m.source.kind in (SourceKind.KAFKA, SourceKind.MSK):
            # As on Lambda, a Kafka mapping is created whatever the brokers say; connection
            # and authentication problems show on the running mapping.
            return
        problem = await self._check_source(m)
        if problem is not None:
            raise invalid(problem)


def _function_of(view: dict[str, Any]) -> str | None:
    arn = view.get("FunctionArn")
    return function_name_of(arn) if isinstance(arn, str) else None


def _encode_marker(offset: int) -> str:
    return base64.urlsafe_b64encode(f"esm:{offset}".encode()).decode()


def _decode_marker(marker: str | None) -> int:
    if not marker:
        return 0
    try:
        text = base64.urlsafe_b64decode(marker.encode()).decode()
        prefix, _, offset = text.partition(":")
        if prefix != "esm":
            raise ValueError(text)
        return max(0, int(offset))
    except ValueError:
        raise invalid(f"Marker: not a marker this API returned ({marker!r})") from None


def _check_starting_position(body: dict[str, Any]) -> None:
    value = body.get("StartingPosition")
    if value is not None and value not in {p.value for p in StartingPosition}:
        raise ApiError(
            "ValidationException",
            f"1 validation error detected: Value '{value}' at 'startingPosition' failed to "
            "satisfy constraint: Member must satisfy enum value set: "
            "[LATEST, AT_TIMESTAMP, TRIM_HORIZON]",
        )


def _apply_update(old: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The body after an update: given fields replace, and Lambda's "empty means remove"
    values (``ScalingConfig: {}``, an empty destination, no filters, ``KMSKeyArn: ""``)
    remove."""
    new = {**old, **given}
    if new.get("ScalingConfig") == {}:
        new.pop("ScalingConfig")
    if new.get("ProvisionedPollerConfig") == {}:
        new.pop("ProvisionedPollerConfig")
    if new.get("KMSKeyArn") == "":
        new.pop("KMSKeyArn")
    filters = new.get("FilterCriteria")
    if isinstance(filters, dict) and not filters.get("Filters"):
        new.pop("FilterCriteria")
    dest = new.get("DestinationConfig")
    if isinstance(dest, dict):
        on_failure = dest.get("OnFailure")
        if isinstance(on_failure, dict) and not on_failure.get("Destination"):
            dest = {k: v for k, v in dest.items() if k != "OnFailure"}
        if not dest or not any(isinstance(v, dict) and v.get("Destination") for v in dest.values()):
            new.pop("DestinationConfig")
        else:
            new["DestinationConfig"] = dest
    return new


def _check_kafka_group(old: dict[str, Any], new: dict[str, Any]) -> None:
    for key in ("SelfManagedKafkaEventSourceConfig", "AmazonManagedKafkaEventSourceConfig"):
        before = (old.get(key) or {}).get("ConsumerGroupId")
        after = (new.get(key) or {}).get("ConsumerGroupId")
        if before != after:
            raise invalid(f"{key}.ConsumerGroupId: cannot be changed after the mapping is created")


def _source_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    keys = ("FunctionName", "Enabled", "SourceAccessConfigurations", "DestinationConfig")
    return any(old.get(k) != new.get(k) for k in keys)


def mapping_uuid_of_arn(arn: str) -> str | None:
    """The UUID in an event source mapping ARN (see :func:`runtime.api.shapes.mapping_arn`)."""
    head, _, tail = arn.rpartition(":event-source-mapping:")
    return tail.lower() if head else None


__all__ = ["MappingService", "mapping_arn", "settled_state"]
