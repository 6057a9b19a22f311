"""Stripe access: one client factory (platform key + Stripe-Account, or a tenant's API key)."""
