"""Environment variables set for a local stack's lifetime and put back as they were afterwards."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from local.template import LocalNames, function_environment, resources_of_type

REGION = "us-east-1"
# Never real AWS: fake credentials, one region, tracing and metrics off.
LOCAL_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
}


@dataclass
class EnvironmentPatch:
    _saved: dict[str, str | None] = field(default_factory=dict)

    def set(self, values: Mapping[str, str]) -> None:
        for key, value in values.items():
            self._saved.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def restore(self) -> None:
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved.clear()


def functions_environment(names: LocalNames) -> dict[str, str]:
    """Every function's variables from the template, for handlers that all run in this process."""
    environment: dict[str, str] = {}
    for logical_id in resources_of_type("AWS::Serverless::Function"):
        environment.update(function_environment(logical_id, names))
    environment.pop("POWERTOOLS_SERVICE_NAME", None)  # differs per function; irrelevant locally
    return environment
