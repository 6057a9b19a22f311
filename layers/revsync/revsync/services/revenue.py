"""MRR history and monthly revenue movements (docs/contracts.md "MRR history and movements"): the read side.

``GET .../customers/{external_id}/history`` replays the customer's kept observations;
``GET .../revenue`` reads the tenant's totals from the revenue rollup (whole years before the first
month asked, then months: a few items per month asked, never its customers) and accumulates them
into start / movements / end per month, saying how recent the newest change counted is (``as_of``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

from revsync.domain.history import (
    Contribution,
    Timeline,
    history_document,
    month_of,
    movements,
    revenue_months,
)
from revsync.domain.rollup import RevenuePeriods
from revsync.domain.tenancy import validate_tenant_id
from revsync.errors import InvalidInput
from revsync.services.tenants import RecordReader, customer_record

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_CURRENCY = re.compile(r"^[a-z]{3}$")
MAX_MONTHS = 120
DEFAULT_MONTHS = 12
# Months are Unix-time ranges; the last one's end (the next month's start) must be a valid date too.
FIRST_MONTH, LAST_MONTH = "1970-01", "9998-12"


class HistoryReader(Protocol):
    def timeline(self, tenant_id: str, customer_id: str) -> Timeline | None:
        """The customer's whole MRR timeline (None: nothing stored for that customer)."""
        ...


class RevenueReader(Protocol):
    def periods(self, tenant_id: str, first: str, last: str) -> RevenuePeriods: ...


def customer_history(
    tenant_id: str, external_id: str, *, records: RecordReader, histories: HistoryReader
) -> dict[str, Any]:
    record = customer_record(tenant_id, external_id, records=records)  # 400 / 404 as that route
    customer_id = str(record["stripe_customer_id"])
    return history_document(movements(histories.timeline(tenant_id, customer_id) or ()))


def _month(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    if not _MONTH.fullmatch(value) or not FIRST_MONTH <= value <= LAST_MONTH:
        message = f"{name} must be a month as YYYY-MM, {FIRST_MONTH} to {LAST_MONTH}"
        raise InvalidInput(message, "invalid_month")
    return value


def _index(month: str) -> int:
    year, number = (int(part) for part in month.split("-"))
    return year * 12 + number - 1


def _months_before(month: str, count: int) -> str:
    index = max(_index(month) - count, _index(FIRST_MONTH))
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _most_common(totals: Mapping[str, Mapping[str, Contribution]], last: str) -> str | None:
    """The currency most of the tenant's paying customers use at the end of ``last``."""

    def weight(currency: str) -> tuple[int, int, str]:
        upto = [t for period, t in totals[currency].items() if period <= last]
        return sum(t.net_customers for t in upto), sum(t.net_mrr for t in upto), currency

    return max(totals, key=weight, default=None)


def revenue(tenant_id: str, query: Mapping[str, str], *, totals: RevenueReader, now: int) -> dict[str, Any]:
    """``?from=YYYY-MM&to=YYYY-MM[&currency=usd]``; without them the twelve months up to now's.
    ``as_of`` (an extension of the contract's document): when the newest change counted was made."""
    tenant_id = validate_tenant_id(tenant_id)
    last = _month(query.get("to"), "to") or month_of(now)
    first = _month(query.get("from"), "from") or _months_before(last, DEFAULT_MONTHS - 1)
    if first > last:
        raise InvalidInput("from must not be after to", "invalid_range")
    if _index(last) - _index(first) + 1 > MAX_MONTHS:
        raise InvalidInput(f"at most {MAX_MONTHS} months per request", "range_too_long")
    currency = query.get("currency")
    if currency is not None and not _CURRENCY.fullmatch(currency):
        raise InvalidInput("currency must be a lowercase ISO code such as usd", "invalid_currency")
    found = totals.periods(tenant_id, first, last)
    currency = currency or _most_common(found.totals, last)
    return {
        "currency": currency,
        "months": revenue_months(found.totals.get(currency or "", {}), first, last),
        "as_of": found.as_of,
    }
