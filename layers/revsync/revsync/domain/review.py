"""When a customer's record changes by time alone (docs/contracts.md, "Revenue policy and risk
signals"): the next time the write path must derive it again, with no observation to prompt it.

The write path keeps that time on the customer's state (``review_at``); the scheduled review lists
the customers whose time has come (``Customers.due_for_review``) and re-derives them
(``revsync.services.sync.rederive``), so a change is made when it becomes true, not at the next
event. What turns by time alone:

* the record: a past-due subscription reaching the policy's limit (``churn_after_days`` past the
  start of its current run of ``past_due``) churns then;
* the risk signals: whatever ``revsync.domain.risk.next_risk_change`` says (a trial's last 7 days
  begin or its end passes, a subscription schedule's next phase starts, ...).
"""

from __future__ import annotations

from collections.abc import Mapping

from revsync.domain.policy import RevenuePolicy
from revsync.domain.risk import next_risk_change
from revsync.domain.state import CustomerObjects


def next_review(
    objects: CustomerObjects, policy: RevenuePolicy, past_due_since: Mapping[str, int], after: int
) -> int | None:
    """The first time after ``after`` at which the record derived as of it may differ from the one
    derived as of ``after`` with no new observation (None: never). ``past_due_since``: subscription
    id -> when its current run of ``past_due`` began (``revsync.domain.history_archive.past_due_runs``)."""
    customer = objects.customer["snapshot"] if objects.customer is not None else None
    if customer is not None and customer["object"] == "customer" and customer["deleted"]:
        return None  # nothing of a deleted customer changes any more
    signal = next_risk_change(objects, after, policy, past_due_since)
    turns = [] if signal is None else [signal]
    grace = policy.past_due_grace
    for observation in objects.subscriptions.values():
        subscription = observation["snapshot"]
        if subscription["object"] != "subscription" or subscription["status"] != "past_due":
            continue
        since = past_due_since.get(subscription["id"])
        if grace is not None and since is not None:
            turns.append(since + grace)
    return min((turn for turn in turns if turn > after), default=None)
