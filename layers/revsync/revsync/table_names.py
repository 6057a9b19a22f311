"""The DynamoDB tables' names, read from settings in this one place for the store adapters, which
take them (their constructors; the PynamoDB models through ``revsync.store.models.bind``) and read
no settings themselves."""

from __future__ import annotations

from typing import NamedTuple

from revsync.settings import get_settings


class TableNames(NamedTuple):
    customers: str
    sync: str
    tenants: str
    revenue: str


def table_names() -> TableNames:
    """The tables this deployment names (template.yaml sets them in every function's environment)."""
    settings = get_settings()
    return TableNames(
        customers=settings.customers_table,
        sync=settings.sync_table,
        tenants=settings.tenants_table,
        revenue=settings.revenue_table,
    )


def bound_tables() -> TableNames:
    """The tables' names, with the PynamoDB models bound to them: what a function that uses the
    models calls before any store is used."""
    # Imported here: the receiver imports this module for the names and must not load PynamoDB.
    from revsync.store import models  # noqa: PLC0415

    names = table_names()
    models.bind(**names._asdict())
    return names
