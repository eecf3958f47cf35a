"""Sightline's training container: ``python -m sightline_training`` trains one model version on AWS Batch.

It reads a ``sightline.manifest/v1`` snapshot, trains a torchvision model from the template catalogue,
checkpoints after every epoch (so a Spot interruption or Batch retry resumes), exports ONNX, verifies it
against PyTorch with onnxruntime and writes ``model.onnx``, ``labels.json`` and ``metrics.json``.
"""
