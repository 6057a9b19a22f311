"""Paid invoices on DynamoDB (moto): the state keeps the newest inline, older ones move to archives.

A paid invoice is kept in the customer's state item; when more than ``INLINE_INVOICES`` would be
there, the inline ones move into an archive item first, and the state write counts it. These tests
lose state writes on purpose (another worker's write lands first) and check that an archive whose
state write lost never counts, nor overwrites one that does; that a long-lived customer's state stays
one write unit however many invoices it pays; and that states of the previous format (one numbered
item per invoice) count what they counted and are converted by their next save.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import boto3
import pytest
from revsync.domain.events import Observation, observation_of, parse_event
from revsync.domain.stored_state import INLINE_INVOICES, ConcurrentUpdate, StateWrite
from revsync.domain.tenancy import Connection, Tenant
from revsync.services.sync import apply_observation
from revsync.store import models
from revsync.store.customers import CustomerStore

from local import stripe_shapes as S
from local.inprocess import InProcessStack
from tests.fakes import FakeStripe, FakeTenants
from tests.integration.conftest import DynamoCustomers

ACCOUNT = "acct_invoices"
DAY = 86_400
START = 1_767_225_600  # 2026-01-01


def _tenants() -> FakeTenants:
    return FakeTenants(
        {"inv": Tenant("inv", Connection("connected", "oauth", ACCOUNT)).with_config("metadata.app_id")}
    )


def _observed(raw: dict[str, Any]) -> Observation:
    observation = observation_of(parse_event(json.dumps(raw).encode()))
    assert observation is not None
    return observation


def _paid(number: int) -> Observation:
    paid_at = START + number * 30 * DAY
    invoice = S.invoice("cus_ada", None, amount_paid=100, paid_at=paid_at, id=f"in_{number:03d}")
    return _observed(S.event("invoice.paid", invoice, created=paid_at, account=ACCOUNT))


def _apply(store: CustomerStore, tenants: FakeTenants, observation: Observation) -> None:
    apply_observation("inv", observation, tenants=tenants, customers=store, stripe=FakeStripe())


def _lose_state_write(store: CustomerStore, tenants: FakeTenants, invoice: Observation) -> None:
    """A worker puts ``invoice``'s item, but another worker's state write lands before its own."""
    stale = store.load("inv", "cus_ada")
    _apply(store, tenants, _observed(S.event("customer.updated", _ada(name="moved on"), created=START + 1)))
    objects = dataclasses.replace(
        stale.objects, invoices={**stale.objects.invoices, str(invoice["snapshot"]["id"]): invoice}
    )
    with pytest.raises(ConcurrentUpdate):
        store.save(StateWrite("inv", stale, objects, invoice, "u-ada", stale.config_version))


def _ada(name: str = "Ada") -> dict[str, Any]:
    return S.customer("cus_ada", name=name, metadata={"app_id": "u-ada"}, created=START)


def _total_paid(store: DynamoCustomers) -> int:
    record = store.get_record("inv", "u-ada")
    assert record is not None
    return int(record["total_paid"])


def _state_bytes() -> int:
    """The state item's size as DynamoDB bills a write: attribute names plus values."""
    item: dict[str, Any] = boto3.client("dynamodb").get_item(
        TableName=str(models.SyncItem.Meta.table_name),  # as the stack bound it
        Key={"pk": {"S": models.sync_partition("inv", "cus_ada")}, "sk": {"S": models.STATE_SK}},
    )["Item"]
    size = 0
    for name, value in item.items():
        ((kind, raw),) = value.items()  # one type per attribute value
        size += len(name) + (len(bytes(raw)) if kind == "B" else len(str(raw).encode()))
    return size


def test_an_invoice_whose_state_write_was_lost_counts_once_its_event_is_retried(
    stack: InProcessStack,
) -> None:
    store, tenants = DynamoCustomers(), _tenants()
    _apply(store, tenants, _observed(S.event("customer.created", _ada(), created=START, account=ACCOUNT)))
    lost = _paid(1)
    _lose_state_write(store, tenants, lost)
    assert store.load("inv", "cus_ada").objects.invoices == {}  # the item is there, not counted

    _apply(store, tenants, lost)  # SQS delivers the event again
    assert set(store.load("inv", "cus_ada").objects.invoices) == {"in_001"}
    assert _total_paid(store) == 100


def _archives() -> dict[int, list[str]]:
    pk = models.sync_partition("inv", "cus_ada")
    return {
        int(item.number): [doc[0] for doc in item.invoices]
        for item in models.SyncItem.query(pk, consistent_read=True)
        if isinstance(item, models.InvoiceArchiveItem)
    }


def _stale_save(store: CustomerStore, stale: Any, invoice: Observation) -> None:
    objects = dataclasses.replace(
        stale.objects, invoices={**stale.objects.invoices, str(invoice["snapshot"]["id"]): invoice}
    )
    with pytest.raises(ConcurrentUpdate):
        store.save(StateWrite("inv", stale, objects, invoice, "u-ada", stale.config_version))


def test_a_long_lived_customer_keeps_a_one_unit_state_and_every_invoice(stack: InProcessStack) -> None:
    store, tenants = DynamoCustomers(), _tenants()
    _apply(store, tenants, _observed(S.event("customer.created", _ada(), created=START, account=ACCOUNT)))
    sizes = []
    for number in range(1, 61):  # five years of monthly invoices
        _apply(store, tenants, _paid(number))
        sizes.append(_state_bytes())
    counted = store.load("inv", "cus_ada").objects.invoices
    assert sorted(counted) == [f"in_{n:03d}" for n in range(1, 61)]
    assert _total_paid(store) == 6000
    assert max(sizes) < 1024  # one write unit per state write, the 60th invoice as the first
    # Every INLINE_INVOICES + 1st invoice moves the inline ones to an archive: the state does not grow.
    cycle = INLINE_INVOICES
    assert max(sizes[-cycle:]) - max(sizes[cycle : 2 * cycle]) < 16
    archives = _archives()
    assert sorted(archives) == list(range(1, 60 // cycle))  # one archive write per INLINE_INVOICES invoices
    assert all(len(ids) == cycle for ids in archives.values())


def test_an_archive_whose_state_write_lost_does_not_count_and_is_replaced(stack: InProcessStack) -> None:
    store, tenants = DynamoCustomers(), _tenants()
    _apply(store, tenants, _observed(S.event("customer.created", _ada(), created=START, account=ACCOUNT)))
    for number in range(1, INLINE_INVOICES + 1):
        _apply(store, tenants, _paid(number))
    stale = store.load("inv", "cus_ada")  # inline list full: its next invoice archives them first
    _apply(store, tenants, _observed(S.event("customer.updated", _ada(name="moved on"), created=START + 1)))
    _stale_save(store, stale, _paid(50))  # archive 1 written, its state write lost
    assert _archives() == {1: [f"in_{n:03d}" for n in range(1, INLINE_INVOICES + 1)]}
    assert "in_050" not in store.load("inv", "cus_ada").objects.invoices  # not counted: archived is 0
    assert _total_paid(store) == 100 * INLINE_INVOICES

    _apply(store, tenants, _paid(INLINE_INVOICES + 1))  # archive 1 written again, by a newer state
    _apply(store, tenants, _paid(50))  # the lost one's event retried
    counted = store.load("inv", "cus_ada").objects.invoices
    assert sorted(counted) == [f"in_{n:03d}" for n in (*range(1, INLINE_INVOICES + 2), 50)]
    assert _total_paid(store) == 100 * (INLINE_INVOICES + 2)


def test_a_stale_writer_never_overwrites_a_counted_archive(stack: InProcessStack) -> None:
    """Its inline invoices may differ from those of the newer state that archived them (an invoice
    seen again since): the archive keeps the newer state's, and the stale writer retries."""
    store, tenants = DynamoCustomers(), _tenants()
    _apply(store, tenants, _observed(S.event("customer.created", _ada(), created=START, account=ACCOUNT)))
    for number in range(1, INLINE_INVOICES + 1):
        _apply(store, tenants, _paid(number))
    stale = store.load("inv", "cus_ada")
    seen_again = _paid(1)
    _apply(store, tenants, {**seen_again, "observed_at": seen_again["observed_at"] + DAY})
    _apply(store, tenants, _paid(INLINE_INVOICES + 1))  # archives the inline ones, counted
    counted_archive = store.load("inv", "cus_ada").objects.invoices["in_001"]
    assert counted_archive["observed_at"] == seen_again["observed_at"] + DAY

    _stale_save(store, stale, _paid(60))  # would archive its own (older) inline invoices as number 1
    assert store.load("inv", "cus_ada").objects.invoices["in_001"] == counted_archive
    _apply(store, tenants, _paid(60))  # its retry, on the current state
    assert _total_paid(store) == 100 * (INLINE_INVOICES + 2)


def test_an_archived_invoice_seen_again_changes_nothing(stack: InProcessStack) -> None:
    store, tenants = DynamoCustomers(), _tenants()
    _apply(store, tenants, _observed(S.event("customer.created", _ada(), created=START, account=ACCOUNT)))
    for number in range(1, 2 * INLINE_INVOICES + 1):
        _apply(store, tenants, _paid(number))
    before = store.load("inv", "cus_ada")
    again = _paid(1)  # a backfill reads it again, later
    _apply(store, tenants, {**again, "observed_at": again["observed_at"] + 90 * DAY})
    after = store.load("inv", "cus_ada")
    assert after.objects.invoices == before.objects.invoices
    assert after.invoices == before.invoices
    assert _total_paid(store) == 100 * 2 * INLINE_INVOICES


def test_a_state_of_the_previous_format_counts_and_is_converted(stack: InProcessStack) -> None:
    """The previous format: one item per paid invoice, numbered; the state lists the last eight it
    counted and counts every older number. Item 14 lost its state write (numbered, not counted)."""
    store, tenants = DynamoCustomers(), _tenants()
    _apply(store, tenants, _observed(S.event("customer.created", _ada(), created=START, account=ACCOUNT)))
    pk = models.sync_partition("inv", "cus_ada")
    for number in range(1, 15):
        paid = _paid(number)["snapshot"]
        assert paid["object"] == "invoice"
        models.PaidInvoiceItem(
            pk,
            f"invoice#{paid['id']}",
            number=number,
            invoice_id=paid["id"],
            amount_paid=100,
            currency="usd",
            paid_at=paid["paid_at"],
            observed_at=paid["paid_at"],
            lines=[],
        ).save()
    state = models.CustomerStateItem.get(pk, models.STATE_SK)
    objects = {k: v for k, v in state.objects.items() if k not in ("archived", "invoices")}
    state.objects = {**objects, "invoice_count": 13, "invoice_ids": [f"in_{n:03d}" for n in range(6, 14)]}
    state.save()
    counted = [f"in_{n:03d}" for n in range(1, 14)]
    assert sorted(store.load("inv", "cus_ada").objects.invoices) == counted

    _apply(store, tenants, _paid(15))  # the next save converts: the counted ones archived
    stored = store.load("inv", "cus_ada")
    assert sorted(stored.objects.invoices) == [*counted, "in_015"]
    assert "invoice_count" not in models.CustomerStateItem.get(pk, models.STATE_SK).objects
    assert sorted(id for ids in _archives().values() for id in ids) == counted
    assert _total_paid(store) == 1400
