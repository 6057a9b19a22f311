"""Calls the functions' handlers in-process, the way Lambda would (module per function, a context)."""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from local.template import ROOT, load_template, resources_of_type

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass
class LocalContext:
    """The attributes of the Lambda context that Powertools reads."""

    function_name: str
    memory_limit_in_mb: int = 256
    timeout_ms: int = 30_000  # the function's Timeout: what it has left as an invocation starts
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "local"
    log_stream_name: str = "local"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:local:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return self.timeout_ms


@cache
def load_module(logical_id: str) -> ModuleType:
    """Import a function's handler module under a unique name (every function has an ``app.py``).

    From the source tree, or from ``sam build``'s output when ``REVSYNC_LOCAL_BUILD_DIR`` names it
    (bench/worker_cost.py measures the built handlers)."""
    props = load_template()["Resources"][logical_id]["Properties"]
    module_name, _ = props["Handler"].rsplit(".", 1)
    built = os.environ.get("REVSYNC_LOCAL_BUILD_DIR")
    code = Path(built) / logical_id if built else ROOT / props["CodeUri"]
    path = code / f"{module_name.replace('.', '/')}.py"
    unique = f"revsync_function_{logical_id}"
    spec = importlib.util.spec_from_file_location(unique, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique] = module
    # Each function's Powertools Logger is named by its service, read at import: with one name for
    # all, they would share one logging.Logger and one function's keys would show in another's lines.
    service = props.get("Environment", {}).get("Variables", {}).get("POWERTOOLS_SERVICE_NAME", logical_id)
    saved = os.environ.get("POWERTOOLS_SERVICE_NAME")
    os.environ["POWERTOOLS_SERVICE_NAME"] = str(service)
    try:
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            os.environ.pop("POWERTOOLS_SERVICE_NAME", None)
        else:
            os.environ["POWERTOOLS_SERVICE_NAME"] = saved
    return module


def wire(logical_id: str, environ: Mapping[str, str], **overrides: Any) -> Any:
    """Build a function's graph again, as its cold start does (its module's ``bootstrap``, from
    ``environ``), with ``overrides`` (fakes, clocks), and have its handler use it from now on.

    A handler module names its composition root ``bootstrap`` and keeps the graph it builds at
    import in ``deps`` (see revsync.bootstrap): this replaces that graph whole, never a part of it.
    """
    module: Any = load_module(logical_id)
    module.deps = module.bootstrap.from_environ(environ, **overrides)
    return module.deps


def graph(logical_id: str) -> Any:
    """The graph ``logical_id``'s handler runs with (its adapters, as its composition root built them)."""
    module: Any = load_module(logical_id)
    return module.deps


class Wiring:
    """The graphs a local stack's functions run with: each built through its function's composition
    root from the process's environment (the template's variables, resolved locally), with what the
    stack gives every function (``common``: a clock) and what its tests override per function (kept:
    a later ``wire`` of the same function keeps the earlier overrides)."""

    def __init__(self, **common: Any) -> None:
        self._common = common
        self._overrides: dict[str, dict[str, Any]] = {}
        self._environments: dict[str, dict[str, str]] = {}

    def wire(self, logical_id: str, environment: Mapping[str, str] | None = None, **overrides: Any) -> Any:
        """Build ``logical_id``'s graph again with ``overrides`` and the variables in ``environment``
        (over the process's), as a cold start with them would; its handler uses it from now on."""
        kept = self._overrides.setdefault(logical_id, {})
        kept.update(overrides)
        variables = self._environments.setdefault(logical_id, {})
        variables.update(environment or {})
        return wire(logical_id, {**os.environ, **variables}, **{**self._common, **kept})

    def unwire(self, logical_id: str) -> Any:
        """``logical_id``'s graph built again without the overrides and variables given so far."""
        self._overrides.pop(logical_id, None)
        self._environments.pop(logical_id, None)
        return self.wire(logical_id)

    def wire_all(self) -> None:
        for logical_id in resources_of_type("AWS::Serverless::Function"):
            self.wire(logical_id)


def handler(logical_id: str) -> Handler:
    props = load_template()["Resources"][logical_id]["Properties"]
    _, function_name = props["Handler"].rsplit(".", 1)
    fn: Handler = getattr(load_module(logical_id), function_name)
    return fn


def invoke(logical_id: str, event: dict[str, Any]) -> dict[str, Any]:
    template = load_template()
    props = template["Resources"][logical_id]["Properties"]
    memory = int(props.get("MemorySize", 128))
    timeout = int(props.get("Timeout", template.get("Globals", {}).get("Function", {}).get("Timeout", 3)))
    context = LocalContext(function_name=logical_id, memory_limit_in_mb=memory, timeout_ms=timeout * 1000)
    try:
        return handler(logical_id)(event, context)
    finally:
        # With POWERTOOLS_METRICS_DISABLED, Powertools neither publishes nor clears a function's
        # metrics, and prints them all once a metric reaches 100 values: drop them per invocation,
        # as a Lambda container publishes them per invocation.
        metrics = getattr(load_module(logical_id), "metrics", None)
        if metrics is not None and os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() == "true":
            metrics.clear_metrics()
