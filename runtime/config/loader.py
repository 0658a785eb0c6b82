"""Load and validate the YAML file, listing every problem at once.

Each function and each mapping is validated on its own, so one bad field does not hide the
problems of its neighbours; cross-field rules run for every mapping whose fields parsed; every
handler is imported. Only when nothing is wrong does a :class:`RuntimeConfig` come back.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from collections.abc import Mapping as MappingABC
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from runtime.config.model import EventSourceMappingConfig, FunctionConfig
from runtime.config.resolved import Function, Mapping, RuntimeConfig, derive_mapping_uuid
from runtime.config.rules import check_mapping, resolve_source
from runtime.config.settings import Settings
from runtime.config.sources import TRAITS, EventSource, SourceKind
from runtime.invoke.handler import HandlerLoadError, load_handler

_TOP_LEVEL = {"functions", "eventSourceMappings"}
_FUNCTION_PLACEHOLDER = "placeholder-function"
# Names Lambda reserves for its runtime, and names that would change the runtime's own AWS
# clients (endpoints, profiles, credential files, roles, CA bundles, proxies), which share the
# worker process with the function's handlers: a function may not set them.
RESERVED_ENVIRONMENT = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_DEFAULT_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_REGION",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "LAMBDA_RUNTIME_DIR",
        "LAMBDA_TASK_ROOT",
        # The runtime's AWS clients (botocore reads these).
        "AWS_ENDPOINT_URL",
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_ROLE_ARN",
        "AWS_ROLE_SESSION_NAME",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CA_BUNDLE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        "AWS_EC2_METADATA_DISABLED",
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
        "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE",
        "AWS_EC2_METADATA_V1_DISABLED",
        "AWS_USE_FIPS_ENDPOINT",
        "AWS_USE_DUALSTACK_ENDPOINT",
        "AWS_STS_REGIONAL_ENDPOINTS",
        "PROMETHEUS_MULTIPROC_DIR",
    }
)
# Reserved whatever their case or suffix.
_RESERVED_PREFIXES = ("ESM_", "AWS_ENDPOINT_URL_")
_RESERVED_ANY_CASE = frozenset({"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"})


def is_reserved_variable(name: str) -> bool:
    return (
        name in RESERVED_ENVIRONMENT
        or name.startswith(_RESERVED_PREFIXES)
        or name.upper() in _RESERVED_ANY_CASE
    )


@contextlib.contextmanager
def function_environment(variables: MappingABC[str, str]) -> Iterator[None]:
    """The process environment with a function's variables set, restored afterwards.

    For importing a handler outside its own worker (``validate``): module top levels may read
    their environment, as on Lambda, but no variable may outlive the import.
    """
    saved = {k: os.environ.get(k) for k in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_FUNCTION_NAME = re.compile(
    r"^(?:arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\d{12}:function:|\d{12}:function:)?"
    r"(?P<name>[a-zA-Z0-9_-]{1,64})(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9_-]+))?$"
)


class ConfigError(Exception):
    """Every problem found in a configuration file."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} problem(s)\n{lines}")


def _loc(prefix: str, loc: tuple[int | str, ...]) -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _pydantic_problems(prefix: str, exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False):
        where = _loc(prefix, tuple(err["loc"]))
        if err["type"] == "extra_forbidden":
            problems.append(f"{where}: unknown field")
            continue
        value = err.get("input")
        shown = "" if isinstance(value, dict | list) else f" (got {value!r:.80})"
        problems.append(f"{where}: {err['msg']}{shown}")
    return problems


M = TypeVar("M", bound=BaseModel)


def _validate_leniently(
    model: type[M],
    body: Any,
    where: str,
    problems: list[str],
    placeholders: dict[str, Any],
) -> tuple[M | None, set[str]]:
    """Validate ``body``; on failure, report and retry with the offending fields set aside.

    The retry drops every top-level field that failed and fills required ones with harmless
    placeholders, so that the cross-field rules and handler import still run on the rest of
    the definition: a typo in one field does not hide an unrelated mistake elsewhere. Returns
    the model (possibly from the retry) and the top-level fields that were invalid or missing
    (empty when the body was valid).
    """
    try:
        return model.model_validate(body), set()
    except ValidationError as exc:
        problems.extend(_pydantic_problems(where, exc))
        bad = {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
        if not isinstance(body, dict):
            return None, bad or {"*"}
        retry = {k: v for k, v in body.items() if k not in bad}
        for key, value in placeholders.items():
            retry.setdefault(key, value)
        try:
            return model.model_validate(retry), bad
        except ValidationError:
            return None, bad


def function_name_of(reference: str) -> str | None:
    """The function name in a FunctionName reference (a name, an ARN or a partial ARN)."""
    m = _FUNCTION_NAME.match(reference)
    return m["name"] if m else None


def function_qualifier_of(reference: str) -> str | None:
    """The version or alias in a FunctionName reference (``$LATEST``, ``1``, ``live``), if any."""
    m = _FUNCTION_NAME.match(reference)
    return m["qualifier"] if m else None


def load_config(
    path: str | Path,
    settings: Settings | None = None,
    *,
    import_handlers: bool = True,
) -> RuntimeConfig:
    settings = settings or Settings()
    path = str(path)
    return build_config(read_document(path), path, settings, import_handlers=import_handlers)


def read_document(path: str) -> Any:
    """The configuration file as parsed YAML (not validated yet)."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(path, [f"cannot read file: {exc.strerror}"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(path, [f"invalid YAML: {exc}"]) from exc


def build_config(
    raw: Any, path: str, settings: Settings, *, import_handlers: bool = True
) -> RuntimeConfig:
    problems: list[str] = []
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            path, ["top level must be a mapping with functions and eventSourceMappings"]
        )
    for key in sorted(set(raw) - _TOP_LEVEL, key=str):
        problems.append(f"{key}: unknown field (expected functions, eventSourceMappings)")

    raw_functions = raw.get("functions")
    raw_mappings = raw.get("eventSourceMappings")
    functions, readable = _load_functions(
        {} if raw_functions is None else raw_functions, settings, problems, import_handlers
    )
    mappings = _load_mappings(
        [] if raw_mappings is None else raw_mappings,
        functions,
        set(readable),
        problems,
        max_filters=settings.max_filters,
    )
    _check_environment(readable, problems)

    if problems:
        raise ConfigError(path, problems)
    return RuntimeConfig(functions=functions, mappings=tuple(mappings))


_HANDLER_PLACEHOLDER = "placeholder.handler"


def _load_functions(
    raw: Any, settings: Settings, problems: list[str], import_handlers: bool
) -> tuple[dict[str, Function], dict[str, FunctionConfig]]:
    """Valid functions by name, and every function definition that could be read at all.

    The second dict lets later checks (mappings naming a function, environment conflicts)
    see functions that have a problem of their own, so those checks are not skipped.
    """
    if not isinstance(raw, dict):
        problems.append("functions: must be a mapping of function name to definition")
        return {}, {}
    readable: dict[str, FunctionConfig] = {}
    valid: list[str] = []
    for name, body in raw.items():
        where = f"functions.{name}"
        if not isinstance(name, str) or not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", name):
            problems.append(f"{where}: function names are 1-64 letters, digits, '-' or '_'")
            continue
        cfg, invalid = _validate_leniently(
            FunctionConfig, body, where, problems, {"Handler": _HANDLER_PLACEHOLDER}
        )
        if cfg is None:
            continue
        readable[name] = cfg
        if not invalid:
            valid.append(name)
    if import_handlers:
        for name, cfg in readable.items():
            if cfg.handler != _HANDLER_PLACEHOLDER:
                _import_handler(name, cfg, problems)
    functions = {
        name: Function.from_config(name, readable[name], settings.region, settings.account_id)
        for name in valid
    }
    return functions, readable


def _import_handler(name: str, cfg: FunctionConfig, problems: list[str]) -> None:
    # Handler modules may read their environment at import time, as on Lambda.
    variables = cfg.environment.variables if cfg.environment else {}
    try:
        with function_environment(variables):
            load_handler(cfg.handler)
    except HandlerLoadError as exc:
        problems.append(f"functions.{name}.Handler: {exc}")


def _load_mappings(
    raw: Any,
    functions: dict[str, Function],
    named: set[str],
    problems: list[str],
    *,
    max_filters: int,
) -> list[Mapping]:
    if not isinstance(raw, list):
        problems.append("eventSourceMappings: must be a list")
        return []
    mappings: list[Mapping] = []
    seen: dict[tuple[str, str], tuple[int, str]] = {}
    uuids: dict[str, int] = {}
    for i, body in enumerate(raw):
        where = f"eventSourceMappings[{i}]"
        cfg, invalid = _validate_leniently(
            EventSourceMappingConfig, body, where, problems, {"FunctionName": _FUNCTION_PLACEHOLDER}
        )
        if cfg is None:
            continue
        given = {k for k in body if isinstance(k, str)} if isinstance(body, dict) else set()
        own: list[str] = []
        source = resolve_source(cfg, invalid, own)
        if source is not None:
            check_mapping(cfg, source, given, own, invalid=invalid, max_filters=max_filters)
        fname = function_name_of(cfg.function_name)
        function = functions.get(fname) if fname else None
        if cfg.function_name == _FUNCTION_PLACEHOLDER:
            pass  # missing or invalid: already reported
        elif fname is None:
            own.append(f"FunctionName: not a function name or ARN ({cfg.function_name!r})")
        elif function is None and fname not in named:
            own.append(f"FunctionName: Function does not exist ({fname!r} is not in functions)")
        problems.extend(f"{where}.{p}" for p in own)
        if own or invalid or source is None or function is None:
            continue

        key = (function.name, source.identity + "|" + ",".join(cfg.topics or []))
        mapping_uuid = (cfg.uuid or derive_mapping_uuid(function.name, source)).lower()
        if key in seen:
            first, first_uuid = seen[key]
            problems.append(
                f"{where}: {duplicate_mapping_message(source, function, first_uuid, cfg.topics)} "
                f"(eventSourceMappings[{first}])"
            )
            continue
        seen[key] = (i, mapping_uuid)
        if mapping_uuid in uuids:
            problems.append(
                f"{where}.UUID: {mapping_uuid} is already used by eventSourceMappings"
                f"[{uuids[mapping_uuid]}]"
            )
            continue
        uuids[mapping_uuid] = i

        traits = TRAITS[source.kind]
        mappings.append(
            Mapping(
                uuid=mapping_uuid,
                index=i,
                function=function,
                source=source,
                enabled=cfg.enabled,
                batch_size=cfg.batch_size or traits.default_batch_size,
                batching_window_seconds=(
                    float(cfg.maximum_batching_window_in_seconds)
                    if cfg.maximum_batching_window_in_seconds is not None
                    else traits.default_window_seconds
                ),
                maximum_concurrency=(
                    cfg.scaling_config.maximum_concurrency if cfg.scaling_config else None
                ),
                report_batch_item_failures=cfg.reports_batch_item_failures,
                filter_patterns=tuple(
                    f.pattern for f in (cfg.filter_criteria.filters if cfg.filter_criteria else [])
                ),
                raw=cfg,
            )
        )
    return mappings


def duplicate_mapping_message(
    source: EventSource, function: Function, existing: str, topics: list[str] | None = None
) -> str:
    """Lambda's ResourceConflictException text for a second mapping of one source and function,
    per source as AWS words it (recorded in the conformance snapshots)."""
    tail = f"Please update or delete the existing mapping with UUID {existing}"
    if source.kind is SourceKind.SQS:
        return (
            f'An event source mapping with SQS arn (" {source.arn} ") and function '
            f'(" {function.name} ") already exists. {tail}'
        )
    if source.kind in (SourceKind.KINESIS, SourceKind.DYNAMODB):
        return (
            f'The event source arn (" {source.arn} ") and function (" {function.name} ") '
            f"provided mapping already exists. {tail}"
        )
    servers = source.arn if source.kind is SourceKind.MSK else source.name.rpartition("/")[0]
    return (
        f'An event source mapping with event source ("{servers}"), function '
        f'("{function.arn}"), topics ("{",".join(topics or [])}") already exists. {tail}'
    )


def _check_environment(functions: dict[str, FunctionConfig], problems: list[str]) -> None:
    """Variables a function may not set. Each function runs in worker processes of its own, so
    two functions may give one variable different values."""
    for name, cfg in functions.items():
        variables = cfg.environment.variables if cfg.environment else {}
        for key in variables:
            if is_reserved_variable(key):
                problems.append(
                    f"functions.{name}.Environment.Variables.{key}: reserved (Lambda's runtime "
                    "variables, ESM_* settings and the variables that configure the runtime's "
                    "own AWS clients and proxies cannot be set by a function)"
                )
