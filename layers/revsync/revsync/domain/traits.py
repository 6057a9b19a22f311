"""Customer-ID trait discovery: which traits a sample of Stripe customers carry, and how often."""

from __future__ import annotations

from collections import Counter
from typing import Any


def candidate_traits(customers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``id``, ``email`` and each ``metadata.<key>`` with how many sampled customers have a value,
    most common first. Values are not returned (e-mails stay out of responses and logs)."""
    counts: Counter[str] = Counter()
    for customer in customers:
        if customer.get("deleted"):
            continue
        counts["id"] += 1
        if isinstance(customer.get("email"), str) and customer["email"].strip():
            counts["email"] += 1
        for key, value in (customer.get("metadata") or {}).items():
            if isinstance(value, str) and value.strip():
                counts[f"metadata.{key}"] += 1
    sampled = counts["id"]
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] != "id", kv[0]))
    return [
        {"trait": trait, "customers": n, "share": round(n / sampled, 3) if sampled else 0.0}
        for trait, n in ranked
    ]
