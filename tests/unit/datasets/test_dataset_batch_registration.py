"""A batch of uploads costs few calls per object: the batch's source items read together, each loose object read
with one GET (no HEAD), the source items written in transactions; and the guards of one-by-one registration
still hold inside a batch."""
from __future__ import annotations

from collections import Counter

import pytest

from sightline.datasets import store
from sightline.datasets.registration import Upload, register_uploads
from support import intercept_aws, png


@pytest.fixture
def calls(monkeypatch):
    """Calls per (service, operation) made through ``sightline.aws``."""
    from sightline import aws

    counted: Counter[tuple[str, str]] = Counter()
    real_client, real_table = aws.client, aws.table

    class Counting:
        def __init__(self, target, service):
            self._target, self._service = target, service

        def __getattr__(self, name):
            attribute = getattr(self._target, name)
            if not callable(attribute) or name.startswith("_") or name in ("meta", "exceptions", "get_paginator"):
                return attribute

            def call(*args, **kwargs):
                counted[(self._service, name)] += 1
                return attribute(*args, **kwargs)

            return call

    def client(service):
        return Counting(real_client(service), service)

    def table(name):
        return Counting(real_table(name), "table")

    client.cache_clear = real_client.cache_clear
    table.cache_clear = real_table.cache_clear
    monkeypatch.setattr(aws, "client", client)
    monkeypatch.setattr(aws, "table", table)
    return counted


def uploaded(datasets, count: int, *, start: int = 0) -> list[Upload]:
    bucket = datasets.resources.data_bucket
    return [Upload(bucket, key, datasets.upload(key, png(number)), sequencer=f"{number + 1:016X}")
            for number in range(start, start + count) for key in [f"datasets/bulk/cat/{number}.png"]]


def test_a_batch_of_loose_images_costs_a_get_and_a_put_per_image(datasets, calls):
    uploads = uploaded(datasets, 30)
    calls.clear()

    outcomes = register_uploads(uploads)

    assert [outcome["status"] for outcome in outcomes] == ["registered"] * 30
    assert calls[("s3", "get_object")] == 30 and calls[("s3", "put_object")] == 30
    assert calls[("s3", "head_object")] == 0 and calls[("table", "get_item")] == 0 and calls[("table", "put_item")] == 0
    assert calls[("dynamodb", "batch_get_item")] == 1 and calls[("dynamodb", "transact_write_items")] == 1
    source = datasets.resources.table.get_item(Key={"pk": "DATASET#bulk", "sk": "SOURCE#datasets/bulk/cat/7.png"})["Item"]
    assert source["etag"] == uploads[7].etag and source["uploaded_at"] and source["image"]["width"] == 32


def test_a_batch_registered_again_reads_and_writes_nothing_but_its_source_items(datasets, calls):
    uploads = uploaded(datasets, 12)
    register_uploads(uploads)
    calls.clear()

    again = register_uploads(uploads)

    assert [outcome["status"] for outcome in again] == ["unchanged"] * 12
    assert dict(calls) == {("dynamodb", "batch_get_item"): 1}


def test_an_older_upload_in_a_batch_is_left_out_and_the_others_are_written(datasets):
    uploads = uploaded(datasets, 5)
    bucket, key = datasets.resources.data_bucket, uploads[2].key
    newer = datasets.upload(key, png(99))
    register_uploads([Upload(bucket, key, newer, sequencer="FFFF")])  # the newest upload of the key, registered
    older = Upload(bucket, key, newer, sequencer="0001")  # and the same bytes announced by an older event

    outcomes = register_uploads([*uploads[:2], older, *uploads[3:]])

    assert [outcome["status"] for outcome in outcomes] == ["registered", "registered", "superseded", "registered",
                                                          "registered"]
    assert store.get_dataset("bulk") is None  # nothing recomputed yet: the batch does that once, afterwards


def test_a_source_item_written_since_the_batch_read_it_wins(datasets, monkeypatch):
    """The transaction's condition, not the earlier read, is the guard: a newer upload registered while the
    batch was reading its objects is not replaced."""
    uploads = uploaded(datasets, 3)
    bucket, key = datasets.resources.data_bucket, uploads[1].key
    newer = Upload(bucket, key, datasets.upload(key, png(50)), sequencer="FFFF")

    def newer_registers_first(transact_write_items, **kwargs):
        register_uploads([newer])
        return transact_write_items(**kwargs)

    stale = Upload(bucket, key, newer.etag, sequencer="0002")
    intercept_aws(monkeypatch, "dynamodb", "transact_write_items", newer_registers_first)
    outcomes = register_uploads([uploads[0], stale, uploads[2]])

    assert [outcome["status"] for outcome in outcomes] == ["registered", "superseded", "registered"]
    item = datasets.resources.table.get_item(Key={"pk": "DATASET#bulk", "sk": f"SOURCE#{key}"})["Item"]
    assert item["sequencer"].endswith("FFFF")


def test_the_same_notification_twice_in_a_batch_is_registered_once(datasets, calls):
    [upload] = uploaded(datasets, 1)
    calls.clear()

    outcomes = register_uploads([upload, upload])

    assert [outcome["status"] for outcome in outcomes] == ["registered", "registered"]
    assert calls[("s3", "get_object")] == 1


def test_a_replaced_or_deleted_object_is_superseded_or_missing_without_a_head(datasets, calls):
    uploads = uploaded(datasets, 2)
    datasets.upload(uploads[0].key, png(77))  # replaced since its event: the GET pinned to the old ETag fails
    datasets.resources.s3.delete_object(Bucket=datasets.resources.data_bucket, Key=uploads[1].key)
    calls.clear()

    outcomes = register_uploads(uploads)

    assert [outcome["status"] for outcome in outcomes] == ["superseded", "missing"]
    assert calls[("s3", "head_object")] == 0
