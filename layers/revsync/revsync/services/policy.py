"""A tenant's revenue policy (docs/contracts.md, "Revenue policy and risk signals"): the policy route,
the recompute a change starts, and the schedule's review of changes that come with time.

Every derived field, history point and month is a function of the observations and the policy. The
route saves a new policy with the tenant's config (a new config version: the write path re-derives a
customer written under an older one whenever it next writes it) and starts a recompute, kept with
the tenant: a job on the catch-up queue, in the tenant's message group (so never at the same time as
its catch-up), that re-derives every stored customer from its stored observations a page at a time,
without Stripe. A run that runs out of time queues its continuation with the page it stopped at; a
newer change replaces the recompute, and the older one's jobs stop at their next page.

Each scheduled run of a tenant also re-derives the customers whose next time-based change (a trial
ending within 7 days, the policy's past-due limit, a card expiring) has come, as of the run's time,
so those are raised when they become true rather than at the customer's next event; and it takes
over a recompute whose jobs were lost (one silent for ``stale_after``).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from revsync.domain.policy import RevenuePolicy
from revsync.domain.reconcile import RecomputeJob
from revsync.domain.tenancy import Recompute, Tenant, policy_status, validate_tenant_id
from revsync.errors import Conflict, NotFound
from revsync.services.reconcile import CLAIM_STALE_SECONDS, CatchUpQueue, TenantOfTheRun
from revsync.services.sync import ChangeFeed, Customers, Tenants

logger = logging.getLogger("revsync.policy")

# Customers re-derived between two looks at the deadline and two saves of the recompute's progress
# (a customer's re-derivation is a few DynamoDB requests: a page is a few seconds at most).
PAGE = 50
# Customers due for review asked for at once.
REVIEW_BATCH = 100


class PolicyTenants(Tenants, Protocol):
    def change_policy(self, tenant: Tenant, now: int) -> None:
        """Write the tenant's policy, config version and recompute if the stored config version is
        the one before (``ConfigChanged`` otherwise), nothing else of it."""
        ...

    def advance_recompute(self, tenant_id: str, at: Recompute, to: Recompute) -> bool:
        """Replace the recompute ``at`` (same change, same cursor, not finished) with ``to``; False
        when the stored one is no longer ``at``."""
        ...


class Rederive(Protocol):
    """The write path's re-derivation of one customer from its stored observations with the tenant's
    current policy, as of ``now`` (``revsync.services.sync.rederive``)."""

    def __call__(
        self,
        tenant_id: str,
        customer_id: str,
        *,
        tenants: Tenants,
        customers: Customers,
        changes: ChangeFeed,
        now: int,
    ) -> object: ...


@dataclass(frozen=True, slots=True)
class PolicyPorts:
    """What a recompute and a review read and write through."""

    tenants: PolicyTenants
    customers: Customers
    rederive: Rederive
    changes: ChangeFeed
    clock: Callable[[], float]
    stale_after: int = CLAIM_STALE_SECONDS


def _job(tenant_id: str, config_version: int, now: int, cursor: str | None) -> RecomputeJob:
    return RecomputeJob(tenant_id, config_version, now, cursor, secrets.token_hex(8))


# --- the route ----------------------------------------------------------------------------------


def policy_document(tenant_id: str, *, tenants: Tenants) -> dict[str, Any]:
    """``GET /tenants/{id}/stripe/policy``: the policy in force and its recompute's progress."""
    tenant_id = validate_tenant_id(tenant_id)
    return policy_status(tenants.get(tenant_id) or Tenant(tenant_id=tenant_id))


def save_policy(
    tenant_id: str, body: Any, *, tenants: PolicyTenants, queue: CatchUpQueue, now: int
) -> dict[str, Any]:
    """``PUT /tenants/{id}/stripe/policy``: a new policy saved with the tenant's config and its
    recompute queued; the policy already in force changes nothing and queues nothing. A bad policy
    is a ``PolicyError`` and a tenant without a connection a ``Conflict``, both changing nothing."""
    tenant_id = validate_tenant_id(tenant_id)
    policy = RevenuePolicy.from_json(body)
    tenant = tenants.get(tenant_id)
    if tenant is None or not tenant.connection.is_connected:
        raise Conflict("connect Stripe before choosing the revenue policy", "not_connected")
    if policy == tenant.policy:
        return policy_status(tenant)
    return policy_status(_start(tenant, policy, tenants, queue, now))


def recompute_again(
    tenant_id: str, *, tenants: PolicyTenants, queue: CatchUpQueue, now: int
) -> dict[str, Any]:
    """An operator's recompute of every customer under the policy in force (after a fix to how
    records are derived, say): a new config version and a recompute from the first customer,
    replacing any under way."""
    tenant_id = validate_tenant_id(tenant_id)
    tenant = tenants.get(tenant_id)
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id}", "tenant_not_found")
    return policy_status(_start(tenant, tenant.policy, tenants, queue, now))


def _start(
    tenant: Tenant, policy: RevenuePolicy, tenants: PolicyTenants, queue: CatchUpQueue, now: int
) -> Tenant:
    changed = tenant.with_policy(policy)
    changed = replace(changed, recompute=Recompute(changed.config_version, now, updated_at=now))
    tenants.change_policy(changed, now)
    # After the save: a send that fails leaves the recompute silent, and the schedule takes it over.
    queue.send([_job(tenant.tenant_id, changed.config_version, now, None)])
    return changed


# --- the recompute ------------------------------------------------------------------------------


RecomputeOutcome = Literal["done", "partial", "superseded", "skipped"]


@dataclass(frozen=True, slots=True)
class RecomputeReport:
    state: RecomputeOutcome
    rederived: int = 0  # customers this run re-derived
    customers_done: int = 0  # in the whole recompute so far
    out_of_time: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "rederived": self.rederived, "customers_done": self.customers_done}


def run_recompute(
    job: RecomputeJob, ports: PolicyPorts, queue: CatchUpQueue, out_of_time: Callable[[], bool]
) -> RecomputeReport:
    """One run of a recompute: page on from the job's cursor until every customer is re-derived or
    the deadline comes (then queue the continuation). A job that is not the recompute's next step
    (a newer change replaced it: ``superseded``; it finished, or another run of it moved on:
    ``skipped``) does nothing."""
    tenant = ports.tenants.get(job.tenant_id)
    at = tenant.recompute if tenant is not None else None
    if tenant is None or at is None or at.config_version != job.config_version:
        return RecomputeReport("superseded")
    if at.finished_at is not None or at.cursor != job.cursor:
        return RecomputeReport("skipped", customers_done=at.customers_done)
    run_tenants = TenantOfTheRun(ports.tenants, tenant)
    rederived = 0
    while not out_of_time():
        customer_ids, after = ports.customers.customer_ids(job.tenant_id, at.cursor, PAGE)
        for customer_id in customer_ids:
            ports.rederive(
                job.tenant_id,
                customer_id,
                tenants=run_tenants,
                customers=ports.customers,
                changes=ports.changes,
                now=int(ports.clock()),
            )
        rederived += len(customer_ids)
        now = int(ports.clock())
        to = at._replace(
            cursor=after,
            customers_done=at.customers_done + len(customer_ids),
            updated_at=now,
            finished_at=now if after is None else None,
        )
        if not ports.tenants.advance_recompute(job.tenant_id, at, to):
            return RecomputeReport("superseded", rederived, at.customers_done)
        at = to
        if after is None:
            return RecomputeReport("done", rederived, at.customers_done)
    # After the progress names the page: a send that fails leaves the recompute silent, and the
    # schedule takes it over.
    queue.send([_job(job.tenant_id, job.config_version, int(ports.clock()), at.cursor)])
    return RecomputeReport("partial", rederived, at.customers_done, out_of_time=True)


def _take_over(tenant: Tenant, ports: PolicyPorts, queue: CatchUpQueue, now: int) -> bool:
    """Queue the next step of a recompute silent for ``stale_after`` (its job failed, went to the
    dead-letter queue or was never sent); a job of it still on its way is then skipped."""
    at = tenant.recompute
    if at is None or at.finished_at is not None:
        return False
    if now - (at.updated_at or at.started_at) < ports.stale_after:
        return False
    queue.send([_job(tenant.tenant_id, at.config_version, now, at.cursor)])
    return True


# --- the schedule's review ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReviewReport:
    reviewed: int = 0  # customers re-derived as of the run's time
    complete: bool = True  # False: the deadline came first (the rest waits for the next period)
    recompute_taken_over: bool = False
    failed: int = 0  # customers whose re-derivation failed (still due: the next period tries again)

    def as_dict(self) -> dict[str, Any]:
        return {
            "reviewed": self.reviewed,
            "complete": self.complete,
            "recompute_taken_over": self.recompute_taken_over,
            "failed": self.failed,
        }


def review(
    tenant_id: str, ports: PolicyPorts, queue: CatchUpQueue, out_of_time: Callable[[], bool]
) -> ReviewReport:
    """The schedule's part for one tenant: take over a silent recompute, then re-derive each customer
    due for review as of now until none is left or the deadline comes. A customer re-derived
    here has its next review moved on; asked again, one still listed is not re-derived twice. One
    customer's failure is logged and left due: it does not fail the tenant's catch-up."""
    tenant = ports.tenants.get(tenant_id)
    if tenant is None:
        return ReviewReport()
    now = int(ports.clock())
    taken_over = _take_over(tenant, ports, queue, now)
    run_tenants = TenantOfTheRun(ports.tenants, tenant)
    reviewed: set[str] = set()
    failed = 0

    def report(complete: bool) -> ReviewReport:
        return ReviewReport(len(reviewed) - failed, complete, taken_over, failed)

    while not out_of_time():
        due = ports.customers.due_for_review(tenant_id, now, REVIEW_BATCH)
        fresh = [customer_id for customer_id in due if customer_id not in reviewed]
        for customer_id in fresh:
            if out_of_time():
                return report(False)
            reviewed.add(customer_id)
            try:
                ports.rederive(
                    tenant_id,
                    customer_id,
                    tenants=run_tenants,
                    customers=ports.customers,
                    changes=ports.changes,
                    now=now,
                )
            except Exception as exc:  # any one customer's: the others and the catch-up go on
                failed += 1
                logger.warning(
                    "review failed: tenant %s customer %s: %s", tenant_id, customer_id, type(exc).__name__
                )
        if len(due) < REVIEW_BATCH or not fresh:
            return report(True)
    return report(False)
