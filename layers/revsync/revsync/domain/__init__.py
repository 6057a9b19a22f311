"""The pure domain: no I/O, no boto3, no stripe client, no environment reads.

It takes Stripe object snapshots and stored state, and returns decisions and derived records.
"""
