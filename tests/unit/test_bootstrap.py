"""The composition root (revsync.bootstrap): each function's graph built from its settings, with no
network call, the models bound to the settings' tables, and parts replaced by name (how tests give a
function fakes)."""

from __future__ import annotations

import importlib
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from revsync.bootstrap import receiver, worker
from revsync.store import models

from local.template import LocalNames, function_environment
from tests.fakes import FakeStripe

ROOTS = {
    "WebhookFunction": "receiver",
    "WorkerFunction": "worker",
    "TenantApiFunction": "tenant_api",
    "ImporterFunction": "importer",
    "ReconcilerFunction": "reconciler",
    "RollupFunction": "rollup",
}


def _environ(function: str) -> dict[str, str]:
    environ = function_environment(function, LocalNames(region="us-east-1", queue_urls={}))
    return {**environ, "AWS_REGION": "us-east-1"}


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any connection attempt fails the test; the models' tables restored afterwards."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("building a graph made a network call")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    bases = (models.CustomerRecordItem, models.SyncItem, models.TenantsItem, models.RevenueItem)
    before = [model.Meta.table_name for model in bases]
    yield
    for model, name in zip(bases, before, strict=True):
        model.Meta.table_name = name  # type: ignore[assignment]  # None when nothing bound it


@pytest.mark.usefixtures("offline")
@pytest.mark.parametrize("function", sorted(ROOTS))
def test_each_functions_graph_is_built_from_its_settings_without_a_network_call(function: str) -> None:
    root = importlib.import_module(f"revsync.bootstrap.{ROOTS[function]}")
    graph = root.from_environ(_environ(function))
    assert graph.settings == type(graph.settings).from_environ(_environ(function))
    assert all(part is not None for part in graph)


@pytest.mark.usefixtures("offline")
def test_the_worker_binds_the_models_to_its_settings_tables_and_takes_fakes_by_name() -> None:
    fake = FakeStripe()
    graph = worker.from_environ(_environ("WorkerFunction"), stripe=fake, clock=lambda: 42.0)
    assert (graph.stripe, graph.clock()) == (fake, 42.0)
    assert models.CustomerStateItem.Meta.table_name == graph.settings.sync_table
    assert models.TenantItem.Meta.table_name == graph.settings.tenants_table
    assert models.CustomerRecordItem.Meta.table_name == graph.settings.customers_table


@pytest.mark.usefixtures("offline")
def test_the_receivers_graph_is_built_again_whole_not_patched() -> None:
    first = receiver.from_environ(_environ("WebhookFunction"))
    recording: Any = object()
    second = receiver.build(first.settings, queue=recording)
    assert second.queue is recording
    assert first.queue is not recording  # the first graph is left as it was
