"""revsync: keeps tenants' customer records in step with their Stripe accounts."""
