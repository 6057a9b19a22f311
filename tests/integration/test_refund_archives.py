"""Credit notes and charges on DynamoDB (moto): the state keeps the newest observed inline, older
ones move to archives (as paid invoices do, tests/integration/test_paid_invoices.py), and one
changed after it was archived is kept inline again, its newest observation the one that counts.

A customer given money back dozens of times keeps a one-unit state write; each credit note and
charge counts once however often it is delivered; a lost state write leaves nothing counted.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from revsync.domain.events import Observation
from revsync.domain.stored_state import INLINE_REFUNDS, ConcurrentUpdate, StateWrite
from revsync.store import models

from local import stripe_shapes as S
from local.inprocess import InProcessStack
from tests.integration.conftest import DynamoCustomers
from tests.integration.test_paid_invoices import (
    ACCOUNT,
    DAY,
    START,
    _ada,
    _apply,
    _observed,
    _state_bytes,
    _tenants,
)

INVOICES = 12


def _paid(number: int) -> Observation:
    paid_at = START + number * 30 * DAY
    invoice = S.invoice(
        "cus_ada",
        None,
        amount_paid=1000,
        paid_at=paid_at,
        id=f"in_{number:03d}",
        payment_intent=f"pi_{number:03d}",
    )
    return _observed(S.event("invoice.paid", invoice, created=paid_at, account=ACCOUNT))


def _credit_note(number: int, at: int, status: str = "issued") -> Observation:
    """A credit note of 10 on a paid invoice, to the balance."""
    invoice = f"in_{number % INVOICES + 1:03d}"
    note = S.credit_note("cus_ada", invoice, amount=10, status=status, id=f"cn_{number:03d}")
    kind = "credit_note.voided" if status == "void" else "credit_note.created"
    return _observed(S.event(kind, note, created=at, account=ACCOUNT))


def _charge(number: int, at: int, refunded: int = 5) -> Observation:
    """A charge that paid an invoice, ``refunded`` of it refunded."""
    paid = number % INVOICES + 1
    charge = S.charge(
        "cus_ada",
        amount=1000,
        amount_refunded=refunded,
        payment_intent=f"pi_{paid:03d}",
        id=f"ch_{number:03d}",
    )
    return _observed(S.event("charge.refunded", charge, created=at, account=ACCOUNT))


def _record(store: DynamoCustomers) -> dict[str, Any]:
    record = store.get_record("inv", "u-ada")
    assert record is not None
    return record


def _refund_archives() -> dict[int, list[str]]:
    pk = models.sync_partition("inv", "cus_ada")
    return {
        int(item.number): sorted(item.refunds)
        for item in models.SyncItem.query(pk, consistent_read=True)
        if isinstance(item, models.RefundArchiveItem)
    }


def _customer_with_invoices(store: DynamoCustomers) -> None:
    tenants = _tenants()
    _apply(store, tenants, _observed(S.event("customer.created", _ada(), created=START, account=ACCOUNT)))
    for number in range(1, INVOICES + 1):
        _apply(store, tenants, _paid(number))


def test_sixty_refunds_keep_a_one_unit_state_and_count_once_however_often_delivered(
    stack: InProcessStack,
) -> None:
    store, tenants = DynamoCustomers(), _tenants()
    _customer_with_invoices(store)
    later = START + 400 * DAY
    sizes = []
    for number in range(60):  # 30 credit notes and 30 charges, each delivered twice
        made = _credit_note(number, later + number) if number % 2 else _charge(number, later + number)
        _apply(store, tenants, made)
        _apply(store, tenants, made)
        sizes.append(_state_bytes())
    assert _record(store)["total_refunded"] == 30 * 10 + 30 * 5
    assert max(sizes) < 1024  # one write unit per state write, the 60th refund as the first
    archives = _refund_archives()
    assert sorted(archives) == list(range(1, (60 - 1) // INLINE_REFUNDS + 1))  # one per INLINE_REFUNDS
    assert len(store.load("inv", "cus_ada").objects.refunds) == 60

    # Archived ones change: a credit note voided, a charge refunded again (then delivered again, and
    # an older snapshot of each late): the newest observation counts, once.
    _apply(store, tenants, _credit_note(1, later + 100, status="void"))
    _apply(store, tenants, _charge(0, later + 101, refunded=300))
    for observation in (
        _credit_note(1, later + 100, status="void"),
        _charge(0, later + 101, refunded=300),
        _credit_note(1, later + 1),
        _charge(0, later, refunded=5),
    ):
        _apply(store, tenants, observation)
    record = _record(store)
    assert record["total_refunded"] == 29 * 10 + 29 * 5 + 300
    assert record["net_paid"] == INVOICES * 1000 - record["total_refunded"]
    # No archive rewritten for them (their new observations inline, which may spill a new one).
    assert {n: ids for n, ids in _refund_archives().items() if n in archives} == archives


def test_a_refund_whose_state_write_was_lost_counts_once_its_event_is_retried(
    stack: InProcessStack,
) -> None:
    """The lost write would have spilled the inline refunds: its archive is written, not counted,
    and the next spill replaces it."""
    store, tenants = DynamoCustomers(), _tenants()
    _customer_with_invoices(store)
    later = START + 400 * DAY
    for number in range(INLINE_REFUNDS):
        _apply(store, tenants, _charge(number, later + number))
    stale = store.load("inv", "cus_ada")  # inline full: its next refund archives them first
    _apply(store, tenants, _observed(S.event("customer.updated", _ada(name="moved on"), created=later)))
    lost = _credit_note(50, later + 50)
    objects = dataclasses.replace(stale.objects, refunds={**stale.objects.refunds, "cn_050": lost})
    with pytest.raises(ConcurrentUpdate):
        store.save(StateWrite("inv", stale, objects, lost, "u-ada", stale.config_version))
    assert _refund_archives() == {1: [f"ch_{n:03d}" for n in range(INLINE_REFUNDS)]}  # written, not counted
    assert "cn_050" not in store.load("inv", "cus_ada").objects.refunds
    assert _record(store)["total_refunded"] == INLINE_REFUNDS * 5

    _apply(store, tenants, lost)  # SQS delivers the event again
    _apply(store, tenants, lost)
    assert _record(store)["total_refunded"] == INLINE_REFUNDS * 5 + 10
    assert store.load("inv", "cus_ada").refunds.archived == 1
