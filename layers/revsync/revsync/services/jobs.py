"""What the catch-up queue's consumer runs, one job at a time per tenant: a catch-up of missed
events (revsync.services.reconcile), which for the schedule's job is followed by the review of the
tenant's changes that come with time (revsync.services.policy.review); or a policy change's
recompute (revsync.services.policy.run_recompute). One deadline for the whole job."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from revsync.domain.reconcile import QueuedJob, RecomputeJob
from revsync.services import policy, reconcile


def run(
    job: QueuedJob,
    catch_up: reconcile.ReconcilePorts,
    policy_ports: policy.PolicyPorts,
    queue: reconcile.CatchUpQueue,
    out_of_time: Callable[[], bool],
) -> dict[str, Any]:
    """The job's report (what the consumer logs)."""
    if isinstance(job, RecomputeJob):
        return policy.run_recompute(job, policy_ports, queue, out_of_time).as_dict()
    report = reconcile.run_job(job, catch_up, queue, out_of_time).as_dict()
    if job.reason == "schedule":
        report["review"] = policy.review(job.tenant_id, policy_ports, queue, out_of_time).as_dict()
    return report
