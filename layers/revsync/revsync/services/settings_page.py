"""The Stripe settings page: server-rendered HTML, no build step, small inline script.

Connect, pick the customer-ID trait among the discovered candidates, choose the revenue policy and
watch its recompute, see the tracking settings and the import's progress, disconnect. It talks to
the tenant routes (``data-api`` on the body), with the bearer token the app shell keeps (JWT mode)
or none (IAM mode, behind the platform's backend).
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from revsync.services.risks import PAGE_LIMIT

TOKEN_KEY = "revsync.token"

_SCRIPT = """
const api = document.body.dataset.api;
async function call(method, path, body, base = api) {
  const headers = {"content-type": "application/json"};
  const token = sessionStorage.getItem("__TOKEN_KEY__");
  if (token) { headers.authorization = "Bearer " + token; }
  const response = await fetch(base + path, {method, headers,
                                            body: body === undefined ? undefined : JSON.stringify(body)});
  const data = await response.json().catch(() => ({}));
  if (!response.ok) { throw new Error(data.message || response.statusText); }
  return data;
}
function say(text) { document.getElementById("message").textContent = text; }
document.getElementById("connect")?.addEventListener("click", async () => {
  try { location.href = (await call("POST", "/connect")).authorize_url; } catch (e) { say(e.message); }
});
document.getElementById("disconnect")?.addEventListener("click", async () => {
  if (!confirm("Disconnect Stripe? Records stay; syncing stops.")) { return; }
  try { await call("DELETE", ""); location.reload(); } catch (e) { say(e.message); }
});
document.getElementById("config")?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const trait = document.getElementById("trait").value;
  try {
    await call("PUT", "/config", {customer_id_trait: trait});
    say("Saved. Importing your Stripe data…");
    poll();
  } catch (e) { say(e.message); }
});
async function poll() {
  const status = await call("GET", "");
  const b = status.backfill;
  document.getElementById("backfill-state").textContent = b.state;
  document.getElementById("backfill-counts").textContent =
    `${b.counts.customers} customers, ${b.counts.subscriptions} subscriptions, ${b.counts.invoices} invoices`;
  document.getElementById("backfill-error").textContent = b.error || "";
  for (const [metric, source] of Object.entries(status.tracking)) {
    document.getElementById("tracking-" + metric).textContent = source || "not set";
  }
  if (b.state === "running") { setTimeout(poll, 1000); }
  else if (b.state === "succeeded") { say("Import finished."); }
  else if (b.state === "failed") { say("The import failed: " + (b.error || "unknown error")); }
}
if (document.getElementById("backfill-state").textContent === "running") { poll(); }
function showPolicy(policy) {
  const r = policy.recompute;
  document.getElementById("policy-state").textContent = r.state;
  document.getElementById("policy-done").textContent = r.customers_done;
  if (r.state === "recomputing") { setTimeout(pollPolicy, 1000); }
  else if (r.state === "done") { say("Every record, history and month follows the revenue policy."); }
}
async function pollPolicy() {
  try { showPolicy(await call("GET", "/policy")); } catch (e) { say(e.message); }
}
document.getElementById("policy")?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const days = document.getElementById("churn-after-days").value.trim();
  const body = {past_due: {churn_after_days: days === "" ? null : Number(days)},
                churn_at: document.getElementById("churn-at").value,
                discounts: document.getElementById("discounts").value,
                metered: document.getElementById("metered").value};
  try {
    const policy = await call("PUT", "/policy", body);
    say(policy.recompute.state === "recomputing" ? "Saved. Recomputing your records…" : "Saved.");
    showPolicy(policy);
  } catch (e) { say(e.message); }
});
if (document.getElementById("policy-state")?.textContent === "recomputing") { pollPolicy(); }
""".replace("__TOKEN_KEY__", TOKEN_KEY)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


# Stripe's zero-decimal currencies: amounts are in whole units already.
_ZERO_DECIMAL = frozenset(
    (
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    )
)
_CHART_WIDTH, _CHART_HEIGHT, _AXIS = 640, 220, 28


def _money(amount: int, currency: str | None) -> str:
    code = (currency or "").lower()
    value = f"{amount:,}" if code in _ZERO_DECIMAL else f"{amount / 100:,.2f}"
    return f"{value} {code.upper()}".strip()


def _as_of(report: dict[str, Any]) -> str:
    """How recent the figures are: the monthly totals are a rollup that follows changes shortly after."""
    as_of = report.get("as_of")
    if as_of is None:
        return ""
    moment = datetime.fromtimestamp(int(as_of), tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f'<p id="mrr-as-of">Includes changes made up to {_e(moment)} UTC.</p>'


def revenue_section(report: dict[str, Any]) -> str:
    """MRR at the end of each month as an SVG bar chart the server draws, and the same figures with
    the five movements in a table alongside (what a screen reader reads), and how recent they are."""
    months, currency = report["months"], report["currency"]
    if not currency or not any(m["mrr_end"] or m["mrr_start"] for m in months):
        return "<p>No recurring revenue yet.</p>" + _as_of(report)
    top = max(1, *(m["mrr_end"] for m in months))
    slot = (_CHART_WIDTH - _AXIS) / len(months)
    plot = _CHART_HEIGHT - _AXIS
    bars = []
    for index, month in enumerate(months):
        height = round(plot * month["mrr_end"] / top, 1)
        x = round(_AXIS + index * slot + slot * 0.15, 1)
        label = f"{month['month']}: {_money(month['mrr_end'], currency)}"
        bars.append(
            f'<rect x="{x}" y="{round(plot - height, 1)}" width="{round(slot * 0.7, 1)}" height="{height}" '
            f'fill="#635bff"><title>{_e(label)}</title></rect>'
            f'<text x="{round(x + slot * 0.35, 1)}" y="{_CHART_HEIGHT - 10}" font-size="11" '
            f'text-anchor="middle">{_e(month["month"][2:])}</text>'
        )
    chart = (
        f'<svg id="mrr-chart" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {_CHART_WIDTH} {_CHART_HEIGHT}" width="100%" role="img" '
        'aria-labelledby="mrr-chart-title">'
        f'<title id="mrr-chart-title">MRR at the end of each month, {_e(currency.upper())}</title>'
        f'<line x1="{_AXIS}" y1="{plot}" x2="{_CHART_WIDTH}" y2="{plot}" stroke="#888"/>'
        f'<text x="2" y="12" font-size="11">{_e(_money(top, currency))}</text>{"".join(bars)}</svg>'
    )
    columns = ("mrr_start", "new", "expansion", "reactivation", "contraction", "churn", "mrr_end")
    head = "".join(f'<th scope="col">{_e(c.replace("_", " "))}</th>' for c in columns)
    rows = "".join(
        f'<tr><th scope="row">{_e(m["month"])}</th>'
        + "".join(f"<td>{_e(_money(m[c], currency))}</td>" for c in columns)
        + f"<td>{_e(m['customers_end'])}</td></tr>"
        for m in months
    )
    return (
        f"<figure>{chart}<figcaption>MRR, last {len(months)} months ({_e(currency.upper())})"
        "</figcaption></figure>"
        f'<table id="mrr-table"><caption>Monthly MRR movements ({_e(currency.upper())})</caption>'
        f'<thead><tr><th scope="col">month</th>{head}<th scope="col">paying customers</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>{_as_of(report)}"
    )


_CHURN_AT = (("ended", "when the subscription ends"), ("scheduled", "when a cancellation is scheduled"))
_DISCOUNTS = (
    ("active", "forever and repeating discounts, while they last"),
    ("forever_only", "forever discounts only (as Stripe's Billing analytics)"),
    ("none", "no discounts (list price)"),
)
_METERED = (
    ("excluded", "not counted (as Stripe's Billing analytics)"),
    ("last_invoice", "counted as billed on the latest finalized invoice"),
)


def _options(choices: tuple[tuple[str, str], ...], current: str) -> str:
    return "".join(
        f'<option value="{_e(value)}"{" selected" if value == current else ""}>{_e(label)}</option>'
        for value, label in choices
    )


def policy_section(policy: dict[str, Any], connected: bool) -> str:
    """The revenue policy (``status["policy"]``): a form when connected, and its recompute's progress."""
    document, recompute = policy["document"], policy["recompute"]
    days = document["past_due"]["churn_after_days"]
    progress = (
        f'<p>Recompute: <span id="policy-state">{_e(recompute["state"])}</span>, '
        f'<span id="policy-done">{_e(recompute["customers_done"])}</span> customers re-derived.</p>'
    )
    if not connected:
        return "<p>Connect Stripe to choose the revenue policy.</p>" + progress
    return (
        '<form id="policy">'
        '<p><label for="churn-after-days">A past-due subscription churns after (days, 1-90; empty: '
        f'it always counts)</label> <input type="number" id="churn-after-days" min="1" max="90" '
        f'step="1" value="{_e(days)}"></p>'
        f'<p><label for="churn-at">Churn is counted</label> <select id="churn-at">'
        f"{_options(_CHURN_AT, document['churn_at'])}</select></p>"
        f'<p><label for="discounts">MRR counts</label> <select id="discounts">'
        f"{_options(_DISCOUNTS, document['discounts'])}</select></p>"
        f'<p><label for="metered">Metered usage is</label> <select id="metered">'
        f"{_options(_METERED, document['metered'])}</select></p>"
        '<button type="submit">Save revenue policy</button></form>' + progress
    )


# The customers at risk (GET .../risks), beside the chart: a kind, and its newest customers a page at
# a time. The server renders the first page; the selector and "More" ask the route, and the rows are
# written as the server writes them (money as _money does, dates as _day does).
RISK_KINDS = {
    "dunning": "In dunning",
    "cancel_scheduled": "Cancellation scheduled",
    "change_scheduled": "Plan change scheduled",
    "trial_ending": "Trial ending",
    "card_expiring": "Card expiring",
}
_RISKS_SCRIPT = """
const riskList = document.getElementById("risks");
const ZERO_DECIMAL = new Set(__ZERO_DECIMAL__);
function money(amount, currency) {
  const code = (currency || "").toLowerCase();
  const value = ZERO_DECIMAL.has(code) ? amount.toLocaleString("en-US")
    : (amount / 100).toLocaleString("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 2});
  return (value + " " + code.toUpperCase()).trim();
}
async function showRisks(more) {
  const kind = document.getElementById("risk-kind").value;
  let query = "?kind=" + encodeURIComponent(kind) + "&limit=" + riskList.dataset.limit;
  if (more) { query += "&cursor=" + encodeURIComponent(riskList.dataset.next); }
  try {
    const page = await call("GET", query, undefined, riskList.dataset.api);
    const rows = document.getElementById("risk-rows");
    if (!more) { rows.replaceChildren(); }
    for (const customer of page.customers) {
      const row = rows.insertRow();
      let mrr = money(customer.mrr, customer.currency);
      if ("scheduled_mrr" in customer && customer.scheduled_mrr !== null) {
        mrr += " (then " + money(customer.scheduled_mrr, customer.currency) + ")";
      }
      const since = new Date(customer.since * 1000).toISOString().slice(0, 10);
      for (const text of [customer.external_id, mrr, since]) { row.insertCell().textContent = text; }
    }
    riskList.dataset.next = page.next || "";
    document.getElementById("risk-more").hidden = !page.next;
    document.getElementById("risk-empty").hidden = rows.rows.length > 0;
  } catch (e) { say(e.message); }
}
document.getElementById("risk-kind")?.addEventListener("change", () => showRisks(false));
document.getElementById("risk-more")?.addEventListener("click", () => showRisks(true));
""".replace("__ZERO_DECIMAL__", json.dumps(sorted(_ZERO_DECIMAL)))


def _day(at: int) -> str:
    return datetime.fromtimestamp(at, tz=UTC).strftime("%Y-%m-%d")


def risks_section(api: str, page: dict[str, Any] | None, limit: int) -> str:
    """The kind selector and the first page of its customers at risk (``page``: the route's answer;
    None when it could not be read now), each with the MRR at risk and since when."""
    kind = page["kind"] if page else next(iter(RISK_KINDS))
    options = "".join(
        f'<option value="{_e(name)}"{" selected" if name == kind else ""}>{_e(label)}</option>'
        for name, label in RISK_KINDS.items()
    )
    rows = []
    for customer in page["customers"] if page else []:
        mrr = _money(customer["mrr"], customer["currency"])
        if customer.get("scheduled_mrr") is not None:
            mrr += f" (then {_money(customer['scheduled_mrr'], customer['currency'])})"
        rows.append(
            f"<tr><td>{_e(customer['external_id'])}</td><td>{_e(mrr)}</td>"
            f"<td>{_e(_day(customer['since']))}</td></tr>"
        )
    empty = "No customers of this kind." if page else "The list could not be read now; reload to try again."
    following = page["next"] if page else None
    return (
        f'<div id="risks" data-api="{_e(api)}" data-limit="{limit}" data-next="{_e(following or "")}">'
        f'<label for="risk-kind">Show</label> <select id="risk-kind">{options}</select>'
        '<table id="risk-table"><caption>Newest first</caption><thead><tr><th scope="col">customer</th>'
        '<th scope="col">MRR at risk</th><th scope="col">when</th></tr></thead>'
        f'<tbody id="risk-rows">{"".join(rows)}</tbody></table>'
        f'<p id="risk-empty"{" hidden" if rows else ""}>{_e(empty)}</p>'
        f'<button type="button" id="risk-more"{"" if following else " hidden"}>More</button></div>'
    )


def render(
    status: dict[str, Any],
    candidates: list[dict[str, Any]] | None,
    note: str = "",
    revenue: dict[str, Any] | None = None,
    risks: dict[str, Any] | None = None,
) -> str:
    tenant = status["tenant_id"]
    connection, config, tracking, backfill = (
        status["connection"],
        status["config"],
        status["tracking"],
        status["backfill"],
    )
    connected = connection["status"] == "connected"
    if connected:
        account = f"Connected to Stripe account <strong>{_e(connection['account_id'])}</strong>"
        mode = "live mode" if connection["livemode"] else "test mode"
        connection_html = (
            f"<p>{account} ({_e(connection['mode'])}, {mode}).</p>"
            '<button type="button" id="disconnect">Disconnect Stripe</button>'
        )
    else:
        was = " It was disconnected; records are kept." if connection["status"] == "revoked" else ""
        connection_html = (
            f"<p>Stripe is not connected.{was}</p>"
            '<button type="button" id="connect">Connect with Stripe</button>'
        )
    current = config["customer_id_trait"]
    options = []
    for candidate in candidates or []:
        selected = " selected" if candidate["trait"] == current else ""
        label = f"{candidate['trait']} ({candidate['customers']} of the newest customers)"
        options.append(f'<option value="{_e(candidate["trait"])}"{selected}>{_e(label)}</option>')
    if current and current not in {c["trait"] for c in candidates or []}:
        options.insert(0, f'<option value="{_e(current)}" selected>{_e(current)} (current)</option>')
    trait_html = (
        '<form id="config"><label for="trait">Customer-ID trait: the Stripe field that holds your own '
        f'customer ID</label> <select id="trait" name="customer_id_trait">{"".join(options)}</select> '
        '<button type="submit">Update Stripe configuration</button></form>'
        if connected
        else "<p>Connect Stripe to choose the customer-ID trait.</p>"
    )
    counts = backfill["counts"]
    revenue_html = revenue_section(revenue) if revenue else ""
    rows = "".join(
        f'<tr><th scope="row">{_e(k)}</th><td id="tracking-{_e(k)}">{_e(v or "not set")}</td></tr>'
        for k, v in tracking.items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Stripe settings: {_e(tenant)}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}
section{{border-top:1px solid #ccc;padding:.5rem 0}}
table{{border-collapse:collapse;font-size:.85rem}} td,th{{padding:.15rem .4rem;text-align:right}}
button{{font-size:1rem;padding:.4rem .9rem}}
</style></head>
<body data-api="/tenants/{_e(quote(tenant))}/stripe"><main>
<h1>Stripe for {_e(tenant)}</h1>
<p id="message" role="status" aria-live="polite">{_e(note)}</p>
<section aria-labelledby="h-connection"><h2 id="h-connection">Connection</h2>{connection_html}</section>
<section aria-labelledby="h-trait"><h2 id="h-trait">Customer ID</h2>{trait_html}</section>
<section aria-labelledby="h-tracking"><h2 id="h-tracking">Tracking</h2>
<table><caption>Which source each metric uses</caption><tbody>{rows}</tbody></table></section>
<section aria-labelledby="h-policy" aria-live="polite"><h2 id="h-policy">Revenue policy</h2>
{policy_section(status["policy"], connected)}</section>
<section aria-labelledby="h-revenue"><h2 id="h-revenue">Revenue</h2>{revenue_html}</section>
<section aria-labelledby="h-risks"><h2 id="h-risks">Customers at risk</h2>
{risks_section(f"/tenants/{quote(tenant)}/risks", risks, PAGE_LIMIT)}</section>
<section aria-labelledby="h-import" aria-live="polite"><h2 id="h-import">Import</h2>
<p>State: <span id="backfill-state">{_e(backfill["state"])}</span>.
<span id="backfill-counts">{_e(counts["customers"])} customers, {_e(counts["subscriptions"])} subscriptions,
{_e(counts["invoices"])} invoices</span>.
<span id="backfill-error">{_e(backfill["error"])}</span></p></section>
</main><script>{_SCRIPT}{_RISKS_SCRIPT}</script></body></html>"""


def message_page(title: str, message: str) -> str:
    """A small HTML page for a person who followed a link (the OAuth callback's outcome)."""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"</head><body><main><h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></main></body></html>"
    )


_SHELL_SCRIPT = """
const LOGIN = __LOGIN__, CLAIM = __CLAIM__, KEY = __TOKEN_KEY__;
const params = new URLSearchParams(location.search);
const fragment = new URLSearchParams(location.hash.slice(1));
// An OpenID provider's implicit redirect: the ID token carries the tenant claim, so prefer it.
const fresh = fragment.get("id_token") || fragment.get("access_token");
if (fresh) {
  sessionStorage.setItem(KEY, fresh);
  history.replaceState(null, "", location.pathname + location.search);
}
const token = sessionStorage.getItem(KEY);
function say(text) { document.getElementById("message").textContent = text; }
function claim(jwt, name) {
  try { return JSON.parse(atob(jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")))[name]; }
  catch (e) { return undefined; }
}
function login() {
  if (!LOGIN) { say("Log in to your identity provider, then come back here."); return; }
  const back = encodeURIComponent(location.pathname + location.search);
  location.href = LOGIN + (LOGIN.includes("?") ? "&" : "?") + "return=" + back;
}
async function load() {
  if (!token) { login(); return; }
  const tenant = params.get("tenant") || claim(token, CLAIM);
  if (!tenant) { say("This login names no tenant; open this page with ?tenant=<your tenant>."); return; }
  const query = params.get("connected") ? "?connected=1" : "";
  const response = await fetch("/tenants/" + encodeURIComponent(tenant) + "/stripe/settings" + query,
                               {headers: {authorization: "Bearer " + token}});
  if (response.status === 401) { sessionStorage.removeItem(KEY); login(); return; }
  const text = await response.text();
  if (!response.ok) {
    let message = response.statusText;
    try { message = JSON.parse(text).message; } catch (e) { /* not JSON */ }
    say(message);
    return;
  }
  document.open(); document.write(text); document.close();
}
load();
"""


def app_shell(login_url: str | None, tenant_claim: str) -> str:
    """The page a browser opens (``GET /settings``): no tenant data of its own. It keeps the bearer
    token an identity provider hands back (or sends the browser to log in) and loads the tenant's
    settings page with it."""
    script = (
        _SHELL_SCRIPT.replace("__LOGIN__", json.dumps(login_url or ""))
        .replace("__CLAIM__", json.dumps(tenant_claim))
        .replace("__TOKEN_KEY__", json.dumps(TOKEN_KEY))
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Stripe settings</title>'
        '</head><body><main><h1>Stripe settings</h1><p id="message" role="status" aria-live="polite">'
        "Loading…</p></main><script>" + script.replace("</", "<\\/") + "</script></body></html>"
    )
