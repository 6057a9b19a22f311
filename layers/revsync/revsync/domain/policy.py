"""A tenant's revenue policy (docs/contracts.md, "Revenue policy and risk signals"): how its MRR and churn are
counted. Every derived field, history point and month is a function of the observations *and* this
policy; the default is the revenue rules as they stood before policies (``DEFAULT_POLICY``).

The options are the ones the revenue tools tenants compare revsync with let a business choose:

* ``churn_after_days``: a past-due subscription counts until that many days past due, then churns
  (ChartMogul 1-90 days, Baremetrics 30); ``None``: past due always counts (Stripe's own MRR).
  Days are counted from when the subscription was first observed past due in its current run of
  ``past_due`` observations (``revsync.domain.history``; the stored state keeps no failed invoices,
  so the first failed invoice cannot date it yet).
* ``churn_at``: ``ended`` (the subscription ends in Stripe) or ``scheduled`` (a cancellation is
  scheduled: ``cancel_at`` or ``cancel_at_period_end``; ChartMogul's committed MRR).
* ``discounts``: ``active`` (forever and repeating while they run), ``forever_only`` (Stripe's Billing
  analytics), ``none`` (list price).
* ``metered``: ``excluded`` (Stripe's Billing analytics), or ``last_invoice`` (Baremetrics,
  ProfitWell): a metered item counts what the subscription's latest finalized invoice billed it
  (``revsync.domain.mrr.metered_period_amount``; the state keeps those lines,
  ``revsync.domain.state.usage_after``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from revsync.errors import InvalidInput

ChurnAt = Literal["ended", "scheduled"]
DiscountRule = Literal["active", "forever_only", "none"]
MeteredRule = Literal["excluded", "last_invoice"]

DAY = 86_400
MAX_CHURN_AFTER_DAYS = 90
_KEYS = ("past_due", "churn_at", "discounts", "metered")


class PolicyError(InvalidInput):
    """A policy document that cannot be used: the message says which key and what it accepts."""

    code = "invalid_policy"


@dataclass(frozen=True, slots=True)
class RevenuePolicy:
    churn_after_days: int | None = None
    churn_at: ChurnAt = "ended"
    discounts: DiscountRule = "active"
    metered: MeteredRule = "excluded"

    @property
    def past_due_grace(self) -> int | None:
        """Seconds a subscription may stay past due and still count (None: for ever)."""
        return None if self.churn_after_days is None else self.churn_after_days * DAY

    def to_json(self) -> dict[str, Any]:
        return {
            "past_due": {"churn_after_days": self.churn_after_days},
            "churn_at": self.churn_at,
            "discounts": self.discounts,
            "metered": self.metered,
        }

    @classmethod
    def from_json(cls, document: Any) -> RevenuePolicy:
        """The policy a ``PUT .../stripe/policy`` body (or a stored one) states; a key left out keeps its
        default. Anything else is a ``PolicyError`` naming the key."""
        if not isinstance(document, Mapping):
            raise PolicyError("the policy must be a JSON object")
        unknown = sorted(str(key) for key in document if key not in _KEYS)
        if unknown:
            raise PolicyError(f"unknown policy keys: {', '.join(unknown)} (known: {', '.join(_KEYS)})")
        past_due = document.get("past_due", {})
        if not isinstance(past_due, Mapping) or set(past_due) - {"churn_after_days"}:
            raise PolicyError('past_due must be an object {"churn_after_days": null | 1-90}')
        days = past_due.get("churn_after_days")
        if days is not None and (
            isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_CHURN_AFTER_DAYS
        ):
            raise PolicyError(
                f"past_due.churn_after_days must be null or a whole number 1-{MAX_CHURN_AFTER_DAYS}"
            )
        return cls(
            churn_after_days=days,
            churn_at=_choice(document, "churn_at", ChurnAt),
            discounts=_choice(document, "discounts", DiscountRule),
            metered=_choice(document, "metered", MeteredRule),
        )


DEFAULT_POLICY = RevenuePolicy()


def _choice(document: Mapping[str, Any], key: str, kind: Any) -> Any:
    allowed: tuple[str, ...] = get_args(kind)
    value = document.get(key, getattr(DEFAULT_POLICY, key))
    if value not in allowed or not isinstance(value, str):
        raise PolicyError(f"{key} must be one of {', '.join(repr(a) for a in allowed)}")
    return value
