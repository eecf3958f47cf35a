"""Dataset registration: uploaded objects under ``datasets/<name>/`` become registered, validated images.

Modules, from the bottom up:

- ``issues``: the ``{"key", "reason"}`` problem records every step reports instead of failing
- ``paths``: dataset names, object keys, which files are images, archives, annotations or junk
- ``classfolders``: the class label a class-folder layout gives an image
- ``images``: Pillow validation of one image file
- ``archive``: defensive zip and tar reading (no traversal, no links or devices, capped members, bomb detection)
- ``formats``: one module per annotation format (COCO, Pascal VOC, YOLO, CSV, Ground Truth manifests) behind
  one interface, ``identify`` to pick one, and the Watson archive naming
- ``s3io``: bounded and ranged reads of S3 objects
- ``sources``: the parse of one uploaded object (loose image, annotation file, zip or tar)
- ``catalog``: the join of a dataset's sources into classification and detection images
- ``registration``: ``register_object`` / ``recompute_dataset`` (the register function's work)
- ``store``: dataset reads for the API; ``manifest``: training snapshots (``sightline.manifest/v1``)
"""
