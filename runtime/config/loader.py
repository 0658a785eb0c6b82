"""Load and validate the YAML file, listing every problem at once.

Each function and each mapping is validated on its own, so one bad field does not hide the
problems of its neighbours; cross-field rules run for every mapping whose fields parsed; every
handler is imported. Only when nothing is wrong does a :class:`RuntimeConfig` come back.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from runtime.config.model import EventSourceMappingConfig, FunctionConfig
from runtime.config.resolved import Function, Mapping, RuntimeConfig, derive_mapping_uuid
from runtime.config.rules import check_mapping, resolve_source
from runtime.config.settings import Settings
from runtime.config.sources import TRAITS
from runtime.invoke.handler import HandlerLoadError, load_handler

_TOP_LEVEL = {"functions", "eventSourceMappings"}
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


def _given_aliases(model: BaseModel) -> set[str]:
    fields = type(model).model_fields
    return {fields[name].alias or name for name in model.model_fields_set}


def _validate_leniently(
    model: type[M], body: Any, where: str, problems: list[str]
) -> tuple[M | None, bool]:
    """Validate ``body``; on failure, report and retry without the offending top-level fields.

    The retry lets the cross-field rules and handler import still run on the rest of the
    definition, so a typo in one field does not hide an unrelated mistake elsewhere. Returns
    the model (possibly from the retry) and whether the original body was valid.
    """
    try:
        return model.model_validate(body), True
    except ValidationError as exc:
        problems.extend(_pydantic_problems(where, exc))
        if not isinstance(body, dict):
            return None, False
        bad = {err["loc"][0] for err in exc.errors() if err["loc"]}
        try:
            return model.model_validate({k: v for k, v in body.items() if k not in bad}), False
        except ValidationError:
            return None, False


def function_name_of(reference: str) -> str | None:
    """The function name in a FunctionName reference (a name, an ARN or a partial ARN)."""
    m = _FUNCTION_NAME.match(reference)
    return m["name"] if m else None


def load_config(
    path: str | Path,
    settings: Settings | None = None,
    *,
    import_handlers: bool = True,
) -> RuntimeConfig:
    settings = settings or Settings()
    path = str(path)
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(path, [f"cannot read file: {exc.strerror}"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(path, [f"invalid YAML: {exc}"]) from exc
    return build_config(raw, path, settings, import_handlers=import_handlers)


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

    functions = _load_functions(raw.get("functions") or {}, settings, problems, import_handlers)
    mappings = _load_mappings(raw.get("eventSourceMappings") or [], functions, problems)
    _check_environment_conflicts(functions, problems)

    if problems:
        raise ConfigError(path, problems)
    return RuntimeConfig(functions=functions, mappings=tuple(mappings))


def _load_functions(
    raw: Any, settings: Settings, problems: list[str], import_handlers: bool
) -> dict[str, Function]:
    if not isinstance(raw, dict):
        problems.append("functions: must be a mapping of function name to definition")
        return {}
    configs: dict[str, FunctionConfig] = {}
    for name, body in raw.items():
        where = f"functions.{name}"
        if not isinstance(name, str) or not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", name):
            problems.append(f"{where}: function names are 1-64 letters, digits, '-' or '_'")
            continue
        cfg, _ = _validate_leniently(FunctionConfig, body, where, problems)
        if cfg is not None:
            configs[name] = cfg
    if import_handlers:
        # Handler modules may read their environment at import time, as on Lambda.
        for cfg in configs.values():
            if cfg.environment:
                os.environ.update(cfg.environment.variables)
        for name, cfg in configs.items():
            try:
                load_handler(cfg.handler)
            except HandlerLoadError as exc:
                problems.append(f"functions.{name}.Handler: {exc}")
    # Invalid functions are kept so that mappings naming them are checked, not reported missing.
    return {
        name: Function.from_config(name, cfg, settings.region, settings.account_id)
        for name, cfg in configs.items()
    }


def _load_mappings(raw: Any, functions: dict[str, Function], problems: list[str]) -> list[Mapping]:
    if not isinstance(raw, list):
        problems.append("eventSourceMappings: must be a list")
        return []
    mappings: list[Mapping] = []
    seen: dict[tuple[str, str], int] = {}
    uuids: dict[str, int] = {}
    for i, body in enumerate(raw):
        where = f"eventSourceMappings[{i}]"
        cfg, valid = _validate_leniently(EventSourceMappingConfig, body, where, problems)
        if cfg is None:
            continue
        own: list[str] = []
        source = resolve_source(cfg, own)
        if source is not None:
            check_mapping(cfg, source, _given_aliases(cfg), own)
        fname = function_name_of(cfg.function_name)
        function = functions.get(fname) if fname else None
        if fname is None:
            own.append(f"FunctionName: not a function name or ARN ({cfg.function_name!r})")
        elif function is None:
            own.append(f"FunctionName: Function does not exist ({fname!r} is not in functions)")
        problems.extend(f"{where}.{p}" for p in own)
        if own or not valid or source is None or function is None:
            continue

        key = (function.name, source.identity)
        if key in seen:
            problems.append(
                f"{where}: An event source mapping with event source ({source.identity}) and "
                f"function ({function.name}) already exists (eventSourceMappings[{seen[key]}])"
            )
            continue
        seen[key] = i
        mapping_uuid = (cfg.uuid or derive_mapping_uuid(function.name, source)).lower()
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


def _check_environment_conflicts(functions: dict[str, Function], problems: list[str]) -> None:
    """Functions share worker processes, hence os.environ: a variable must agree everywhere."""
    owner: dict[str, tuple[str, str]] = {}
    for fn in functions.values():
        for key, value in fn.environment.items():
            if key in owner and owner[key][1] != value:
                problems.append(
                    f"functions.{fn.name}.Environment.Variables.{key}: set to a different value "
                    f"by function {owner[key][0]!r}; functions share worker processes, so an "
                    "environment variable must have one value"
                )
            else:
                owner.setdefault(key, (fn.name, value))
