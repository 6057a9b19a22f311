"""The customers at risk by kind (revsync.domain.at_risk, revsync.services.risks): what the record item
carries for each signal, the route's inputs, its opaque signed cursor, and the settings page's list."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from revsync.domain import at_risk
from revsync.domain.at_risk import (
    KINDS,
    Position,
    Undated,
    issue_cursor,
    page_limit,
    read_cursor,
    risk_attributes,
)
from revsync.domain.risk import NO_RISK
from revsync.errors import InvalidInput
from revsync.services import risks
from revsync.services.settings_page import risks_section

from tests.fakes import FakeCustomers

KEY = "state-key"
DUNNING = KINDS["dunning"]
NOTHING = dict.fromkeys(risk_attributes(None))


@pytest.mark.parametrize(
    ("signals", "listed"),
    [
        ({}, {}),
        ({"in_dunning": True, "dunning_since": 100}, {"dunning_since": 100}),
        ({"in_dunning": True}, {"dunning_since": Undated(None)}),  # unpaid, or delinquent
        ({"in_dunning": True, "last_payment_failed_at": 90}, {"dunning_since": Undated(90)}),
        ({"in_dunning": False, "dunning_since": 100}, {}),  # not in dunning: whatever the date says
        (
            {"cancel_scheduled_at": 200, "mrr_at_risk": 2500},
            {"cancel_scheduled_at": 200, "mrr_at_risk": 2500},
        ),
        ({"mrr_at_risk": 2500}, {}),  # no pending cancellation: no MRR at risk listed
        (
            {"scheduled_change_at": 300, "scheduled_mrr": 900},
            {"scheduled_change_at": 300, "scheduled_mrr": 900},
        ),
        ({"scheduled_change_at": 300}, {"scheduled_change_at": 300}),
        ({"trial_ends_at": 400}, {"trial_ends_at": 400}),
        ({"card_expires_at": 500}, {"card_expires_at": 500}),
    ],
)
def test_each_signal_is_the_attribute_its_kind_is_listed_by(
    signals: dict[str, Any], listed: dict[str, Any]
) -> None:
    assert risk_attributes({**NO_RISK, **signals}) == {**NOTHING, **listed}


def test_a_record_without_risk_signals_is_listed_under_no_kind() -> None:
    assert risk_attributes(None) == NOTHING
    assert set(NOTHING) >= {kind.since for kind in KINDS.values()}


@pytest.mark.parametrize(("value", "limit"), [(None, 50), ("1", 1), ("100", 100), ("007", 7)])
def test_a_limit_is_a_whole_number_from_1_to_100(value: str | None, limit: int) -> None:
    assert page_limit(value) == limit


@pytest.mark.parametrize("value", ["", "0", "101", "-1", "1.5", " 5", "1e2", "abc", "٣"])
def test_any_other_limit_is_refused(value: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        page_limit(value)
    assert refused.value.code == "invalid_limit"


def _refused(cursor: str, tenant_id: str = "acme", kind: str = "dunning", key: str = KEY) -> bool:
    """Whether the cursor is refused, as ``invalid_cursor`` (any other exception fails the test)."""
    with pytest.raises(InvalidInput) as refused:
        read_cursor(cursor, tenant_id, KINDS[kind], key)
    return refused.value.code == "invalid_cursor"


def test_a_cursor_reads_back_only_for_its_tenant_and_kind_with_the_stacks_key() -> None:
    position = Position(1_800_000_000, "u-ü/1")
    cursor = issue_cursor("acme", DUNNING, position, KEY)
    assert read_cursor(cursor, "acme", DUNNING, KEY) == position
    assert "u-" not in cursor  # opaque (though not secret: the caller was just given that customer)
    assert _refused(cursor, tenant_id="globex")
    assert _refused(cursor, kind="trial_ending")
    assert _refused(cursor, key="another-key")  # the state key rolled: start from the first page
    payload, signature = cursor.split(".")
    other = issue_cursor("acme", DUNNING, Position(1, "u-0"), KEY)
    assert _refused(f"{other.split('.')[0]}.{signature}")  # another position, this signature
    assert _refused(f"{payload}.{signature[:-1]}")
    assert _refused(f"{payload}.{signature}.")
    assert _refused(payload)


@given(st.text(max_size=200))
def test_whatever_arrives_as_a_cursor_is_refused_with_invalid_cursor(cursor: str) -> None:
    assert _refused(cursor)


def test_only_a_signed_well_formed_position_is_read() -> None:
    for body in (b"not json", b'{"t": "acme", "k": "dunning", "s": "1", "e": "u"}', b'{"t": "acme"}', b"[]"):
        payload = at_risk._b64(body)
        assert _refused(f"{payload}.{at_risk._signature(payload, KEY)}"), body


def _store(*records: tuple[str, str, dict[str, Any]]) -> FakeCustomers:
    customers = FakeCustomers()
    for version, (tenant_id, external_id, signals) in enumerate(records, start=1):
        record: Any = {
            "tenant_id": tenant_id,
            "external_id": external_id,
            "stripe_customer_id": f"cus_{external_id}",
            "mrr": 4900,
            "currency": "usd",
            "risk": {**NO_RISK, **signals},
        }
        customers.project(record, version, None, repair=False)
    return customers


def test_the_route_pages_newest_first_and_reads_the_key_only_for_a_cursor() -> None:
    customers = _store(*(("acme", f"u-{n}", {"trial_ends_at": 100 + n}) for n in range(3)))
    reads: list[str] = []

    def key() -> str:
        reads.append(KEY)
        return KEY

    def page(query: dict[str, str]) -> dict[str, Any]:
        return risks.at_risk("acme", query, reader=customers, cursor_key=key)

    everything = page({"kind": "trial_ending"})
    assert ([c["since"] for c in everything["customers"]], everything["next"], reads) == (
        [102, 101, 100],
        None,
        [],
    )
    first = page({"kind": "trial_ending", "limit": "2"})
    assert [c["external_id"] for c in first["customers"]] == ["u-2", "u-1"]
    last = page({"kind": "trial_ending", "limit": "2", "cursor": first["next"]})
    assert ([c["external_id"] for c in last["customers"]], last["next"]) == (["u-0"], None)
    assert len(reads) == 2  # issuing the first page's cursor, reading it


@pytest.mark.parametrize(
    ("tenant_id", "query", "error"),
    [
        ("-bad-", {"kind": "dunning"}, "invalid_tenant_id"),
        ("acme", {}, "invalid_kind"),
        ("acme", {"kind": "Dunning"}, "invalid_kind"),
        ("acme", {"kind": "dunning", "limit": "0"}, "invalid_limit"),
        ("acme", {"kind": "dunning", "cursor": ""}, "invalid_cursor"),
    ],
)
def test_bad_inputs_are_refused_before_anything_is_read(
    tenant_id: str, query: dict[str, str], error: str
) -> None:
    customers = FakeCustomers()

    def key() -> str:
        return KEY

    with pytest.raises(InvalidInput) as refused:
        risks.at_risk(tenant_id, query, reader=customers, cursor_key=key)
    assert (refused.value.code, customers.reads) == (error, 0)


def test_the_settings_list_shows_each_customer_escaped_and_says_when_it_could_not_be_read() -> None:
    page = {
        "kind": "change_scheduled",
        "customers": [
            {
                "external_id": "<b>u-1</b>",
                "stripe_customer_id": "cus_1",
                "mrr": 4900,
                "currency": "usd",
                "since": 1_767_225_600,
                "scheduled_mrr": 1900,
            }
        ],
        "next": "abc.def",
    }
    shown = risks_section("/tenants/acme/risks", page, 10)
    assert "&lt;b&gt;u-1&lt;/b&gt;" in shown
    assert "<b>" not in shown
    assert "49.00 USD (then 19.00 USD)" in shown
    assert "2026-01-01" in shown
    assert '<option value="change_scheduled" selected>' in shown
    assert 'data-next="abc.def"' in shown
    assert 'id="risk-more">' in shown  # there is more
    empty = risks_section("/tenants/acme/risks", {**page, "customers": [], "next": None}, 10)
    assert 'id="risk-more" hidden' in empty
    assert "No customers of this kind." in empty
    assert "could not be read now" in risks_section("/tenants/acme/risks", None, 10)
