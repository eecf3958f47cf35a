"""Each annotation format on its own: recognised by name and content, parsed into the common document, and every
problem reported with the file and the entry."""
from __future__ import annotations

import json

import pytest

from exported_datasets import LABELS, boxes_csv, groundtruth_manifest, photos, voc_xml, yolo_line
from sightline.datasets import formats
from sightline.datasets.formats import coco, csv_tables, groundtruth, voc, watson, yolo
from sightline.datasets.formats.base import FRACTIONS, AnnotationDocument, Box
from sightline.datasets.issues import IssueLog

PHOTO = photos(1)[0]


def parse(path: str, data: bytes) -> tuple[AnnotationDocument | None, list[str]]:
    issues = IssueLog(100)
    document = formats.parse_annotation_file(data, path=path, issue_key=path, issues=issues)
    return document, [issue["reason"] for issue in issues.items]


@pytest.mark.parametrize(("path", "data", "expected"), [
    ("annotations.json", b'{"images": [], "annotations": [], "categories": []}', coco.NAME),
    ("output.manifest", b'{"source-ref": "s3://b/k.jpg"}\n', groundtruth.NAME),
    ("train.json", b'{"source-ref": "s3://b/k.jpg", "x": 1}\n{"source-ref": "s3://b/l.jpg"}\n', groundtruth.NAME),
    ("Annotations/1.xml", voc_xml(PHOTO), voc.NAME),
    ("labels/train/1.txt", f"{yolo_line(PHOTO, PHOTO.boxes[0])}\n".encode(), yolo.NAME),
    ("labels/train/empty.txt", b"", yolo.NAME),
    ("data.yaml", b"names: [a, b]\n", yolo.NAMES),
    ("classes.txt", b"a\nb\n", yolo.NAMES),
    ("obj.names", b"a\nb\n", yolo.NAMES),
    ("boxes.csv", boxes_csv([PHOTO]), csv_tables.BOXES),
    ("boxes.csv", boxes_csv([PHOTO], header=False), csv_tables.BOXES),
    ("labels.csv", b"image,label\na.jpg,cat\n", csv_tables.LABELS),
    ("README.txt", b"This dataset was made by hand.\n", None),
    ("notes.xml", b"<notes><note>hi</note></notes>", None),
    ("table.csv", b"a,b,c\n1,2,3\n", None),
    ("settings.yaml", b"epochs: 3\n", None),
])
def test_formats_are_told_apart_by_name_and_content(path, data, expected):
    found = formats.identify(path, data)
    assert (found.name if found else None) == expected


def test_a_file_that_fits_no_format_says_so_and_lists_the_known_ones():
    document, reasons = parse("README.txt", b"just words")
    assert document is None
    assert reasons[0].startswith(".txt file fits no known annotation format (COCO JSON, Pascal VOC XML")


# ---------------------------------------------------------------- Pascal VOC


def test_voc_boxes_become_zero_based_pixels_and_the_image_is_looked_for_in_jpegimages():
    document, reasons = parse("VOC2012/Annotations/000000.xml", voc_xml(PHOTO))
    assert reasons == []
    (image,) = document.images
    assert (image.file_name, image.alternatives) == ("../JPEGImages/000000.jpg", ["000000.jpg"])
    assert (image.width, image.height) == (PHOTO.width, PHOTO.height)
    assert image.boxes == [Box(b.label, b.x_min, b.y_min, b.x_max, b.y_max) for b in PHOTO.boxes]
    assert set(document.categories) == {b.label for b in PHOTO.boxes}


def test_voc_without_filename_looks_for_the_xml_files_stem():
    document, _ = parse("Annotations/000000.xml", voc_xml(PHOTO, filename=False))
    assert document.images[0].file_name == "../JPEGImages/000000.*"


@pytest.mark.parametrize("hostile", [
    # Billion laughs: entity expansion.
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;">]><annotation><filename>&lol2;</filename></annotation>',
    # External entity: a local file.
    b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b'<annotation><filename>&x;</filename></annotation>',
    # External DTD over the network.
    b'<?xml version="1.0"?><!DOCTYPE annotation SYSTEM "http://127.0.0.1:9/evil.dtd"><annotation/>',
])
def test_xml_entities_and_dtds_are_refused_before_they_expand(hostile):
    document, reasons = parse("Annotations/evil.xml", hostile)
    assert document is None
    assert reasons == ["XML refused: DTDForbidden (DTDs, entities and external references are not allowed)"]


def test_voc_problems_name_the_object():
    xml = (b"<annotation><filename>a.jpg</filename><size><width>10</width><height>x</height></size>"
           b"<object><name>cat</name><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>2</xmax><ymax>9</ymax></bndbox></object>"
           b"<object><name>dog</name></object><object><bndbox/></object>"
           b"<object><name>ok</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>4</xmax><ymax>4</ymax></bndbox></object>"
           b"</annotation>")
    document, reasons = parse("Annotations/a.xml", xml)
    assert reasons == [
        "<size> is not usable ('10' x 'x'); using the image file's",
        "object 1 (cat) has a degenerate box [5, 5, 2, 9]",
        "object 2 (dog) has no <bndbox>",
        "object 3: has no <name>",
    ]
    assert [box.label for box in document.images[0].boxes] == ["ok"]


def test_malformed_xml_is_an_issue():
    assert parse("Annotations/a.xml", b"<annotation><object>")[1][0].startswith("not valid XML")


# ---------------------------------------------------------------- YOLO


def test_yolo_label_lines_are_fractions_named_by_class_index():
    lines = "\n".join(yolo_line(PHOTO, b) for b in PHOTO.boxes)
    document, reasons = parse("dataset/labels/val/000000.txt", lines.encode())
    assert reasons == []
    assert (document.box_units, document.class_indices) == (FRACTIONS, True)
    (image,) = document.images
    assert image.file_name == "../../images/val/000000.*"
    for parsed, box in zip(image.boxes, PHOTO.boxes):
        assert parsed.label == str(LABELS.index(box.label))
        assert parsed.x_min * PHOTO.width == pytest.approx(box.x_min, abs=1e-3)
        assert parsed.y_max * PHOTO.height == pytest.approx(box.y_max, abs=1e-3)


def test_a_yolo_segmentation_polygon_gives_its_bounding_box():
    document, _ = parse("labels/a.txt", b"1 0.1 0.2 0.5 0.2 0.4 0.6\n")
    assert document.images[0].boxes == [Box("1", 0.1, 0.2, 0.5, 0.6)]


def test_yolo_lines_that_are_not_boxes_are_issues():
    document, reasons = parse("labels/a.txt", b"0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0 0.2\n0 0.1 0.2 0.3 0.4 0.5\n")
    assert reasons == ["line 2 has a degenerate box (width 0, height 0.2)",
                       "line 3 has an odd number of polygon coordinates (5)"]
    assert len(document.images[0].boxes) == 1


@pytest.mark.parametrize(("path", "data", "names"), [
    ("data.yaml", b"names: [circle, square]\n", ["circle", "square"]),
    ("data.yaml", b"names:\n  0: circle\n  1: square\nnc: 2\n", ["circle", "square"]),
    ("classes.txt", b"circle\r\nsquare\r\n", ["circle", "square"]),
])
def test_yolo_class_names_come_from_data_yaml_or_classes_txt(path, data, names):
    document, reasons = parse(path, data)
    assert (document.format, document.categories, reasons) == (yolo.NAMES, names, [])


@pytest.mark.parametrize(("data", "reason"), [
    (b"names: {0: a, 2: b}\n", "'names' must map the class indices 0, 1, 2, ... to names"),
    (b"nc: 2\nnames: 3\n", "no 'names' list or mapping: YOLO class names are missing"),
    (b"names: [a\n", "not valid YAML"),
    (b"names: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
])
def test_unusable_yolo_names_are_issues(data, reason):
    document, reasons = parse("data.yaml", data)
    assert document is None and reasons[0].startswith(reason)


def test_a_yaml_alias_bomb_stays_small_and_is_refused():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n"
    for level in range(1, 12):
        bomb += f"{'b' * level}: &{'b' * level} [{', '.join(['*' + ('b' * (level - 1) if level > 1 else 'a')] * 9)}]\n"
    bomb += f"names: *{'b' * 11}\n"
    document, reasons = parse("data.yaml", bomb.encode())
    assert document is not None and len(document.categories) == 9  # names is a list of 9 (shared) lists...
    assert all(category == "" for category in document.categories)  # ...none of them a usable name
    assert reasons[0] == "class 0: class name is a list, not text; its boxes are skipped"


# ---------------------------------------------------------------- CSV


def test_a_csv_of_boxes_with_a_header_groups_rows_by_image():
    document, reasons = parse("boxes.csv", boxes_csv(photos(2)))
    assert reasons == []
    assert [image.file_name for image in document.images] == ["images/000000.jpg", "images/000001.jpg"]
    assert document.images[0].boxes == [Box(b.label, b.x_min, b.y_min, b.x_max, b.y_max) for b in PHOTO.boxes]


def test_a_headerless_csv_is_read_as_keras_retinanet_writes_it_including_empty_images():
    data = boxes_csv([PHOTO], header=False) + b"images/background.jpg,,,,,\n"
    document, reasons = parse("train.csv", data)
    assert reasons == []
    assert [len(image.boxes) for image in document.images] == [len(PHOTO.boxes), 0]


def test_tensorflow_style_csv_columns_are_understood():
    data = b"filename,width,height,class,xmin,ymin,xmax,ymax\na.jpg,100,50,cat,1,2,30,40\n"
    document, reasons = parse("train_labels.csv", data)
    (image,) = document.images
    assert (reasons, image.width, image.height, image.boxes) == ([], 100, 50, [Box("cat", 1, 2, 30, 40)])


def test_csv_rows_that_cannot_be_boxes_are_issues():
    data = b"image_path,xmin,ymin,xmax,ymax,label\na.jpg,1,2,x,4,cat\n,1,2,3,4,cat\nb.jpg,5,5,1,9,cat\nc.jpg,1,1\n"
    _, reasons = parse("boxes.csv", data)
    assert reasons == [
        "row 2 (a.jpg): box cells ['1', '2', 'x', '4'] are not numbers",
        "row 3 names no image",
        "row 4 (b.jpg) has a degenerate box [5, 5, 1, 9]",
        "row 5 has 3 cells, expected 6",
    ]


def test_a_csv_of_labels_gives_each_image_its_class_or_classes():
    document, reasons = parse("labels.csv", b"image,label\ncats/1.jpg,cat\n2.jpg,dog\n3.jpg,dog; cat\n2.jpg,cat\n")
    assert [(image.file_name, image.class_labels) for image in document.images] == [
        ("cats/1.jpg", ["cat"]), ("2.jpg", ["dog"]), ("3.jpg", ["cat", "dog"])]
    assert document.images[2].label is None and document.images[2].labels == ["cat", "dog"]
    assert reasons == ["row 5: 2.jpg is labelled 'dog' earlier; 'cat' ignored"]


def test_a_ground_truth_multi_label_job_gives_each_image_its_classes_and_none_for_an_empty_choice():
    meta = '"labels-metadata": {"type": "groundtruth/image-classification-multilabel", "class-map": {"0": "cat", "2": "dog"}}'
    lines = [
        '{"source-ref": "s3://b/a.jpg", "labels": [0, 2], ' + meta + '}',
        '{"source-ref": "s3://b/b.jpg", "labels": [], ' + meta + '}',
        '{"source-ref": "s3://b/c.jpg", "labels": [2, 7], ' + meta + '}',
    ]
    document, reasons = parse("job.manifest", "\n".join(lines).encode())
    assert [(image.file_name, image.class_labels) for image in document.images] == [
        ("a.jpg", ["cat", "dog"]), ("b.jpg", []), ("c.jpg", ["dog"])]
    assert reasons == ["line 3 (c.jpg): class id '7' is not in the class-map"]


def test_a_category_name_of_megabytes_is_refused_not_stored():
    huge = "x" * 2_000_000
    document, reasons = parse("labels.csv", f"image,label\na.jpg,{huge}\n".encode())
    assert document.images == [] or all(len(image.label or "") <= 128 for image in document.images)
    assert len(reasons) == 1 and len(reasons[0]) < 400


# ---------------------------------------------------------------- Ground Truth / Rekognition


def test_a_ground_truth_manifest_in_the_data_bucket_names_images_relative_to_itself(monkeypatch):
    monkeypatch.setenv("DATA_BUCKET", "data")
    from sightline.config import get_settings
    get_settings.cache_clear()
    manifest = groundtruth_manifest([PHOTO], "data", "datasets/x/images/")
    document, reasons = parse("datasets/x/train.manifest", manifest)
    assert reasons == []
    (image,) = document.images
    assert (image.file_name, image.width, image.height) == ("images/000000.jpg", PHOTO.width, PHOTO.height)
    assert image.boxes == [Box(b.label, b.x_min, b.y_min, b.x_max, b.y_max) for b in PHOTO.boxes]


def test_a_manifest_from_another_bucket_finds_images_by_file_name():
    document, _ = parse("datasets/x/output.manifest", groundtruth_manifest([PHOTO], "rekognition-bucket", "in/"))
    assert document.images[0].file_name == "000000.jpg"


def test_classification_lines_give_the_class_name():
    line = {"source-ref": "s3://b/cat1.jpg", "animal": 0,
            "animal-metadata": {"class-name": "cat", "type": "groundtruth/image-classification", "confidence": 1}}
    document, reasons = parse("cls.manifest", (json.dumps(line) + "\n").encode())
    assert (reasons, [(i.file_name, i.label) for i in document.images]) == ([], [("cat1.jpg", "cat")])


def test_manifest_lines_that_cannot_be_used_are_issues():
    lines = [
        '{"source-ref": "s3://b/a.jpg"}',
        "not json",
        '{"source-ref": "https://example.com/a.jpg", "x": 1}',
        json.dumps({"source-ref": "s3://b/c.jpg", "bb": {"annotations": [{"class_id": 7, "left": 1, "top": 1,
                    "width": 5, "height": 5}]}, "bb-metadata": {"type": "groundtruth/object-detection",
                                                               "class-map": {"0": "cat"}}}),
    ]
    _, reasons = parse("x.manifest", "\n".join(lines).encode())
    assert reasons[0] == ("line 1 (a.jpg) has no label attribute of type groundtruth/object-detection, "
                          "groundtruth/image-classification, groundtruth/image-classification-multilabel")
    assert reasons[1].startswith("line 2 is not valid JSON")
    assert reasons[2] == "line 3: source-ref 'https://example.com/a.jpg' is not an s3:// object URI"
    assert reasons[3] == "line 4 (c.jpg) annotation 0: class_id 7 is not in the class-map"


# ---------------------------------------------------------------- Watson


@pytest.mark.parametrize(("key", "role"), [
    ("datasets/x/beagle_positive_examples.zip", ("positive", "beagle")),
    ("datasets/x/Golden Retriever_positive_examples.tar.gz", ("positive", "Golden Retriever")),
    ("datasets/x/negative_examples.zip", ("negative", None)),
    ("datasets/x/NEGATIVE_EXAMPLES.tgz", ("negative", None)),
    ("datasets/x/_positive_examples.zip", None),
    ("datasets/x/dogs.zip", None),
])
def test_watson_archives_are_known_by_their_names(key, role):
    assert watson.archive_role(key) == role
