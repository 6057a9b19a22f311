"""The revenue rollup's graph (functions/worker/rollup.py): the revenue table's periods and shard
positions, and the states written before the rollup (seeding)."""

import os
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from revsync.infra import aws
from revsync.services.rollup import RollupWriter, UncountedPieces
from revsync.settings import RollupSettings
from revsync.store import models
from revsync.store.rollup import RevenueRollup, UncountedStates


class Rollup(NamedTuple):
    settings: RollupSettings
    rollup: RollupWriter
    pieces: UncountedPieces
    clock: Callable[[], float]


def build(settings: RollupSettings, **overrides: Any) -> Rollup:
    aws.configure(settings.aws)
    models.bind(sync=settings.sync_table, revenue=settings.revenue_table)
    return Rollup(
        settings=settings,
        rollup=RevenueRollup(settings.aws.region),
        pieces=UncountedStates(settings.sync_table),
        clock=time.time,
    )._replace(**overrides)


def from_environ(environ: Mapping[str, str] = os.environ, **overrides: Any) -> Rollup:
    return build(RollupSettings.from_environ(environ), **overrides)
