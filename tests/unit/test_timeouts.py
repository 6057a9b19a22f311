"""Every outbound client's worst case (timeouts x attempts, and the backoff its library sleeps
between them) fits inside each function that uses it, with each function's timeout read from
template.yaml. The backoff comes from botocore's and the stripe SDK's own code, at its longest."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any
from unittest import mock

import pytest
import stripe
from botocore.retries.standard import ExponentialBackoff, RetryContext
from revsync.bootstrap.tenant_api import LazyStripe
from revsync.domain.tenancy import Tenant
from revsync.infra import aws
from revsync.store import models
from revsync.stripe_api import client as stripe_client
from revsync.stripe_api.results import StripeUnavailable

from local import lambda_runtime
from local.environment import LOCAL_AWS, REGION, functions_environment
from local.template import ROOT, LocalNames, load_template
from tests.fakes import FakeStripe


class _Throttled:
    """Throttling errors back off the longest (a 1 s base, against 25-50 ms for other errors)."""

    def is_throttling_error_from_context(self, context: RetryContext) -> bool:
        return True


def botocore_backoff(attempts: int) -> float:
    """The most botocore's standard retry mode sleeps between ``attempts`` attempts (its jitter at
    its top; a service's ``x-amz-retry-after`` header, which none of ours sends, is left out)."""
    detector: Any = _Throttled()
    backoff = ExponentialBackoff(random=lambda: 1.0, throttling_detector=detector)
    return sum(backoff.delay_amount(RetryContext(attempt_number=n)) for n in range(1, attempts))


def stripe_backoff(retries: int) -> float:
    """The most the stripe SDK sleeps before ``retries`` retries (its jitter at its top)."""
    http = stripe.RequestsClient()
    with mock.patch("random.uniform", lambda low, high: high):  # the SDK's jitter draws from it
        return sum(http._sleep_time_seconds(n) for n in range(1, retries + 1))


# Worst case of one call through each client, in seconds.
AWS = (aws.CONNECT_TIMEOUT_SECONDS + aws.READ_TIMEOUT_SECONDS) * aws.MAX_ATTEMPTS + botocore_backoff(
    aws.MAX_ATTEMPTS
)
PYNAMODB_ATTEMPTS = 1 + models.MAX_RETRY_ATTEMPTS  # PynamoDB's botocore client: total attempts
PYNAMODB = (
    models.CONNECT_TIMEOUT_SECONDS + models.READ_TIMEOUT_SECONDS
) * PYNAMODB_ATTEMPTS + botocore_backoff(PYNAMODB_ATTEMPTS)
STRIPE = (stripe_client.CONNECT_TIMEOUT_SECONDS + stripe_client.READ_TIMEOUT_SECONDS) * (
    1 + stripe_client.MAX_NETWORK_RETRIES
) + stripe_backoff(stripe_client.MAX_NETWORK_RETRIES)

# What each function calls (the receiver is kept off PynamoDB and Stripe; checked below).
CLIENTS = {
    "WebhookFunction": {"aws": AWS},
    "WorkerFunction": {"aws": AWS, "pynamodb": PYNAMODB, "stripe": STRIPE},
    "TenantApiFunction": {"aws": AWS, "pynamodb": PYNAMODB, "stripe": STRIPE},
    "ImporterFunction": {"aws": AWS, "pynamodb": PYNAMODB, "stripe": STRIPE},
    "ReconcilerFunction": {"aws": AWS, "pynamodb": PYNAMODB, "stripe": STRIPE},
    "RollupFunction": {"aws": AWS, "pynamodb": PYNAMODB},
}


def _timeouts() -> dict[str, float]:
    template = load_template()
    default = template.get("Globals", {}).get("Function", {}).get("Timeout", 3)
    return {
        logical_id: float(resource["Properties"].get("Timeout", default))
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def test_every_client_fits_every_function_that_uses_it() -> None:
    timeouts = _timeouts()
    assert set(timeouts) == set(CLIENTS)
    for function, clients in CLIENTS.items():
        for name, worst in clients.items():
            assert worst <= timeouts[function], (function, name, worst, timeouts[function])


def _template_environment() -> dict[str, str]:
    """A handler checks its settings as it is imported: the template's variables, named locally."""
    return {**LOCAL_AWS, **functions_environment(LocalNames(REGION, queue_urls={}))}


def test_the_importer_and_the_catch_up_stop_taking_pages_in_time_for_one_more_stripe_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in _template_environment().items():
        monkeypatch.setenv(name, value)
    for function in ("ImporterFunction", "ReconcilerFunction"):
        assert lambda_runtime.load_module(function).SAFETY_MARGIN_SECONDS >= STRIPE


def test_the_sdk_defaults_would_not_have_fit() -> None:
    """Guard that the settings matter: Stripe's 80 s and PynamoDB's 15 s + 30 s defaults."""
    assert _timeouts()["WorkerFunction"] < 80 * (1 + stripe_client.MAX_NETWORK_RETRIES)
    assert _timeouts()["TenantApiFunction"] < (15 + 30) * 4


def test_the_clients_are_built_with_those_settings() -> None:
    client = stripe_client.make_client("sk_test_x", api_base=None)
    http: Any = client._requestor._get_http_client()
    assert http._timeout == (stripe_client.CONNECT_TIMEOUT_SECONDS, stripe_client.READ_TIMEOUT_SECONDS)
    config: Any = aws.CONFIG
    assert (config.connect_timeout, config.read_timeout) == (
        aws.CONNECT_TIMEOUT_SECONDS,
        aws.READ_TIMEOUT_SECONDS,
    )
    for model in (models.SyncItem, models.CustomerRecordItem, models.TenantsItem, models.RevenueItem):
        assert model.Meta.read_timeout_seconds == models.READ_TIMEOUT_SECONDS
        assert model.Meta.max_retry_attempts == models.MAX_RETRY_ATTEMPTS


def test_every_boto3_client_is_made_with_those_settings(stack: object) -> None:
    # (The stack gives the functions' environment; the clients are made as in a handler.)
    factories = (aws.sqs, aws.dynamodb, aws.stepfunctions, aws.events, aws.ssm, aws.secretsmanager, aws.kms)
    for factory in factories:
        made: Any = factory().meta.config
        assert (made.connect_timeout, made.read_timeout) == (
            aws.CONNECT_TIMEOUT_SECONDS,
            aws.READ_TIMEOUT_SECONDS,
        ), factory
        assert made.retries["total_max_attempts"] == aws.MAX_ATTEMPTS, factory  # first attempt included


def _heavy_modules_imported_by(handler: str) -> list[str]:
    """Which of PynamoDB and Stripe a fresh interpreter has loaded once it imported ``handler``."""
    probe = (
        "import importlib.util, sys;"
        f"spec = importlib.util.spec_from_file_location('app', {str(ROOT / handler)!r});"
        "module = importlib.util.module_from_spec(spec); sys.modules['app'] = module;"
        "spec.loader.exec_module(module);"
        "print(','.join(sorted(m for m in ('pynamodb', 'stripe') if m in sys.modules)))"
    )
    environment = {**os.environ, **_template_environment()}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT, env=environment
    )
    return [name for name in out.stdout.strip().split(",") if name]


def test_the_receiver_loads_neither_pynamodb_nor_stripe() -> None:
    assert _heavy_modules_imported_by("functions/webhook/app.py") == []


def test_the_tenant_api_loads_stripe_only_when_a_route_calls_it() -> None:
    """Most tenant routes never call Stripe: its SDK is not loaded by the cold start
    (revsync.bootstrap.tenant_api.LazyStripe)."""
    assert _heavy_modules_imported_by("functions/oauth/app.py") == ["pynamodb"]


def test_the_lazy_stripe_is_built_once_at_its_first_call_and_answers_sdk_errors_as_unavailable() -> None:
    built: list[FakeStripe] = []

    def build() -> FakeStripe:
        built.append(FakeStripe(valid_keys={"rk_test_1": "acct_1"}))
        return built[-1]

    lazy = LazyStripe(build)
    assert built == []
    assert lazy.check_api_key("rk_test_1").account_id == "acct_1"
    assert lazy.check_api_key("rk_test_1").account_id == "acct_1"
    assert len(built) == 1

    def failing(_: Tenant, limit: int = 100) -> list[dict[str, Any]]:
        raise stripe.APIConnectionError("no route to Stripe")  # type: ignore[no-untyped-call]

    built[0].sample_customers = failing  # type: ignore[method-assign,assignment]
    with pytest.raises(StripeUnavailable) as raised:
        lazy.sample_customers(Tenant("acme"))
    assert isinstance(raised.value.__cause__, stripe.APIConnectionError)


def test_the_template_never_sets_the_local_stacks_timeout_override() -> None:
    assert "REVSYNC_LOCAL_CLIENT_TIMEOUT_SECONDS" not in (ROOT / "template.yaml").read_text()
