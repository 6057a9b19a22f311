"""Slim snapshots of the Stripe objects revsync reads, from either API shape.

Stripe objects are large; revsync keeps only what the revenue rules and traits need, as plain
JSON-ready dicts (TypedDicts), so they travel through SQS and DynamoDB unchanged. Two API shapes exist
in the wild and both parse here:

* before 2025-03-31: ``current_period_end`` on the subscription, ``invoice.subscription``,
  ``line.subscription``, ``discount.coupon`` as an object;
* after: ``current_period_end`` on each subscription item,
  ``invoice.parent.subscription_details.subscription``,
  ``line.parent.subscription_item_details.subscription``, ``discount.source.coupon``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, NamedTuple, NotRequired, TypedDict

from revsync.errors import InvalidInput

# Statuses in which a subscription is still alive (docs/contracts.md lifecycle).
LIVE_SUBSCRIPTION_STATUSES = frozenset({"trialing", "active", "past_due", "unpaid", "paused"})
# Statuses a subscription never leaves.
TERMINAL_SUBSCRIPTION_STATUSES = frozenset({"canceled", "incomplete_expired"})


class SnapshotError(InvalidInput):
    """A Stripe object is missing something revsync cannot do without."""

    code = "invalid_object"


class Coupon(TypedDict):
    id: str | None
    percent_off: str | None  # decimal as text: exact arithmetic downstream
    amount_off: int | None
    currency: str | None
    duration: str | None  # forever | repeating | once
    duration_in_months: int | None


class Discount(TypedDict):
    id: str | None
    coupon: Coupon | None  # None when Stripe sent only the coupon id (not expanded), or no coupon
    coupon_id: str | None
    start: int | None
    end: int | None
    # False when Stripe sent only the discount's id (a subscription's ``discounts`` in a webhook):
    # the discount itself must be read. A discount object whose ``source.coupon`` is null is expanded
    # and has no coupon (it takes nothing off). Absent in snapshots stored before this field existed.
    expanded: NotRequired[bool]


class Tier(TypedDict):
    up_to: int | None  # None is "inf"
    unit_amount: str | None
    flat_amount: str | None


class Price(TypedDict):
    id: str | None
    nickname: str | None
    product: str | None
    currency: str | None
    unit_amount: str | None
    billing_scheme: str  # per_unit | tiered
    tiers_mode: str | None  # volume | graduated
    tiers: list[Tier]
    divide_by: int | None
    round: str | None  # up | down
    interval: str | None
    interval_count: int
    usage_type: str  # licensed | metered


class SubscriptionItem(TypedDict):
    id: str | None
    quantity: int
    price: Price | None
    current_period_end: int | None
    discounts: list[Discount]


class CustomerSnapshot(TypedDict):
    object: Literal["customer"]
    id: str
    deleted: bool
    email: str | None
    name: str | None
    created: int | None
    currency: str | None
    balance: int | None
    delinquent: bool | None
    metadata: dict[str, str]
    discount: Discount | None
    # The Stripe test clock the customer (and everything of it) lives on; absent: none.
    test_clock: NotRequired[str]
    # ``invoice_settings.default_payment_method``: what its invoices are charged with. Absent: none.
    default_payment_method: NotRequired[str]
    # That payment method itself, when the payload expanded it (a backfill's list, a read): the state
    # keeps it as a payment method of its own (revsync.domain.state.apply), never in the customer.
    default_payment_method_object: NotRequired[PaymentMethodSnapshot]


class SubscriptionSnapshot(TypedDict):
    object: Literal["subscription"]
    id: str
    customer: str
    status: str
    currency: str | None
    created: int | None
    current_period_end: int | None
    trial_end: int | None
    cancel_at_period_end: bool
    cancel_at: int | None
    canceled_at: int | None
    ended_at: int | None
    items: list[SubscriptionItem]
    discounts: list[Discount]
    items_complete: NotRequired[bool]  # False: the payload held only the first page of items
    test_clock: NotRequired[str]  # absent: on no test clock
    schedule: NotRequired[str]  # the subscription schedule managing it; absent: none


class InvoiceLine(TypedDict):
    subscription: str
    period_end: int


# Statuses of a finalized invoice (a draft is not one); a voided one counts nothing.
FINALIZED_INVOICE_STATUSES = frozenset({"open", "paid", "uncollectible", "void"})


class UsageLine(TypedDict):
    """A subscription line of a finalized invoice that may bill a metered price (revsync.domain.mrr
    counts it under the policy's ``metered: last_invoice`` when the subscription's item of that price
    is metered). Amounts in the invoice's currency, minor units."""

    subscription: str
    price: str
    amount: int  # before discounts and taxes
    discount_amounts: dict[str, int]  # discount id -> what it took off this line
    period_start: int
    period_end: int


class InvoiceSnapshot(TypedDict):
    object: Literal["invoice"]
    id: str
    customer: str
    status: str | None
    amount_paid: int
    currency: str | None
    paid_at: int | None
    subscription: str | None
    lines: list[InvoiceLine]
    lines_complete: NotRequired[bool]
    # The payment intents that paid it (``payment_intent`` before 2025-03-31, ``payments`` after, when
    # the payload has them): what ties a charge, and its refunds, to the invoice. Absent: none known.
    payment_intents: NotRequired[list[str]]
    # Of an invoice not paid (absent on a paid one, so a paid invoice's snapshot is what the store keeps
    # of it): the payment attempts made (Stripe counts only up), what is still due, the next retry.
    attempt_count: NotRequired[int]
    amount_remaining: NotRequired[int]
    next_payment_attempt: NotRequired[int | None]
    # Of a finalized invoice with subscription lines that may bill metered prices (absent: none): the
    # lines, and when it was finalized (``status_transitions.finalized_at``, else ``created``).
    usage_lines: NotRequired[list[UsageLine]]
    finalized_at: NotRequired[int]


class CreditNoteSnapshot(TypedDict):
    """What a credit note takes back from a paid invoice (revsync.domain.refunds)."""

    object: Literal["credit_note"]
    id: str
    customer: str
    invoice: str | None
    status: str  # issued | void
    currency: str | None
    post_payment: int  # the part credited after the invoice was paid (minor units)
    refunded: int  # of that, the part refunded to the invoice's payment (a refund on its charge)


class ChargeSnapshot(TypedDict):
    """A customer's charge as far as its refunds go (revsync.domain.refunds)."""

    object: Literal["charge"]
    id: str
    customer: str
    currency: str | None
    amount_refunded: int
    invoice: str | None  # ``charge.invoice`` before 2025-03-31
    payment_intent: str | None


class PhaseItem(TypedDict):
    price_id: str | None
    price: Price | None  # None: sent as an id only (a webhook's schedule), read with the schedule
    quantity: int


class SchedulePhase(TypedDict):
    start_date: int
    currency: str | None
    items: list[PhaseItem]


class ScheduleSnapshot(TypedDict):
    """A subscription schedule as far as the change it has coming goes (revsync.domain.risk): its
    next phase (a ``not_started`` schedule's first), none once it is no longer live."""

    object: Literal["subscription_schedule"]
    id: str
    customer: str
    status: str  # not_started | active | completed | released | canceled
    subscription: str | None
    next_phase: SchedulePhase | None
    test_clock: NotRequired[str]


class PaymentMethodSnapshot(TypedDict):
    """A customer's payment method as far as its card's expiry goes (revsync.domain.risk)."""

    object: Literal["payment_method"]
    id: str
    customer: str
    exp_month: int | None  # None: not a card
    exp_year: int | None
    detached: bool  # detached from the customer: it pays nothing any more (Stripe never re-attaches it)


class DiscountSnapshot(TypedDict):
    """A ``customer.discount.*`` event's object: it only says which customer or subscription changed."""

    object: Literal["discount"]
    id: str | None
    customer: str
    subscription: str | None


Snapshot = (
    CustomerSnapshot
    | SubscriptionSnapshot
    | InvoiceSnapshot
    | DiscountSnapshot
    | CreditNoteSnapshot
    | ChargeSnapshot
    | ScheduleSnapshot
    | PaymentMethodSnapshot
)


# --- small readers: Stripe fields are often null or an id instead of an expanded object ---------
# A field of the wrong type is a SnapshotError, never a TypeError later: the receiver parks such an
# event with its reason (it can be redriven once revsync reads it) instead of answering 5xx.


def _id_of(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        found = value.get("id")
        if found is None or isinstance(found, str):
            return found
    raise SnapshotError("an id field is neither a string nor an object with a string id")


def _int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) >= 2**63:  # Stripe's integers are 64-bit
            raise SnapshotError("integer out of range")
        return value
    raise SnapshotError(f"expected an integer, got {type(value).__name__}")


def _str(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise SnapshotError(f"expected a string, got {type(value).__name__}")


def _bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise SnapshotError(f"expected a boolean, got {type(value).__name__}")


def _number_text(value: Any) -> str | None:
    """An exact decimal as text, from a JSON number or a ``*_decimal`` string."""
    if value is None:
        return None
    # The stripe SDK hands ``*_decimal`` fields over as Decimal; webhooks carry strings.
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise SnapshotError(f"expected a number, got {type(value).__name__}")
    text = str(value)
    try:
        number = Decimal(text)
        sensible = number.is_finite() and -20 <= number.adjusted() <= 20
    except InvalidOperation:
        sensible = False
    if not sensible or len(text) > 40:
        raise SnapshotError("expected a finite decimal number")
    return text


def _decimal_text(decimal_value: Any, integer_value: Any) -> str | None:
    """Stripe sends ``*_decimal`` strings beside integers; prefer the exact string."""
    exact = _number_text(decimal_value) if decimal_value != "" else None
    return exact if exact is not None else _number_text(integer_value)


def _dict(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise SnapshotError(f"expected an object, got {type(value).__name__}")


def _list_data(value: Any) -> list[Any]:
    """A Stripe list object (``{"data": [...]}``) or a plain list."""
    if isinstance(value, dict):
        value = value.get("data")
    if value is None:
        return []
    if isinstance(value, list):
        return value
    raise SnapshotError(f"expected a list, got {type(value).__name__}")


def _required_id(obj: dict[str, Any], field: str, kind: str) -> str:
    value = _id_of(obj.get(field))
    if not value:
        raise SnapshotError(f"{kind} has no {field}")
    return value


# --- parsers --------------------------------------------------------------------------------------


def parse_coupon(raw: Any) -> Coupon | None:
    if raw is None or isinstance(raw, str):
        return None  # absent, or an id only (read from Stripe by id)
    raw = _dict(raw)
    return Coupon(
        id=_id_of(raw.get("id")),
        percent_off=_number_text(raw.get("percent_off")),
        amount_off=_int(raw.get("amount_off")),
        currency=_str(raw.get("currency")),
        duration=_str(raw.get("duration")),
        duration_in_months=_int(raw.get("duration_in_months")),
    )


def parse_discount(raw: Any) -> Discount | None:
    if isinstance(raw, str):  # an unexpanded discount id
        return Discount(id=raw, coupon=None, coupon_id=None, start=None, end=None, expanded=False)
    if raw is None:
        return None
    raw = _dict(raw)
    # Before 2025-09-30.clover ``coupon`` (always expanded); from clover ``source.coupon`` (an id in
    # events and unexpanded reads, an object when expanded, or null). Read by shape, not by the
    # event's api_version, so an account's version upgrade mid-stream changes nothing.
    coupon_raw = raw.get("coupon")
    if coupon_raw is None:
        coupon_raw = _dict(raw.get("source")).get("coupon")
    return Discount(
        id=_id_of(raw.get("id")),
        coupon=parse_coupon(coupon_raw),
        coupon_id=_id_of(coupon_raw),
        start=_int(raw.get("start")),
        end=_int(raw.get("end")),
        expanded=True,
    )


def _parse_discounts(raw: dict[str, Any]) -> list[Discount]:
    found: list[Discount] = []
    seen: set[str] = set()
    # ``discounts`` (list) is the current field; ``discount`` (single) the older one. Both may be set.
    candidates = [*(_list_data(raw.get("discounts"))), raw.get("discount")]
    for candidate in candidates:
        discount = parse_discount(candidate)
        if discount is None:
            continue
        key = discount["id"] or repr(discount)
        if key in seen:
            continue
        seen.add(key)
        found.append(discount)
    return found


def parse_price(price: Any, plan: Any) -> Price | None:
    """A price, or a legacy plan (the same rules apply to both)."""
    if isinstance(price, dict):
        recurring = _dict(price.get("recurring"))
        transform = _dict(price.get("transform_quantity"))
        source = price
        unit = _decimal_text(price.get("unit_amount_decimal"), price.get("unit_amount"))
        interval, count = recurring.get("interval"), recurring.get("interval_count")
        usage = recurring.get("usage_type")
    elif isinstance(plan, dict):
        transform = _dict(plan.get("transform_usage"))
        source = plan
        unit = _decimal_text(plan.get("amount_decimal"), plan.get("amount"))
        interval, count = plan.get("interval"), plan.get("interval_count")
        usage = plan.get("usage_type")
    elif price is None or isinstance(price, str):
        return None  # no price, or an unexpanded price id (a webhook always expands it)
    else:
        raise SnapshotError("subscription item price is not an object")
    tiers = [
        Tier(
            up_to=_int(tier.get("up_to")) if tier.get("up_to") != "inf" else None,
            unit_amount=_decimal_text(tier.get("unit_amount_decimal"), tier.get("unit_amount")),
            flat_amount=_decimal_text(tier.get("flat_amount_decimal"), tier.get("flat_amount")),
        )
        for tier in map(_dict, _list_data(source.get("tiers")))
    ]
    product = source.get("product")
    product_name = _str(product.get("name")) if isinstance(product, dict) else None
    interval_count = _int(count)
    if interval_count is not None and interval_count < 1:
        raise SnapshotError("interval_count must be positive")
    divide_by = _int(transform.get("divide_by"))
    if divide_by is not None and divide_by < 1:
        raise SnapshotError("transform divide_by must be positive")
    return Price(
        id=_id_of(source.get("id")),
        nickname=_str(source.get("nickname")) or product_name,
        product=_id_of(product),
        currency=_str(source.get("currency")),
        unit_amount=unit,
        billing_scheme=_str(source.get("billing_scheme")) or "per_unit",
        tiers_mode=_str(source.get("tiers_mode")),
        tiers=tiers,
        divide_by=divide_by,
        round=_str(transform.get("round")),
        interval=_str(interval),
        interval_count=interval_count or 1,
        usage_type=_str(usage) or "licensed",
    )


def _with_test_clock(snapshot: Any, raw: dict[str, Any]) -> None:
    clock = _id_of(raw.get("test_clock"))
    if clock:
        snapshot["test_clock"] = clock


def parse_customer(raw: dict[str, Any], *, deleted: bool = False) -> CustomerSnapshot:
    metadata = {str(k): _str(v) or "" for k, v in _dict(raw.get("metadata")).items() if v is not None}
    snapshot = CustomerSnapshot(
        object="customer",
        id=_required_id(raw, "id", "customer"),
        deleted=deleted or bool(_bool(raw.get("deleted"))),
        email=_str(raw.get("email")),
        name=_str(raw.get("name")),
        created=_int(raw.get("created")),
        currency=_str(raw.get("currency")),
        balance=_int(raw.get("balance")),
        delinquent=_bool(raw.get("delinquent")),
        metadata=metadata,
        discount=parse_discount(raw.get("discount")),
    )
    _with_test_clock(snapshot, raw)
    default = _dict(raw.get("invoice_settings")).get("default_payment_method")
    default_id = _id_of(default)
    if default_id:
        snapshot["default_payment_method"] = default_id
        if isinstance(default, dict):
            # Stripe leaves a detached payment method the customer's default: it pays nothing.
            detached = _id_of(default.get("customer")) != snapshot["id"]
            expanded = parse_payment_method({**default, "customer": snapshot["id"]}, detached=detached)
            if expanded is not None:
                snapshot["default_payment_method_object"] = expanded
    return snapshot


def parse_payment_method(raw: dict[str, Any], *, detached: bool = False) -> PaymentMethodSnapshot | None:
    """A payment method (None: of no customer, nothing of revsync's). ``detached``: the
    ``payment_method.detached`` event's, whose customer is the one it was detached from."""
    customer = _id_of(raw.get("customer"))
    if not customer:
        return None
    card = _dict(raw.get("card"))
    exp_month, exp_year = _int(card.get("exp_month")), _int(card.get("exp_year"))
    if exp_month is not None and not 1 <= exp_month <= 12:
        raise SnapshotError("card exp_month out of range")
    if exp_year is not None and not 1970 <= exp_year <= 9999:
        raise SnapshotError("card exp_year out of range")
    return PaymentMethodSnapshot(
        object="payment_method",
        id=_required_id(raw, "id", "payment method"),
        customer=customer,
        exp_month=exp_month,
        exp_year=exp_year,
        detached=detached,
    )


def _phase_items(raw_items: list[Any]) -> list[PhaseItem]:
    items: list[PhaseItem] = []
    for item in map(_dict, raw_items):
        quantity = _int(item.get("quantity"))
        if quantity is not None and quantity < 0:
            raise SnapshotError("schedule phase item quantity is negative")
        price, plan = item.get("price"), item.get("plan")
        items.append(
            PhaseItem(
                price_id=_id_of(price) or _id_of(plan),
                price=parse_price(
                    price if isinstance(price, dict) else None, plan if isinstance(plan, dict) else None
                ),
                quantity=1 if quantity is None else quantity,
            )
        )
    return items


LIVE_SCHEDULE_STATUSES = frozenset({"not_started", "active"})


def parse_subscription_schedule(raw: dict[str, Any]) -> ScheduleSnapshot:
    """A schedule and its next phase: a ``not_started`` one's first; an ``active`` one's phase that
    starts when the current one ends; none when it has no more, or is no longer live."""
    status = _str(raw.get("status"))
    if not status:
        raise SnapshotError("subscription schedule has no status")
    phases = sorted(
        (_dict(phase) for phase in _list_data(raw.get("phases"))),
        key=lambda p: _int(p.get("start_date")) or 0,
    )
    current = _dict(raw.get("current_phase"))
    current_end = _int(current.get("end_date"))
    following: dict[str, Any] | None = None
    if status == "not_started":
        following = phases[0] if phases else None
    elif status == "active" and current_end is not None:
        following = next((p for p in phases if (_int(p.get("start_date")) or 0) >= current_end), None)
    next_phase: SchedulePhase | None = None
    if following is not None:
        start = _int(following.get("start_date"))
        if start is None:
            raise SnapshotError("subscription schedule phase has no start_date")
        next_phase = SchedulePhase(
            start_date=start,
            currency=_str(following.get("currency")),
            items=_phase_items(_list_data(following.get("items"))),
        )
    snapshot = ScheduleSnapshot(
        object="subscription_schedule",
        id=_required_id(raw, "id", "subscription schedule"),
        customer=_required_id(raw, "customer", "subscription schedule"),
        status=status,
        subscription=_id_of(raw.get("subscription")),
        next_phase=next_phase,
    )
    _with_test_clock(snapshot, raw)
    return snapshot


def with_phase_prices(snapshot: ScheduleSnapshot, prices: Mapping[str, Price]) -> ScheduleSnapshot:
    """The schedule with its next phase's unexpanded prices filled from ``prices`` (by id): a price's
    amount and interval never change."""
    phase = snapshot["next_phase"]
    if phase is None or all(item["price"] is not None for item in phase["items"]):
        return snapshot
    items = [
        {**item, "price": prices.get(item["price_id"] or "")} if item["price"] is None else item
        for item in phase["items"]
    ]
    return {**snapshot, "next_phase": {**phase, "items": items}}  # type: ignore[typeddict-item]


def managing_schedule(subscription: dict[str, Any]) -> ScheduleSnapshot:
    """The schedule a subscription came with (``schedule`` expanded, as a list can: its phases' prices
    are ids, 4 levels down at most), the prices of the subscription's own items filled in."""
    schedule = parse_subscription_schedule(_dict(subscription.get("schedule")))
    items = [parse_subscription_item(item) for item in _list_data(subscription.get("items"))]
    own = {item["price"]["id"]: item["price"] for item in items if item["price"] and item["price"]["id"]}
    return with_phase_prices(schedule, own)


def unexpanded_prices(snapshot: Snapshot) -> set[str]:
    """The prices a schedule's next phase names by id only."""
    if snapshot["object"] != "subscription_schedule" or snapshot["next_phase"] is None:
        return set()
    return {
        item["price_id"]
        for item in snapshot["next_phase"]["items"]
        if item["price"] is None and item["price_id"]
    }


def parse_subscription_item(raw: Any) -> SubscriptionItem:
    item = _dict(raw)
    quantity = _int(item.get("quantity"))
    if quantity is not None and quantity < 0:
        raise SnapshotError("subscription item quantity is negative")
    return SubscriptionItem(
        id=_id_of(item.get("id")),
        quantity=1 if quantity is None else quantity,
        price=parse_price(item.get("price"), item.get("plan")),
        current_period_end=_int(item.get("current_period_end")),
        discounts=_parse_discounts(item),
    )


def _items_period_end(items: list[SubscriptionItem]) -> int | None:
    """From 2025-03-31.basil the period lives on the items; the subscription renews at the first."""
    item_ends = [i["current_period_end"] for i in items if i["current_period_end"] is not None]
    return min(item_ends) if item_ends else None


def parse_subscription(raw: dict[str, Any]) -> SubscriptionSnapshot:
    items = [parse_subscription_item(item) for item in _list_data(raw.get("items"))]
    period_end = _int(raw.get("current_period_end"))
    if period_end is None:
        period_end = _items_period_end(items)
    status = raw.get("status")
    if not isinstance(status, str) or not status:
        raise SnapshotError("subscription has no status")
    snapshot = SubscriptionSnapshot(
        object="subscription",
        id=_required_id(raw, "id", "subscription"),
        customer=_required_id(raw, "customer", "subscription"),
        status=status,
        currency=_str(raw.get("currency")),
        created=_int(raw.get("created")),
        current_period_end=period_end,
        trial_end=_int(raw.get("trial_end")),
        cancel_at_period_end=bool(_bool(raw.get("cancel_at_period_end"))),
        cancel_at=_int(raw.get("cancel_at")),
        canceled_at=_int(raw.get("canceled_at")),
        ended_at=_int(raw.get("ended_at")),
        items=items,
        discounts=_parse_discounts(raw),
    )
    items_list = raw.get("items")
    if isinstance(items_list, dict) and items_list.get("has_more") is True:
        snapshot["items_complete"] = False
    _with_test_clock(snapshot, raw)
    schedule = _id_of(raw.get("schedule"))
    if schedule:
        snapshot["schedule"] = schedule
    return snapshot


def with_all_items(snapshot: SubscriptionSnapshot, items: list[SubscriptionItem]) -> SubscriptionSnapshot:
    """The subscription with every item (the webhook carried only the first page of them)."""
    complete: SubscriptionSnapshot = {**snapshot, "items": items}
    complete.pop("items_complete", None)
    complete["current_period_end"] = _items_period_end(items) or snapshot["current_period_end"]
    return complete


class InvoiceLineItems(NamedTuple):
    """What revsync keeps of all of an invoice's lines: its subscription lines, and its usage lines."""

    lines: list[InvoiceLine]
    usage: list[UsageLine]


def parse_line_items(raw_lines: list[Any]) -> InvoiceLineItems:
    return InvoiceLineItems(parse_invoice_lines(raw_lines), parse_usage_lines(raw_lines))


def with_all_lines(snapshot: InvoiceSnapshot, items: InvoiceLineItems) -> InvoiceSnapshot:
    """The invoice with every subscription line, and of a finalized one every usage line (the webhook
    carried only the first page)."""
    complete: InvoiceSnapshot = {**snapshot, "lines": items.lines}
    complete.pop("lines_complete", None)
    if "finalized_at" in complete:
        complete.pop("usage_lines", None)
        if items.usage:
            complete["usage_lines"] = items.usage
    return complete


def invoice_subscription_id(raw: dict[str, Any]) -> str | None:
    """``invoice.subscription`` before 2025-03-31, ``parent.subscription_details`` after."""
    legacy = _id_of(raw.get("subscription"))
    if legacy:
        return legacy
    details = _dict(_dict(raw.get("parent")).get("subscription_details"))
    return _id_of(details.get("subscription"))


def _line_subscription_id(line: dict[str, Any]) -> str | None:
    parent = _dict(line.get("parent"))
    if parent:  # after 2025-03-31
        if parent.get("type") == "subscription_item_details":
            return _id_of(_dict(parent.get("subscription_item_details")).get("subscription"))
        return None
    if line.get("type") == "subscription":  # before
        return _id_of(line.get("subscription"))
    return None


def parse_invoice_lines(raw_lines: list[Any]) -> list[InvoiceLine]:
    """The subscription lines (subscription and period end) of invoice line items."""
    lines: list[InvoiceLine] = []
    for line in map(_dict, raw_lines):
        subscription = _line_subscription_id(line)
        period_end = _int(_dict(line.get("period")).get("end"))
        if subscription and period_end is not None:
            lines.append(InvoiceLine(subscription=subscription, period_end=period_end))
    return lines


def _line_price(line: dict[str, Any]) -> tuple[str | None, str | None]:
    """A line's price id and, when the line says it, its usage type: ``price`` (or ``plan``) expanded
    before 2025-03-31, ``pricing.price_details.price`` (an id: the usage type is the subscription
    item's) after."""
    price = line.get("price") if line.get("price") is not None else line.get("plan")
    if isinstance(price, dict):
        recurring = _dict(price.get("recurring"))
        usage = recurring.get("usage_type") if recurring else price.get("usage_type")
        return _id_of(price.get("id")), _str(usage)
    details = _dict(_dict(line.get("pricing")).get("price_details"))
    return _id_of(details.get("price")) or _id_of(price), None


def parse_usage_lines(raw_lines: list[Any]) -> list[UsageLine]:
    """The subscription lines of invoice line items that may bill a metered price (a line whose price
    says ``licensed`` does not). The amount before discounts and taxes: ``subtotal`` (2025-03-31 on),
    else ``amount_excluding_tax``, else ``amount``; ``discount_amounts`` per discount."""
    found: list[UsageLine] = []
    for line in map(_dict, raw_lines):
        subscription = _line_subscription_id(line)
        price, usage = _line_price(line)
        if not subscription or not price or usage == "licensed":
            continue
        period = _dict(line.get("period"))
        start, end = _int(period.get("start")), _int(period.get("end"))
        amount = next(
            (
                _int(line.get(name))
                for name in ("subtotal", "amount_excluding_tax", "amount")
                if line.get(name) is not None
            ),
            None,
        )
        if start is None or end is None or amount is None:
            continue
        discounts: dict[str, int] = {}
        for entry in map(_dict, _list_data(line.get("discount_amounts"))):
            taken = _int(entry.get("amount")) or 0
            key = _id_of(entry.get("discount")) or ""
            discounts[key] = discounts.get(key, 0) + taken
        found.append(
            UsageLine(
                subscription=subscription,
                price=price,
                amount=amount,
                discount_amounts=discounts,
                period_start=start,
                period_end=end,
            )
        )
    return found


def parse_invoice(raw: dict[str, Any]) -> InvoiceSnapshot:
    lines = parse_invoice_lines(_list_data(raw.get("lines")))
    transitions = _dict(raw.get("status_transitions"))
    amount_paid = _int(raw.get("amount_paid"))
    status = _str(raw.get("status"))
    snapshot = InvoiceSnapshot(
        object="invoice",
        id=_required_id(raw, "id", "invoice"),
        customer=_required_id(raw, "customer", "invoice"),
        status=status,
        amount_paid=amount_paid or 0,
        currency=_str(raw.get("currency")),
        paid_at=_int(transitions.get("paid_at")),
        subscription=invoice_subscription_id(raw),
        lines=lines,
    )
    if status != "paid":
        attempts, remaining = _int(raw.get("attempt_count")) or 0, _int(raw.get("amount_remaining")) or 0
        if attempts < 0 or remaining < 0:
            raise SnapshotError("invoice attempt_count or amount_remaining is negative")
        snapshot["attempt_count"] = attempts
        snapshot["amount_remaining"] = remaining
        snapshot["next_payment_attempt"] = _int(raw.get("next_payment_attempt"))
    lines_list = raw.get("lines")
    if isinstance(lines_list, dict) and lines_list.get("has_more") is True:
        snapshot["lines_complete"] = False
    intents = _invoice_payment_intents(raw)
    if intents:
        snapshot["payment_intents"] = intents
    usage = parse_usage_lines(_list_data(raw.get("lines"))) if status in FINALIZED_INVOICE_STATUSES else []
    finalized_at = _int(transitions.get("finalized_at")) or _int(raw.get("created"))
    incomplete = snapshot.get("lines_complete") is False and status in FINALIZED_INVOICE_STATUSES
    if (usage or incomplete) and finalized_at is not None:
        # (Lines on a page the webhook did not carry may be usage lines: the write path reads them.)
        if usage:
            snapshot["usage_lines"] = usage
        snapshot["finalized_at"] = finalized_at
    return snapshot


def _invoice_payment_intents(raw: dict[str, Any]) -> list[str]:
    found = [_id_of(raw.get("payment_intent"))]  # before 2025-03-31
    for payment in map(_dict, _list_data(raw.get("payments"))):
        found.append(_id_of(_dict(payment.get("payment")).get("payment_intent")))
    return sorted({intent for intent in found if intent})


def parse_credit_note(raw: dict[str, Any]) -> CreditNoteSnapshot:
    """A credit note: its post-payment part (``post_payment_amount``; before that field, ``amount`` of
    a ``post_payment`` note) and how much of it was refunded (``refunds[].amount_refunded``; before
    that list, a ``refund`` read as everything not returned out of band)."""
    status = _str(raw.get("status")) or "issued"
    amount = _int(raw.get("amount")) or 0
    post_payment = _int(raw.get("post_payment_amount"))
    if post_payment is None:
        post_payment = amount if raw.get("type") == "post_payment" else 0
    refunds = raw.get("refunds")
    if isinstance(refunds, list | dict):
        refunded = sum(_int(_dict(r).get("amount_refunded")) or 0 for r in _list_data(refunds))
    elif raw.get("refund") is not None:
        refund = raw.get("refund")
        expanded = _int(refund.get("amount")) if isinstance(refund, dict) else None
        out_of_band = _int(raw.get("out_of_band_amount")) or 0
        refunded = expanded if expanded is not None else post_payment - out_of_band
    else:
        refunded = 0
    if post_payment < 0 or not 0 <= refunded <= max(post_payment, 0):
        raise SnapshotError("credit note amounts out of range")
    return CreditNoteSnapshot(
        object="credit_note",
        id=_required_id(raw, "id", "credit note"),
        customer=_required_id(raw, "customer", "credit note"),
        invoice=_id_of(raw.get("invoice")),
        status=status,
        currency=_str(raw.get("currency")),
        post_payment=post_payment,
        refunded=refunded,
    )


def parse_charge(raw: dict[str, Any]) -> ChargeSnapshot | None:
    """A charge (None: a charge of no customer, nothing of revsync's)."""
    customer = _id_of(raw.get("customer"))
    if not customer:
        return None
    refunded = _int(raw.get("amount_refunded")) or 0
    if refunded < 0:
        raise SnapshotError("charge amount_refunded is negative")
    return ChargeSnapshot(
        object="charge",
        id=_required_id(raw, "id", "charge"),
        customer=customer,
        currency=_str(raw.get("currency")),
        amount_refunded=refunded,
        invoice=_id_of(raw.get("invoice")),
        payment_intent=_id_of(raw.get("payment_intent")),
    )


def parse_discount_event(raw: dict[str, Any]) -> DiscountSnapshot:
    return DiscountSnapshot(
        object="discount",
        id=_id_of(raw.get("id")),
        customer=_required_id(raw, "customer", "discount"),
        subscription=_id_of(raw.get("subscription")),
    )


def parse_object(raw: dict[str, Any]) -> Snapshot | None:
    """An object read from Stripe by id, by its ``object`` (None: nothing of revsync's any more, such
    as a charge or payment method of no customer)."""
    kind = raw.get("object")
    if kind == "customer":
        return parse_customer(raw)
    if kind == "subscription":
        return parse_subscription(raw)
    if kind == "invoice":
        return parse_invoice(raw)
    if kind == "credit_note":
        return parse_credit_note(raw)
    if kind == "charge":
        return parse_charge(raw)
    if kind == "subscription_schedule":
        return parse_subscription_schedule(raw)
    if kind == "payment_method":
        return parse_payment_method(raw)
    raise SnapshotError(f"revsync does not read {kind!r} objects")


def discounts_of(snapshot: Snapshot) -> Iterator[Discount]:
    if snapshot["object"] == "customer":
        if snapshot["discount"] is not None:
            yield snapshot["discount"]
    elif snapshot["object"] == "subscription":
        yield from snapshot["discounts"]
        for item in snapshot["items"]:
            yield from item["discounts"]


def map_discounts(snapshot: Snapshot, fill: Callable[[Discount], Discount]) -> Snapshot:
    """The snapshot with ``fill`` applied to each of its discounts (customer, subscription, items)."""
    if snapshot["object"] == "customer" and snapshot["discount"] is not None:
        return {**snapshot, "discount": fill(snapshot["discount"])}
    if snapshot["object"] == "subscription":
        items = [{**item, "discounts": [fill(d) for d in item["discounts"]]} for item in snapshot["items"]]
        return {**snapshot, "discounts": [fill(d) for d in snapshot["discounts"]], "items": items}  # type: ignore[typeddict-item]
    return snapshot


def unresolved_coupon_ids(snapshot: Snapshot) -> set[str]:
    """Coupons to look up: Stripe sends ``discount.source.coupon`` as an id after 2025-03-31."""
    return {d["coupon_id"] for d in discounts_of(snapshot) if d["coupon"] is None and d["coupon_id"]}


def has_unexpanded_discounts(snapshot: Snapshot) -> bool:
    """Discounts known only by id (a subscription's ``discounts`` list in a webhook)."""
    return any(
        not d.get("expanded", d["coupon"] is not None or d["coupon_id"] is not None)
        for d in discounts_of(snapshot)
    )


def with_known_discounts(snapshot: Snapshot, known: Mapping[str, Discount]) -> Snapshot:
    """Unexpanded discounts filled from ones already seen: a discount's coupon never changes."""
    return map_discounts(
        snapshot, lambda d: known.get(d["id"] or "", d) if d["coupon"] is None and d["id"] else d
    )


def with_coupons(snapshot: Snapshot, coupons: Mapping[str, Coupon]) -> Snapshot:
    def fill(discount: Discount) -> Discount:
        coupon_id = discount["coupon_id"]
        if discount["coupon"] is None and coupon_id and coupon_id in coupons:
            return {**discount, "coupon": coupons[coupon_id]}
        return discount

    return map_discounts(snapshot, fill)


def fetch_target(snapshot: Snapshot) -> tuple[str, str]:
    """Which Stripe object to read for this snapshot: a discount's owner, else the object itself."""
    if snapshot["object"] == "discount":
        if snapshot["subscription"]:
            return "subscription", snapshot["subscription"]
        return "customer", snapshot["customer"]
    return snapshot["object"], snapshot["id"]


def customer_id_of(snapshot: Snapshot) -> str:
    """The Stripe customer a snapshot belongs to: the unit of ordering and storage."""
    if snapshot["object"] == "customer":
        return snapshot["id"]
    return snapshot["customer"]


def is_terminal(snapshot: Snapshot) -> bool:
    """A state Stripe never leaves: a deleted customer, an ended subscription, a paid invoice."""
    if snapshot["object"] == "customer":
        return snapshot["deleted"]
    if snapshot["object"] == "subscription":
        return snapshot["status"] in TERMINAL_SUBSCRIPTION_STATUSES
    if snapshot["object"] == "invoice":
        return snapshot["status"] == "paid"
    if snapshot["object"] == "credit_note":
        return snapshot["status"] == "void"
    if snapshot["object"] == "subscription_schedule":
        return snapshot["status"] not in LIVE_SCHEDULE_STATUSES
    if snapshot["object"] == "payment_method":
        return snapshot["detached"]
    return False
