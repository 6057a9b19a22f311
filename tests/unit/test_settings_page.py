"""The settings page's revenue policy section: the form shows the policy in force, posts a new one to
the policy route, and shows the recompute's progress (the page's own script polls it)."""

from __future__ import annotations

from dataclasses import replace
from html.parser import HTMLParser
from typing import Any

from revsync.domain.policy import RevenuePolicy
from revsync.domain.tenancy import Connection, Recompute, Tenant, status_document
from revsync.services.settings_page import render

NOW = 1_800_000_000


class _Form(HTMLParser):
    """The policy form's fields: input values and each select's selected option; texts by id."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str | None] = {}
        self.options: dict[str, list[str]] = {}
        self.texts: dict[str, str] = {}
        self.forms: set[str] = set()
        self._select: str | None = None
        self._text: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "form":
            self.forms.add(str(attributes.get("id")))
        elif tag == "input":
            self.values[str(attributes.get("id"))] = attributes.get("value")
        elif tag == "select":
            self._select = str(attributes.get("id"))
            self.options[self._select] = []
        elif tag == "option" and self._select is not None:
            self.options[self._select].append(str(attributes["value"]))
            if "selected" in attributes:
                self.values[self._select] = attributes["value"]
        elif tag == "span" and "id" in attributes:
            self._text = str(attributes["id"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        if tag == "span":
            self._text = None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self.texts[self._text] = self.texts.get(self._text, "") + data


def _page(tenant: Tenant) -> tuple[_Form, str]:
    status: dict[str, Any] = status_document(tenant)
    page = render(status, candidates=[])
    form = _Form()
    form.feed(page)
    return form, page


def _connected() -> Tenant:
    return Tenant("acme", Connection("connected", "oauth", "acct_1", connected_at=NOW)).with_config("id")


def test_the_form_shows_the_policy_in_force_and_its_recompute() -> None:
    tenant = _connected().with_policy(
        RevenuePolicy(churn_after_days=30, churn_at="scheduled", discounts="none", metered="last_invoice")
    )
    tenant = replace(tenant, recompute=Recompute(tenant.config_version, NOW, "cus_9", 120, updated_at=NOW))

    form, page = _page(tenant)

    assert "policy" in form.forms
    assert form.values == {
        "trait": "id",
        "churn-after-days": "30",
        "churn-at": "scheduled",
        "discounts": "none",
        "metered": "last_invoice",
        "risk-kind": "dunning",  # the customers at risk's selector, beside the chart
    }
    assert form.options["churn-at"] == ["ended", "scheduled"]
    assert form.options["discounts"] == ["active", "forever_only", "none"]
    assert form.options["metered"] == ["excluded", "last_invoice"]
    assert (form.texts["policy-state"], form.texts["policy-done"]) == ("recomputing", "120")
    assert 'call("PUT", "/policy", body)' in page  # the route the form posts to
    assert 'call("GET", "/policy")' in page  # and the one its progress is polled from


def test_the_default_policy_leaves_the_days_empty_and_no_recompute_is_none() -> None:
    form, _ = _page(_connected())
    assert (form.values["churn-after-days"], form.values["churn-at"], form.values["discounts"]) == (
        "",
        "ended",
        "active",
    )
    assert (form.texts["policy-state"], form.texts["policy-done"]) == ("none", "0")


def test_a_tenant_without_a_connection_sees_the_policy_but_no_form() -> None:
    form, page = _page(Tenant("acme"))
    assert "policy" not in form.forms
    assert "Connect Stripe to choose the revenue policy." in page
    assert form.texts["policy-state"] == "none"
