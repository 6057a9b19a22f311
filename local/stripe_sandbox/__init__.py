"""A local Stripe API for the embedded stack: the subset revsync uses, in the shapes after 2025-03-31.

Each distinct secret or restricted key is an account of its own; the platform key with
``Stripe-Account: acct_…`` reaches an account connected to it by OAuth. Webhooks are signed and
delivered to registered endpoints, optionally delayed, duplicated and reordered.
"""
