"""The shared Stripe request budget (a reservation clock in DynamoDB) spaces every step's requests."""

from __future__ import annotations

import itertools

import pytest
from revsync.store.budget import AccountRequestBudget

from local.inprocess import InProcessStack

pytestmark = pytest.mark.integration


def test_concurrent_reservations_get_distinct_slots_at_the_rate(stack: InProcessStack) -> None:
    """Eight steps (each its own budget object, as in separate Lambdas) interleaving reservations.

    Deterministic on purpose: threads against moto would test moto's (non-atomic) locking and the
    scheduler, not the reservation clock; DynamoDB's conditional writes are atomic per item.
    """
    now = [1_800_000_000.0]
    steps = [AccountRequestBudget("acct_shared", rate=25, clock=lambda: now[0]) for _ in range(8)]
    slots = sorted(steps[n % len(steps)].reserve(None) for n in range(50))
    assert slots[0] == now[0]
    gaps = {round(b - a, 3) for a, b in itertools.pairwise(slots)}
    assert gaps == {0.04}  # 25 per second, no two requests in one slot, no slot skipped
    # Another account has a budget of its own.
    assert AccountRequestBudget("acct_other", rate=25, clock=lambda: now[0]).reserve(None) == now[0]


def test_an_idle_budget_restarts_at_now(stack: InProcessStack) -> None:
    now = [1_800_000_000.0]
    budget = AccountRequestBudget("acct_idle", rate=10, clock=lambda: now[0])
    assert [budget.reserve(None) for _ in range(3)] == [now[0], now[0] + 0.1, now[0] + 0.2]
    now[0] += 60  # nothing reserved for a minute: no backlog of past slots
    assert budget.reserve(None) == now[0]
