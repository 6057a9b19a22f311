"""The shared Stripe request budget (a reservation clock in DynamoDB) spaces every step's requests."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import partial

import pytest
from revsync.infra import aws
from revsync.store.budget import AccountRequestBudget

from local.inprocess import InProcessStack

pytestmark = pytest.mark.integration


def _budget(
    stack: InProcessStack, account: str, rate: float, clock: Callable[[], float]
) -> AccountRequestBudget:
    """An account's budget as the functions make it (in the stack's tenants table)."""
    budgets: partial[AccountRequestBudget] = stack.graph("ImporterFunction").budgets
    return budgets(account, rate, clock)


def test_concurrent_reservations_get_distinct_slots_at_the_rate(stack: InProcessStack) -> None:
    """Eight steps (each its own budget object, as in separate Lambdas) interleaving reservations.

    Deterministic on purpose: threads against moto would test moto's (non-atomic) locking and the
    scheduler, not the reservation clock; DynamoDB's conditional writes are atomic per item.
    """
    now = [1_800_000_000.0]
    steps = [_budget(stack, "acct_shared", 25, lambda: now[0]) for _ in range(8)]
    slots = sorted(steps[n % len(steps)].reserve(None) for n in range(50))
    assert slots[0] == now[0]
    gaps = {round(b - a, 3) for a, b in itertools.pairwise(slots)}
    assert gaps == {0.04}  # 25 per second, no two requests in one slot, no slot skipped
    # Another account has a budget of its own.
    assert _budget(stack, "acct_other", 25, lambda: now[0]).reserve(None) == now[0]


def test_an_idle_budget_restarts_at_now(stack: InProcessStack) -> None:
    now = [1_800_000_000.0]
    budget = _budget(stack, "acct_idle", 10, lambda: now[0])
    assert [budget.reserve(None) for _ in range(3)] == [now[0], now[0] + 0.1, now[0] + 0.2]
    now[0] += 60  # nothing reserved for a minute: no backlog of past slots
    assert budget.reserve(None) == now[0]


def test_endpoint_clocks_within_the_account_and_a_429_slows_only_the_limiter_it_names(
    stack: InProcessStack,
) -> None:
    now = [1_800_000_000.0]
    budget = _budget(stack, "acct_endpoints", 100, lambda: now[0])
    invoices = [budget.reserve("GET /v1/invoices") for _ in range(3)]
    assert [round(t - now[0], 3) for t in invoices] == [0.0, 0.04, 0.08]  # Stripe's default 25/s
    assert budget.reserve("GET /v1/customers") == now[0]  # an endpoint of its own
    assert [round(budget.reserve(None) - now[0], 3) for _ in range(2)] == [0.0, 0.01]  # 100/s

    budget.slow_down("endpoint-rate", "GET /v1/invoices", 1.0)
    assert budget.reserve("GET /v1/invoices") == now[0] + 1.0
    assert budget.reserve("GET /v1/subscriptions") == now[0]
    assert round(budget.reserve(None) - now[0], 3) == 0.02
    budget.slow_down("global-rate", "GET /v1/invoices", 2.0)
    assert budget.reserve(None) == now[0] + 2.0


def test_a_limit_stripe_raised_for_the_account_is_set_on_its_clock(stack: InProcessStack) -> None:
    """An operator sets ``interval_ms`` on the endpoint's item: the clock spaces by it, and the
    planner reads it as the endpoint's rate."""
    aws.dynamodb().update_item(
        TableName=stack.graph("ImporterFunction").settings.tenants_table,
        Key={"pk": {"S": "budget#acct_raised#GET /v1/invoices"}},
        UpdateExpression="SET interval_ms = :ms",
        ExpressionAttributeValues={":ms": {"N": "20"}},
    )
    now = [1_800_000_000.0]
    budget = _budget(stack, "acct_raised", 100, lambda: now[0])
    assert [round(budget.reserve("GET /v1/invoices") - now[0], 3) for _ in range(3)] == [0.0, 0.02, 0.04]
    rates = budget.rates(["GET /v1/invoices", "GET /v1/customers"])
    assert rates == (100.0, {"GET /v1/invoices": 50.0, "GET /v1/customers": 25.0})
