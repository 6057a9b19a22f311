"""The Stripe settings page: server-rendered HTML, no build step, small inline script.

Connect, pick the customer-ID trait among the discovered candidates, see the tracking settings and
the import's progress, disconnect. It talks to the tenant routes next to it (relative URLs).
"""

from __future__ import annotations

import html
from typing import Any

_SCRIPT = """
const api = location.pathname.replace(/\\/settings$/, "");
async function call(method, path, body) {
  const response = await fetch(api + path, {method, headers: {"content-type": "application/json"},
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
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def render(status: dict[str, Any], candidates: list[dict[str, Any]] | None, note: str = "") -> str:
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
button{{font-size:1rem;padding:.4rem .9rem}}
</style></head>
<body><main>
<h1>Stripe for {_e(tenant)}</h1>
<p id="message" role="status" aria-live="polite">{_e(note)}</p>
<section aria-labelledby="h-connection"><h2 id="h-connection">Connection</h2>{connection_html}</section>
<section aria-labelledby="h-trait"><h2 id="h-trait">Customer ID</h2>{trait_html}</section>
<section aria-labelledby="h-tracking"><h2 id="h-tracking">Tracking</h2>
<table><caption>Which source each metric uses</caption><tbody>{rows}</tbody></table></section>
<section aria-labelledby="h-import" aria-live="polite"><h2 id="h-import">Import</h2>
<p>State: <span id="backfill-state">{_e(backfill["state"])}</span>.
<span id="backfill-counts">{_e(counts["customers"])} customers, {_e(counts["subscriptions"])} subscriptions,
{_e(counts["invoices"])} invoices</span>.
<span id="backfill-error">{_e(backfill["error"])}</span></p></section>
</main><script>{_SCRIPT}</script></body></html>"""


def message_page(title: str, message: str) -> str:
    """A small HTML page for a person who followed a link (the OAuth callback's outcome)."""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"</head><body><main><h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></main></body></html>"
    )
