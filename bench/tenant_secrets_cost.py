"""Fixed monthly AWS cost of one idle API-key tenant's secrets: sealed with KMS on its tenant item
(revsync.infra.secrets), against a Secrets Manager secret of its own (before).

An idle tenant gets no webhook, so nothing reads its webhook secret; the scheduled catch-up runs once
per tenant every ``ReconcileMinutes`` (read from template.yaml) and reads its API key. A decrypted
value is kept ``MAX_AGE_SECONDS`` (300 s, less than the period), so every run decrypts: counted with
caches cold. On-demand list prices (us-east-1), each cited where it is set; free tiers (KMS's 20,000
requests a month, DynamoDB's 25 GB) are left out. ``bench/platform.py`` imports ``sealed``,
``secrets_manager`` and ``reconcile_minutes``; run alone it prints both at a platform's size:

    .venv/bin/python -m bench.tenant_secrets_cost [tenants]
"""

from __future__ import annotations

import sys
from typing import NamedTuple

from revsync.infra.secrets import MAX_AGE_SECONDS

from local.template import load_template

HOURS_PER_MONTH = 730  # AWS prices a month as 730 hours

# https://aws.amazon.com/kms/pricing/ : "Each AWS KMS key that you create in AWS KMS costs $1/month
# (prorated hourly)"; "If you enable automatic key rotation, each newly generated backing key costs
# an additional $1/month"; symmetric requests (Encrypt, Decrypt) $0.03 per 10,000.
KMS_KEY_MONTH = 1.00
KMS_ROTATED_KEY_MONTH = 1.00
KMS_REQUEST = 0.03 / 10_000
# https://aws.amazon.com/secrets-manager/pricing/ : $0.40 per secret per month, $0.05 per 10,000 API
# calls. (Secrets scheduled for deletion are not charged, docs.aws.amazon.com/secretsmanager/latest/
# userguide/manage_delete-secret.html: the price of a recovery window would have been nil.)
SECRET_MONTH = 0.40
SECRETS_MANAGER_CALL = 0.05 / 10_000
# https://aws.amazon.com/dynamodb/pricing/ : storage $0.25 per GB-month (names and values).
DYNAMODB_GB_MONTH = 0.25

# What sealing adds to the tenant item: two attribute names, a restricted key (rk_live_ + ~99
# characters) and a webhook secret (whsec_ + 32), each with KMS's ciphertext header. KMS does not
# document its format: 200 bytes a ciphertext is an upper estimate (moto's adds 64).
SEALED_ITEM_BYTES = len("sealed_api_key") + len("sealed_webhook_secret") + (107 + 200) + (38 + 200)


class IdleTenantCost(NamedTuple):
    """Dollars a month for one idle tenant's secrets."""

    storage: float  # the secret, or the sealed bytes on the tenant item
    key: float  # its share of the stack's KMS key
    reads: float  # the catch-up's reads of its API key, caches cold

    @property
    def total(self) -> float:
        return self.storage + self.key + self.reads


def reconcile_minutes() -> float:
    """The catch-up's period as the template deploys it (ReconcileMinutes' default)."""
    return float(load_template()["Parameters"]["ReconcileMinutes"]["Default"])


def runs_per_month(minutes: float) -> float:
    return HOURS_PER_MONTH * 60 / minutes


def _cold_reads(minutes: float) -> float:
    # A run reads the key once; a warm process answers only if its last read is younger than the max age.
    if minutes * 60 > MAX_AGE_SECONDS:
        return runs_per_month(minutes)
    return HOURS_PER_MONTH * 3600 / MAX_AGE_SECONDS


def sealed(tenants: int, minutes: float, key_rotations: int = 0) -> IdleTenantCost:
    """Sealed on the tenant item: the sealed bytes, a share of the one key (``key_rotations``: backing
    keys its automatic yearly rotation has added), one Decrypt per catch-up run."""
    key = KMS_KEY_MONTH + KMS_ROTATED_KEY_MONTH * key_rotations
    return IdleTenantCost(
        storage=SEALED_ITEM_BYTES / 1e9 * DYNAMODB_GB_MONTH,
        key=key / tenants,
        reads=_cold_reads(minutes) * KMS_REQUEST,
    )


def secrets_manager(minutes: float) -> IdleTenantCost:
    """Before: a secret of its own, one GetSecretValue per catch-up run."""
    return IdleTenantCost(storage=SECRET_MONTH, key=0.0, reads=_cold_reads(minutes) * SECRETS_MANAGER_CALL)


def main() -> None:
    tenants = int(sys.argv[1]) if len(sys.argv) > 1 else 5_000
    minutes = reconcile_minutes()
    runs = runs_per_month(minutes)
    before = secrets_manager(minutes)
    print(
        f"one idle API-key tenant of {tenants:,}, catch-up every {minutes:g} min ({runs:,.0f} runs a month,"
    )
    print(f"  a key cached {MAX_AGE_SECONDS} s: every run reads it)")
    print(
        f"  Secrets Manager (before): ${before.total:.4f}/month "
        f"(secret ${before.storage:.2f}, reads ${before.reads:.4f})"
    )
    for rotations in (0, 2, 10):
        after = sealed(tenants, minutes, rotations)
        verdict = "met" if after.total <= 0.05 else "NOT met"
        print(
            f"  KMS-sealed, key rotated {rotations:>2} times: ${after.total:.4f}/month (key share "
            f"${after.key:.5f}, decrypts ${after.reads:.5f}, storage ${after.storage:.7f}): "
            f"{before.total / after.total:.0f}x less; budget $0.05 {verdict}"
        )
    after = sealed(tenants, minutes)
    print(
        f"  all {tenants:,} tenants: ${before.total * tenants:,.2f} -> ${after.total * tenants:,.2f} a month"
    )


if __name__ == "__main__":
    main()
