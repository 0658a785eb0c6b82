"""Execution environments: one invocation at a time per copy of the handler's module.

On Lambda, module-level state belongs to one execution environment, and an environment runs
one invocation at a time. Lambda code relies on it everywhere: Powertools' ``BatchProcessor``
created at module level keeps the current batch on the instance, Powertools ``Metrics`` buffers
per invocation, handlers keep "current request" globals. A worker here runs many invocations of
a function at once, so each concurrent invocation leases an environment: its own instance of
the handler's module, executed from the module's own spec (so relative imports, ``__name__``
and ``__package__`` are the usual ones). Environments are created when needed (a cold start,
run off the event loop) and reused while warm; the first one is the module already imported
when the configuration was loaded.

The difference that remains: modules the handler module imports live once per worker process
(in ``sys.modules``), so state kept at module level in *those* is shared by concurrent
invocations, where on Lambda nothing is. docs/architecture.md says so.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import threading
from dataclasses import dataclass, field
from types import ModuleType

from runtime.invoke.handler import HandlerLoadError, LoadedHandler, load_handler


@dataclass(eq=False)
class Environment:
    handler: LoadedHandler
    module: ModuleType = field(repr=False)
    number: int = 0
    invocations: int = 0


def _fresh_module(module_name: str) -> ModuleType:
    """A new instance of ``module_name`` (not registered in sys.modules)."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.loader is None:
        raise HandlerLoadError("Runtime.ImportModuleError", f"No module named '{module_name}'")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class EnvironmentPool:
    """Warm environments of one function, leased one invocation at a time.

    ``acquire_warm`` never blocks (None when every environment is busy); ``create`` builds a
    new one and may take as long as the module's import takes, so callers run it off the loop.
    Thread-safe: environments are created from pool threads.
    """

    def __init__(self, handler_path: str) -> None:
        self.handler_path = handler_path
        self._module_name, _, self._attr = handler_path.rpartition(".")
        self._free: list[Environment] = []
        self._lock = threading.Lock()
        self._created = 0
        first = load_handler(handler_path)  # the module imported at config load
        self._free.append(Environment(first, importlib.import_module(self._module_name), number=0))
        self._created = 1

    @property
    def size(self) -> int:
        return self._created

    def acquire_warm(self) -> Environment | None:
        with self._lock:
            return self._free.pop() if self._free else None

    def create(self) -> Environment:
        module = _fresh_module(self._module_name)
        func = getattr(module, self._attr, None)
        if func is None or not callable(func):
            raise HandlerLoadError(
                "Runtime.HandlerNotFound",
                f"Handler '{self._attr}' missing on module '{self._module_name}'",
            )
        with self._lock:
            number = self._created
            self._created += 1
        handler = LoadedHandler(
            path=self.handler_path, func=func, is_async=inspect.iscoroutinefunction(func)
        )
        return Environment(handler, module, number=number)

    def release(self, env: Environment) -> None:
        env.invocations += 1
        with self._lock:
            self._free.append(env)

    def discard(self, env: Environment) -> None:
        """Forget an environment whose invocation never finished (stuck handler)."""
        env.invocations += 1
