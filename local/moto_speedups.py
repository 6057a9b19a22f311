"""Local stack only: two of moto's per-request costs, taken out (nothing deployed uses moto).

- moto's server lists its own package directory (a ``listdir`` and ~150 ``isdir`` calls) on every
  request to tell a service name from a host name: a third of the local stack's busy time in an
  import. The list does not change while the process runs, so it is read once.
- moto backs up every table a TransactWriteItems touches with ``copy.deepcopy`` before applying it,
  so each transaction costs time in proportion to everything in that table. Every MRR change is a
  transaction (the state and the tenant's monthly totals together), and the local stack keeps all
  tenants in one table, so an import slows down as the table fills. Here the backup is of the items
  the transaction names instead: their prior values are kept and put back if it is cancelled, which
  is all a rollback can change. moto's own restore then puts the same table objects back.
- moto answers a Query of a table's own key by sorting every item of the table and keeping those
  of the asked partition key: each Query costs time in proportion to the whole table (the worker
  queries once per event, so a burst of n events took time in n²). Here that scan sees only the
  asked partition's items, the ones it would have kept, in the same order. A Query of an index
  likewise sorts the whole table before keeping the items of the asked index key (the scheduled
  catch-up queries the review index once per tenant: time in tenants² a period); here only the
  items it keeps are sorted.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from moto import backends
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Table

_Backup = tuple[Table, DynamoType, DynamoType | None, Item | None]


def _key(table: Table, operation: dict[str, Any]) -> tuple[DynamoType, DynamoType | None]:
    key = operation.get("Key") or operation["Item"]
    hash_value = DynamoType(key[table.hash_key_attr])
    range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
    return hash_value, range_value


def _backups(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> list[_Backup]:
    kept: list[_Backup] = []
    for entry in transact_items:
        ((_, operation),) = entry.items()
        table = backend.tables.get(operation.get("TableName", ""))
        if table is None:
            continue
        try:
            hash_value, range_value = _key(table, operation)
        except KeyError:
            continue  # no key: moto refuses the transaction itself, before changing anything
        existing = table.get_item(hash_value, range_value)
        kept.append((table, hash_value, range_value, copy.deepcopy(existing)))
    return kept


def _restore(kept: list[_Backup]) -> None:
    for table, hash_value, range_value, item in reversed(kept):
        items: Any = table.items  # moto: {hash: item}, or {hash: {range: item}} with a range key
        if range_value is None:
            if item is None:
                items.pop(hash_value, None)
            else:
                items[hash_value] = item
        else:
            partition = items[hash_value]
            if item is None:
                partition.pop(range_value, None)
            else:
                partition[range_value] = item


_partition = threading.local()  # the partition a Query of the table's own key asks for
_index_keys = threading.local()  # the key equalities a Query of an index asks for


def _equals(found: DynamoType | None, asked: DynamoType) -> bool:
    return found is not None and found == asked


def _install_partition_query() -> None:
    original_query, original_all_items = Table.query, Table.all_items

    def query(self: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        # moto's backend passes index_name as the eighth positional argument (after hash_key: 7th).
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if index_name is not None:
            _index_keys.conditions = kwargs.get("hash_key_conditions")
            try:
                return original_query(self, hash_key, *args, **kwargs)
            finally:
                _index_keys.conditions = None
        if hash_key is None:
            return original_query(self, hash_key, *args, **kwargs)
        _partition.key = hash_key
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            _partition.key = None

    def all_items(self: Table) -> list[Item]:
        key = getattr(_partition, "key", None)
        conditions: list[tuple[str, DynamoType]] | None = getattr(_index_keys, "conditions", None)
        if key is None and not conditions:
            return original_all_items(self)
        if key is not None or conditions is None:
            found: Any = self.items.get(key)
            if found is None:
                return []
            items = list(found.values()) if self.range_key_attr else [found]
        else:
            # moto keeps, of every item, those whose index key attributes equal the asked ones
            # (after sorting them all); here only those are sorted.
            everything: Any = (
                (i for partition in self.items.values() for i in partition.values())
                if self.range_key_attr
                else iter(self.items.values())
            )
            items = [i for i in everything if all(_equals(i.attrs.get(n), v) for n, v in conditions)]
        return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)

    Table.query = query  # type: ignore[method-assign]
    Table.all_items = all_items  # type: ignore[method-assign]


def install() -> None:
    """Patch moto in this process (idempotent)."""
    if getattr(DynamoDBBackend.transact_write_items, "_revsync_local", False):
        return
    _install_partition_query()
    moto_modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: moto_modules
    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        kept = _backups(self, transact_items) if len(transact_items) <= 100 else []
        try:
            original(self, transact_items)
        except Exception:
            _restore(kept)
            raise

    transact_write_items._revsync_local = True  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    # moto's whole-table backup becomes the table itself; the items are backed up above. This makes
    # every deepcopy of a Table in this process a no-op: transactions are the only place moto copies
    # one (its backups copy a table's items, not the table).
    Table.__deepcopy__ = lambda self, memo: self  # type: ignore[attr-defined]
