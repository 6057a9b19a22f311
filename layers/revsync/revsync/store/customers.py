"""The write path's storage (revsync.services.sync.Customers): a customer's state and its archives
(store.customer_state), then the record derived from it (store.records)."""

from __future__ import annotations

from revsync.store.customer_state import CustomerStates
from revsync.store.records import RecordProjection


class CustomerStore(CustomerStates, RecordProjection):
    """Load and save a customer's state, project its record."""
