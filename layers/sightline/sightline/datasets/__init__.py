"""Dataset registration: uploaded objects under ``datasets/<name>/`` become registered, validated images.

Modules, from the bottom up:

- ``issues``: the ``{"key", "reason"}`` problem records every step reports instead of failing
- ``paths``: dataset names, object keys, which files are images, archives, annotations or junk
- ``classfolders``: the class label a class-folder layout gives an image
- ``images``: Pillow validation of one image file
- ``archive``: defensive zip reading (no traversal, no links, capped members, bomb detection)
- ``coco``: COCO detection JSON validation and normalisation
- ``s3io``: bounded and ranged reads of S3 objects
- ``sources``: the parse of one uploaded object (loose image, annotation file, zip)
- ``catalog``: the join of a dataset's sources into classification and detection images
- ``registration``: ``register_object`` / ``recompute_dataset`` (the register function's work)
- ``store``: dataset reads for the API; ``manifest``: training snapshots (``sightline.manifest/v1``)
"""
