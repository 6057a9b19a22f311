"""A customer's MRR history on DynamoDB (moto): the state keeps its newest seconds, older ones move to
history archives written with the state that counts them (revsync.domain.history_archive).

Through the write path: a customer whose quantity changes daily keeps a state of a bounded size and
writes each archive once; a late observation that falls into an archived period (and a backfill's
import, which enters years back) gives the timeline and months of the whole set, and its duplicate
writes nothing; a writer whose state write loses leaves no archive; a state holding its whole
history (the format before archives) is converted by its next save.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import boto3
import pytest
from pynamodb.transactions import TransactWrite
from revsync.domain.events import Observation, Source, observation_of, parse_event
from revsync.domain.history import HistoryLog, history_entries, mrr_timeline, revenue_totals
from revsync.domain.history_archive import SPILL_AT, HistoryUpdate, KeptHistory, history_after
from revsync.domain.snapshots import parse_subscription
from revsync.domain.stored_state import ConcurrentUpdate, StateWrite
from revsync.domain.tenancy import Connection, Tenant
from revsync.services.sync import apply_observation
from revsync.store import models
from revsync.store.customers import CustomerStore

from local import stripe_shapes as S
from local.inprocess import InProcessStack
from tests.fakes import FakeStripe, FakeTenants
from tests.integration.conftest import DynamoCustomers

pytestmark = pytest.mark.integration

DAY = 86_400
START = 1_767_225_600  # 2026-01-01


def _tenants() -> FakeTenants:
    return FakeTenants(
        {"hist": Tenant("hist", Connection("connected", "oauth", "acct_hist")).with_config("id")}
    )


def _seats(day: float, quantity: int, sub_id: str = "sub_a", source: Source = "updated") -> Observation:
    raw = S.subscription(
        "cus_ada",
        [{**S.subscription_item(S.price(1000, id="price_seat"), quantity=quantity), "id": f"si_{sub_id}"}],
        id=sub_id,
        created=START - 200 * DAY,
    )
    return Observation(
        snapshot=parse_subscription(raw), observed_at=START + int(day * DAY), source=source, event_id=None
    )


def _apply(store: CustomerStore, observation: Observation, imported: bool = False) -> None:
    apply_observation(
        "hist", observation, tenants=_tenants(), customers=store, stripe=FakeStripe(), imported=imported
    )


def _state_bytes() -> int:
    """The state item's size as DynamoDB bills a write: attribute names plus values."""
    item: dict[str, Any] = boto3.client("dynamodb").get_item(
        TableName=str(models.SyncItem.Meta.table_name),  # as the stack bound it
        Key={"pk": {"S": models.sync_partition("hist", "cus_ada")}, "sk": {"S": models.STATE_SK}},
    )["Item"]
    size = 0
    for name, value in item.items():
        ((kind, raw),) = value.items()
        size += len(name) + (len(bytes(raw)) if kind == "B" else len(str(raw).encode()))
    return size


@pytest.fixture
def archive_writes(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every history archive the store puts, by key."""
    written: Counter[str] = Counter()
    original = TransactWrite.save

    def counted(transaction: TransactWrite, model: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(model, models.HistoryArchiveItem):
            written[model.sk] += 1
        original(transaction, model, *args, **kwargs)

    monkeypatch.setattr(TransactWrite, "save", counted)
    return written


def _expected(observations: list[tuple[Observation, bool]]) -> tuple[tuple[int, str | None, int], ...]:
    log = HistoryLog().with_entries(
        e for o, imported in observations for e in history_entries(o, imported=imported)
    )
    return tuple(mrr_timeline("cus_ada", log.observations()))


def test_daily_changes_keep_a_bounded_state_and_write_each_archive_once(
    stack: InProcessStack, archive_writes: Counter[str]
) -> None:
    store, seen, sizes = DynamoCustomers(), [], []
    for day in range(90):
        seen.append((_seats(day, 1 + day % 9), False))
        _apply(store, seen[-1][0])
        sizes.append(_state_bytes())
    stored = store.load("hist", "cus_ada")
    assert stored.history.archived >= 6
    assert len({e.at for e in stored.history.log.entries}) < SPILL_AT
    assert set(archive_writes.values()) == {1}  # in order: each archive written once
    assert len(archive_writes) == stored.history.archived
    # The state stops growing once it spills: the last month's largest is the first month's.
    assert max(sizes[-30:]) <= max(sizes[:30]) + 64
    assert max(sizes) < 2048  # two write units at most per state write
    assert store.timeline("hist", "cus_ada") == _expected(seen)
    assert store.revenue_totals("hist") == revenue_totals([_expected(seen)])


def test_a_late_observation_in_an_archived_period_gives_the_whole_sets_timeline(
    stack: InProcessStack, archive_writes: Counter[str]
) -> None:
    store, seen = DynamoCustomers(), []
    for day in range(40):
        seen.append((_seats(2 * day, 1 + day % 4), False))
        _apply(store, seen[-1][0])
    before = store.load("hist", "cus_ada")
    assert before.history.archived >= 2
    archive_writes.clear()

    late = _seats(3, 30)  # three days in: long archived, and it changes MRR until day 4
    seen.append((late, False))
    _apply(store, late)
    assert store.timeline("hist", "cus_ada") == _expected(seen)
    assert store.revenue_totals("hist") == revenue_totals([_expected(seen)])
    first = min(store.history_archive("hist", "cus_ada"), key=lambda chunk: chunk.number)
    assert list(archive_writes) == [f"history#{first.until:012d}"]  # only the one whose piece changed

    version = store.load("hist", "cus_ada").version
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "history_archive", None)  # not read whole
        _apply(store, late)  # delivered again: the archive holding it has it; nothing is written
    assert store.load("hist", "cus_ada").version == version

    # A backfill reads a subscription the webhooks never saw: it enters at its start, 200 days back,
    # and runs through every archived piece since.
    imported = _seats(80, 2, sub_id="sub_b", source="fetched")
    seen.append((imported, True))
    _apply(store, imported, imported=True)
    assert store.timeline("hist", "cus_ada") == _expected(seen)
    assert store.revenue_totals("hist") == revenue_totals([_expected(seen)])


def test_a_spill_whose_state_write_lost_leaves_no_archive(stack: InProcessStack) -> None:
    store = DynamoCustomers()
    for day in range(SPILL_AT - 1):
        _apply(store, _seats(day, 1 + day % 3))
    stale = store.load("hist", "cus_ada")
    assert stale.history.archived == 0
    _apply(store, _seats(50, 7))  # another worker's write lands first (and spills)
    counted = store.history_archive("hist", "cus_ada")
    assert len(counted) == 1

    # This one would spill too, from the same version, an archive holding its own observation.
    update = history_after(stale.history, history_entries(_seats(5.5, 2, sub_id="sub_b")))
    assert update is not None
    assert update.chunks[0] != counted[0]
    with pytest.raises(ConcurrentUpdate):
        store.save(
            StateWrite("hist", stale, stale.objects, None, "cus_ada", stale.config_version, history=update)
        )
    assert store.history_archive("hist", "cus_ada") == counted  # the counted archive is untouched


def test_a_state_holding_its_whole_history_is_converted_by_its_next_save(stack: InProcessStack) -> None:
    """The format before archives: every observation in the state. Its next save (here a paid
    invoice, no history) moves all but the newest seconds into archives; the timeline stays."""
    store, seen = DynamoCustomers(), [(_seats(day, 1 + day % 5), False) for day in range(3 * SPILL_AT)]
    log = HistoryLog().with_entries(e for o, _ in seen for e in history_entries(o))
    whole = tuple(mrr_timeline("cus_ada", log.observations()))
    empty = store.load("hist", "cus_ada")
    store.save(
        StateWrite(
            "hist", empty, empty.objects, None, "cus_ada", 0, history=HistoryUpdate(KeptHistory(log, whole))
        )
    )
    state = models.CustomerStateItem.get(models.sync_partition("hist", "cus_ada"), models.STATE_SK)
    assert set(state.objects["history"]) == {"views", "entries"}  # as the previous version wrote it
    assert state.timeline_start is None

    invoice = S.invoice("cus_ada", "sub_a", amount_paid=1000, paid_at=START + 60 * DAY, id="in_1")
    paid = S.event("invoice.paid", invoice, created=START + 60 * DAY, account="acct_hist")
    observation = observation_of(parse_event(json.dumps(paid).encode()))
    assert observation is not None
    _apply(store, observation)
    converted = store.load("hist", "cus_ada")
    assert converted.history.archived >= 1
    assert len({e.at for e in converted.history.log.entries}) < SPILL_AT
    assert store.timeline("hist", "cus_ada") == whole
    assert store.revenue_totals("hist") == revenue_totals([whole])
