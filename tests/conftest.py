"""Shared fixtures. Integration tests run the real handlers on moto through local.inprocess."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

# No example may fail for taking long: CI is a shared 2-core machine (hypothesis's default 200 ms
# deadline is a wall-clock check).
settings.register_profile("revsync", deadline=None)
settings.load_profile("revsync")

# Nothing here may reach real AWS, whatever the developer's shell has configured.
for _name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(_name, None)
for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}.items():
    os.environ[_name] = _value
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "revsync")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")


# "Now" for every in-process function: a fixed instant, so no test depends on wall-clock time passing.
FROZEN_NOW = 1_800_000_000


@pytest.fixture
def stack() -> Iterator[object]:
    from local.inprocess import InProcessStack

    with InProcessStack(clock=lambda: FROZEN_NOW) as running:
        yield running
