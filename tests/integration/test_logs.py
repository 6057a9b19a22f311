"""No secret or customer e-mail reaches a log, and each function's lines are its own."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from aws_lambda_powertools import Logger

from local import lambda_runtime
from local import stripe_shapes as S
from local.inprocess import InProcessStack
from tests.conftest import FROZEN_NOW
from tests.integration.conftest import PLATFORM_SECRET

pytestmark = pytest.mark.integration


@pytest.fixture
def debug_logs() -> Any:
    """Every function's Powertools logger at DEBUG for this test (the suite runs them at WARNING): the
    per-event lines (a queued webhook, an applied event) are DEBUG, and must be as clean."""
    loggers: list[Logger] = [
        lambda_runtime.load_module(f).logger
        for f in ("WebhookFunction", "WorkerFunction", "TenantApiFunction")
    ]
    levels = [logger.log_level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


def test_no_secret_or_email_in_any_log_line_and_function_names_do_not_leak(
    stack: InProcessStack, connect_oauth: Any, caplog: pytest.LogCaptureFixture, debug_logs: Any
) -> None:
    connect_oauth("acme", "acct_acme")
    customer = S.customer("cus_1", email="ada.lovelace@example.com", metadata={"app_id": "u-1"})
    stack.post_webhook(
        S.event("customer.created", customer, created=FROZEN_NOW - 9, account="acct_acme"), PLATFORM_SECRET
    )
    stack.post_webhook(
        S.event("customer.updated", customer, created=FROZEN_NOW - 8, account="acct_acme"), "whsec_wrong"
    )
    stack.drain()
    stack.request(
        "PUT",
        "/tenants/direct/stripe/connection",
        {"api_key": "rk_test_supersecretkey123", "webhook_secret": "whsec_tenantsecret123"},
    )
    stack.request("GET", "/tenants/acme/customers/u-1")
    # Each record as its function's Powertools formatter writes it to CloudWatch.
    formatters = {
        module.logger.service: module.logger.registered_formatter
        for module in map(
            lambda_runtime.load_module, ("WebhookFunction", "WorkerFunction", "TenantApiFunction")
        )
    }
    formatted = [formatters[r.name].format(r) for r in caplog.records if r.name in formatters]
    text = "\n".join(formatted) + caplog.text
    lines = [json.loads(line) for line in formatted]
    assert len(lines) >= 4  # the receiver (twice), the worker and the tenant API all logged
    for needle in ("whsec_", "rk_test_", "sk_test_", "ada.lovelace", "@example.com"):
        assert needle not in text
    services = {
        "revsync-webhook": "WebhookFunction",
        "revsync-worker": "WorkerFunction",
        "revsync-tenants": "TenantApiFunction",
    }
    for line in lines:
        if "function_name" in line:
            assert services[line["service"]] == line["function_name"], line


def test_what_scanners_send_the_url_is_a_debug_line_and_a_forgery_an_info_line(
    stack: InProcessStack, caplog: pytest.LogCaptureFixture, debug_logs: Any
) -> None:
    """A public function URL gets probed for other paths: those lines stay below the deployed INFO
    level (the metric counts them), where a bad signature on the webhook path does not."""
    receiver = lambda_runtime.load_module("WebhookFunction").logger
    for method, path, headers in (
        ("GET", "/wp-login.php", {}),
        ("GET", "/webhooks/stripe", {}),
        ("POST", "/webhooks/stripe", {"stripe-signature": "t=1,v1=00", "content-type": "application/json"}),
    ):
        stack.url_request("WebhookFunction", method, path, b"{}", headers)
    lines = [
        (r.levelname, json.loads(receiver.registered_formatter.format(r))["outcome"])
        for r in caplog.records
        if r.name == receiver.name and r.getMessage() == "webhook"
    ]
    assert lines == [
        ("DEBUG", "rejected:not_found"),
        ("DEBUG", "rejected:method_not_allowed"),
        ("INFO", "rejected:signature_expired"),
    ]
