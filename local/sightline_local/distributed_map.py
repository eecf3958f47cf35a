"""Where moto's Step Functions interpreter (LocalStack's) falls short of a Distributed Map over S3.

moto 5.2.5 runs a Distributed Map with an ``ItemReader`` and a ``ResultWriter``, but:

- its grammar has no ``ItemBatcher``: a definition with one cannot even be created. Here the batcher is taken out
  of the definition before moto parses it and applied to the items the reader gave, as AWS does: each child
  execution gets ``{"BatchInput": <evaluated BatchInput>, "Items": [...]}``, with at most ``MaxItemsPerBatch``
  items and ``MaxInputBytesPerBatch`` bytes of them (256 KiB by default).
- its ``s3:listObjectsV2`` reader reads one page (1,000 keys), fails with ``KeyError`` on an empty prefix and
  hands boto3's objects on (``ETag``, a datetime). Here it reads every page and gives AWS's item shape:
  ``{"Etag", "Key", "LastModified" (epoch seconds), "Size", "StorageClass"}``.

Only top-level Map states are batched (the one shape this stack's definitions use).
"""
from __future__ import annotations

import functools
import json
from typing import Any

# AWS's default when only MaxItemsPerBatch is given.
DEFAULT_MAX_INPUT_BYTES = 256 * 1024
_BATCHER_ATTRIBUTE = "_sightline_item_batcher"


@functools.cache  # once per process
def install() -> None:
    """Patch moto's interpreter (once per process: a second patch would batch the batches)."""
    _patch_parser()
    _patch_map_run()
    _patch_list_objects()


# ---------------------------------------------------------------- ItemBatcher


def strip_item_batchers(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Remove ``ItemBatcher`` from the definition's top-level Map states; {state name: batcher}. A whole
    ``ToleratedFailurePercentage`` becomes a float on the way: moto's grammar takes only a decimal there."""
    batchers = {}
    for name, state in (document.get("States") or {}).items():
        if not isinstance(state, dict) or state.get("Type") != "Map":
            continue
        if isinstance(state.get("ToleratedFailurePercentage"), int):
            state["ToleratedFailurePercentage"] = float(state["ToleratedFailurePercentage"])
        if "ItemBatcher" in state:
            batchers[name] = state.pop("ItemBatcher")
    return batchers


def batches(items: list[Any], batcher: dict[str, Any], state_input: Any) -> list[dict[str, Any]]:
    """The items cut as AWS's ItemBatcher cuts them, each batch with the evaluated ``BatchInput``."""
    from moto.stepfunctions.parser.asl.utils.json_path import extract_json

    def evaluate(value: Any) -> Any:
        if isinstance(value, dict):
            return {key[:-2] if key.endswith(".$") else key:
                    extract_json(item, state_input) if key.endswith(".$") else evaluate(item)
                    for key, item in value.items()}
        if isinstance(value, list):
            return [evaluate(item) for item in value]
        return value

    batch_input = evaluate(batcher.get("BatchInput") or {})
    max_items = int(batcher.get("MaxItemsPerBatch") or len(items) or 1)
    max_bytes = int(batcher.get("MaxInputBytesPerBatch") or DEFAULT_MAX_INPUT_BYTES)
    cut: list[dict[str, Any]] = []
    current: list[Any] = []
    size = 0
    for item in items:
        item_bytes = len(json.dumps(item, separators=(",", ":"), default=str))
        if current and (len(current) >= max_items or size + item_bytes > max_bytes):
            cut.append({"BatchInput": batch_input, "Items": current})
            current, size = [], 0
        current.append(item)
        size += item_bytes
    if current:
        cut.append({"BatchInput": batch_input, "Items": current})
    return cut


def _patch_parser() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.state_map import StateMap
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    original = AmazonStateLanguageParser.parse

    def parse(definition: str) -> Any:
        try:
            document = json.loads(definition)
        except ValueError:
            return original(definition)
        batchers = strip_item_batchers(document) if isinstance(document, dict) else {}
        if not batchers:
            return original(definition)
        program, tree = original(json.dumps(document))
        for name, batcher in batchers.items():
            state = program.states.states.get(name)
            if isinstance(state, StateMap):
                setattr(state.iteration_component, _BATCHER_ATTRIBUTE, batcher)
        return program, tree

    AmazonStateLanguageParser.parse = staticmethod(parse)


def _patch_map_run() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.distributed_iteration_component import (
        DistributedIterationComponent,
    )

    original = DistributedIterationComponent._map_run

    def map_run(self: Any, env: Any, eval_input: Any) -> None:
        batcher = getattr(self, _BATCHER_ATTRIBUTE, None)
        if batcher is not None:
            items = env.stack.pop()  # what the ItemReader (or the state input) gave
            env.stack.append(batches(list(items or []), batcher, env.states.get_input()))
        original(self, env, eval_input)

    DistributedIterationComponent._map_run = map_run


# ---------------------------------------------------------------- ItemReader over ListObjectsV2


def reader_item(entry: dict[str, Any]) -> dict[str, Any]:
    """One ListObjectsV2 entry as the Distributed Map's S3 reader gives it."""
    modified = entry.get("LastModified")
    return {
        "Etag": entry.get("ETag"),
        "Key": entry["Key"],
        "LastModified": int(modified.timestamp()) if hasattr(modified, "timestamp") else modified,
        "Size": entry.get("Size", 0),
        "StorageClass": entry.get("StorageClass", "STANDARD"),
    }


def _patch_list_objects() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval.resource_eval_s3 import (
        ResourceEvalS3,
    )

    def list_objects_v2(env: Any, resource_runtime_part: Any, state_credentials: Any) -> None:
        s3 = ResourceEvalS3._get_s3_client(resource_runtime_part=resource_runtime_part,
                                           state_credentials=state_credentials)
        parameters = env.stack.pop()
        items = []
        for page in s3.get_paginator("list_objects_v2").paginate(**parameters):
            items.extend(reader_item(entry) for entry in page.get("Contents", []))
        env.stack.append(items)

    ResourceEvalS3._handle_list_objects_v2 = staticmethod(list_objects_v2)
