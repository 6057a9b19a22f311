"""The settings page in a real headless browser (Debian's chromium), in JWT mode as a deployed stack
with AdminAuth=JWT serves it: log in (the local issuer's login page stands in for a hosted one),
connect through the sandbox's authorize page, come back to the settings page, pick the customer-ID
trait, watch the import finish; another tenant's settings stay closed."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import stripe

from local.environment import REGION
from local.http import http
from local.stack import LocalStack
from tests.e2e.conftest import free_ports

pytestmark = pytest.mark.e2e
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")

if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("CI"):
        raise RuntimeError("CI must run the browser test: `make browser-deps` installs chromium")
    pytest.skip("chromium and chromedriver are not installed (make browser-deps)", allow_module_level=True)

from PIL import Image  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(ports=free_ports()) as running:
        # Show the authorize page (with its buttons) instead of approving at once.
        http("POST", f"{running.stripe_url}/_sandbox/config", {"oauth_auto_approve": False})
        yield running


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.save_screenshot(str(tmp_path / "last.png"))
        driver.quit()


def _near(pixel: tuple[int, ...], colour: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 24 for a, b in zip(pixel, colour, strict=True))


def test_connect_pick_a_trait_and_watch_the_import(
    stack: LocalStack, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    wait = WebDriverWait(browser, 60)
    # No token yet: the settings page sends the browser to log in, which returns it with one.
    browser.get(f"{stack.api_url}/settings?tenant=web")
    wait.until(expected_conditions.url_contains("/_local/login"))
    browser.find_element(By.ID, "tenant").send_keys("web")
    browser.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    wait.until(expected_conditions.presence_of_element_located((By.ID, "connect")))
    assert "access_token" not in browser.current_url  # the shell takes the token out of the address
    assert "Stripe is not connected" in browser.page_source
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"

    browser.find_element(By.ID, "connect").click()
    wait.until(expected_conditions.url_contains("/oauth/authorize"))
    browser.find_element(By.CSS_SELECTOR, "button[value=approve]").click()
    wait.until(expected_conditions.url_contains("/settings?tenant=web&connected=1"))
    wait.until(expected_conditions.presence_of_element_located((By.ID, "disconnect")))
    assert "Connected to Stripe account" in browser.page_source
    account = stack.admin("GET", "/tenants/web/stripe")[1]["connection"]["account_id"]

    # The connected account's existing customers.
    client = stripe.StripeClient(
        "sk_test_platform", stripe_account=account, base_addresses={"api": stack.stripe_url}
    )
    price = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 4000,
            "recurring": {"interval": "month"},
            "product_data": {"name": "Web"},
        }
    )
    for index in range(3):
        customer = client.v1.customers.create(
            params={"email": f"w{index}@example.com", "metadata": {"workspace": f"ws-{index}"}}
        )
        client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": price.id}]})

    browser.refresh()
    picker = Select(wait.until(expected_conditions.presence_of_element_located((By.ID, "trait"))))
    labels = [option.text for option in picker.options]
    assert any(label.startswith("metadata.workspace (3 of") for label in labels), labels
    picker.select_by_value("metadata.workspace")
    browser.find_element(By.CSS_SELECTOR, "#config button[type=submit]").click()
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "backfill-state"), "succeeded"))
    assert "3 customers, 3 subscriptions, 3 invoices" in browser.find_element(By.ID, "backfill-counts").text
    assert "stripe" in browser.find_element(By.TAG_NAME, "table").text

    # The revenue section: an MRR chart the server draws (checked on a screenshot: its bars are there,
    # in their colour) and the same figures in a table, once the rollup has followed the import.
    stack.flush()
    browser.refresh()
    chart = wait.until(expected_conditions.presence_of_element_located((By.ID, "mrr-chart")))
    image = Image.open(io.BytesIO(chart.screenshot_as_png)).convert("RGB")
    bar_pixels = sum(
        1
        for pixel in image.get_flattened_data()
        if isinstance(pixel, tuple) and _near(pixel, (0x63, 0x5B, 0xFF))
    )
    assert bar_pixels > 200, bar_pixels
    (tmp_path / "mrr-chart.png").write_bytes(chart.screenshot_as_png)
    table = browser.find_element(By.ID, "mrr-table").text
    assert "120.00 USD" in table  # three customers at 40.00 a month, new this month
    assert "Includes changes made up to" in browser.find_element(By.ID, "mrr-as-of").text
    record = stack.admin("GET", "/tenants/web/customers/ws-1")
    assert record[0] == 200
    assert record[1]["mrr"] == 4000

    # Beside the chart, the customers at risk: none in dunning; choosing another kind asks the risks
    # route with the page's token. Two scheduled cancellations, as the record projection lists them
    # (the attributes keying the customers table's cancel_scheduled index).
    assert "No customers of this kind." in browser.find_element(By.ID, "risk-empty").text
    assert stack.names is not None
    dynamodb = boto3.client("dynamodb", region_name=REGION, endpoint_url=stack.aws_url)
    for external_id, at, mrr in (("ws-0", 1_767_225_600, 4000), ("ws-2", 1_769_904_000, 2500)):
        dynamodb.update_item(
            TableName=stack.names.physical_name("CustomersTable"),
            Key={"tenant_id": {"S": "web"}, "external_id": {"S": external_id}},
            UpdateExpression="SET cancel_scheduled_at = :at, mrr_at_risk = :mrr",
            ExpressionAttributeValues={":at": {"N": str(at)}, ":mrr": {"N": str(mrr)}},
        )
    Select(browser.find_element(By.ID, "risk-kind")).select_by_value("cancel_scheduled")
    wait.until(lambda _: len(browser.find_elements(By.CSS_SELECTOR, "#risk-rows tr")) == 2)
    rows = [row.text for row in browser.find_elements(By.CSS_SELECTOR, "#risk-rows tr")]
    assert rows == ["ws-2 25.00 USD 2026-02-01", "ws-0 40.00 USD 2026-01-01"]  # newest first
    assert not browser.find_element(By.ID, "risk-empty").is_displayed()
    assert not browser.find_element(By.ID, "risk-more").is_displayed()

    # The revenue policy form: what it saves is what the policy route answers, and the page follows
    # the recompute (on the local stack's catch-up queue) to its end.
    Select(browser.find_element(By.ID, "discounts")).select_by_value("forever_only")
    Select(browser.find_element(By.ID, "metered")).select_by_value("last_invoice")
    browser.find_element(By.CSS_SELECTOR, "#policy button[type=submit]").click()
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "policy-state"), "done"))
    assert browser.find_element(By.ID, "policy-done").text == "3"
    status, policy = stack.admin("GET", "/tenants/web/stripe/policy")
    assert status == 200
    assert policy["document"] == {
        "past_due": {"churn_after_days": None},
        "churn_at": "ended",
        "discounts": "forever_only",
        "metered": "last_invoice",
    }

    # The same login cannot open another tenant's settings.
    browser.get(f"{stack.api_url}/settings?tenant=someone-else")
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "message"), "not for this tenant"))
    assert "Connect with Stripe" not in browser.page_source
