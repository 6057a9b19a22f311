"""Calls the functions' handlers in-process, the way Lambda would (module per function, a context)."""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from local.template import ROOT, load_template

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
