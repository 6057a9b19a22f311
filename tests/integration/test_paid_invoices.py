"""Paid invoices on DynamoDB (moto): which invoice items a customer's state counts.

An invoice item is put before the state write that counts it. These tests lose that state write on
purpose (another worker's write lands first) and check that the lost invoice does not count until
its event is retried, that a long-lived customer's state stays one write unit however many
invoices it pays, and that states written before invoices were numbered still count every invoice.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import boto3
import pytest
from revsync.domain.events import Observation, observation_of, parse_event
from revsync.domain.tenancy import Connection, Tenant
from revsync.services.sync import apply_observation
from revsync.settings import get_settings
from revsync.store import models
from revsync.store.customers import RECENT_INVOICES, ConcurrentUpdate, CustomerStore

from local import stripe_shapes as S
from local.inprocess import InProcessStack
from tests.fakes import FakeStripe, FakeTenants

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
        store.save("inv", stale, objects, invoice, "u-ada", stale.config_version)


def _ada(name: str = "Ada") -> dict[str, Any]:
    return S.customer("cus_ada", name=name, metadata={"app_id": "u-ada"}, created=START)


def _total_paid(store: CustomerStore) -> int:
    record = store.get_record("inv", "u-ada")
    assert record is not None
    return int(record["total_paid"])


def _state_bytes() -> int:
    """The state item's size as DynamoDB bills a write: attribute names plus values."""
    item: dict[str, Any] = boto3.client("dynamodb").get_item(
        TableName=get_settings().sync_table,
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
    store, tenants = CustomerStore(), _tenants()
    _apply(store, tenants, _observed(S.event("customer.created", _ada(), created=START, account=ACCOUNT)))
    lost = _paid(1)
    _lose_state_write(store, tenants, lost)
    assert store.load("inv", "cus_ada").objects.invoices == {}  # the item is there, not counted

    _apply(store, tenants, lost)  # SQS delivers the event again
    assert set(store.load("inv", "cus_ada").objects.invoices) == {"in_001"}
    assert _total_paid(store) == 100


def test_a_long_lived_customer_keeps_a_one_unit_state_and_every_invoice(stack: InProcessStack) -> None:
    store, tenants = CustomerStore(), _tenants()
    _apply(store, tenants, _observed(S.event("customer.created", _ada(), created=START, account=ACCOUNT)))
    sizes = []
    for number in range(1, 61):  # five years of monthly invoices
        _apply(store, tenants, _paid(number))
        sizes.append(_state_bytes())
    counted = store.load("inv", "cus_ada").objects.invoices
    assert sorted(counted) == [f"in_{n:03d}" for n in range(1, 61)]
    assert _total_paid(store) == 6000
    assert max(sizes) < 1024  # one write unit per state write, the 60th invoice as the first
    assert sizes[-1] - sizes[RECENT_INVOICES] < 16  # no growth once the recent list is full


def test_a_lost_invoice_stays_uncounted_until_redriven_however_many_invoices_follow(
    stack: InProcessStack,
) -> None:
    """Its event was parked, not retried: many invoices later it still does not count (its item is
    removed when its number leaves the state's list), and the redrive counts it once."""
    store, tenants = CustomerStore(), _tenants()
    _apply(store, tenants, _observed(S.event("customer.created", _ada(), created=START, account=ACCOUNT)))
    _apply(store, tenants, _paid(1))
    lost = _paid(2)
    _lose_state_write(store, tenants, lost)
    for number in range(3, 3 + 2 * RECENT_INVOICES):
        _apply(store, tenants, _paid(number))
        assert "in_002" not in store.load("inv", "cus_ada").objects.invoices
    assert _total_paid(store) == 100 * (1 + 2 * RECENT_INVOICES)
    _apply(store, tenants, lost)  # the parked event redriven
    assert "in_002" in store.load("inv", "cus_ada").objects.invoices
    assert _total_paid(store) == 100 * (2 + 2 * RECENT_INVOICES)
    _apply(store, tenants, lost)  # and again: nothing more
    assert _total_paid(store) == 100 * (2 + 2 * RECENT_INVOICES)


def test_a_lost_item_put_again_by_its_retry_is_not_removed_by_a_stale_writer(stack: InProcessStack) -> None:
    """The removal is conditional on the lost number: a retry that counted the item meanwhile wins."""
    store, tenants = CustomerStore(), _tenants()
    _apply(store, tenants, _observed(S.event("customer.created", _ada(), created=START, account=ACCOUNT)))
    lost = _paid(1)
    _lose_state_write(store, tenants, lost)
    for number in range(2, 2 + RECENT_INVOICES):
        _apply(store, tenants, _paid(number))
    stale = store.load("inv", "cus_ada")  # sees in_001 lost, with number 1
    assert stale.invoices.lost == {"in_001": 1}
    _apply(store, tenants, lost)  # its retry counts it, with a new number
    # A worker still holding the stale view saves a new invoice: its count would push number 1 out
    # of the list, so it removes in_001 first (the condition keeps the counted one), then loses.
    late = _paid(99)
    objects = dataclasses.replace(stale.objects, invoices={**stale.objects.invoices, "in_099": late})
    with pytest.raises(ConcurrentUpdate):
        store.save("inv", stale, objects, late, "u-ada", stale.config_version)
    assert "in_001" in store.load("inv", "cus_ada").objects.invoices
    assert _total_paid(store) == 100 * (1 + RECENT_INVOICES)


def test_a_state_from_before_invoice_numbers_still_counts_every_invoice(stack: InProcessStack) -> None:
    store, tenants = CustomerStore(), _tenants()
    _apply(store, tenants, _observed(S.event("customer.created", _ada(), created=START, account=ACCOUNT)))
    for number in range(1, 13):
        _apply(store, tenants, _paid(number))
    # Rewrite it as the previous format: every counted id listed, no count, items unnumbered.
    pk = models.sync_partition("inv", "cus_ada")
    for item in models.SyncItem.query(pk, consistent_read=True):
        if isinstance(item, models.PaidInvoiceItem):
            item.number = None
            item.save()
        elif isinstance(item, models.CustomerStateItem):
            objects = dict(item.objects)
            objects.pop("invoice_count")
            objects["invoice_ids"] = [f"in_{n:03d}" for n in range(1, 13)]
            item.objects = objects
            item.save()
    assert len(store.load("inv", "cus_ada").objects.invoices) == 12
    _apply(store, tenants, _paid(13))
    assert len(store.load("inv", "cus_ada").objects.invoices) == 13
    assert _total_paid(store) == 1300
