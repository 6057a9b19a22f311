"""What the catch-up queue's consumer runs, one job at a time per tenant: a catch-up of missed
events (revsync.services.reconcile), which for the schedule's job is followed by the review of the
tenant's changes that come with time (revsync.services.policy.review); or a policy change's
recompute (revsync.services.policy.run_recompute). One deadline for the whole job."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from revsync.domain.reconcile import QueuedJob, RecomputeJob
from revsync.errors import RetryLater
from revsync.services import policy, reconcile


class RecomputeNotWired(RetryLater):
    """A recompute job reached a consumer without the write path's re-derivation: it is retried,
    then redriven from the dead-letter queue once a build has it."""

    code = "recompute_not_wired"


def rederive_unavailable(tenant_id: str, customer_id: str, **ports: Any) -> object:
    """What a build without the write path's re-derivation is wired with (never called: ``run``
    is given no policy ports then)."""
    raise RecomputeNotWired("this build cannot re-derive customers")


def run(
    job: QueuedJob,
    catch_up: reconcile.ReconcilePorts,
    policy_ports: policy.PolicyPorts | None,
    queue: reconcile.CatchUpQueue,
    out_of_time: Callable[[], bool],
) -> dict[str, Any]:
    """The job's report (what the consumer logs). Without ``policy_ports`` (a build without the
    write path's re-derivation) a recompute fails, to be redriven, and the schedule does no review."""
    if isinstance(job, RecomputeJob):
        if policy_ports is None:
            raise RecomputeNotWired("this build cannot re-derive customers")
        return policy.run_recompute(job, policy_ports, queue, out_of_time).as_dict()
    report = reconcile.run_job(job, catch_up, queue, out_of_time).as_dict()
    if job.reason == "schedule" and policy_ports is not None:
        report["review"] = policy.review(job.tenant_id, policy_ports, queue, out_of_time).as_dict()
    return report
