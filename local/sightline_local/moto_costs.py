"""Where moto's costs are not AWS's: calls that are cheap in AWS but grow with a table or a queue in moto, fixed
with the same outcome, so that the local stack's registration figures measure registration.

- DynamoDB transactions: moto 5.2.5's ``transact_write_items`` deep-copies the whole table once per *action*
  before applying any, so that it can roll back: a transaction of 100 actions on a table of 20,000 items copies
  two million items. Here the transaction keeps a copy of just the items its actions name and puts them back
  when it is cancelled: the same all-or-nothing outcome.
- DynamoDB queries: every page of a query walks and sorts every item of the *table*, then keeps those of the
  partition asked for; a recompute's queries cost seconds once a few datasets are registered. Here a query on the
  table (not an index) walks the partition it names: the same items, in the same order.
- DynamoDB answers: moto writes every attribute value of every item it returns by walking botocore's shape of
  ``AttributeValue`` (ten members looked up per value): 6 ms an item, so a query of 2,000 items took 12 s. Here
  an attribute value is written as the JSON it already is (binary values still take moto's way).
- Every request to moto's server: finding the service of a request lists moto's package folder (a ``listdir``
  and a hundred ``stat`` calls) twice; 1.5 ms a request, more than many whole operations. The list is read once
  here (the installed package does not change while the stack runs).
- Name conversions: moto turns API names into Python names (``camelcase_to_underscores``, a chain of regular
  expressions) for every request and, in SQS, for every queue attribute of every message sent; the answers are
  remembered here (the function depends on its argument alone).
- SQS receives: for every message it returns, moto computes all of the queue's attributes (among them the
  count of visible messages, two clock reads per message in the queue) only to read the retention period, so
  a receive of ten costs ten passes over the queue; a bulk upload with hundreds of messages waiting spent most
  of its time there. Here the retention period is read from the queue.
- SQS sends and receives: every one walks all the queue's messages (a send computes the queue's attributes to
  read one flag), asking the clock through ``datetime`` twice per message; the clock is read with
  ``time.time`` here, the same instant without the conversions, so a walk of 2,000 messages costs
  milliseconds instead of tens.
- SQS sends: a send still computes all of the queue's attributes (three walks over its messages) to read whether
  a FIFO queue deduplicates by content; while S3 notifications fill a queue with thousands of messages, that
  was a sixth of moto's time in a bulk upload. Here a send reads that one flag.
- SQS deletes: each receipt handle of a batch walked every message of the queue twice, then rebuilt the list;
  here a batch walks the queue once for all its handles, with the same successes and errors.
"""
from __future__ import annotations

import copy
import functools
import threading
import time
import types
from typing import Any


@functools.cache  # once per process
def install() -> None:
    """Patch moto's DynamoDB and SQS backends (once per process)."""
    _patch_module_list()
    _patch_name_conversions()
    _patch_transactions()
    _patch_partition_queries()
    _patch_attribute_values()
    _patch_sqs_retention()
    _patch_sqs_clock()
    _patch_sqs_sends()
    _patch_sqs_batch_deletes()


def _patch_name_conversions() -> None:
    import importlib

    from moto.core import utils

    remembered = functools.lru_cache(maxsize=4096)(utils.camelcase_to_underscores)
    for name in ("moto.core.utils", "moto.core.responses", "moto.sqs.models", "moto.sqs.responses",
                 "moto.s3.responses", "moto.dynamodb.responses"):
        module = importlib.import_module(name)
        if getattr(module, "camelcase_to_underscores", None) is utils.camelcase_to_underscores:
            module.camelcase_to_underscores = remembered


def _patch_module_list() -> None:
    from moto import backends

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: iter(modules)


class _NotPlain(Exception):
    """An attribute value with binary data: moto's own serializer writes it."""


def _plain_attribute_value(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or len(value) != 1:
        raise _NotPlain
    ((kind, inner),) = value.items()
    if kind in ("S", "N"):
        return {kind: str(inner)}
    if kind in ("BOOL", "NULL"):
        return {kind: inner}
    if kind in ("SS", "NS"):
        return {kind: [str(member) for member in inner]}
    if kind == "M":
        return {"M": {name: _plain_attribute_value(member) for name, member in inner.items()}}
    if kind == "L":
        return {"L": [_plain_attribute_value(member) for member in inner]}
    raise _NotPlain


def _patch_attribute_values() -> None:
    from moto.core.serialize import BaseJSONSerializer

    structure = BaseJSONSerializer._serialize_type_structure

    def serialize_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if key and shape.name == "AttributeValue" and value is not None:
            try:
                serialized[shape.serialization.get("name", key)] = _plain_attribute_value(value)
                return
            except _NotPlain:
                pass
        structure(self, serialized, value, shape, key)

    BaseJSONSerializer._serialize_type_structure = serialize_structure


_query_partition = threading.local()  # (table, hash key) while a query on the table runs on this thread


def _patch_partition_queries() -> None:
    from moto.dynamodb.models.table import Table

    all_items, query = Table.all_items, Table.query

    def partition_items(self: Any) -> list[Any]:
        wanted = getattr(_query_partition, "key", None)
        if wanted is None or wanted[0] is not self:
            return all_items(self)
        partition = self.items.get(wanted[1])  # the query keeps the items of this hash key, sorted by range key
        return list(partition.values()) if partition else []

    def partition_query(self: Any, hash_key: Any, range_comparison: Any, range_objs: Any, limit: Any,
                        exclusive_start_key: Any, scan_index_forward: Any, projection_expressions: Any,
                        index_name: str | None = None, *args: Any, **kwargs: Any) -> Any:
        arguments = (hash_key, range_comparison, range_objs, limit, exclusive_start_key, scan_index_forward,
                     projection_expressions, index_name, *args)
        if index_name or hash_key is None or self.range_key_attr is None:
            return query(self, *arguments, **kwargs)
        _query_partition.key = (self, hash_key)
        try:
            return query(self, *arguments, **kwargs)
        finally:
            _query_partition.key = None

    Table.all_items = partition_items
    Table.query = partition_query


def _patch_sqs_clock() -> None:
    from moto.sqs import models

    original_millis, original_seconds = models.unix_time_millis, models.unix_time

    def unix_time_millis(dt: Any = None) -> float:
        return time.time() * 1000.0 if dt is None else original_millis(dt)

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else original_seconds(dt)

    models.unix_time_millis = unix_time_millis
    models.unix_time = unix_time


def _patch_sqs_retention() -> None:
    from moto.sqs.models import SQSBackend

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
        retention = int(self.get_queue(queue_name).message_retention_period)
        return retention + message.sent_timestamp / 1000 > time.time()

    SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period


_sending = threading.local()  # true while SQSBackend.send_message runs on this thread


def _patch_sqs_sends() -> None:
    from moto.sqs.models import Queue, SQSBackend

    all_attributes, send = Queue.attributes, SQSBackend.send_message

    def attributes(self: Any) -> dict[str, Any]:
        if not getattr(_sending, "active", False):
            return all_attributes.fget(self)
        # All that send_message reads: the FIFO flag, as moto writes it among the queue's attributes.
        flag = self.content_based_deduplication
        return {"ContentBasedDeduplication": str(flag).lower() if isinstance(flag, bool) else flag} if self.fifo_queue else {}

    def send_message(self: Any, *args: Any, **kwargs: Any) -> Any:
        _sending.active = True
        try:
            return send(self, *args, **kwargs)
        finally:
            _sending.active = False

    Queue.attributes = property(attributes)  # type: ignore[method-assign,assignment]
    SQSBackend.send_message = send_message


def _patch_sqs_batch_deletes() -> None:
    from moto.sqs.models import SQSBackend

    def delete_message_batch(self: Any, queue_name: str, receipts: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, str]]]:
        queue = self.get_queue(queue_name)
        wanted = {receipt["ReceiptHandle"] for receipt in receipts} - queue.deleted_messages
        if wanted:
            kept = []
            for message in queue._messages:
                handles = message.all_receipt_handles
                if wanted.intersection(handles):
                    queue.pending_messages.discard(message)
                    queue.deleted_messages.update(handles)
                    continue
                kept.append(message)
            queue._messages = kept
        success, errors = [], []
        for receipt in receipts:
            if receipt["ReceiptHandle"] in queue.deleted_messages:
                success.append(receipt["Id"])
            else:
                errors.append({"Id": receipt["Id"], "SenderFault": True, "Code": "ReceiptHandleIsInvalid",
                               "Message": f'The input receipt handle "{receipt["ReceiptHandle"]}" is not a valid receipt handle.'})
        return success, errors

    SQSBackend.delete_message_batch = delete_message_batch


def _patch_transactions() -> None:
    from moto.dynamodb import models
    from moto.dynamodb.models.table import Table

    def deepcopy(value: Any, memo: Any = None) -> Any:
        # The whole-table backup of moto's transact_write_items: keep the table itself (items are saved below).
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)

    models.copy = types.SimpleNamespace(deepcopy=deepcopy, copy=copy.copy)  # type: ignore[attr-defined]
    original = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved = _save_items(self, transact_items)
        try:
            original(self, transact_items)
        except Exception:
            _restore_items(saved)
            raise

    models.DynamoDBBackend.transact_write_items = transact_write_items


def _key_values(table: Any, action: dict[str, Any]) -> tuple[Any, Any] | None:
    from moto.dynamodb.models.dynamo_type import DynamoType

    key = action.get("Item") or action.get("Key") or {}
    if table.hash_key_attr not in key:
        return None
    range_value = None
    if table.range_key_attr is not None:
        if table.range_key_attr not in key:
            return None
        range_value = DynamoType(key[table.range_key_attr])
    return DynamoType(key[table.hash_key_attr]), range_value


def _save_items(backend: Any, transact_items: list[dict[str, Any]]) -> list[tuple[Any, Any, Any, Any]]:
    """(table, hash, range, a copy of the item or None) for every item the actions name, before any applies."""
    saved = []
    for entry in transact_items:
        if not isinstance(entry, dict) or len(entry) != 1:
            continue
        action = next(iter(entry.values()))
        table = backend.tables.get(action.get("TableName")) if isinstance(action, dict) else None
        values = _key_values(table, action) if table is not None else None
        if values is None:
            continue
        hash_value, range_value = values
        if range_value is None:
            current = table.items.get(hash_value)
        else:
            current = table.items.get(hash_value, {}).get(range_value)
        saved.append((table, hash_value, range_value, copy.deepcopy(current)))
    return saved


def _restore_items(saved: list[tuple[Any, Any, Any, Any]]) -> None:
    for table, hash_value, range_value, item in reversed(saved):
        if range_value is None:
            if item is None:
                table.items.pop(hash_value, None)
            else:
                table.items[hash_value] = item
            continue
        partition = table.items[hash_value]
        if item is None:
            partition.pop(range_value, None)
            if not partition:
                table.items.pop(hash_value, None)
        else:
            partition[range_value] = item
