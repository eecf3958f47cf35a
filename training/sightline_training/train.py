"""One training job from manifest to published model, reading top to bottom like torchvision's train.py."""
from __future__ import annotations

import copy
import json
import logging
import random
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from sightline import imaging
from sightline.errors import BadRequest
from sightline.contract import (CARD_FILE, CHECKPOINT_FILE, CLASSIFICATION, DETECTION, LABELS_FILE, METRICS_FILE,
                                MODEL_FILE, MULTILABEL, snapshot_id)
from sightline.templates import EXPORT_PARAMS, RUNTIME_PARAMS, TrainingTemplate, template_for

from sightline_training import (data, distributed, engine, export, metrics as measures, precision as precisions,
                                progress, quantize, recipe, storage, weights)
from sightline_training.card import card_document
from sightline_training.checkpoint import fetch_checkpoint, save_checkpoint
from sightline_training.config import JobConfig
from sightline_training.errors import InvalidInput, JobFailed
from sightline_training.interrupt import StopRequest
from sightline_training.manifest import TRAIN, VALIDATION, Manifest, ManifestItem, load_manifest
from sightline_training.models import CLASSIFIER_TASKS, freeze_backbone, input_spec

log = logging.getLogger(__name__)

# The metric promotion compares; COCO's own headline number for detection; for multilabel the mean of the
# classes' average precision, which (unlike F1) does not depend on the threshold a caller picks.
PRIMARY_METRIC = {CLASSIFICATION: "accuracy", DETECTION: "map_50_95", MULTILABEL: "mean_average_precision"}
# The numbers of the best epoch copied to metrics.json's top level (each epoch's are in its history).
METRICS = {CLASSIFICATION: ("accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted",
                            "recall_weighted", "f1_weighted"),
           DETECTION: ("map_50", "map_50_95", "map_75", "ar_100"),
           MULTILABEL: ("mean_average_precision", "f1_micro", "f1_macro")}
# metrics.json goes last: once it is there, everything beside it is complete.
ARTIFACT_TYPES = {MODEL_FILE: "application/octet-stream", LABELS_FILE: "application/json",
                  CARD_FILE: "application/json", METRICS_FILE: "application/json"}
# What a classifier trained with negatives calls its background output in the confusion matrix.
NONE_LABEL = "(none)"


@dataclass(frozen=True)
class JobPlan:
    """The validated inputs: what to train, on what, with which hyperparameters."""

    manifest: Manifest
    template: TrainingTemplate
    params: dict[str, int | float]
    train_items: list[ManifestItem]
    validation_items: list[ManifestItem]
    args: dict[str, Any]  # stored in the checkpoint, compared on resume
    choices: recipe.Choices = field(default_factory=recipe.Choices)  # what the recipe chose for null params

    @property
    def seed(self) -> int:
        """``params.seed``, offset by the job's ``--seed`` (0 unless a local run sets it)."""
        return int(self.params.get("seed", 0)) + int(self.args["seed"])

    @property
    def background(self) -> bool:
        """A classifier trained with negatives: one output more than the classes, the last meaning "none".

        Why an output rather than sigmoid scores for such datasets: the classes stay one-of-C (softmax and
        cross-entropy, as without negatives), so a positive image's scores mean the same whether or not the
        dataset had negatives; "none" simply competes as one more answer and takes the probability of an
        image of no class. Detection has its background label 0 for the same reason. The predict function
        drops the background's share (labels.json ``"background": true``) and reports only real classes.
        """
        return self.manifest.has_negatives

    @property
    def outputs(self) -> int:
        return len(self.manifest.classes) + int(self.background)


def plan_job(config: JobConfig) -> JobPlan:
    """Check the manifest, template and params before any image is fetched; raises :class:`InvalidInput`."""
    manifest = load_manifest(config.manifest_uri)
    try:
        template = template_for(manifest.task, config.template_id)
        params = template.resolve_params(config.params)
    except BadRequest as error:
        raise InvalidInput(error.message) from None
    if not manifest.classes:
        raise InvalidInput("the manifest has no classes")
    if manifest.task == CLASSIFICATION and len(manifest.classes) + int(manifest.has_negatives) < 2:
        raise InvalidInput(f"classification needs at least 2 classes, or a class and negatives (\"label\": null); "
                           f"the manifest has {len(manifest.classes)} class and no negatives")
    train_items, validation_items = manifest.split(TRAIN), manifest.split(VALIDATION)
    if not train_items:
        raise InvalidInput("the manifest has no training items")
    if len(train_items) < 2:
        raise InvalidInput("the manifest has 1 training item; training needs at least 2")
    if not validation_items:
        raise InvalidInput("the manifest has no validation items, so the model cannot be measured")
    if manifest.task == DETECTION and not any(item.boxes for item in validation_items):
        raise InvalidInput("the validation items have no boxes, so mAP cannot be measured")
    if manifest.task == MULTILABEL and not any(item.class_indices for item in validation_items):
        raise InvalidInput("the validation items have no labels, so average precision cannot be measured")
    # Params of how it runs (gpus, precision) are left out: a checkpoint resumes on another number of GPUs; and
    # those of what is exported from the weights (quantize): a finished checkpoint exports again under others.
    args = {"template": template.id, "task": manifest.task, "classes": list(manifest.classes),
            "params": {name: value for name, value in params.items()
                       if name not in RUNTIME_PARAMS + EXPORT_PARAMS},
            "seed": config.seed}
    if manifest.has_negatives:
        args["background"] = True  # only then: checkpoints written before negatives existed still resume
    return JobPlan(manifest, template, params, train_items, validation_items, args)


def run_job(config: JobConfig) -> dict[str, Any]:
    """Train, checkpoint every epoch, export, verify and publish; the metrics document written."""
    with StopRequest() as stop:
        plan = plan_job(config)
        template, classes = plan.template, plan.manifest.classes
        # One process per GPU under torchrun (distributed.py); a single process otherwise (rank 0 of 1).
        ctx = distributed.context()
        device = pick_device(config.device, ctx.local_rank if ctx.enabled else None)
        distributed.start(ctx, device.type)
        # Every rank stops at the same step after SIGTERM reaches any of them.
        check_stop = distributed.collective_stop_check(lambda: stop.requested, stop.check, ctx)

        with ctx.main_first():  # rank 0 copies the images; the others find them on the shared local disk
            paths = data.fetch_images(plan.train_items + plan.validation_items, config.work_dir / "images")
        check_stop()
        # Params left null (epochs, batch_size, a detector's image_size) are chosen from the data (recipe.py).
        sizes = data.image_sizes(plan.train_items, paths)
        completed, choices = recipe.complete_params(template, plan.params, plan.train_items, sizes)
        plan = replace(plan, params=completed, choices=choices)
        params = plan.params
        image_size, epochs = int(params["image_size"]), int(params["epochs"])
        log.info("training %s (%s, %d classes) for up to %d epochs at %d pixels on %s: %d train, %d validation "
                 "images; chosen from the data: %s", template.id, template.task, len(classes), epochs, image_size,
                 device, len(plan.train_items), len(plan.validation_items), json.dumps(choices.to_dict()))
        precision = precisions.choose(str(params.get("precision", "auto")), device, template.task,
                                      config.channels_last)
        compute = {**precision.to_dict(), "gpus": ctx.world_size, "device": device.type}
        log.info("computing with %s", json.dumps(compute))
        train_set, validation_set, collate_fn = build_datasets(plan, paths, image_size)
        generator = torch.Generator()
        sampler = (data.distributed_sampler(train_set, ctx.world_size, ctx.rank, plan.seed) if ctx.enabled
                   else None)
        train_batches = data.train_loader(train_set, int(params["batch_size"]), config.workers, generator, collate_fn,
                                          sampler)
        validation_batches = data.eval_loader(validation_set, int(params["batch_size"]), config.workers, collate_fn)
        # BatchNorm's statistics are recomputed on the training images as serving will see them: unaugmented.
        statistics_batches = data.statistics_loader(build_datasets(plan, paths, image_size, augmented=False)[0],
                                                    int(params["batch_size"]), config.workers, collate_fn)

        checkpoint_path = config.work_dir / CHECKPOINT_FILE
        checkpoint = fetch_checkpoint(config.checkpoint_uri, checkpoint_path) if ctx.is_main else None
        if ctx.broadcast(checkpoint is not None) and not ctx.is_main:  # rank 0 has just downloaded it
            checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        seed_everything(plan.seed)
        # Pretrained weights unless params say otherwise (weights.py); resuming, the checkpoint's replace them.
        with ctx.main_first():
            model, starting_weights = weights.starting_model(template, plan.outputs, image_size, params,
                                                             config.weights_uri, checkpoint)
        if template.task == DETECTION:  # anchors for the boxes' sizes; not in the state dict, so laid out each run
            recipe.fit_anchors(model, params, plan.train_items, sizes, image_size, plan.choices)
        model = model.to(device, memory_format=precision.memory_format)
        optimizer = recipe.optimizer(model, params)
        lr_scheduler = recipe.lr_scheduler(optimizer, params, epochs, len(train_batches))
        best = recipe.BestEpoch(int(params["early_stopping_patience"]))
        scaler = precision.grad_scaler(device)  # fp16 only
        train_model, wrapped_frozen = model, None  # the DistributedDataParallel wrapper when distributed

        start_epoch, history, per_class = 0, [], None
        if checkpoint is not None:
            check_resumable(checkpoint, plan.args, config.checkpoint_uri)
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            lr_scheduler.load_state_dict(checkpoint["lr_scheduler"])
            if checkpoint["scaler"]:  # empty when saved by a CPU run (the scaler is off there)
                scaler.load_state_dict(checkpoint["scaler"])
            start_epoch, history = checkpoint["epoch"] + 1, list(checkpoint["history"])
            if "best" in checkpoint:  # the best epoch so far and whether early stopping ended the run
                best.load_state_dict(checkpoint["best"])
            log.info("resuming after epoch %d of %d from %s", start_epoch, epochs, config.checkpoint_uri)

        for epoch in range(start_epoch, start_epoch if best.stopped else epochs):
            # Seeded per epoch, so a resumed job draws the same batches and augmentations as an unbroken one.
            # Ranks draw different augmentations (the sampler gives them different images already).
            seed_everything(plan.seed + epoch + 1_000_003 * ctx.rank)
            generator.manual_seed(plan.seed + epoch)
            if sampler is not None:
                sampler.set_epoch(epoch)
            started = time.monotonic()
            frozen = epoch < int(params["freeze_backbone_epochs"])
            freeze_backbone(model, template, frozen=frozen)
            if ctx.enabled and frozen != wrapped_frozen:
                # DDP all-reduces the gradients of the parameters that train when it is built: rebuilt on a change.
                train_model, wrapped_frozen = distributed.wrap(model, device), frozen
            learning_rate = optimizer.param_groups[0]["lr"]
            train_loss = engine.train_one_epoch(train_model, optimizer, train_batches, device, epoch, scaler,
                                                template.task, check_stop, lr_scheduler=lr_scheduler,
                                                precision=precision)
            train_loss = ctx.mean(train_loss)  # over every rank's batches
            if not ctx.is_main:
                # Rank 0 alone measures, keeps the best epoch and checkpoints; the others wait for its verdict.
                stopping = ctx.broadcast(None)
                check_stop()
                if stopping:
                    break
                continue
            # On the model itself, not DDP's wrapper: rank 0 alone; DDP hands its buffers to the others.
            engine.recompute_batch_norm_statistics(model, statistics_batches, device, template.task, stop.check,
                                                   precision=precision)
            scores = engine.evaluate(model, validation_batches, device, template.task, len(classes))
            per_class = scores.pop("per_class", None)  # the best epoch's goes to metrics.json, not to history
            history.append({"epoch": epoch + 1, "train_loss": train_loss, "learning_rate": learning_rate, **scores,
                            "seconds": round(time.monotonic() - started, 3)})
            log.info("epoch %d/%d: %s", epoch + 1, epochs, json.dumps(history[-1]))
            stopping = best.update(epoch + 1, history[-1][PRIMARY_METRIC[template.task]], model, per_class)
            progress.report(progress.progress_document(history, epochs, len(plan.train_items),
                                                       PRIMARY_METRIC[template.task]), config.output_uri)
            save_checkpoint({"args": plan.args, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "lr_scheduler": lr_scheduler.state_dict(), "scaler": scaler.state_dict(),
                             "epoch": epoch, "history": history, "weights": starting_weights,
                             "best": best.state_dict()},
                            checkpoint_path, config.checkpoint_uri)
            ctx.broadcast(stopping)  # the other ranks wait here for this epoch's checkpoint
            check_stop()
            if stopping:
                log.info("early stop after epoch %d: no better %s than epoch %d's %.4f for %d epochs", epoch + 1,
                         PRIMARY_METRIC[template.task], best.epoch, best.metric, best.patience)
                break

        if ctx.enabled:
            # Every rank applied the same all-reduced gradients: their weights must be equal, bit for bit.
            compute["replicas_agree"] = distributed.replicas_agree(model, ctx)
            if not compute["replicas_agree"]:
                raise JobFailed("the DistributedDataParallel replicas' weights differ after training")
            if not ctx.is_main:
                return {}  # rank 0 exports and publishes

        if best.weights is not None:  # absent only in a checkpoint written before the recipe kept the best
            model.load_state_dict(best.weights)
            per_class = best.extra

        if template.task == MULTILABEL and per_class is None:  # resumed from an older last epoch's checkpoint
            per_class = engine.evaluate(model, validation_batches, device, template.task, len(classes))["per_class"]

        output_dir = config.work_dir / "output"
        labels = export.labels_document(template, classes, input_spec(template, image_size), plan.background,
                                        thresholds=assumed_thresholds(classes, per_class))
        serving_model = copy.deepcopy(model).cpu().float().eval()
        export.export_onnx(serving_model, template, image_size, output_dir / MODEL_FILE)
        export.optimize_for_serving(output_dir / MODEL_FILE)  # before the check: it checks what predict loads
        check = verify_export(plan, serving_model, output_dir / MODEL_FILE, labels, paths, config.check_images)
        stop.check()
        if not check.passed:
            raise JobFailed(f"ONNX check failed on {check.images} images: {check.reason}")
        # params.quantize int8: the checked fp32 graph quantized, both measured; model.onnx becomes the one kept.
        quantization = quantize_if_asked(plan, output_dir / MODEL_FILE, config.work_dir, labels, paths)
        stop.check()

        metrics = {**metrics_document(plan, history, device, check, per_class, best, quantization),
                   "weights": starting_weights, "compute": compute}
        (output_dir / LABELS_FILE).write_text(json.dumps(labels, indent=2))
        (output_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
        plots = render_plots(plan, output_dir, metrics, per_class, labels, paths)
        manifest_document = json.loads(storage.read_bytes(config.manifest_uri))
        model_card = card_document(manifest=plan.manifest, manifest_uri=config.manifest_uri,
                                   snapshot=snapshot_id(manifest_document), template_id=template.id,
                                   params=params, labels=labels, metrics=metrics, device=device, plots=plots)
        (output_dir / CARD_FILE).write_text(json.dumps(model_card, indent=2))
        publish(output_dir, config.output_uri)
        log.info("published to %s: %s %.4f", config.output_uri, metrics["primary_metric"],
                 metrics[metrics["primary_metric"]])
        return metrics


def _details(per_class: dict[str, Any] | list[dict[str, Any]] | None) -> dict[str, Any]:
    """engine.evaluate's details; a list is a multilabel checkpoint's per-class figures from before them."""
    if per_class is None:
        return {}
    return {"per_class": per_class} if isinstance(per_class, list) else dict(per_class)


def assumed_thresholds(classes: tuple[str, ...] | list[str],
                       per_class: dict[str, Any] | list[dict[str, Any]] | None) -> dict[str, float]:
    """{class: the score of its highest validation F1} for the classes that have one (labels.json ``thresholds``)."""
    entries = _details(per_class).get("per_class") or []
    return {name: entry["assumed_threshold"]["threshold"] for name, entry in zip(classes, entries)
            if entry.get("assumed_threshold")}


def quantize_if_asked(plan: JobPlan, model_path: Path, work_dir: Path, labels: dict[str, Any],
                      paths: dict[str, Path]) -> quantize.Decision | None:
    """With ``params.quantize`` int8: quantize the exported model, measure both on the validation split, and
    put the int8 one in ``model_path``'s place when it loses at most ``quantize_tolerance`` points of the primary
    metric. ``labels["precision"]`` says which model ``model_path`` holds."""
    if plan.params.get("quantize", "none") != quantize.INT8:
        return None
    int8_path = work_dir / "quantized" / model_path.name
    decision = quantize.quantize_and_choose(
        model_path, int8_path, labels, plan.manifest, plan.train_items, plan.validation_items, paths,
        PRIMARY_METRIC[plan.template.task], float(plan.params["quantize_tolerance"]), plan.seed)
    log.info("quantization: %s", json.dumps(decision.to_dict()))
    if decision.published == quantize.INT8:
        shutil.move(int8_path, model_path)
        labels["precision"] = quantize.INT8
    return decision


def metrics_document(plan: JobPlan, history: list[dict[str, Any]], device: torch.device,
                     check: export.OnnxCheck, per_class: dict[str, Any] | list[dict[str, Any]] | None = None,
                     best: recipe.BestEpoch | None = None,
                     quantization: quantize.Decision | None = None) -> dict[str, Any]:
    """metrics.json: the best epoch's validation metrics (the exported weights are that epoch's, ``best_epoch``;
    the last epoch's without ``best``), whether early stopping ended training, what the recipe chose from the
    data; ``per_class`` by class name with each class's assumed threshold (also as ``assumed_thresholds``), a
    classifier's ``confusion_matrix``, a detector's ``by_size``; for multilabel the threshold of its F1 scores.
    ``per_class``: engine.evaluate's details of the best epoch. ``quantization``: with params.quantize int8, the
    fp32 and int8 models' validation metrics and which one model.onnx is; the top-level metrics stay fp32's."""
    task = plan.template.task
    classes = list(plan.manifest.classes)
    best_epoch = best.epoch if best is not None and best.epoch is not None else history[-1]["epoch"]
    chosen = next(entry for entry in history if entry["epoch"] == best_epoch)
    document = {
        "task": task,
        "primary_metric": PRIMARY_METRIC[task],
        # A history written before a metric existed lacks it: absent rather than made up.
        **{name: chosen[name] for name in METRICS[task] if name in chosen},
        "best_epoch": best_epoch,
        "stopped_early": bool(best is not None and best.stopped),
        "recipe": plan.choices.to_dict(),
        "validation_images": len(plan.validation_items),
        "epochs": len(history),
        "device": device.type,
        "history": history,
        "onnx_check": check.to_dict(),
    }
    details = _details(per_class)
    if task == MULTILABEL:
        document["threshold"] = measures.MULTILABEL_THRESHOLD
    if details.get("per_class") is not None:
        document["per_class"] = dict(zip(classes, details["per_class"]))
        document["assumed_thresholds"] = {
            name: (entry.get("assumed_threshold") or {}).get("threshold")
            for name, entry in document["per_class"].items()}
    if "confusion_matrix" in details:  # rows: the true class, columns: the predicted one
        document["confusion_matrix"] = {"labels": classes + ([NONE_LABEL] if plan.background else []),
                                        "matrix": details["confusion_matrix"]}
    if "by_size" in details:
        document["by_size"] = details["by_size"]
    if quantization is not None:
        document["quantization"] = quantization.to_dict()
    if plan.background:
        document["validation_negatives"] = sum(item.class_index is None for item in plan.validation_items)
    return document


def publish(output_dir: Path, output_uri: str) -> None:
    files = {name: content_type for name, content_type in ARTIFACT_TYPES.items() if name != METRICS_FILE}
    files.update({path.name: "image/png" for path in sorted(output_dir.glob("*.png"))})  # plots.py's
    for name, content_type in {**files, METRICS_FILE: ARTIFACT_TYPES[METRICS_FILE]}.items():
        storage.upload_file(output_dir / name, storage.join(output_uri, name), content_type)


def render_plots(plan: JobPlan, output_dir: Path, metrics: dict[str, Any],
                 per_class: dict[str, Any] | list[dict[str, Any]] | None, labels: dict[str, Any],
                 paths: dict[str, Path]) -> list[str]:
    """plots.py's PNGs in ``output_dir``: their names. A plot that fails is logged and left out: pictures are
    worth less than the model they describe."""
    from sightline.inference import Predictor

    from sightline_training import plots

    classes = list(plan.manifest.classes)
    details = _details(per_class)
    written: list[str] = []

    def attempt(name: str, render) -> None:
        try:
            if render(output_dir / name) is not None:
                written.append(name)
        except Exception:  # noqa: BLE001 - see above
            log.warning("plot %s failed", name, exc_info=True)

    if details.get("curves"):
        attempt(plots.PR_CURVES, lambda path: plots.pr_curves(details["curves"], classes, path))
    if "confusion_matrix" in metrics:
        attempt(plots.CONFUSION_MATRIX, lambda path: plots.confusion_matrix(
            metrics["confusion_matrix"]["matrix"], metrics["confusion_matrix"]["labels"], path))
    attempt(plots.TRAINING_CURVES, lambda path: plots.training_curves(metrics["history"], metrics["primary_metric"],
                                                                      path))

    def sheet(path: Path) -> Path | None:
        predictor = Predictor(output_dir / MODEL_FILE, labels)
        samples = []
        for item in plan.validation_items[:plots.SHEET_IMAGES]:
            image = data.load_rgb(paths[item.id])
            if plan.template.task == DETECTION:
                truth = [{"label": classes[box.label_id - 1],
                          "box": {"x_min": box.x_min, "y_min": box.y_min, "x_max": box.x_max, "y_max": box.y_max}}
                         for box in item.boxes]
            elif plan.template.task == MULTILABEL:
                truth = [classes[index] for index in item.class_indices]
            else:
                truth = [classes[item.class_index]] if item.class_index is not None else []
            samples.append({"image": image, "truth": truth, "predicted": predictor.predict(image, None, 10)})
        return plots.validation_sheet(samples, path, boxes=plan.template.task == DETECTION)

    attempt(plots.VALIDATION_SHEET, sheet)
    return written


def build_datasets(plan: JobPlan, paths: dict[str, Path], image_size: int, augmented: bool = True):
    """The training set (augmented as the params say, unless not ``augmented``), the validation set, collate."""
    task, classes = plan.template.task, len(plan.manifest.classes)
    augmentation = data.Augmentation.from_params(plan.params) if augmented else data.NO_AUGMENTATION
    if task == DETECTION:
        return (data.DetectionDataset(plan.train_items, paths,
                                      data.detection_transforms(image_size, True, augmentation)),
                data.DetectionDataset(plan.validation_items, paths, data.detection_transforms(image_size, False)),
                data.collate_detection)

    def dataset(items: list[ManifestItem], train: bool) -> torch.utils.data.Dataset:
        transform = data.classification_transforms(image_size, train, augmentation)
        if task == MULTILABEL:
            return data.MultiLabelDataset(items, paths, transform, classes)
        # A negative's target is the background output, after the classes.
        return data.ClassificationDataset(items, paths, transform, classes if plan.background else None)

    return dataset(plan.train_items, True), dataset(plan.validation_items, False), None


def verify_export(plan: JobPlan, model: torch.nn.Module, onnx_path: Path, labels: dict[str, Any],
                  paths: dict[str, Path], count: int) -> export.OnnxCheck:
    """Run the ONNX graph and the PyTorch model on a few validation images (and, for detection, a blank one).

    onnxruntime gets the input the predict function builds from ``labels`` (sightline.imaging), PyTorch the
    validation transform's: a wrong labels.json fails the check like a wrong graph.
    """
    image_size = int(plan.params["image_size"])
    spec = imaging.InputSpec.from_labels(labels)
    images = [data.load_rgb(paths[item.id]) for item in plan.validation_items[:count]]
    session = export.open_session(onnx_path)
    if plan.template.task in CLASSIFIER_TASKS:
        transform = data.classification_transforms(image_size, train=False)
        check = export.verify_classifier(session, model, [transform(image) for image in images],
                                         [imaging.to_tensor(image, spec) for image in images])
    else:
        # A blank image: what the model must find nothing in (after a threshold) is a case worth checking.
        images.append(Image.new("RGB", (image_size, image_size), (128, 128, 128)))
        transform = data.detection_transforms(image_size, train=False)
        check = export.verify_detector(session, model, [transform(image) for image in images],
                                       [imaging.to_tensor(image, spec) for image in images])
    log.info("onnx check: %s%s", json.dumps(check.to_dict()), f" ({check.reason})" if check.reason else "")
    return check


def check_resumable(checkpoint: dict[str, Any], args: dict[str, Any], uri: str | None) -> None:
    """A checkpoint only resumes the job that wrote it: same template, classes, params and seed."""
    saved = checkpoint.get("args", {})
    different = sorted(key for key in args if saved.get(key) != args[key])
    if different:
        raise InvalidInput(f"checkpoint at {uri} belongs to a different job ({', '.join(different)} differ)")


def pick_device(requested: str, index: int | None = None) -> torch.device:
    """The device to train on; ``index``: this rank's GPU (its local rank) when distributed."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise InvalidInput("device cuda was requested but CUDA is not available")
    if requested not in ("cpu", "cuda"):
        raise InvalidInput(f"device must be auto, cpu or cuda, got {requested!r}")
    return torch.device("cuda", index) if requested == "cuda" and index is not None else torch.device(requested)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
