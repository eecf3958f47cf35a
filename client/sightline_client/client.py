"""``SightlineClient``: a typed method for every route of docs/openapi.yaml, pagination iterators, waits and
uploads. Errors are raised as the typed exceptions of :mod:`sightline_client.errors`."""
from __future__ import annotations

import base64
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import quote

import requests

from sightline_client import config as configuration
from sightline_client.errors import (
    NotFound,
    SightlineError,
    TrainingCancelled,
    TrainingFailed,
    ValidationError,
    WaitTimeout,
)
from sightline_client.http import Api, RetryPolicy, Sender, Storage
from sightline_client.models import (
    SETTLED_DATASET_STATUSES,
    ApiKey,
    Artifacts,
    BatchPrediction,
    Comparison,
    Dataset,
    DatasetImage,
    DatasetSnapshot,
    Evaluation,
    Issue,
    Model,
    ModelVersion,
    MultiPredictAnswer,
    PredictAnswer,
    RegistrationProgress,
    Template,
    UploadProgress,
    UploadResult,
    UploadsAnswer,
)
from sightline_client.uploads import Uploader, collect

STATUS_FILES_PER_REQUEST = 1000  # POST /v1/datasets/{name}/uploads/status takes at most this many

ImageInput = bytes | str | os.PathLike
ModelRef = str | Mapping[str, Any] | tuple[str, int]
# Left out of a download unless asked for: the checkpoint is the size of the model again, for fine-tuning only.
DOWNLOAD_SKIPS = ("checkpoint.pt",)


def _segment(value: str | int) -> str:
    text = str(value)
    if not text:
        raise ValidationError("an id or name in the path must not be empty", code="invalid_path")
    return quote(text, safe="")


def _version_number(version: Any) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValidationError(f"a version is a positive integer, got {version!r}", code="invalid_version")
    return version


def sniff_content_type(data: bytes, name: str | None = None) -> str:
    """The media type of an image or zip from its first bytes (its file name's extension otherwise)."""
    signatures = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"GIF8", "image/gif"),
                  (b"BM", "image/bmp"), (b"PK\x03\x04", "application/zip"), (b"II*\x00", "image/tiff"),
                  (b"MM\x00*", "image/tiff"))
    for signature, media_type in signatures:
        if data.startswith(signature):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    suffix = Path(name or "").suffix.lower().lstrip(".")
    if suffix in ("jpg", "jpeg", "png", "gif", "bmp", "webp", "tif", "tiff"):
        return "image/" + {"jpg": "jpeg", "tif": "tiff"}.get(suffix, suffix)
    if suffix == "zip":
        return "application/zip"
    raise ValidationError(f"{name or 'the image'} is not a JPEG, PNG, GIF, BMP, WebP, TIFF or zip",
                          code="unsupported_media_type")


def _read_image(image: ImageInput) -> tuple[bytes, str | None]:
    if isinstance(image, (bytes, bytearray)):
        return bytes(image), None
    path = Path(image)
    try:
        return path.read_bytes(), path.name
    except FileNotFoundError:
        raise ValidationError(f"{path}: no such file", code="invalid_path") from None
    except IsADirectoryError:
        raise ValidationError(f"{path} is a folder, not an image", code="invalid_path") from None


def _model_ref(model: ModelRef) -> str | dict[str, Any]:
    if isinstance(model, str):
        return model
    if isinstance(model, tuple):
        model_id, version = model
        return {"model_id": model_id, "version": _version_number(version)}
    if isinstance(model, Mapping) and isinstance(model.get("model_id"), str):
        return dict(model)
    raise ValidationError(f"a model is an id, (id, version) or {{'model_id', 'version'}}, got {model!r}",
                          code="invalid_models")


class SightlineClient:
    """The Sightline API.

    ``api_url`` and ``api_key`` default to ``SIGHTLINE_API_URL`` / ``SIGHTLINE_API_KEY``, then the file
    ``sightline configure`` writes, then a local stack (``http://127.0.0.1:3000``, ``.sightline/api-key``).
    ``retry`` says how 429s, 5xx answers and lost connections are retried; ``sleep`` and ``rng`` may be replaced
    (tests).
    """

    def __init__(self, api_url: str | None = None, api_key: str | None = None, *, timeout: float = 60.0,
                 retry: RetryPolicy | None = None, sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None, session: requests.Session | None = None,
                 config_path: Path | None = None) -> None:
        settings = configuration.resolve(api_url, api_key, path=config_path)
        self.config = settings
        sender = Sender(retry=retry or RetryPolicy(), timeout=timeout, sleep=sleep, rng=rng or random.Random(),
                        session=session or requests.Session())
        self.sleep = sleep
        self.clock: Callable[[], float] = time.monotonic
        self._api = Api(settings.api_url, settings.api_key, sender)
        self._storage = Storage(sender)

    @property
    def api_url(self) -> str:
        return self._api.base_url

    def close(self) -> None:
        self._api.sender.session.close()

    def __enter__(self) -> SightlineClient:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Any route: its JSON answer (the typed methods below are built on this)."""
        return self._api.call(method, path, **kwargs)

    # ------------------------------------------------------------ service and keys

    def health(self) -> dict[str, str]:
        return self._api.call("GET", "/v1/health", keyed=False)

    def create_key(self, name: str, scopes: Sequence[str], *, idempotency_key: str | None = None) -> ApiKey:
        return self._api.call("POST", "/v1/keys", body={"name": name, "scopes": list(scopes)},
                              idempotency_key=idempotency_key)

    def list_keys(self) -> list[ApiKey]:
        return self._api.call("GET", "/v1/keys")["keys"]

    def revoke_key(self, key_id: str) -> ApiKey:
        return self._api.call("DELETE", f"/v1/keys/{_segment(key_id)}")

    def list_templates(self) -> list[Template]:
        return self._api.call("GET", "/v1/templates")["templates"]

    # ------------------------------------------------------------ datasets

    def list_datasets(self, *, limit: int | None = None, after: str | None = None) -> dict[str, Any]:
        """One page: ``{"datasets": [...], "next_after": name or None}``."""
        return self._api.call("GET", "/v1/datasets", params={"limit": limit, "after": after})

    def iter_datasets(self, *, page_size: int | None = None) -> Iterator[Dataset]:
        yield from self._pages("/v1/datasets", "datasets", "after", "next_after", {"limit": page_size})

    def get_dataset(self, name: str) -> Dataset:
        return self._api.call("GET", f"/v1/datasets/{_segment(name)}")

    def delete_dataset(self, name: str) -> dict[str, Any]:
        return self._api.call("DELETE", f"/v1/datasets/{_segment(name)}")

    def list_dataset_issues(self, name: str, *, limit: int | None = None, after: str | None = None) -> dict[str, Any]:
        return self._api.call("GET", f"/v1/datasets/{_segment(name)}/issues", params={"limit": limit, "after": after})

    def iter_dataset_issues(self, name: str, *, page_size: int | None = None) -> Iterator[Issue]:
        yield from self._pages(f"/v1/datasets/{_segment(name)}/issues", "issues", "after", "next_after",
                               {"limit": page_size})

    def list_dataset_images(self, name: str, *, label: str | None = None, limit: int | None = None,
                            cursor: str | None = None) -> dict[str, Any]:
        return self._api.call("GET", f"/v1/datasets/{_segment(name)}/images",
                              params={"class": label, "limit": limit, "cursor": cursor})

    def iter_dataset_images(self, name: str, *, label: str | None = None,
                            page_size: int | None = None) -> Iterator[DatasetImage]:
        yield from self._pages(f"/v1/datasets/{_segment(name)}/images", "images", "cursor", "next_cursor",
                               {"class": label, "limit": page_size})

    def list_dataset_versions(self, name: str) -> list[DatasetSnapshot]:
        return self._api.call("GET", f"/v1/datasets/{_segment(name)}/versions")["versions"]

    def add_image(self, name: str, image: ImageInput, *, label: str | None = None,
                  labels: Sequence[str] | None = None, boxes: Sequence[Mapping[str, Any]] | None = None,
                  idempotency_key: str | None = None) -> dict[str, Any]:
        """Add one image with exactly one of ``label``, ``labels`` or ``boxes`` (pixels of the upright image)."""
        given = [field for field, value in (("label", label), ("labels", labels), ("boxes", boxes)) if value is not None]
        if len(given) != 1:
            raise ValidationError(f"give exactly one of label, labels or boxes (got {', '.join(given) or 'none'})",
                                  code="invalid_annotation")
        data, _ = _read_image(image)
        body: dict[str, Any] = {"image": base64.b64encode(data).decode()}
        body[given[0]] = label if label is not None else list(labels if labels is not None else
                                                              [dict(box) for box in boxes or ()])
        return self._api.call("POST", f"/v1/datasets/{_segment(name)}/images", body=body,
                              idempotency_key=idempotency_key)

    def create_uploads(self, name: str, files: Sequence[Mapping[str, Any]]) -> UploadsAnswer:
        """Presigned URLs for ``files`` (``{"path", "size", "content_type"?, "upload_id"?}``, at most 1000)."""
        return self._api.call("POST", f"/v1/datasets/{_segment(name)}/uploads", body={"files": [dict(f) for f in files]})

    def complete_upload(self, name: str, path: str, upload_id: str, parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return self._api.call("POST", f"/v1/datasets/{_segment(name)}/uploads/complete",
                              body={"path": path, "upload_id": upload_id, "parts": [dict(p) for p in parts]})

    def abort_upload(self, name: str, path: str, upload_id: str) -> dict[str, Any]:
        return self._api.call("POST", f"/v1/datasets/{_segment(name)}/uploads/abort",
                              body={"path": path, "upload_id": upload_id})

    def upload_dataset(self, name: str, path: str | os.PathLike, *, wait: bool = True, timeout: float = 600.0,
                       on_progress: Callable[[UploadProgress], None] | None = None,
                       on_poll: Callable[[RegistrationProgress], None] | None = None,
                       workers: int = 4) -> UploadResult:
        """Upload a folder (walked; hidden, system and empty files left out) or one file (an image, archive or
        annotation file) into dataset ``name``, then (``wait``) wait until registration has read exactly these
        uploads and the dataset's summary includes them (:meth:`wait_for_uploads`, whose ``on_poll`` hears of
        each poll)."""
        files, skipped = collect(Path(path))
        etags = Uploader(self._api, self._storage, name, on_progress=on_progress, workers=workers).upload(files)
        result = UploadResult(dataset=name, files=[file.path for file in files], bytes=sum(f.size for f in files),
                              skipped=skipped)
        if not wait:
            return result
        dataset, states = self.wait_for_uploads(name, etags, timeout=timeout, on_poll=on_poll)
        return UploadResult(dataset=name, files=result.files, bytes=result.bytes, skipped=skipped,
                            dataset_state=dataset, file_states=states)

    def uploads_status(self, name: str, files: Mapping[str, str | None]) -> dict[str, Any]:
        """``POST /v1/datasets/{name}/uploads/status`` for up to 1000 files (path -> the ETag of its upload, or
        None for whatever upload of the path is recorded)."""
        return self._api.call("POST", f"/v1/datasets/{_segment(name)}/uploads/status", body={
            "files": [{"path": path, **({"etag": etag} if etag else {})} for path, etag in files.items()]})

    def wait_for_uploads(self, name: str, files: Mapping[str, str | None], *, timeout: float = 600.0,
                         interval: float = 1.0, on_poll: Callable[[RegistrationProgress], None] | None = None,
                         ) -> tuple[Dataset, list[dict[str, Any]]]:
        """Wait until registration has read each of ``files`` (path -> ETag) and the dataset's summary includes
        them all; the dataset then, and each file's final state (``registered``, ``invalid`` or ``superseded``:
        replaced by another upload of its path before it was read)."""
        paths = list(files)
        start = self.clock()
        while True:
            states: list[dict[str, Any]] = []
            summarized, status = True, None
            for first in range(0, len(paths), STATUS_FILES_PER_REQUEST):
                answer = self.uploads_status(name, {path: files[path]
                                                    for path in paths[first:first + STATUS_FILES_PER_REQUEST]})
                states += answer["files"]
                summarized = summarized and bool(answer["summarized"])
                status = answer.get("status", status)
            read = [state for state in states if state["state"] != "pending"]
            if on_poll is not None:
                on_poll(RegistrationProgress(files_total=len(states), files_read=len(read), status=status,
                                             invalid=sum(state["state"] == "invalid" for state in states),
                                             summarized=summarized))
            if status == "deleting":
                raise SightlineError(f"dataset {name} is being deleted", status=None, code="dataset_deleting")
            if summarized and len(read) == len(states):
                return self.get_dataset(name), states
            if self.clock() - start >= timeout:
                raise WaitTimeout(f"{len(states) - len(read)} of {len(states)} uploads of dataset {name} were not "
                                  f"registered within {timeout:.0f} s" if len(read) < len(states) else
                                  f"the uploads of dataset {name} registered, but its summary did not include them "
                                  f"within {timeout:.0f} s", last=states)
            self.sleep(interval)

    def wait_for_dataset(self, name: str, *, changed_since: str | None = None, timeout: float = 600.0,
                         settle: float = 5.0, interval: float = 1.0, unchanged_grace: float = 60.0,
                         on_poll: Callable[[Dataset | None], None] | None = None) -> Dataset:
        """The dataset once its registration settles: it exists in a final state (``ready``, ``invalid``,
        ``empty``) and ``updated_at`` stayed the same for ``settle`` seconds. With ``changed_since`` (its
        ``updated_at`` before an upload), a newer ``updated_at`` is awaited first, for at most ``unchanged_grace``
        seconds (an upload of files it already has may change nothing)."""
        start = self.clock()
        seen: str | None = None
        seen_at = start
        dataset: Dataset | None = None
        while True:
            try:
                dataset = self.get_dataset(name)
            except NotFound:
                dataset = None
            if on_poll is not None:
                on_poll(dataset)
            now = self.clock()
            if dataset is not None and dataset.get("status") == "deleting":
                raise SightlineError(f"dataset {name} is being deleted", status=None, code="dataset_deleting")
            if dataset is not None and dataset.get("status") in SETTLED_DATASET_STATUSES:
                updated = dataset.get("updated_at")
                fresh = changed_since is None or updated != changed_since or now - start >= unchanged_grace
                if fresh and updated == seen and now - seen_at >= settle:
                    return dataset
                if updated != seen:
                    seen, seen_at = updated, now
            if now - start >= timeout:
                raise WaitTimeout(f"dataset {name} did not settle within {timeout:.0f} s "
                                  f"(last status: {dataset.get('status') if dataset else 'not registered yet'})",
                                  last=dataset)
            self.sleep(interval)

    # ------------------------------------------------------------ models and versions

    def list_models(self) -> list[Model]:
        return self._api.call("GET", "/v1/models")["models"]

    def iter_models(self) -> Iterator[Model]:
        """Every model, newest first (the route answers them in one page)."""
        yield from self.list_models()

    def create_model(self, name: str, task: str, datasets: Sequence[str], *, template: str | None = None,
                     params: Mapping[str, Any] | None = None, retrain_on_new_data: bool | None = None,
                     retraining: Mapping[str, Any] | None = None, promotion: Mapping[str, Any] | None = None,
                     idempotency_key: str | None = None) -> dict[str, Any]:
        """Create a model and start training version 1: ``{"model_id", "version", "status"}``."""
        body: dict[str, Any] = {"name": name, "task": task, "datasets": list(datasets)}
        for field, value in (("template", template), ("params", params), ("retrain_on_new_data", retrain_on_new_data),
                             ("retraining", retraining), ("promotion", promotion)):
            if value is not None:
                body[field] = dict(value) if isinstance(value, Mapping) else value
        return self._api.call("POST", "/v1/models", body=body, idempotency_key=idempotency_key)

    def get_model(self, model_id: str) -> Model:
        return self._api.call("GET", f"/v1/models/{_segment(model_id)}")

    def update_model(self, model_id: str, *, retraining: Mapping[str, Any] | None = None,
                     promotion: Mapping[str, Any] | None = None) -> Model:
        body = {field: dict(value) for field, value in (("retraining", retraining), ("promotion", promotion))
                if value is not None}
        if not body:
            raise ValidationError("give retraining and/or promotion to change", code="invalid_json")
        return self._api.call("PATCH", f"/v1/models/{_segment(model_id)}", body=body)

    def delete_model(self, model_id: str) -> dict[str, Any]:
        return self._api.call("DELETE", f"/v1/models/{_segment(model_id)}")

    def create_version(self, model_id: str, *, datasets: Sequence[str] | None = None, template: str | None = None,
                       params: Mapping[str, Any] | None = None, idempotency_key: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if datasets is not None:
            body["datasets"] = list(datasets)
        if template is not None:
            body["template"] = template
        if params is not None:
            body["params"] = dict(params)
        return self._api.call("POST", f"/v1/models/{_segment(model_id)}/versions", body=body,
                              idempotency_key=idempotency_key)

    def list_versions(self, model_id: str, *, limit: int | None = None, before: int | None = None) -> dict[str, Any]:
        return self._api.call("GET", f"/v1/models/{_segment(model_id)}/versions",
                              params={"limit": limit, "before": before})

    def iter_versions(self, model_id: str, *, page_size: int | None = None) -> Iterator[ModelVersion]:
        yield from self._pages(f"/v1/models/{_segment(model_id)}/versions", "versions", "before", "next_before",
                               {"limit": page_size})

    def _version_path(self, model_id: str, version: int) -> str:
        return f"/v1/models/{_segment(model_id)}/versions/{_version_number(version)}"

    def get_version(self, model_id: str, version: int) -> ModelVersion:
        return self._api.call("GET", self._version_path(model_id, version))

    def delete_version(self, model_id: str, version: int) -> dict[str, Any]:
        return self._api.call("DELETE", self._version_path(model_id, version))

    def get_artifacts(self, model_id: str, version: int) -> Artifacts:
        return self._api.call("GET", self._version_path(model_id, version) + "/artifacts")

    def promote_version(self, model_id: str, version: int) -> dict[str, Any]:
        return self._api.call("POST", self._version_path(model_id, version) + "/promote")

    def cancel_version(self, model_id: str, version: int) -> dict[str, Any]:
        return self._api.call("POST", self._version_path(model_id, version) + "/cancel")

    def wait_for_version(self, model_id: str, version: int, timeout: float = 3600.0, *, interval: float = 5.0,
                         on_progress: Callable[[ModelVersion], None] | None = None) -> ModelVersion:
        """The version once it is ``ready``; ``on_progress`` gets it after every poll (its ``progress`` says the
        epoch, loss, metric and ETA). Raises TrainingFailed, TrainingCancelled or WaitTimeout."""
        start = self.clock()
        while True:
            state = self.get_version(model_id, version)
            if on_progress is not None:
                on_progress(state)
            status = state.get("status")
            if status == "ready":
                return state
            if status == "failed":
                raise TrainingFailed(f"{model_id} version {version} failed: "
                                     f"{state.get('failure_reason') or 'no reason recorded'}", version=state)
            if status == "cancelled":
                raise TrainingCancelled(f"{model_id} version {version} was cancelled", version=state)
            if self.clock() - start >= timeout:
                raise WaitTimeout(f"{model_id} version {version} is still {status} after {timeout:.0f} s",
                                  last=state)
            self.sleep(interval)

    def download_model(self, model_id: str, directory: str | os.PathLike, *, version: int | None = None,
                       include_checkpoint: bool = False,
                       on_file: Callable[[str, int], None] | None = None) -> list[Path]:
        """Download a version's files (the serving version's unless ``version``) into ``directory``: model.onnx,
        labels.json, metrics.json, card.json, plots, the manifest (and with ``include_checkpoint`` the checkpoint)."""
        if version is None:
            model = self.get_model(model_id)
            version = model.get("serving_version")
            if version is None:
                raise SightlineError(f"model {model_id} serves no version yet (status {model.get('status')}); "
                                     "name one with version=", code="model_not_ready")
        listing = self.get_artifacts(model_id, version)
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        root = target.resolve()
        written: list[Path] = []
        for artifact in listing.get("artifacts", []):
            name = str(artifact.get("name", ""))
            if name in DOWNLOAD_SKIPS and not include_checkpoint:
                continue
            destination = (target / name).resolve()
            if not name or root not in destination.parents:
                raise SightlineError(f"artifact name {name[:200]!r} would be written outside {target}",
                                     code="invalid_response")
            destination.parent.mkdir(parents=True, exist_ok=True)
            partial = destination.with_name(destination.name + ".part")
            with open(partial, "wb") as file:
                size = self._storage.download(artifact["url"], cast(BinaryIO, file), what=f"downloading {name}")
            os.replace(partial, destination)
            written.append(destination)
            if on_file is not None:
                on_file(name, size)
        return written

    # ------------------------------------------------------------ evaluations and batch predictions

    def create_evaluation(self, model_id: str, version: int, dataset: str, *, include_training_images: bool = False,
                          idempotency_key: str | None = None) -> Evaluation:
        body: dict[str, Any] = {"dataset": dataset}
        if include_training_images:
            body["include_training_images"] = True
        return self._api.call("POST", self._version_path(model_id, version) + "/evaluations", body=body,
                              idempotency_key=idempotency_key)

    def get_evaluation(self, evaluation_id: str) -> Evaluation:
        return self._api.call("GET", f"/v1/evaluations/{_segment(evaluation_id)}")

    def wait_for_evaluation(self, evaluation_id: str, timeout: float = 1800.0, *, interval: float = 3.0) -> Evaluation:
        """The evaluation once ``succeeded``; a SightlineError (``evaluation_failed``) when it failed."""
        return self._wait_for_job(lambda: self.get_evaluation(evaluation_id), f"evaluation {evaluation_id}",
                                  "evaluation_failed", timeout, interval)

    def compare_evaluations(self, evaluation_ids: Sequence[str]) -> Comparison:
        ids = [str(i) for i in evaluation_ids]
        if not 1 <= len(ids) <= 10 or not all(ids) or any("," in i for i in ids):
            raise ValidationError(f"compare takes 1 to 10 evaluation ids, got {len(ids)}", code="invalid_ids")
        return self._api.call("GET", "/v1/evaluations/compare", params={"ids": ",".join(ids)})

    def create_batch_prediction(self, model_id: str, s3_prefix: str, *, version: int | None = None,
                                threshold: float | None = None, max_results: int | None = None,
                                classes: Sequence[str] | None = None, video: Mapping[str, Any] | None = None,
                                idempotency_key: str | None = None) -> BatchPrediction:
        body: dict[str, Any] = {"s3_prefix": s3_prefix}
        body.update(_options(version, threshold, max_results, list(classes) if classes is not None else None))
        if video is not None:
            body["video"] = dict(video)
        return self._api.call("POST", f"/v1/models/{_segment(model_id)}/batch-predictions", body=body,
                              idempotency_key=idempotency_key)

    def get_batch_prediction(self, batch_prediction_id: str) -> BatchPrediction:
        return self._api.call("GET", f"/v1/batch-predictions/{_segment(batch_prediction_id)}")

    def wait_for_batch_prediction(self, batch_prediction_id: str, timeout: float = 3600.0, *,
                                  interval: float = 5.0) -> BatchPrediction:
        return self._wait_for_job(lambda: self.get_batch_prediction(batch_prediction_id),
                                  f"batch prediction {batch_prediction_id}", "batch_prediction_failed", timeout,
                                  interval)

    def _wait_for_job(self, read: Callable[[], Any], what: str, failure_code: str, timeout: float,
                      interval: float) -> Any:
        start = self.clock()
        while True:
            state = read()
            if state.get("status") == "succeeded":
                return state
            if state.get("status") == "failed":
                raise SightlineError(f"{what} failed: {state.get('failure_reason') or 'no reason recorded'}",
                                     code=failure_code, body=state)
            if self.clock() - start >= timeout:
                raise WaitTimeout(f"{what} is still {state.get('status')} after {timeout:.0f} s", last=state)
            self.sleep(interval)

    # ------------------------------------------------------------ predictions

    def predict(self, model_id: str, image: ImageInput | None = None, *, s3_uri: str | None = None,
                threshold: float | None = None, max_results: int | None = None, version: int | None = None,
                classes: Sequence[str] | None = None, form: bool = False, as_json: bool = False) -> PredictAnswer:
        """Predict one image, or a zip of up to 20 (answered per image in ``images``), with the serving version
        (or ``version``). ``image`` is bytes or a file path, sent as the body; ``form`` sends it as the
        ``images_file`` of a multipart form, ``as_json`` base64-encoded in JSON; ``s3_uri`` names an object in
        the deployment's buckets instead."""
        path = f"/v1/models/{_segment(model_id)}/predict"
        options = _options(version, threshold, max_results, list(classes) if classes is not None else None)
        return self._predict(path, image, s3_uri, options, form, as_json, extra={})

    def predict_many(self, models: Sequence[ModelRef], image: ImageInput | None = None, *, s3_uri: str | None = None,
                     threshold: float | None = None, max_results: int | None = None,
                     classes: Sequence[str] | None = None, form: bool = False) -> MultiPredictAnswer:
        """The same image by several models (ids, ``(id, version)`` or ``{"model_id", "version"}``), in order;
        a model that cannot answer gets its own ``error`` in ``results``."""
        refs = [_model_ref(model) for model in models]
        if not 1 <= len(refs) <= 10:
            raise ValidationError(f"predict_many takes 1 to 10 models, got {len(refs)}", code="invalid_models")
        options = _options(None, threshold, max_results, list(classes) if classes is not None else None)
        if form:
            if not all(isinstance(ref, str) for ref in refs):
                raise ValidationError("a form names models by id only: pin versions with JSON (form=False)",
                                      code="invalid_models")
            return self._predict("/v1/predict", image, s3_uri, options, True, False,
                                 extra={"models": ",".join(cast(list[str], refs))})
        return self._predict("/v1/predict", image, s3_uri, options, False, True, extra={"models": refs})

    def _predict(self, path: str, image: ImageInput | None, s3_uri: str | None, options: dict[str, Any], form: bool,
                 as_json: bool, extra: dict[str, Any]) -> Any:
        if (image is None) == (s3_uri is None):
            raise ValidationError("give exactly one of an image and s3_uri", code="invalid_request")
        if s3_uri is not None:
            if form:
                raise ValidationError("s3_uri is sent as JSON, not as a form", code="invalid_request")
            return self._api.call("POST", path, body={**extra, "s3_uri": s3_uri, **options}, read_only_post=True)
        data, name = _read_image(cast(ImageInput, image))
        if not data:
            raise ValidationError(f"{name or 'the image'} is empty", code="invalid_image")
        content_type = sniff_content_type(data, name)
        if form:
            fields = {key: ",".join(value) if isinstance(value, list) else str(value)
                      for key, value in {**extra, **options}.items()}
            return self._api.call("POST", path, files={"images_file": (name or "image", data, content_type)},
                                  form=fields, read_only_post=True)
        if as_json:
            return self._api.call("POST", path, body={**extra, "image": base64.b64encode(data).decode(), **options},
                                  read_only_post=True)
        params = {key: ",".join(value) if isinstance(value, list) else value for key, value in options.items()}
        return self._api.call("POST", path, data=data, content_type=content_type, params=params, read_only_post=True)

    # ------------------------------------------------------------ pagination

    def _pages(self, path: str, items: str, cursor_param: str, next_field: str,
               params: dict[str, Any]) -> Iterator[Any]:
        cursor: Any = None
        while True:
            page = self._api.call("GET", path, params={**params, cursor_param: cursor})
            yield from page.get(items) or []
            following = page.get(next_field)
            if following is None:
                return
            if following == cursor:
                raise SightlineError(f"GET {path} answered the same {next_field} twice ({following!r})",
                                     code="invalid_response")
            cursor = following


def _options(version: int | None, threshold: float | None, max_results: int | None,
             classes: list[str] | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if version is not None:
        options["version"] = _version_number(version)
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise ValidationError(f"threshold must be between 0 and 1, got {threshold!r}", code="invalid_threshold")
        options["threshold"] = threshold
    if max_results is not None:
        if isinstance(max_results, bool) or not isinstance(max_results, int) or not 1 <= max_results <= 100:
            raise ValidationError(f"max_results must be 1 to 100, got {max_results!r}", code="invalid_max_results")
        options["max_results"] = max_results
    if classes is not None:
        options["classes"] = classes
    return options
