"""Render Stripe objects in the shape of a given API version (dev only: test data, never shipped).

The objects ``local/stripe_shapes.py`` builds (the "current" shape, discounts with an expanded coupon)
are the input. What changes per version is written from Stripe's published changelog, for the fields
revsync reads:

* before 2025-03-31.basil (2024-06-20, 2025-01-27.acacia): the billing period is on the subscription
  (``current_period_start``/``_end``), not on its items; the subscription also has the singular
  ``discount``; an invoice names its subscription in ``subscription`` (and has ``paid``); an invoice
  line has ``type`` and ``subscription`` (and ``price``/``plan``, ``proration``), not ``parent``.
  Acacia's breaking changes (usage-based billing, meters) touch no field revsync reads, so acacia
  renders like 2024-06-20 here.
* 2025-03-31.basil: item-level billing periods; ``invoice.parent.subscription_details``;
  ``line.parent.subscription_item_details``; ``line.pricing.price_details``; no singular
  ``subscription.discount``; ``discount.coupon`` is an expanded object.
* 2025-09-30.clover: ``discount.coupon`` is gone; ``discount.source = {type, coupon}`` takes its
  place and the coupon is not expanded (an id), in events as in reads.
* the pinned SDK's own version renders as clover for these fields.
"""

from __future__ import annotations

import json
from typing import Any

import stripe

LEGACY = "2024-06-20"
ACACIA = "2025-01-27.acacia"
BASIL = "2025-03-31.basil"
CLOVER = "2025-09-30.clover"
SDK = str(stripe.api_version)
VERSIONS = (LEGACY, ACACIA, BASIL, CLOVER, SDK)


def _at_least(version: str, than: str) -> bool:
    return version[:10] >= than[:10]


def render(obj: Any, version: str) -> Any:
    """``obj`` (any JSON value) with every Stripe object in it rendered for ``version``."""
    # Through JSON rather than deepcopy: builders share nested dicts between objects, and each
    # object must be rendered on its own copy.
    return _render(json.loads(json.dumps(obj)), version)


def _render(node: Any, version: str) -> Any:
    if isinstance(node, list):
        return [_render(child, version) for child in node]
    if not isinstance(node, dict):
        return node
    for key, child in list(node.items()):
        node[key] = _render(child, version)
    kind = node.get("object")
    if kind == "event":
        node["api_version"] = version
    elif kind == "discount":
        _discount(node, version)
    elif kind == "subscription":
        _subscription(node, version)
    elif kind == "invoice":
        _invoice(node, version)
    elif kind == "line_item":
        _line(node, version)
    return node


def _discount(discount: dict[str, Any], version: str) -> None:
    source = discount.pop("source", None) or {}
    coupon = discount.pop("coupon", None) or source.get("coupon")
    if _at_least(version, CLOVER):
        coupon_id = coupon.get("id") if isinstance(coupon, dict) else coupon
        discount["source"] = {"type": "coupon", "coupon": coupon_id}
    else:
        discount["coupon"] = coupon


def _subscription(sub: dict[str, Any], version: str) -> None:
    items = sub.get("items", {}).get("data", [])
    if _at_least(version, BASIL):
        sub.pop("current_period_start", None)
        sub.pop("current_period_end", None)
        sub.pop("discount", None)
        return
    starts = [i.pop("current_period_start") for i in items if "current_period_start" in i]
    ends = [i.pop("current_period_end") for i in items if "current_period_end" in i]
    sub.setdefault("current_period_start", min(starts) if starts else sub.get("created"))
    sub.setdefault("current_period_end", min(ends) if ends else None)
    sub["discount"] = next((d for d in sub.get("discounts", []) if isinstance(d, dict)), None)


def _invoice(invoice: dict[str, Any], version: str) -> None:
    parent = invoice.pop("parent", None) or {}
    details = parent.get("subscription_details") or {}
    subscription = invoice.pop("subscription", None) or details.get("subscription")
    if _at_least(version, BASIL):
        invoice["parent"] = (
            {
                "type": "subscription_details",
                "quote_details": None,
                "subscription_details": {"subscription": subscription, "metadata": {}},
            }
            if subscription
            else None
        )
        invoice.pop("paid", None)
    else:
        invoice["subscription"] = subscription
        invoice["paid"] = invoice.get("status") == "paid"


def _line(line: dict[str, Any], version: str) -> None:
    parent = line.pop("parent", None) or {}
    item_details = parent.get("subscription_item_details") or {}
    subscription = item_details.get("subscription") or line.pop("subscription", None)
    line.pop("type", None)
    if _at_least(version, BASIL):
        if subscription:
            line["parent"] = {
                "type": "subscription_item_details",
                "subscription_item_details": {
                    "subscription": subscription,
                    "subscription_item": item_details.get("subscription_item"),
                    "invoice_item": None,
                    "proration": False,
                },
            }
        else:
            line["parent"] = {"type": "invoice_item_details", "invoice_item_details": {"invoice_item": None}}
    else:
        line["type"] = "subscription" if subscription else "invoiceitem"
        line["subscription"] = subscription
        line["proration"] = False
