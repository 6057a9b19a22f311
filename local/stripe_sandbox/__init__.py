"""A local Stripe API for the embedded stack, in the shapes of the pinned stripe SDK's API version.

Each distinct secret or restricted key is an account of its own; the platform key with
``Stripe-Account: acct_…`` reaches an account connected to it by OAuth. Webhooks are signed and
delivered to registered endpoints, optionally delayed, duplicated and reordered.

Where things live:

* ``server.py``: the HTTP face (keys, limits, parameters checked, objects shaped), OAuth and the
  ``/_sandbox`` control routes; ``routes.py``: every Stripe route served, one declaration each
  (method, path, handler, implemented parameters); ``rest.py``: lists, pages, ``expand[]``.
* ``core.py``: errors, accounts, object tables, ids, time; ``events.py``: the event log, webhook
  endpoints and delivery.
* one module per Stripe resource: ``catalog.py`` (products, prices, coupons), ``customers.py``,
  ``discounts.py``, ``subscriptions.py`` (and items), ``invoices.py`` (lines, invoice items),
  ``connect.py`` (OAuth, the account); ``clock.py`` (time moving on), ``history.py`` (bulk seeding).
* ``shapes.py``: the field lists read from the SDK's resource classes; ``forms.py``: Stripe's form
  encoding; ``limits.py``: Stripe's rate limiters.
"""
