"""When a customer's record changes by time alone (docs/contracts.md, "Revenue policy and risk
signals"): the next time the write path must derive it again, with no observation to prompt it.

The write path keeps that time on the customer's state (``review_at``); the scheduled review lists
the customers whose time has come (``Customers.due_for_review``) and re-derives them
(``revsync.services.sync.rederive``), so a signal is raised when it becomes true, not at the next
event. What turns by time alone:

* a past-due subscription reaching the policy's limit (``churn_after_days`` past the start of its
  current run of ``past_due``): it churns then;
* a trialing subscription's end coming within 7 days (``trial_ends_at`` is raised), and passing
  (cleared, if Stripe has not told of the trial's end by then).
"""

from __future__ import annotations

from collections.abc import Mapping

from revsync.domain.policy import RevenuePolicy
from revsync.domain.risk import TRIAL_ENDING_WITHIN
from revsync.domain.snapshots import LIVE_SUBSCRIPTION_STATUSES, SubscriptionSnapshot
from revsync.domain.state import CustomerObjects


def _trial_turns(subscription: SubscriptionSnapshot) -> list[int]:
    """When a trialing subscription's ``trial_ends_at`` is raised and cleared by time alone."""
    trial_end = subscription["trial_end"]
    if subscription["status"] != "trialing" or trial_end is None:
        return []
    return [trial_end - TRIAL_ENDING_WITHIN, trial_end + 1]


def next_review(
    objects: CustomerObjects, policy: RevenuePolicy, past_due_since: Mapping[str, int], after: int
) -> int | None:
    """The first time after ``after`` at which the record derived as of it may differ from the one
    derived as of ``after`` with no new observation (None: never). ``past_due_since``: subscription
    id -> when its current run of ``past_due`` began (``revsync.domain.history_archive.past_due_runs``)."""
    customer = objects.customer["snapshot"] if objects.customer is not None else None
    if customer is not None and customer["object"] == "customer" and customer["deleted"]:
        return None  # nothing of a deleted customer changes any more
    grace = policy.past_due_grace
    turns: list[int] = []
    for observation in objects.subscriptions.values():
        subscription = observation["snapshot"]
        if subscription["object"] != "subscription":
            continue
        if subscription["status"] not in LIVE_SUBSCRIPTION_STATUSES:
            continue
        since = past_due_since.get(subscription["id"])
        if grace is not None and subscription["status"] == "past_due" and since is not None:
            turns.append(since + grace)
        turns += _trial_turns(subscription)
    return min((turn for turn in turns if turn > after), default=None)
