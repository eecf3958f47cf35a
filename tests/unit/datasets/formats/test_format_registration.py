"""Datasets in the shapes users bring, dropped into the bucket and registered as the register function does:
detected from content, every box where the exporter put it, and nothing misread silently."""
from __future__ import annotations

import io
import tarfile

import pytest

from exported_datasets import (
    boxes_csv,
    expected_boxes,
    groundtruth_manifest,
    background_jpegs,
    photos,
    single_shape_jpegs,
    tar_of,
    voc_members,
    yolo_members,
    zip_of,
)
from sightline.datasets import store

PHOTOS = photos(4)


def detection_items(name: str) -> dict[tuple[int, int], list[dict]]:
    """The registered detection images of a dataset: (width, height) is the same for all, so key by boxes."""
    items = store.dataset_items([name], "detection")
    return {item["id"]: sorted(item["boxes"], key=lambda box: (box["x_min"], box["y_min"])) for item in items}


def assert_boxes_as_exported(name: str) -> None:
    registered = sorted(detection_items(name).values(), key=lambda boxes: [b["x_min"] for b in boxes])
    expected = sorted((expected_boxes(photo) for photo in PHOTOS), key=lambda boxes: [b["x_min"] for b in boxes])
    assert len(registered) == len(expected)
    for got, want in zip(registered, expected):
        assert [b["label"] for b in got] == [b["label"] for b in want]
        for box, wanted in zip(got, want):
            for corner in ("x_min", "y_min", "x_max", "y_max"):
                assert box[corner] == pytest.approx(wanted[corner], abs=0.01)


def test_a_pascal_voc_zip_registers_as_detection_not_as_a_class_named_jpegimages(datasets):
    datasets.register("datasets/voc/VOCtrainval.zip", zip_of(voc_members(PHOTOS)))

    dataset = store.get_dataset("voc")
    assert dataset["status"] == "ready" and dataset["tasks"] == ["detection"]
    assert dataset["formats"] == ["voc"]
    assert "JPEGImages" not in dataset["classes"]
    assert dataset["annotations"] == sum(len(p.boxes) for p in PHOTOS)
    assert_boxes_as_exported("voc")
    # ImageSets/Main/train.txt is VOC's split list, not an annotation: said, not silently dropped.
    assert any("train.txt" in issue["key"] and "fits no known annotation format" in issue["reason"]
               for issue in dataset["issues"])


def test_loose_voc_files_register_in_any_upload_order(datasets):
    members = voc_members(PHOTOS[:2])
    xml = {key: data for key, data in members.items() if key.endswith(".xml")}
    jpegs = {key: data for key, data in members.items() if key.endswith(".jpg")}
    for key, data in xml.items():
        datasets.register(f"datasets/loose-voc/{key}", data)
    assert store.get_dataset("loose-voc")["status"] == "invalid"  # the images have not arrived yet
    for key, data in jpegs.items():
        datasets.register(f"datasets/loose-voc/{key}", data)
    dataset = store.get_dataset("loose-voc")
    assert dataset["status"] == "ready" and dataset["issues"] == []


@pytest.mark.parametrize("names", ["data.yaml", "classes.txt"])
def test_a_yolo_archive_registers_with_its_class_names(datasets, names):
    datasets.register("datasets/yolo/export.zip", zip_of(yolo_members(PHOTOS, names=names)))

    dataset = store.get_dataset("yolo")
    assert (dataset["status"], dataset["tasks"], dataset["formats"]) == ("ready", ["detection"], ["yolo"])
    assert set(dataset["classes"]) <= {"circle", "square"} and dataset["issues"] == []
    assert_boxes_as_exported("yolo")


def test_yolo_without_class_names_says_so_and_names_classes_by_index(datasets):
    datasets.register("datasets/yolo/export.zip", zip_of(yolo_members(PHOTOS[:1], names="none")))
    dataset = store.get_dataset("yolo")
    assert set(dataset["classes"]) <= {"0", "1"}
    assert "no data.yaml or classes.txt names the classes" in dataset["issues"][0]["reason"]


def test_a_yolo_background_image_has_an_empty_label_file(datasets):
    members = yolo_members(PHOTOS[:1])
    members["images/train/empty.jpg"] = PHOTOS[1].jpeg
    members["labels/train/empty.txt"] = b""
    datasets.register("datasets/yolo/export.zip", zip_of(members))
    items = store.dataset_items(["yolo"], "detection")
    assert sorted(len(item["boxes"]) for item in items) == [0, len(PHOTOS[0].boxes)]


def test_a_csv_of_boxes_beside_its_images_registers(datasets):
    datasets.register("datasets/csv/annotations.csv", boxes_csv(PHOTOS))
    for photo in PHOTOS:
        datasets.register(f"datasets/csv/images/{photo.stem}.jpg", photo.jpeg)

    dataset = store.get_dataset("csv")
    assert (dataset["status"], dataset["formats"], dataset["issues"]) == ("ready", ["csv-boxes"], [])
    assert_boxes_as_exported("csv")


def test_a_ground_truth_manifest_registers_its_boxes(datasets):
    bucket = datasets.resources.data_bucket
    datasets.register("datasets/gt/output.manifest", groundtruth_manifest(PHOTOS, bucket, "datasets/gt/images/"))
    for photo in PHOTOS:
        datasets.register(f"datasets/gt/images/{photo.stem}.jpg", photo.jpeg)

    dataset = store.get_dataset("gt")
    assert (dataset["status"], dataset["formats"], dataset["issues"]) == ("ready", ["groundtruth"], [])
    assert_boxes_as_exported("gt")


def test_a_rekognition_manifest_from_another_bucket_finds_the_copied_images_by_name(datasets):
    datasets.register("datasets/rek/train.manifest", groundtruth_manifest(PHOTOS, "my-rekognition-bucket", "in/"))
    datasets.register("datasets/rek/images.zip", zip_of({f"in/{p.stem}.jpg": p.jpeg for p in PHOTOS}))

    dataset = store.get_dataset("rek")
    assert (dataset["status"], dataset["issues"]) == ("ready", [])
    assert_boxes_as_exported("rek")


def test_watson_archives_register_classes_and_negatives_and_a_later_archive_adds_a_class(datasets):
    datasets.register("datasets/w/circle_positive_examples.zip", zip_of(single_shape_jpegs("circle", 5, seed=1)))
    datasets.register("datasets/w/negative_examples.zip", zip_of(background_jpegs(3, seed=2)))

    dataset = store.get_dataset("w")
    assert (dataset["classes"], dataset["negatives"], dataset["formats"]) == ({"circle": 5}, 3, ["watson"])
    assert dataset["issues"] == []

    # Watson's update_classifier: another class's archive later.
    datasets.register("datasets/w/square_positive_examples.zip", zip_of(single_shape_jpegs("square", 4, seed=3)))
    assert store.get_dataset("w")["classes"] == {"circle": 5, "square": 4}


def test_a_class_folder_tar_gz_registers_like_a_zip(datasets):
    members = {f"pets/{name.split('_')[0]}/{name}": data
               for label in ("circle", "square") for name, data in single_shape_jpegs(label, 3, seed=4).items()}
    datasets.register("datasets/tarred/pets.tar.gz", tar_of(members, gzip=True))
    datasets.register("datasets/plain-tar/pets.tar", tar_of(members))

    for name in ("tarred", "plain-tar"):
        dataset = store.get_dataset(name)
        assert (dataset["status"], dataset["classes"], dataset["issues"]) == ("ready", {"circle": 3, "square": 3}, [])


def test_a_voc_tar_gz_registers(datasets):
    datasets.register("datasets/voc/VOC.tgz", tar_of(voc_members(PHOTOS), gzip=True))
    assert_boxes_as_exported("voc")


# ---------------------------------------------------------------- hostile tars


def _tar_with(*entries: tarfile.TarInfo, data: dict[str, bytes] | None = None, gzip: bool = False) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gzip else "w") as archive:
        for info in entries:
            payload = (data or {}).get(info.name)
            archive.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return buffer.getvalue()


def _info(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, link
    return info


def test_links_devices_and_escaping_paths_in_tars_are_refused_and_the_rest_registers(datasets):
    good = single_shape_jpegs("circle", 1, seed=5)["circle_0.jpg"]
    data = {"cat/good.jpg": good}
    archive = _tar_with(
        _info("cat/good.jpg", size=len(good)),
        _info("cat/link.jpg", tarfile.SYMTYPE, link="/etc/passwd"),
        _info("cat/hard.jpg", tarfile.LNKTYPE, link="cat/good.jpg"),
        _info("cat/tty", tarfile.CHRTYPE),
        _info("cat/disk", tarfile.BLKTYPE),
        _info("cat/pipe", tarfile.FIFOTYPE),
        _info("../../escape.jpg", size=len(good)),
        _info("/abs/cat/x.jpg", size=len(good)),
        data={**data, "../../escape.jpg": good, "/abs/cat/x.jpg": good},
    )
    datasets.register("datasets/hostile/bad.tar", archive)

    dataset = store.get_dataset("hostile")
    reasons = {issue["key"].split("!", 1)[1]: issue["reason"] for issue in dataset["issues"]}
    assert dataset["images"] == 1 and dataset["classes"] == {"cat": 1}
    assert reasons == {
        "cat/link.jpg": "links are not allowed in archives",
        "cat/hard.jpg": "links are not allowed in archives",
        "cat/tty": "device files are not allowed in archives",
        "cat/disk": "device files are not allowed in archives",
        "cat/pipe": "device files are not allowed in archives",
        "../../escape.jpg": "path traversal ('..') is not allowed in archives",
        "/abs/cat/x.jpg": "absolute paths are not allowed in archives",
    }
    assert not datasets.artifact_exists("escape.jpg")


def test_a_tar_bomb_is_refused_without_expanding_it(datasets):
    import tracemalloc

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = _info("cat/bomb.png", size=200 * 1024 * 1024)

        class Zeros(io.RawIOBase):
            remaining = info.size

            def readable(self) -> bool:
                return True

            def readinto(self, view) -> int:
                count = min(len(view), self.remaining)
                view[:count] = bytes(count)
                self.remaining -= count
                return count

        archive.addfile(info, io.BufferedReader(Zeros()))
    data = buffer.getvalue()
    assert len(data) < 1_000_000  # 200 MiB of zeros squeezed into a few hundred KiB

    tracemalloc.start()
    try:
        datasets.register("datasets/bomb/bomb.tar.gz", data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    dataset = store.get_dataset("bomb")
    assert dataset["status"] == "invalid"
    assert "more than the limit" in dataset["issues"][0]["reason"]
    assert peak < 64 * 1024 * 1024
