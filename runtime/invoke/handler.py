"""Finding a user's handler from its dotted path.

Errors use Lambda's own error types (Runtime.ImportModuleError, Runtime.HandlerNotFound) so that
what a user sees at load matches what they would see in CloudWatch Logs.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class HandlerLoadError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


@dataclass(frozen=True, slots=True)
class LoadedHandler:
    path: str
    func: Callable[[Any, Any], Any]
    is_async: bool


def load_handler(path: str) -> LoadedHandler:
    module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise HandlerLoadError(
            "Runtime.MalformedHandlerName", f"Bad handler '{path}': not enough values to unpack"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure of user code
        raise HandlerLoadError(
            "Runtime.ImportModuleError",
            f"Unable to import module '{module_name}': {type(exc).__name__}: {exc}",
        ) from exc
    func = getattr(module, attr, None)
    if func is None:
        raise HandlerLoadError(
            "Runtime.HandlerNotFound", f"Handler '{attr}' missing on module '{module_name}'"
        )
    if not callable(func):
        raise HandlerLoadError(
            "Runtime.HandlerNotFound", f"Handler '{attr}' on module '{module_name}' is not callable"
        )
    return LoadedHandler(path=path, func=func, is_async=inspect.iscoroutinefunction(func))
