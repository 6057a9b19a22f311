"""One customer's whole life through the write path, the entire record asserted at every step."""

from __future__ import annotations

import json
from typing import Any

from revsync.domain.events import observation_of, parse_event
from revsync.domain.risk import NO_RISK
from revsync.domain.tenancy import Connection, Tenant
from revsync.services.sync import apply_observation

from local import stripe_shapes as S
from tests.fakes import FakeCustomers, FakeStripe, FakeTenants

DAY = 86_400
T0 = 1_760_000_000
BASIC = S.price(2000, nickname="Basic", id="price_basic")
PRO = S.price(5000, nickname="Pro", id="price_pro")


class Story:
    def __init__(self) -> None:
        tenant = Tenant("acme", Connection("connected", "oauth", "acct_1")).with_config("metadata.app_id")
        self.tenants, self.customers, self.stripe = (
            FakeTenants({"acme": tenant}),
            FakeCustomers(),
            FakeStripe(),
        )

    def event(self, kind: str, obj: dict[str, Any], at: int, before: dict[str, Any] | None = None) -> None:
        previous = S.previous_attributes(before, obj) if before is not None else None
        raw = S.event(kind, obj, created=at, account="acct_1", previous_attributes=previous)
        observation = observation_of(parse_event(json.dumps(raw).encode()))
        assert observation is not None
        apply_observation(
            "acme",
            observation,
            tenants=self.tenants,
            customers=self.customers,
            stripe=self.stripe,
            clock=lambda: at,  # delivered as it happened
        )

    def record(self) -> dict[str, Any]:
        [record] = self.customers.records.values()
        return {k: v for k, v in record.items() if k != "revsync_version"}


def _subscription(
    status: str, price: dict[str, Any], quantity: int, period: tuple[int, int], **kwargs: Any
) -> dict[str, Any]:
    item = {
        **S.subscription_item(price, quantity=quantity, period_start=period[0], period_end=period[1]),
        "id": "si_1",
    }
    return S.subscription(
        "cus_ada",
        [item],
        id="sub_1",
        status=status,
        created=T0,
        period_start=period[0],
        period_end=period[1],
        **kwargs,
    )


def _expected(**changes: Any) -> dict[str, Any]:
    base = {
        "tenant_id": "acme",
        "external_id": "u-ada",
        "stripe_customer_id": "cus_ada",
        "matched": True,
        "mrr": 0,
        "currency": "usd",
        "trialing": False,
        "trial_end": None,
        "next_renewal_at": None,
        "churned": False,
        "churned_at": None,
        "deleted_in_stripe": False,
        "last_payment_at": None,
        "total_paid": 0,
        "total_refunded": 0,
    }
    subscriptions = changes.pop("subscriptions")
    risk = {**NO_RISK, **changes.pop("risk", {})}
    traits = {
        "stripe.email": "ada@example.com",
        "stripe.name": "Ada",
        "stripe.created": T0,
        "stripe.currency": "usd",
        "stripe.balance": 0,
        "stripe.delinquent": False,
        "stripe.metadata.app_id": "u-ada",
        **changes.pop("traits"),
    }
    record = {**base, **changes, "risk": risk, "subscriptions": subscriptions}
    record["net_paid"] = record["total_paid"] - record["total_refunded"]
    record["traits"] = {
        **traits,
        "stripe.mrr": record["mrr"],
        "stripe.trial_end": record["trial_end"],
        "stripe.next_renewal_at": record["next_renewal_at"],
        "stripe.last_payment_at": record["last_payment_at"],
        "stripe.total_paid": record["total_paid"],
        "stripe.net_paid": record["net_paid"],
        # (the raised signals only)
        **{f"stripe.risk.{name}": value for name, value in risk.items() if value != NO_RISK[name]},  # type: ignore[literal-required]
    }
    return record


def _summary(
    status: str, mrr: int, period_end: int, trial_end: int | None = None, cancel: bool = False
) -> dict[str, Any]:
    return {
        "sub_1": {
            "status": status,
            "mrr": mrr,
            "currency": "usd",
            "current_period_end": period_end,
            "trial_end": trial_end,
            "cancel_at_period_end": cancel,
        }
    }


def test_trial_active_upgrade_past_due_canceled_reactivated_deleted() -> None:
    story = Story()
    customer = S.customer(
        "cus_ada", email="ada@example.com", name="Ada", metadata={"app_id": "u-ada"}, created=T0
    )
    story.event("customer.created", customer, T0)

    # 1. Trial.
    trial_end = T0 + 14 * DAY
    trialing = _subscription("trialing", BASIC, 1, (T0, trial_end), trial_end=trial_end)
    story.event("customer.subscription.created", trialing, T0 + 1)
    assert story.record() == _expected(
        trialing=True,
        trial_end=trial_end,
        next_renewal_at=trial_end,
        subscriptions=_summary("trialing", 0, trial_end, trial_end),
        traits={"stripe.subscription_status": "trialing", "stripe.plan_names": ["Basic"]},
    )

    # 2. The trial converts and the first invoice is paid.
    period = (trial_end, trial_end + 30 * DAY)
    active = _subscription("active", BASIC, 1, period, trial_end=trial_end)
    story.event("customer.subscription.updated", active, trial_end, before=trialing)
    story.event(
        "invoice.paid",
        S.invoice(
            "cus_ada",
            "sub_1",
            amount_paid=2000,
            paid_at=trial_end + 5,
            id="in_1",
            period_start=period[0],
            period_end=period[1],
        ),
        trial_end + 5,
    )
    assert story.record() == _expected(
        mrr=2000,
        next_renewal_at=period[1],
        last_payment_at=trial_end + 5,
        total_paid=2000,
        subscriptions=_summary("active", 2000, period[1], trial_end),
        traits={"stripe.subscription_status": "active", "stripe.plan_names": ["Basic"]},
    )

    # 3. Upgrade to Pro with 3 seats.
    upgraded = _subscription("active", PRO, 3, period, trial_end=trial_end)
    story.event("customer.subscription.updated", upgraded, trial_end + 10 * DAY, before=active)
    assert story.record() == _expected(
        mrr=15000,
        next_renewal_at=period[1],
        last_payment_at=trial_end + 5,
        total_paid=2000,
        subscriptions=_summary("active", 15000, period[1], trial_end),
        traits={"stripe.subscription_status": "active", "stripe.plan_names": ["Pro"]},
    )

    # 4. The renewal payment fails: past_due still counts.
    period2 = (period[1], period[1] + 30 * DAY)
    past_due = _subscription("past_due", PRO, 3, period2, trial_end=trial_end)
    story.event("customer.subscription.updated", past_due, period[1] + 60, before=upgraded)
    assert story.record() == _expected(
        mrr=15000,
        next_renewal_at=period2[1],
        last_payment_at=trial_end + 5,
        total_paid=2000,
        subscriptions=_summary("past_due", 15000, period2[1], trial_end),
        risk={"in_dunning": True, "dunning_since": period[1] + 60},
        traits={"stripe.subscription_status": "past_due", "stripe.plan_names": ["Pro"]},
    )

    # 5. Canceled: churned.
    canceled_at = period[1] + 7 * DAY
    canceled = _subscription(
        "canceled", PRO, 3, period2, trial_end=trial_end, canceled_at=canceled_at, ended_at=canceled_at
    )
    story.event("customer.subscription.deleted", canceled, canceled_at)
    assert story.record() == _expected(
        churned=True,
        churned_at=canceled_at,
        last_payment_at=trial_end + 5,
        total_paid=2000,
        subscriptions=_summary("canceled", 0, period2[1], trial_end),
        traits={"stripe.subscription_status": "canceled", "stripe.plan_names": []},
    )

    # 6. A new subscription reactivates the customer, and is paid.
    period3 = (canceled_at + 20 * DAY, canceled_at + 50 * DAY)
    item = {**S.subscription_item(BASIC, period_start=period3[0], period_end=period3[1]), "id": "si_2"}
    second = S.subscription(
        "cus_ada",
        [item],
        id="sub_2",
        status="active",
        created=period3[0],
        period_start=period3[0],
        period_end=period3[1],
    )
    story.event("customer.subscription.created", second, period3[0])
    story.event(
        "invoice.payment_succeeded",
        S.invoice(
            "cus_ada",
            "sub_2",
            amount_paid=2000,
            paid_at=period3[0] + 3,
            id="in_2",
            period_start=period3[0],
            period_end=period3[1],
        ),
        period3[0] + 3,
    )
    both = {
        **_summary("canceled", 0, period2[1], trial_end),
        "sub_2": {
            "status": "active",
            "mrr": 2000,
            "currency": "usd",
            "current_period_end": period3[1],
            "trial_end": None,
            "cancel_at_period_end": False,
        },
    }
    assert story.record() == _expected(
        mrr=2000,
        next_renewal_at=period3[1],
        last_payment_at=period3[0] + 3,
        total_paid=4000,
        subscriptions=both,
        traits={"stripe.subscription_status": "active", "stripe.plan_names": ["Basic"]},
    )

    # 7. The customer is deleted; the record stays, churned, with nothing live.
    deleted_at = period3[0] + 10 * DAY
    story.event("customer.deleted", customer, deleted_at)
    both["sub_2"]["mrr"] = 0
    assert story.record() == _expected(
        churned=True,
        churned_at=deleted_at,
        deleted_in_stripe=True,
        last_payment_at=period3[0] + 3,
        total_paid=4000,
        subscriptions=both,
        traits={"stripe.subscription_status": "active", "stripe.plan_names": ["Basic"]},
    )
    assert story.stripe.fetches == []  # nothing here needed Stripe
